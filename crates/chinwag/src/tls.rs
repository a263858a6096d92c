//! TLS for the [`ServerBuilder`](crate::ServerBuilder) (feature `tls`): a rustls server
//! configuration from PEM, and rustls itself. The transports' TLS types are in
//! [`transport::tls`](crate::transport::tls).
//!
//! ```no_run
//! # async fn f() -> chinwag::Result<()> {
//! let tls = chinwag::tls::server_config_from_files("cert.pem", "key.pem")?;
//! let server = chinwag::Server::builder()
//!     .http("0.0.0.0:443".parse()?)
//!     .jwt_secret("a long random secret that signs the tokens")
//!     .tls(tls)
//!     .start()
//!     .await?;
//! # Ok(()) }
//! ```

use std::path::Path;
use std::sync::Arc;

pub use chinwag_transport::tls::TlsConfigError;
pub use rustls;

use chinwag_transport::tls::{TlsServerConfig, read_pem_file};

/// A server configuration (ring provider, TLS 1.2 and 1.3, no client certificates) from a PEM
/// certificate chain (leaf first) and its PEM private key. It offers no ALPN, so browsers
/// (which offer `h2` and `http/1.1`) fall back to HTTP/1.1 and TCP clients that offer none are
/// served too.
///
/// # Errors
///
/// Bad PEM, no certificate or key, a key that does not match the certificate.
pub fn server_config(
    cert_chain_pem: &[u8],
    key_pem: &[u8],
) -> Result<Arc<rustls::ServerConfig>, TlsConfigError> {
    Ok(TlsServerConfig::from_pem(cert_chain_pem, key_pem)?.to_rustls())
}

/// [`server_config`] from the files at `cert_chain` and `key`.
///
/// # Errors
///
/// A file cannot be read, or as [`server_config`].
pub fn server_config_from_files(
    cert_chain: impl AsRef<Path>,
    key: impl AsRef<Path>,
) -> Result<Arc<rustls::ServerConfig>, TlsConfigError> {
    server_config(&read_pem_file(cert_chain)?, &read_pem_file(key)?)
}
