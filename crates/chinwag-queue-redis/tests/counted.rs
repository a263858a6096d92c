//! The Redis calls of a queue and its history are counted for `/metrics` ([`Counted`]): one
//! command per script call (a push that keeps included), none left in flight after the calls
//! returned, and the failures of a Redis that went away.

use std::time::Duration;

use chinwag_queue::{HistoryConfig, Keep, Queue, QueueConfig, Retention};
use chinwag_queue_redis::RedisQueue;
use chinwag_queue_redis::counted::{COMMANDS, ERRORS, IN_FLIGHT};
use chinwag_queue_redis::test_server::RedisServer;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// A series' value in the Prometheus text (`name{labels}`), 0 when absent.
fn value(h: &PrometheusHandle, series: &str) -> f64 {
    h.render()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            (k == series).then(|| v.parse().expect("a number"))
        })
        .unwrap_or(0.0)
}

#[tokio::test]
async fn every_call_on_the_queues_connection_is_counted() {
    let h = PrometheusBuilder::new()
        .install_recorder()
        .expect("the only recorder of this test binary");
    let commands = format!("{COMMANDS}{{conn=\"queue\"}}");
    let in_flight = format!("{IN_FLIGHT}{{conn=\"queue\"}}");
    let errors = format!("{ERRORS}{{conn=\"queue\"}}");

    let server = RedisServer::start();
    let q = RedisQueue::connect(&server.url(), QueueConfig::default())
        .await
        .expect("connect");
    let history = q.history(HistoryConfig::default());
    let q = q.keeping(history).expect("same prefix");
    let keep = |payload: &'static str| Keep {
        stream: "\0a\0b",
        payload: payload.into(),
        retention: Retention::new(10, None),
        new_epoch: 1,
    };
    // Warm up: a script Redis does not know yet costs a second command (EVALSHA, then EVAL).
    q.push_keeping("b", "w".into(), None, keep("w"))
        .await
        .expect("push");
    q.ack_many(&[("b", 1)]).await.expect("ack");
    let before = value(&h, &commands);
    for body in ["one", "two", "three"] {
        q.push_keeping("b", body.into(), None, keep(body))
            .await
            .expect("push");
    }
    q.ack_many(&[("b", 3), ("b", 4)]).await.expect("ack");
    assert_eq!(
        value(&h, &commands) - before,
        4.0,
        "three pushes that keep, one batch of acks: one command each"
    );
    assert_eq!(
        value(&h, &in_flight),
        0.0,
        "nothing waits after the calls returned"
    );
    assert_eq!(value(&h, &errors), 0.0, "no failure yet");

    // Redis goes away: the next call fails, and is counted as failed.
    drop(server);
    let r = tokio::time::timeout(Duration::from_secs(20), q.push("b", "lost".into(), None))
        .await
        .expect("the call ends");
    assert!(r.is_err(), "Redis is gone: {r:?}");
    assert!(value(&h, &errors) >= 1.0, "the failure is counted");
    assert_eq!(value(&h, &in_flight), 0.0, "and no longer in flight");
}
