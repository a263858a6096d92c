//! The outbound queue's limits and every overflow policy, each at its boundary.
//!
//! Setup: a session on a pipe that holds one frame, whose peer does not read at first. The
//! test "plugs" the writer (one frame in the pipe, a second one being fed) so that everything
//! sent afterwards stays in the queue, where its depth is exact.

mod common;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chinwag_session::{
    CloseCause, Encoded, FrameCodec, OverflowPolicy, SendError, Session, SessionConfig,
    spawn_session,
};
use chinwag_transport::pipe::{self, PipeConfig, PipeReader, PipeWriter};
use chinwag_transport::{CloseCode, Frame, FrameRead, Transport};
use common::{Recorder, wait_until, within};

fn msg(i: u8, len: usize) -> Frame {
    Frame::Binary(Bytes::from(vec![i; len]))
}

/// A session whose writer is stuck, with the given queue limits and policy; the peer's
/// reading half (holding the two plug frames first).
async fn plugged(
    max_msgs: usize,
    max_bytes: usize,
    policy: OverflowPolicy,
) -> (Session<FrameCodec>, PipeReader, PipeWriter) {
    let mut pc = PipeConfig::default();
    pc.capacity = 1;
    let (ours, theirs) = pipe::pair(&pc);
    let mut cfg = SessionConfig::default();
    cfg.queue_max_messages = max_msgs;
    cfg.queue_max_bytes = max_bytes;
    cfg.overflow = policy;
    cfg.write_timeout = Duration::from_secs(3600);
    let (rec, _rx) = Recorder::new();
    let s = spawn_session(ours, Arc::new(FrameCodec), Arc::new(rec), Arc::new(cfg));
    s.send(&msg(200, 1)).await.unwrap();
    wait_until(|| s.queue_len() == 0 && s.stats().messages_out == 1).await;
    s.send(&msg(201, 1)).await.unwrap();
    // The writer took the second plug and waits for room in the pipe.
    wait_until(|| s.queue_len() == 0).await;
    // The peer's writer is kept: dropping it would look like a vanished peer.
    let (rd, wr) = theirs.split();
    (s, rd, wr)
}

/// Reads frames until the peer's close; returns their first bytes.
async fn drain(rd: &mut PipeReader) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(f) = within(rd.read_frame()).await.unwrap() {
        out.push(f.payload().first().copied().unwrap_or(0));
    }
    out
}

#[tokio::test]
async fn drop_newest_at_the_message_limit() {
    let (s, mut rd, _wr) = plugged(4, 1 << 20, OverflowPolicy::DropNewest).await;
    for i in 0..4 {
        s.send(&msg(i, 10)).await.unwrap();
    }
    assert_eq!(s.queue_len(), 4);
    assert_eq!(s.queue_bytes(), 40);
    assert!(matches!(s.send(&msg(4, 10)).await, Err(SendError::Dropped)));
    assert_eq!(s.queue_len(), 4);
    assert_eq!(s.stats().messages_dropped, 1);
    s.close();
    assert_eq!(drain(&mut rd).await, [200, 201, 0, 1, 2, 3]);
    assert_eq!(within(s.closed()).await, CloseCause::Local);
}

#[tokio::test]
async fn drop_oldest_at_the_message_limit() {
    let (s, mut rd, _wr) = plugged(4, 1 << 20, OverflowPolicy::DropOldest).await;
    for i in 0..6 {
        s.send(&msg(i, 10)).await.unwrap();
    }
    assert_eq!(s.queue_len(), 4);
    assert_eq!(s.stats().messages_dropped, 2);
    s.close();
    assert_eq!(drain(&mut rd).await, [200, 201, 2, 3, 4, 5]);
}

#[tokio::test]
async fn drop_oldest_at_the_byte_limit() {
    // 25 bytes: two 10-byte messages fit (20), a third would make 30.
    let (s, mut rd, _wr) = plugged(100, 25, OverflowPolicy::DropOldest).await;
    s.send(&msg(0, 10)).await.unwrap();
    s.send(&msg(1, 10)).await.unwrap();
    assert_eq!(s.queue_bytes(), 20);
    s.send(&msg(2, 5)).await.unwrap(); // exactly 25: fits
    assert_eq!((s.queue_len(), s.queue_bytes()), (3, 25));
    s.send(&msg(3, 1)).await.unwrap(); // 26: the oldest goes
    assert_eq!((s.queue_len(), s.queue_bytes()), (3, 16));
    s.close();
    assert_eq!(drain(&mut rd).await, [200, 201, 1, 2, 3]);
}

