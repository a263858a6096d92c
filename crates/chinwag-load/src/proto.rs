//! The protocols the generator speaks and one client connection of each.
//!
//! Adding a protocol means: a [`Protocol`] variant, its URL scheme in [`Target::from_str`],
//! and a [`Reader`]/[`Writer`] variant that sends one request carrying the payload and yields
//! the matching reply payload. The load loop in [`crate::load`] only sees payloads going out
//! and coming back, so it does not change.
//!
//! # gotalk RPC
//!
//! `gotalk+tcp://IP:PORT` and `gotalk+ws://IP:PORT/path` speak gotalk v1 through
//! `chinwag-rpc`'s client: each "message" is one single-value request to the server's `echo`
//! operation with the payload as its body, and the reply is its result. Requests in flight on
//! one connection are multiplexed by the RPC layer (each feed spawns one request; its result
//! comes back through a channel), so the same closed- and open-loop logic applies. Any gotalk
//! server with an `echo` operation that returns its payload can be loaded (the Go library's
//! too, with `--peer`).

use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use chinwag_rpc::{Handlers, Peer, RpcConfig};
use chinwag_transport::tcp::{TcpConfig, TcpTransport};
use chinwag_transport::{Frame, FrameRead, FrameWrite, PeerAddr, Transport};
use chinwag_ws::{self as common, DeflateConfig, Engine, WsConfig, WsStream};
use chinwag_ws_fastwebsockets::FastWebSockets;
use chinwag_ws_tungstenite::Tungstenite;
use chinwag_ws_yawc::Yawc;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::mpsc;

use crate::BoxError;

/// Largest reply accepted on TCP (a corrupt length prefix must not allocate gigabytes).
const MAX_TCP_FRAME: usize = 64 << 20;

/// A wire protocol of the load generator. See the module docs for the gotalk RPC extension
/// point (not available yet).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Protocol {
    /// WebSocket: each payload is one binary message, echoed unchanged (`ws://`).
    Ws,
    /// TCP: each payload is a frame with a u32 big-endian length prefix, echoed unchanged
    /// (`tcp://`).
    Tcp,
    /// gotalk RPC over TCP: each payload is a request to `echo` (`gotalk+tcp://`).
    RpcTcp,
    /// gotalk RPC over WebSocket: each payload is a request to `echo` (`gotalk+ws://`).
    RpcWs,
}

/// The gotalk operation called by the RPC protocols.
pub const RPC_ECHO_OP: &str = "echo";

/// Which WebSocket client the generator uses (chinwag's client on either engine). The same
/// client is used against every server of a run, so it cancels out of the ratios.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ClientEngine {
    /// chinwag-ws-fastwebsockets (the default: the cheaper client leaves more CPU to servers).
    #[default]
    Fastwebsockets,
    /// chinwag-ws-tungstenite.
    Tungstenite,
    /// chinwag-ws-yawc.
    Yawc,
}

/// A server to load: protocol, loopback address and, for WebSocket, the URL to request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    /// The protocol spoken.
    pub protocol: Protocol,
    /// The server's address (always loopback).
    pub addr: SocketAddr,
    /// The URL as given.
    pub url: String,
}

impl Target {
    /// The URL of the WebSocket handshake (`gotalk+ws://` becomes `ws://`).
    pub fn ws_url(&self) -> String {
        match self.url.strip_prefix("gotalk+") {
            Some(rest) => rest.to_owned(),
            None => self.url.clone(),
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.url)
    }
}

impl FromStr for Target {
    type Err = String;

