//! The shared loopback suite (written once, in chinwag-ws-tungstenite's `tests/suite`) on the
//! fastwebsockets engine.

#[path = "../../chinwag-ws-tungstenite/tests/suite/mod.rs"]
mod suite;

engine_tests!(chinwag_ws_fastwebsockets::FastWebSockets);