#[tokio::test]
async fn close_policy_at_the_byte_limit() {
    let (s, mut rd, _wr) = plugged(100, 20, OverflowPolicy::Close).await;
    s.send(&msg(0, 10)).await.unwrap();
    s.send(&msg(1, 10)).await.unwrap(); // exactly 20
    assert!(matches!(s.send(&msg(2, 1)).await, Err(SendError::Overflow)));
    assert!(matches!(s.send(&msg(3, 1)).await, Err(SendError::Closed)));
    // The queue is discarded at once: no memory held for a peer that cannot keep up.
    assert_eq!(s.queue_len(), 0);
    // The writer was stuck on the second plug: once the peer reads again, that write
    // finishes and the close with 1008 follows; nothing queued is written.
    assert_eq!(drain(&mut rd).await, [200, 201]);
    let reason = rd.close_reason().expect("a close reason");
    assert_eq!(reason.code, CloseCode::POLICY);
    assert_eq!(reason.reason, "send queue overflow");
    assert_eq!(within(s.closed()).await, CloseCause::Overflow);
}

#[tokio::test]
async fn close_policy_sends_1008_when_the_writer_is_free() {
    // A session whose writer is idle, but whose queue limit is hit by one burst from a
    // sender that does not yield: the queue is discarded and a close with 1008 goes out.
    let (ours, theirs) = pipe::pair(&PipeConfig::default());
    let mut cfg = SessionConfig::default();
    cfg.queue_max_messages = 2;
    let (rec, _rx) = Recorder::new();
    let s = spawn_session(ours, Arc::new(FrameCodec), Arc::new(rec), Arc::new(cfg));
    let results: Vec<_> = (0..3)
        .map(|i| s.try_send_encoded(Encoded::frame(msg(i, 1))))
        .collect();
    assert!(results[0].is_ok() && results[1].is_ok());
    assert!(matches!(results[2], Err(SendError::Overflow)));
    let (mut rd, _wr) = theirs.split();
    assert_eq!(within(rd.read_frame()).await.unwrap(), None);
    assert_eq!(rd.close_reason().unwrap().code, CloseCode::POLICY);
    assert_eq!(within(s.closed()).await, CloseCause::Overflow);
}

#[tokio::test]
async fn oversized_message_only_into_an_empty_queue() {
    let (s, mut rd, _wr) = plugged(100, 8, OverflowPolicy::DropNewest).await;
    s.send(&msg(0, 50)).await.unwrap(); // larger than the byte limit, queue empty: accepted
    assert!(matches!(s.send(&msg(1, 1)).await, Err(SendError::Dropped)));
    s.close();
    assert_eq!(drain(&mut rd).await, [200, 201, 0]);
}

#[tokio::test(start_paused = true)]
async fn block_times_out_at_the_limit() {
    let timeout = Duration::from_secs(2);
    let (s, _rd, _wr) = plugged(2, 1 << 20, OverflowPolicy::Block { timeout }).await;
    s.send(&msg(0, 1)).await.unwrap();
    s.send(&msg(1, 1)).await.unwrap();
    let start = tokio::time::Instant::now();
    assert!(matches!(s.send(&msg(2, 1)).await, Err(SendError::Timeout)));
    assert!(start.elapsed() >= timeout);
    assert!(matches!(
        s.try_send_encoded(Encoded::binary(vec![3])),
        Err(SendError::Timeout)
    ));
    assert_eq!(s.queue_len(), 2);
    assert!(!s.is_closing());
}

#[tokio::test]
async fn block_waits_for_room() {
    let (s, mut rd, _wr) = plugged(
        2,
        1 << 20,
        OverflowPolicy::Block {
            timeout: Duration::from_secs(60),
        },
    )
    .await;
    s.send(&msg(0, 1)).await.unwrap();
    s.send(&msg(1, 1)).await.unwrap();
    let s2 = s.clone();
    let blocked = tokio::spawn(async move { s2.send(&msg(2, 1)).await });
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert!(
        !blocked.is_finished(),
        "a full queue must make the sender wait"
    );
    // The peer starts reading: room appears and the blocked send completes.
    let mut got = Vec::new();
    for _ in 0..5 {
        got.push(within(rd.read_frame()).await.unwrap().unwrap().payload()[0]);
    }
    within(blocked).await.unwrap().unwrap();
    assert_eq!(got, [200, 201, 0, 1, 2]);
}

