//! gotalk wire codec: decode and encode of a 64-byte request and a 64 KiB result, in the
//! streamed (TCP) and framed (WebSocket) layouts. Reported per message and per byte.
#![allow(missing_docs)]

use bytes::{Bytes, BytesMut};
use chinwag_wire::{FramedDecoder, Message, Name, RequestId, StreamDecoder, WireLimits};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;

fn cases() -> Vec<(&'static str, Message)> {
    vec![
        (
            "request_64B",
            Message::SingleRequest {
                id: RequestId(*b"0001"),
                op: Name::from_static("echo"),
                payload: Bytes::from(vec![b'x'; 64]),
            },
        ),
        (
            "result_64KiB",
            Message::SingleResult {
                id: RequestId(*b"0001"),
                payload: Bytes::from(vec![b'y'; 64 * 1024]),
            },
        ),
    ]
}

/// Decoding: a batch of 64 messages is in the buffer, as after one large socket read.
fn decode(c: &mut Criterion) {
    const BATCH: usize = 64;
    let mut g = c.benchmark_group("wire/decode_stream");
    for (name, msg) in cases() {
        let mut wire = BytesMut::new();
        for _ in 0..BATCH {
            msg.encode(&mut wire).unwrap();
        }
        let wire = wire.freeze();
        g.throughput(Throughput::Elements(BATCH as u64));
        g.bench_with_input(BenchmarkId::new("msgs", name), &wire, |b, wire| {
            b.iter(|| {
                let mut dec = StreamDecoder::without_version(WireLimits::default());
                let mut buf = BytesMut::from(&wire[..]);
                let mut n = 0;
                while let Some(m) = dec.decode(&mut buf).unwrap() {
                    black_box(&m);
                    n += 1;
                }
                assert_eq!(n, BATCH);
            })
        });
        g.throughput(Throughput::Bytes(wire.len() as u64));
        g.bench_with_input(BenchmarkId::new("bytes", name), &wire, |b, wire| {
            b.iter(|| {
                let mut dec = StreamDecoder::without_version(WireLimits::default());
                let mut buf = BytesMut::from(&wire[..]);
                while let Some(m) = dec.decode(&mut buf).unwrap() {
                    black_box(&m);
                }
            })
        });
    }
    g.finish();

    let mut g = c.benchmark_group("wire/decode_framed");
    for (name, msg) in cases() {
        let (header, payload) = msg.encode_framed(&mut BytesMut::new()).unwrap();
        g.throughput(Throughput::Elements(1));
        g.bench_function(name, |b| {
            let mut dec = FramedDecoder::without_version(WireLimits::default());
            b.iter(|| {
                let first = dec.decode_frame(header.clone()).unwrap();
                let m = match first {
                    Some(m) => m,
                    None => dec.decode_frame(payload.clone().unwrap()).unwrap().unwrap(),
                };
                black_box(m);
            })
        });
    }
    g.finish();
}

fn encode(c: &mut Criterion) {
    let mut g = c.benchmark_group("wire/encode_stream");
    for (name, msg) in cases() {
        let len = msg.encoded_len();
        g.throughput(Throughput::Elements(1));
        g.bench_with_input(BenchmarkId::new("msgs", name), &msg, |b, msg| {
            let mut out = BytesMut::with_capacity(len * 2);
            b.iter(|| {
                out.clear();
                msg.encode(&mut out).unwrap();
                black_box(&out);
            })
        });
        g.throughput(Throughput::Bytes(len as u64));
        g.bench_with_input(BenchmarkId::new("bytes", name), &msg, |b, msg| {
            let mut out = BytesMut::with_capacity(len * 2);
            b.iter(|| {
                out.clear();
                msg.encode(&mut out).unwrap();
                black_box(&out);
            })
        });
    }
    g.finish();

    let mut g = c.benchmark_group("wire/encode_framed");
    for (name, msg) in cases() {
        g.throughput(Throughput::Elements(1));
        g.bench_with_input(name, &msg, |b, msg| {
            let mut scratch = BytesMut::with_capacity(4096);
            b.iter(|| black_box(msg.encode_framed(&mut scratch).unwrap()))
        });
    }
    g.finish();
}

criterion_group!(benches, decode, encode);
criterion_main!(benches);
