//! [`engine_api!`](crate::engine_api): the public surface every engine crate repeats (the type
//! aliases over the generic connection types and the `upgrade` / `connect` / `connect_with`
//! wrappers), written once.

/// The paths [`engine_api!`](crate::engine_api) expands to, so that an engine crate needs none
/// of these dependencies itself. Not part of the API.
#[doc(hidden)]
pub mod __engine_api {
    pub use bytes::Bytes;
    pub use chinwag_transport::TransportError;
    pub use http::{Request, Response};
    pub use http_body_util::Empty;
    pub use std::future::Future;
}

/// Generates an engine crate's public API for its engine marker type: the aliases
/// `WsConnection`, `WsReader`, `WsWriter` and `WsAcceptor` (the generic [`WsConnection`],
/// [`WsReader`], [`WsWriter`] and [`WsAcceptor`] of this crate, fixed to the engine) and the
/// functions `upgrade`, `connect` and `connect_with` (this crate's [`upgrade`], [`connect`] and
/// [`connect_with`] for the engine), each with its rustdoc.
///
/// The first argument is the engine's marker type (it implements [`Engine`]), the second the
/// engine's name as the docs should say it. Invoke it once, at the root of the engine crate,
/// which must depend on `chinwag-ws` under the name `chinwag_ws` (the generated docs link to
/// it).
///
/// [`WsConnection`]: crate::WsConnection
/// [`WsReader`]: crate::WsReader
/// [`WsWriter`]: crate::WsWriter
/// [`WsAcceptor`]: crate::WsAcceptor
/// [`upgrade`]: crate::upgrade()
/// [`connect`]: crate::connect()
/// [`connect_with`]: crate::connect_with()
/// [`Engine`]: crate::Engine
///
/// At the root of `chinwag-ws-yawc`, after its marker type (the invocation is
/// `chinwag_ws::engine_api!`):
///
/// ```text
/// /// The yawc engine (a marker type for the generic [`chinwag_ws`] types).
/// #[derive(Debug, Clone, Copy, Default)]
/// pub struct Yawc;
///
/// engine_api!(Yawc, "yawc");
/// ```
///
/// gives `pub type WsConnection = WsConnection<Yawc>` (of this crate; likewise the other three
/// aliases) and `pub fn upgrade<B>(req, cfg)`, which calls this crate's `upgrade::<Yawc, B>`
/// (likewise `connect` and `connect_with`).
#[macro_export]
macro_rules! engine_api {
    ($engine:ident, $name:literal) => {
        #[doc = concat!("A WebSocket connection on ", $name, ".")]
        pub type WsConnection = $crate::WsConnection<$engine>;
        /// The reading half of a [`WsConnection`].
        pub type WsReader = $crate::WsReader<$engine>;
        /// The writing half of a [`WsConnection`].
        pub type WsWriter = $crate::WsWriter<$engine>;
        #[doc = concat!(
            "Accepts WebSocket connections on ", $name, " (see [`chinwag_ws::WsAcceptor`])."
        )]
        pub type WsAcceptor = $crate::WsAcceptor<$engine>;

        #[doc = concat!(
            "Upgrades a hyper request to a ", $name, " WebSocket; see [`chinwag_ws::upgrade`]."
        )]
        #[allow(clippy::type_complexity)]
        pub fn upgrade<B>(
            req: &mut $crate::__engine_api::Request<B>,
            cfg: &$crate::WsConfig,
        ) -> ::std::result::Result<
            (
                $crate::__engine_api::Response<
                    $crate::__engine_api::Empty<$crate::__engine_api::Bytes>,
                >,
                impl $crate::__engine_api::Future<
                    Output = ::std::result::Result<
                        WsConnection,
                        $crate::__engine_api::TransportError,
                    >,
                > + Send
                + 'static,
            ),
            $crate::UpgradeError,
        > {
            $crate::upgrade::<$engine, B>(req, cfg)
        }

        /// Dials a `ws://` or `wss://` URL; see [`chinwag_ws::connect`].
        pub async fn connect(
            url: &str,
            cfg: &$crate::WsConfig,
        ) -> ::std::result::Result<WsConnection, $crate::__engine_api::TransportError> {
            $crate::connect::<$engine>(url, cfg).await
        }

        /// Dials a `ws://` or `wss://` URL with options; see [`chinwag_ws::connect_with`].
        pub async fn connect_with(
            url: &str,
            cfg: &$crate::WsConfig,
            opts: &$crate::ConnectOptions,
        ) -> ::std::result::Result<WsConnection, $crate::__engine_api::TransportError> {
            $crate::connect_with::<$engine>(url, cfg, opts).await
        }
    };
}