#[tokio::test]
async fn per_session_policy_overrides_the_config() {
    let (s, _rd, _wr) = plugged(1, 1 << 20, OverflowPolicy::Close).await;
    s.set_overflow_policy(OverflowPolicy::DropNewest);
    assert_eq!(s.overflow_policy(), OverflowPolicy::DropNewest);
    s.send(&msg(0, 1)).await.unwrap();
    assert!(matches!(s.send(&msg(1, 1)).await, Err(SendError::Dropped)));
    assert!(!s.is_closing());
}

/// A per-call policy overrides the session's; `DropOldest` never discards a message that was
/// queued under `Block` (an answer promised to the peer), and drops the new one when only such
/// messages are queued.
#[tokio::test]
async fn per_call_policy_and_drop_oldest_keeps_promised_messages() {
    let (s, mut rd, _wr) = plugged(3, 1 << 20, OverflowPolicy::Close).await;
    let block = OverflowPolicy::Block {
        timeout: Duration::from_secs(1),
    };
    let enc = |i: u8| s.encode(&msg(i, 10)).unwrap();
    // A feed message (droppable), then two promised ones.
    s.try_send_encoded_with(enc(0), OverflowPolicy::DropOldest)
        .unwrap();
    s.send_encoded_with(enc(1), block).await.unwrap();
    s.send_encoded_with(enc(2), block).await.unwrap();
    // Full: DropOldest evicts the feed message, not the promised ones.
    s.try_send_encoded_with(enc(3), OverflowPolicy::DropOldest)
        .unwrap();
    // Full of promised messages and message 3 (droppable): 3 goes for 4.
    s.try_send_encoded_with(enc(4), OverflowPolicy::DropOldest)
        .unwrap();
    assert_eq!(s.stats().messages_dropped, 2);
    // Non-blocking Block on a full queue: Timeout at once; the session's Close policy is not
    // applied to a per-call policy.
    assert!(matches!(
        s.try_send_encoded_with(enc(5), block),
        Err(SendError::Timeout)
    ));
    assert!(!s.is_closing());
    s.close();
    assert_eq!(drain(&mut rd).await, [200, 201, 1, 2, 4]);
}

/// A charge travels with its message and is released once the message is written; a close
/// that discards the queue releases it too.
#[tokio::test]
async fn charges_are_released_when_written_or_discarded() {
    let budget = chinwag_session::ByteBudget::new(1 << 20);
    let (s, mut rd, _wr) = plugged(8, 1 << 20, OverflowPolicy::Close).await;
    let block = OverflowPolicy::Block {
        timeout: Duration::from_secs(1),
    };
    for i in 0..3u8 {
        let c = budget.try_charge(1000).unwrap();
        s.send_charged(s.encode(&msg(i, 10)).unwrap(), c, block)
            .await
            .unwrap();
    }
    assert_eq!(budget.used(), 3000, "queued: still charged");
    // The peer reads: the plugs and the three messages are written, the charges released.
    for _ in 0..5 {
        within(rd.read_frame()).await.unwrap().unwrap();
    }
    wait_until(|| budget.used() == 0).await;
    // Discarded by an overflow close: released too.
    let (s2, mut rd2, _wr2) = plugged(1, 1 << 20, OverflowPolicy::Close).await;
    let c = budget.try_charge(500).unwrap();
    s2.send_charged(s2.encode(&msg(9, 10)).unwrap(), c, block)
        .await
        .unwrap();
    assert_eq!(budget.used(), 500);
    assert!(s2.send(&msg(10, 10)).await.is_err());
    assert_eq!(budget.used(), 0, "released as the queue is discarded");
    // The peer reads again: the plugs, then the close (message 9 was never written).
    assert_eq!(drain(&mut rd2).await, [200, 201]);
    assert_eq!(within(s2.closed()).await, CloseCause::Overflow);
    assert_eq!(budget.used(), 0);
    drop(s);
}
