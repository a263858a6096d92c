//! Helpers shared by the session tests.
#![allow(dead_code, unreachable_pub)]

use std::future::Future;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use chinwag_session::{CloseCause, Codec, CodecError, Decoder, Encoded, Handler, Session};
use chinwag_transport::{Frame, Framing};
use tokio::sync::mpsc;

/// Bounds every wait in the tests (never a timing assertion: only a guard against hangs).
pub const LIMIT: Duration = Duration::from_secs(120);

pub async fn within<F: Future>(f: F) -> F::Output {
    tokio::time::timeout(LIMIT, f)
        .await
        .expect("test step did not finish in time")
}

/// Polls `cond` (yielding, and advancing paused time in 1 ms steps) until it holds.
pub async fn wait_until(mut cond: impl FnMut() -> bool) {
    within(async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await
}

/// What a [`Recorder`] saw.
#[derive(Debug)]
pub enum Event<T> {
    Open(u64),
    Message(u64, T),
    Error(u64, String),
    Close(u64, CloseCause),
    Cron(u64),
}

/// A handler that reports every event on a channel.
pub struct Recorder<T> {
    pub tx: mpsc::UnboundedSender<Event<T>>,
}

impl<T> Recorder<T> {
    pub fn new() -> (Self, mpsc::UnboundedReceiver<Event<T>>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Recorder { tx }, rx)
    }
}

impl<C: Codec> Handler<C> for Recorder<C::In> {
    fn on_open(&self, s: &Session<C>) -> Result<(), chinwag_transport::CloseReason> {
        let _ = self.tx.send(Event::Open(s.id()));
        Ok(())
    }
    async fn on_message(&self, s: &Session<C>, msg: C::In) {
        let _ = self.tx.send(Event::Message(s.id(), msg));
    }
    fn on_error(&self, s: &Session<C>, e: &chinwag_session::SessionError) {
        let _ = self.tx.send(Event::Error(s.id(), e.to_string()));
    }
    fn on_close(&self, s: &Session<C>, cause: &CloseCause) {
        let _ = self.tx.send(Event::Close(s.id(), cause.clone()));
    }
    fn on_cron(&self, s: &Session<C>) {
        let _ = self.tx.send(Event::Cron(s.id()));
    }
}

/// Waits for the next message event (skipping others); panics on close.
pub async fn next_message<T: std::fmt::Debug>(rx: &mut mpsc::UnboundedReceiver<Event<T>>) -> T {
    within(async {
        loop {
            match rx.recv().await.expect("event channel open") {
                Event::Message(_, m) => return m,
                Event::Close(_, c) => panic!("closed while waiting for a message: {c:?}"),
                _ => {}
            }
        }
    })
    .await
}

/// Waits for the next close event (skipping others).
pub async fn next_close<T>(rx: &mut mpsc::UnboundedReceiver<Event<T>>) -> CloseCause {
    within(async {
        loop {
            if let Event::Close(_, c) = rx.recv().await.expect("event channel open") {
                return c;
            }
        }
    })
    .await
}

/// Echoes every message.
pub struct Echo;

impl<C: Codec> Handler<C> for Echo
where
    C::Out: From<C::In>,
{
    async fn on_message(&self, s: &Session<C>, msg: C::In) {
        let _ = s.send(&C::Out::from(msg)).await;
    }
}

/// A user codec: newline-terminated UTF-8 lines of at most `max` bytes.
#[derive(Debug, Clone)]
pub struct Lines {
    pub max: usize,
}

pub struct LinesDecoder {
    max: usize,
}

impl Decoder for LinesDecoder {
    type Item = String;
    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<String>, CodecError> {
        match src.iter().position(|&b| b == b'\n') {
            Some(i) if i <= self.max => {
                let line = src.split_to(i);
                src.advance(1);
                String::from_utf8(line.to_vec())
                    .map(Some)
                    .map_err(|_| CodecError::Protocol("line is not UTF-8".into()))
            }
            Some(i) => Err(CodecError::TooLarge {
                size: i as u64,
                limit: self.max as u64,
            }),
            None if src.len() > self.max => Err(CodecError::TooLarge {
                size: src.len() as u64,
                limit: self.max as u64,
            }),
            None => Ok(None),
        }
    }
}

impl Codec for Lines {
    type In = String;
    type Out = String;
    type Decoder = LinesDecoder;
    fn decoder(&self, _: Framing) -> LinesDecoder {
        LinesDecoder { max: self.max }
    }
    fn encode(&self, item: &String, _: Framing) -> Result<Encoded, CodecError> {
        let mut s = String::with_capacity(item.len() + 1);
        s.push_str(item);
        s.push('\n');
        Ok(Encoded::frame(Frame::Text(Bytes::from(s))))
    }
}

/// A test CA issuing server certificates (rcgen).
pub struct Ca {
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    pub cert_pem: String,
}

impl Ca {
    pub fn new() -> Ca {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "chinwag session test CA");
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = params.self_signed(&key).unwrap();
        Ca {
            issuer: rcgen::Issuer::new(params, key),
            cert_pem: cert.pem(),
        }
    }

    /// (chain PEM, key PEM) for `localhost` and `127.0.0.1`.
    pub fn server_cert(&self) -> (String, String) {
        use rcgen::{CertificateParams, KeyPair};
        let key = KeyPair::generate().unwrap();
        let params =
            CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}