    /// Parses `ws://IP:PORT[/path]`, `tcp://IP:PORT`, `gotalk+tcp://IP:PORT` or
    /// `gotalk+ws://IP:PORT[/path]`. The host must be a loopback address
    /// (or `localhost`): this tool only ever sends traffic to the local machine.
    fn from_str(url: &str) -> Result<Self, String> {
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| format!("target {url:?} has no scheme (ws:// or tcp://)"))?;
        let protocol = match scheme {
            "ws" => Protocol::Ws,
            "tcp" => Protocol::Tcp,
            "gotalk+tcp" => Protocol::RpcTcp,
            "gotalk+ws" => Protocol::RpcWs,
            "wss" => return Err("wss:// is not supported by the load generator".into()),
            other => return Err(format!("unknown scheme {other:?} (expected ws or tcp)")),
        };
        let authority = rest.split('/').next().unwrap_or_default();
        let authority = authority.replace("localhost", "127.0.0.1");
        let addr: SocketAddr = authority
            .parse()
            .map_err(|e| format!("target {url:?}: host must be IP:PORT ({e})"))?;
        if !addr.ip().is_loopback() {
            return Err(format!(
                "target {url:?} is not a loopback address: only 127.0.0.0/8 and ::1 may be loaded"
            ));
        }
        Ok(Target {
            protocol,
            addr,
            url: url.to_owned(),
        })
    }
}

/// The `i`-th of `n` loopback source addresses (`127.0.0.1` .. `127.0.0.n`); `None` for an IPv6
/// target (which has only `::1`).
pub fn source_addr(target: &Target, i: usize, n: usize) -> Option<IpAddr> {
    match target.addr {
        SocketAddr::V4(_) => {
            let n = n.clamp(1, 254);
            Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1 + (i % n) as u8)))
        }
        SocketAddr::V6(_) => None,
    }
}

/// The writing half of a client connection.
#[derive(Debug)]
pub enum Writer {
    /// WebSocket on fastwebsockets.
    WsFast(common::WsWriter<FastWebSockets>),
    /// WebSocket on tungstenite.
    WsTung(common::WsWriter<Tungstenite>),
    /// WebSocket on yawc.
    WsYawc(common::WsWriter<Yawc>),
    /// Length-prefixed TCP, with the frames fed since the last flush.
    Tcp(OwnedWriteHalf, BytesMut),
    /// gotalk RPC: each fed payload is one request; results go to the reader's channel.
    Rpc(Peer, mpsc::UnboundedSender<Result<Bytes, String>>),
}

/// The reading half of a client connection.
#[derive(Debug)]
pub enum Reader {
    /// WebSocket on fastwebsockets.
    WsFast(common::WsReader<FastWebSockets>),
    /// WebSocket on tungstenite.
    WsTung(common::WsReader<Tungstenite>),
    /// WebSocket on yawc.
    WsYawc(common::WsReader<Yawc>),
    /// Length-prefixed TCP.
    Tcp(BufReader<OwnedReadHalf>),
    /// gotalk RPC: the results of the requests, in the order they complete. Holds the peer so
    /// the connection lives as long as the reader.
    Rpc(mpsc::UnboundedReceiver<Result<Bytes, String>>, Peer),
}

impl Writer {
    /// Queues one payload (not necessarily written before [`Writer::flush`]).
    pub async fn feed(&mut self, payload: Bytes) -> Result<(), BoxError> {
        match self {
            Writer::WsFast(w) => w.feed(Frame::Binary(payload)).await?,
            Writer::WsTung(w) => w.feed(Frame::Binary(payload)).await?,
            Writer::WsYawc(w) => w.feed(Frame::Binary(payload)).await?,
            Writer::Tcp(_, buf) => {
                buf.put_u32(u32::try_from(payload.len())?);
                buf.extend_from_slice(&payload);
            }
            Writer::Rpc(peer, results) => {
                let (peer, results) = (peer.clone(), results.clone());
                tokio::spawn(async move {
                    let r = peer.request_bytes(RPC_ECHO_OP, payload).await;
                    let _ = results.send(r.map_err(|e| e.to_string()));
                });
            }
        }
        Ok(())
    }

    /// Queues one text message (WebSocket only: the chat-like fan-out payloads).
    pub async fn feed_text(&mut self, text: Bytes) -> Result<(), BoxError> {
        match self {
            Writer::WsFast(w) => w.feed(Frame::Text(text)).await?,
            Writer::WsTung(w) => w.feed(Frame::Text(text)).await?,
            Writer::WsYawc(w) => w.feed(Frame::Text(text)).await?,
            Writer::Tcp(..) | Writer::Rpc(..) => {
                return Err("text messages are sent on WebSocket connections only".into());
            }
        }
        Ok(())
    }

