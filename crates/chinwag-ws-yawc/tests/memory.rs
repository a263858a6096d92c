//! Memory under hostile peers, alone in its own process so the measurement is not blurred by
//! other tests (see `chinwag_ws::suite::hostile_peers_cost_bounded_memory`).

#[tokio::test]
async fn hostile_peers_cost_bounded_memory() {
    chinwag_ws::suite::hostile_peers_cost_bounded_memory::<chinwag_ws_yawc::Yawc>().await;
}
