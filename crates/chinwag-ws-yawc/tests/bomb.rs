//! A decompression bomb: a ~1 MiB compressed frame that inflates to 1 GiB is refused with 1009
//! while it inflates (yawc stops at the frame limit), and the process grows by a bounded amount,
//! nowhere near the gigabyte. Alone in its own test binary so the measurement is not blurred.

use std::io::Write;

use chinwag::transport::{Acceptor, FrameRead, Transport, TransportError};
use chinwag::ws::DeflateConfig;
use chinwag::ws::yawc::{WsAcceptor, WsConfig};
use chinwag_ws::suite::{client_frame, header, raw_handshake, read_close_code, within};
use tokio::io::AsyncWriteExt;

/// Peak resident memory of this process in KiB (Linux `VmHWM`).
fn peak_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// A permessage-deflate payload of `mib` MiB of zeros: 1 MiB of zeros compressed and
/// sync-flushed, repeated (non-final blocks concatenate; each refers only to zeros), without
/// the final `00 00 ff ff` (RFC 7692 §7.2.1).
fn zeros_compressed(mib: usize) -> Vec<u8> {
    let mut enc = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
    enc.write_all(&vec![0u8; 1 << 20]).unwrap();
    enc.flush().unwrap();
    let block = enc.get_ref().clone();
    assert!(block.ends_with(&[0, 0, 0xff, 0xff]));
    let mut out = Vec::with_capacity(block.len() * mib);
    for _ in 0..mib {
        out.extend_from_slice(&block);
    }
    out.truncate(out.len() - 4);
    out
}

#[tokio::test]
async fn inflating_stops_at_the_limit_with_1009() {
    let limit = 16usize << 20;
    let cfg = WsConfig::default()
        .with_max_message_size(limit)
        .with_max_frame_size(limit)
        .with_deflate(Some(DeflateConfig::default()));
    let mut acc = WsAcceptor::bind("127.0.0.1:0".parse().unwrap(), cfg)
        .await
        .unwrap();
    let addr = acc.local_addr();
    let payload = zeros_compressed(1024);
    assert!(
        payload.len() < 2 << 20,
        "{} compressed bytes",
        payload.len()
    );
    let frame = client_frame(0x2, true, &payload);
    drop(payload);
    let ((mut tcp, head), server) = within("handshake", async {
        tokio::join!(
            raw_handshake(
                addr,
                "Sec-WebSocket-Extensions: permessage-deflate; client_no_context_takeover; \
                 server_no_context_takeover\r\n",
            ),
            acc.accept()
        )
    })
    .await;
    assert!(
        header(&head, "sec-websocket-extensions").is_some(),
        "{head}"
    );
    let (mut sr, _sw) = server.unwrap().split();
    let before = peak_kib();
    tcp.write_all(&frame).await.unwrap();
    match within("bomb", sr.read_frame()).await {
        Err(TransportError::TooLarge { limit: l, .. }) => assert_eq!(l, limit as u64),
        other => panic!("expected TooLarge, got {other:?}"),
    }
    assert_eq!(within("close frame", read_close_code(&mut tcp)).await, 1009);
    let grown = peak_kib().saturating_sub(before);
    eprintln!("yawc: a 1 GiB bomb raised the peak RSS by {grown} KiB (limit {limit} bytes)");
    // Inflating up to the limit costs about the limit (yawc's output buffer); honouring the
    // bomb would cost a gigabyte.
    assert!(
        grown < 2 * (limit as u64 >> 10),
        "peak RSS grew by {grown} KiB"
    );
}
