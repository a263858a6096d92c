// Run: cargo run --release --example tcp_echo -- --listen 127.0.0.1:9002
//
// A TCP echo server speaking tok's framing: every frame is a u32 big-endian length followed by
// that many bytes, and every frame comes back unchanged. It goes through the chinwag transport
// seam (Acceptor -> split -> read_frame / feed / flush), so the same loop works over TLS or a
// Unix socket by swapping the acceptor.
//
// TCP delivers chunks, not frames: `LengthDelimitedCodec` reassembles them (and refuses a
// declared length over `--max-frame` before reserving memory for it). The loop reads one chunk,
// then every chunk that is already available without waiting, feeds each decoded frame as two
// `Bytes` (header and payload, no copy), and flushes once: a burst of small frames goes back in
// one vectored write.
//
// Try it: printf '\0\0\0\5hello' | nc -q1 127.0.0.1 9002 | od -c

//! TCP echo server with u32 big-endian length-prefixed frames (see the comment at the top of
//! the file for how to run it).

use std::error::Error;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use chinwag_transport::tcp::{TcpAcceptor, TcpConfig};
use chinwag_transport::{Acceptor, CloseReason, Frame, FrameRead, FrameWrite, Transport};
use clap::Parser;
use futures_util::FutureExt;
use tokio_util::codec::{Decoder, LengthDelimitedCodec};

/// TCP echo server for u32 big-endian length-prefixed frames.
#[derive(Debug, Parser)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9002")]
    listen: SocketAddr,
    /// Largest frame accepted, in bytes; a peer declaring more is disconnected.
    #[arg(long, default_value_t = 16 * 1024 * 1024)]
    max_frame: usize,
    /// Listen backlog.
    #[arg(long, default_value_t = 1024)]
    backlog: u32,
}

/// Bytes of echoes fed before flushing even if more input is ready (bounds memory per peer).
const FLUSH_AT: usize = 256 * 1024;

type BoxError = Box<dyn Error + Send + Sync>;

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let args = Args::parse();
    let mut config = TcpConfig::default();
    config.backlog = args.backlog;
    let mut acceptor = TcpAcceptor::bind(args.listen, config)?;
    eprintln!("tcp_echo listening on {}", acceptor.local_socket_addr()?);
    loop {
        match acceptor.accept().await {
            Ok(conn) => {
                let peer = conn.peer_addr();
                let max_frame = args.max_frame;
                tokio::spawn(async move {
                    if let Err(e) = echo(conn, max_frame).await {
                        eprintln!("{peer}: {e}");
                    }
                });
            }
            // Per-accept errors (EMFILE, a connection reset before accept): back off a little
            // so a full file table does not turn into a busy loop.
            Err(e) => {
                eprintln!("accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Echoes every length-prefixed frame until the peer closes.
async fn echo<T: Transport>(conn: T, max_frame: usize) -> Result<(), BoxError> {
    let mut codec = LengthDelimitedCodec::builder()
        .big_endian()
        .length_field_type::<u32>()
        .max_frame_length(max_frame)
        .new_codec();
    let (mut rd, mut wr) = conn.split();
    let mut inbuf = BytesMut::new();
    while let Some(chunk) = rd.read_frame().await? {
        inbuf.extend_from_slice(chunk.payload());
        let mut fed = feed_frames(&mut codec, &mut inbuf, &mut wr).await?;
        // Take whatever else already arrived, without waiting (read_frame is cancel safe, so
        // a future that is not ready loses nothing).
        while fed < FLUSH_AT {
            match rd.read_frame().now_or_never() {
                Some(Ok(Some(chunk))) => {
                    inbuf.extend_from_slice(chunk.payload());
                    fed += feed_frames(&mut codec, &mut inbuf, &mut wr).await?;
                }
                Some(Ok(None)) => {
                    wr.flush().await?;
                    return finish(&inbuf, &mut wr).await;
                }
                Some(Err(e)) => return Err(e.into()),
                None => break,
            }
        }
        wr.flush().await?;
        // Give back memory after a large frame instead of keeping its buffer while idle.
        if inbuf.is_empty() {
            inbuf = BytesMut::new();
        }
    }
    finish(&inbuf, &mut wr).await
}

/// Feeds every complete frame in `inbuf` back; returns the bytes fed.
async fn feed_frames<W: FrameWrite>(
    codec: &mut LengthDelimitedCodec,
    inbuf: &mut BytesMut,
    wr: &mut W,
) -> Result<usize, BoxError> {
    let mut fed = 0;
    while let Some(frame) = codec.decode(inbuf)? {
        let len = u32::try_from(frame.len())?;
        fed += 4 + frame.len();
        wr.feed(Frame::Binary(Bytes::copy_from_slice(&len.to_be_bytes())))
            .await?;
        wr.feed(Frame::Binary(frame.freeze())).await?;
    }
    Ok(fed)
}

/// The peer closed: complain about a frame cut short, then close our side.
async fn finish<W: FrameWrite>(inbuf: &BytesMut, wr: &mut W) -> Result<(), BoxError> {
    wr.close(CloseReason::normal()).await?;
    if inbuf.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "peer closed in the middle of a frame ({} bytes left)",
            inbuf.len()
        )
        .into())
    }
}
