//! The shared loopback suite (`tests/suite`) on the tungstenite engine.

mod suite;

engine_tests!(chinwag_ws_tungstenite::Tungstenite);