    /// Writes everything fed.
    pub async fn flush(&mut self) -> Result<(), BoxError> {
        match self {
            Writer::WsFast(w) => w.flush().await?,
            Writer::WsTung(w) => w.flush().await?,
            Writer::WsYawc(w) => w.flush().await?,
            Writer::Tcp(w, buf) => {
                w.write_all(buf).await?;
                buf.clear();
            }
            // Requests are sent as they are fed.
            Writer::Rpc(..) => {}
        }
        Ok(())
    }
}

impl Reader {
    /// Reads the next echoed payload (on WebSocket: a binary or text message); `None` when the
    /// server closed the connection cleanly.
    pub async fn read(&mut self) -> Result<Option<Bytes>, BoxError> {
        let frame = match self {
            Reader::WsFast(r) => r.read_frame().await?,
            Reader::WsTung(r) => r.read_frame().await?,
            Reader::WsYawc(r) => r.read_frame().await?,
            Reader::Tcp(r) => {
                let len = match r.read_u32().await {
                    Ok(len) => len as usize,
                    Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
                    Err(e) => return Err(e.into()),
                };
                if len > MAX_TCP_FRAME {
                    return Err(format!("reply length {len} over {MAX_TCP_FRAME}").into());
                }
                let mut buf = BytesMut::zeroed(len);
                r.read_exact(&mut buf).await?;
                return Ok(Some(buf.freeze()));
            }
            Reader::Rpc(results, _) => {
                return match results.recv().await {
                    Some(Ok(b)) => Ok(Some(b)),
                    Some(Err(e)) => Err(format!("rpc: {e}").into()),
                    None => Ok(None),
                };
            }
        };
        match frame {
            None => Ok(None),
            Some(Frame::Binary(b) | Frame::Text(b)) => Ok(Some(b)),
        }
    }
}

/// The client's WebSocket configuration: no keepalive pings of its own (it answers the
/// server's), messages up to 64 MiB.
pub fn client_ws_config() -> WsConfig {
    WsConfig::default()
        .with_ping_interval(None)
        .with_max_message_size(64 << 20)
        .with_max_frame_size(64 << 20)
}

/// [`client_ws_config`], offering permessage-deflate when `deflate` is set: both
/// `server_no_context_takeover` and `client_no_context_takeover` (every message compressed on
/// its own, what a server can compress once for many connections), the rest at
/// [`DeflateConfig`]'s defaults. Only the yawc client implements it (the others ignore it).
pub fn client_ws_config_with(deflate: bool) -> WsConfig {
    let cfg = client_ws_config();
    if !deflate {
        return cfg;
    }
    cfg.with_deflate(Some(
        DeflateConfig::default()
            .with_server_no_context_takeover(true)
            .with_client_no_context_takeover(true),
    ))
}

/// Opens one connection to `target` from `source` (bound before connecting, so connections
/// can be spread over several loopback addresses and their ephemeral port ranges).
pub async fn connect(
    target: &Target,
    engine: ClientEngine,
    source: Option<IpAddr>,
) -> Result<(Reader, Writer), BoxError> {
    let tcp = tcp_connect(target, source).await?;
    match target.protocol {
        Protocol::Tcp => {
            let (r, w) = tcp.into_split();
            Ok((
                Reader::Tcp(BufReader::with_capacity(64 * 1024, r)),
                Writer::Tcp(w, BytesMut::new()),
            ))
        }
        Protocol::RpcTcp => {
            let t = TcpTransport::from_stream(tcp, &TcpConfig::default())?;
            Ok(rpc_halves(t))
        }
        Protocol::RpcWs => match engine {
            ClientEngine::Fastwebsockets => Ok(rpc_halves(
                ws_handshake::<FastWebSockets>(target, tcp).await?,
            )),
            ClientEngine::Tungstenite => {
                Ok(rpc_halves(ws_handshake::<Tungstenite>(target, tcp).await?))
            }
            ClientEngine::Yawc => Ok(rpc_halves(ws_handshake::<Yawc>(target, tcp).await?)),
        },
        Protocol::Ws => match engine {
            ClientEngine::Fastwebsockets => {
                let (r, w) = ws_handshake::<FastWebSockets>(target, tcp).await?.split();
                Ok((Reader::WsFast(r), Writer::WsFast(w)))
            }
            ClientEngine::Tungstenite => {
                let (r, w) = ws_handshake::<Tungstenite>(target, tcp).await?.split();
                Ok((Reader::WsTung(r), Writer::WsTung(w)))
            }
            ClientEngine::Yawc => {
                let (r, w) = ws_handshake::<Yawc>(target, tcp).await?.split();
                Ok((Reader::WsYawc(r), Writer::WsYawc(w)))
            }
        },
    }
}

