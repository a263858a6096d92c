//! The shared loopback suite (`chinwag_ws::suite`, feature `test-suite`) on the yawc engine.

chinwag_ws::engine_tests!(chinwag_ws_yawc::Yawc);