/// A TCP connection to `target` from `source` (bound first), with `TCP_NODELAY`.
pub async fn tcp_connect(target: &Target, source: Option<IpAddr>) -> Result<TcpStream, BoxError> {
    let sock = match target.addr {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    if let Some(ip) = source {
        sock.bind(SocketAddr::new(ip, 0))?;
    }
    let tcp = sock.connect(target.addr).await?;
    tcp.set_nodelay(true)?;
    Ok(tcp)
}

fn rpc_halves<T: Transport>(t: T) -> (Reader, Writer) {
    let peer = chinwag_rpc::connect(t, Arc::new(Handlers::new()), RpcConfig::client());
    let (tx, rx) = mpsc::unbounded_channel();
    (Reader::Rpc(rx, peer.clone()), Writer::Rpc(peer, tx))
}

async fn ws_handshake<E: Engine>(
    target: &Target,
    tcp: TcpStream,
) -> Result<common::WsConnection<E>, BoxError> {
    ws_handshake_with(target, tcp, &target.ws_url(), &[], &client_ws_config()).await
}

/// The WebSocket handshake for `url` (a `ws://` URL on `target`'s address) on `tcp` with
/// `cfg` ([`client_ws_config_with`]), with extra request headers (e.g.
/// `Authorization: Bearer ...`).
pub async fn ws_handshake_with<E: Engine>(
    target: &Target,
    tcp: TcpStream,
    url: &str,
    headers: &[(&str, String)],
    cfg: &WsConfig,
) -> Result<common::WsConnection<E>, BoxError> {
    let mut req = http::Request::builder()
        .method("GET")
        .uri(url)
        .header(http::header::HOST, target.addr.to_string());
    for (k, v) in headers {
        req = req.header(*k, v.as_str());
    }
    let req = req.body(())?;
    let (r, w) = tokio::time::timeout(
        cfg.handshake_timeout,
        E::client_handshake(WsStream::Tcp(tcp), req, cfg),
    )
    .await
    .map_err(|_| "WebSocket handshake timed out")??;
    Ok(common::WsConnection::<E>::from_raw(
        r,
        w,
        PeerAddr::Ip(target.addr),
        cfg,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_targets() {
        let t: Target = "ws://127.0.0.1:9001/".parse().unwrap();
        assert_eq!(t.protocol, Protocol::Ws);
        assert_eq!(t.addr, "127.0.0.1:9001".parse().unwrap());
        let t: Target = "tcp://localhost:9002".parse().unwrap();
        assert_eq!(t.protocol, Protocol::Tcp);
        assert!("ws://10.0.0.1:80/".parse::<Target>().is_err());
        assert!("ws://example.com:80/".parse::<Target>().is_err());
        let t: Target = "gotalk+ws://127.0.0.1:1/gotalk/".parse().unwrap();
        assert_eq!(t.protocol, Protocol::RpcWs);
        assert_eq!(t.ws_url(), "ws://127.0.0.1:1/gotalk/");
        assert!("gotalk+tcp://10.1.1.1:1".parse::<Target>().is_err());
    }

    #[test]
    fn spreads_sources() {
        let t: Target = "tcp://127.0.0.1:1".parse().unwrap();
        assert_eq!(source_addr(&t, 0, 4), Some([127, 0, 0, 1].into()));
        assert_eq!(source_addr(&t, 5, 4), Some([127, 0, 0, 2].into()));
    }
}
