//! TLS adapter over real loopback sockets, with a CA and certificates made by rcgen.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use chinwag_transport::tls::{
    self, TlsAcceptor, TlsClientConfig, TlsConfig, TlsConfigError, TlsServerConfig, TlsTransport,
};
use chinwag_transport::{Acceptor, Frame, FrameWrite, PeerAddr, Transport, TransportError};
use common::{read_to_end, within};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A certificate authority that can sign server certificates.
struct Ca {
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = params.self_signed(&key).unwrap();
        Ca {
            issuer: Issuer::new(params, key),
            cert_pem: cert.pem(),
        }
    }

    /// A server certificate for `names`, as (chain PEM, key PEM).
    fn server_cert(&self, names: &[&str]) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let mut params = CertificateParams::new(names).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "chinwag test server");
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    fn client_config(&self) -> TlsClientConfig {
        TlsClientConfig::from_pem_roots(self.cert_pem.as_bytes()).unwrap()
    }
}

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

fn acceptor(ca: &Ca, config: TlsConfig) -> TlsAcceptor {
    let (chain, key) = ca.server_cert(&["localhost", "127.0.0.1"]);
    let server = TlsServerConfig::from_pem(chain.as_bytes(), key.as_bytes()).unwrap();
    TlsAcceptor::bind(loopback(), server, config).unwrap()
}

/// Dials `addr` while `acceptor` accepts; both results.
async fn dial(
    addr: &str,
    client: &TlsClientConfig,
    acceptor: &mut TlsAcceptor,
) -> (
    Result<TlsTransport, TransportError>,
    Result<TlsTransport, TransportError>,
) {
    let config = TlsConfig::default();
    within(async { tokio::join!(tls::connect(addr, client, &config), acceptor.accept()) }).await
}

/// A connected (client, server) pair, dialled as `localhost:port`.
async fn pair() -> (TlsTransport, TlsTransport) {
    let ca = Ca::new("chinwag test CA");
    let mut acceptor = acceptor(&ca, TlsConfig::default());
    let addr = format!("localhost:{}", acceptor.local_socket_addr().unwrap().port());
    let client_config = ca.client_config();
    let (c, s) = dial(&addr, &client_config, &mut acceptor).await;
    (c.unwrap(), s.unwrap())
}

#[tokio::test]
async fn small_round_trip() {
    let (c, s) = pair().await;
    assert!(matches!(c.peer_addr(), PeerAddr::Ip(a) if a.ip().is_loopback()));
    common::small_round_trip(c, s).await;
}

#[tokio::test]
async fn one_mib_round_trip_in_bounded_chunks() {
    let (c, s) = pair().await;
    common::large_round_trip(c, s, 64 * 1024).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_mib_round_trip_on_a_multi_thread_runtime() {
    // The split halves share one rustls state behind tokio's split lock; exercise it with the
    // reader and writer on different threads.
    let (c, s) = pair().await;
    common::large_round_trip(c, s, 64 * 1024).await;
}

#[tokio::test]
async fn batch_of_small_frames_arrives_in_order() {
    let (c, s) = pair().await;
    common::batch_in_order(c, s).await;
}

#[tokio::test]
async fn clean_close_reads_as_ok_none() {
    let (c, s) = pair().await;
    common::clean_close(c, s).await;
}

#[tokio::test]
async fn ip_address_names_are_verified_too() {
    let ca = Ca::new("chinwag test CA");
    let mut acceptor = acceptor(&ca, TlsConfig::default());
    let addr = acceptor.local_socket_addr().unwrap().to_string();
    let cc = ca.client_config();
    let (c, s) = dial(&addr, &cc, &mut acceptor).await;
    common::small_round_trip(c.unwrap(), s.unwrap()).await;
}

#[tokio::test]
async fn untrusted_certificate_is_refused_with_a_handshake_error() {
    let trusted = Ca::new("the CA we trust");
    let other = Ca::new("some other CA");
    let mut acceptor = acceptor(&other, TlsConfig::default());
    let port = acceptor.local_socket_addr().unwrap().port();
    let addr = format!("localhost:{port}");
    let cc = trusted.client_config();
    let (c, s) = dial(&addr, &cc, &mut acceptor).await;
    match c {
        Err(TransportError::Handshake(msg)) => {
            assert!(msg.contains("UnknownIssuer"), "unclear message: {msg}");
        }
        other => panic!("expected a handshake error, got {other:?}"),
    }
    assert!(
        matches!(s, Err(TransportError::Handshake(_))),
        "server side: {s:?}"
    );

    // The acceptor stays usable: a client trusting the right CA gets in.
    let good = other.client_config();
    let (c, s) = dial(&addr, &good, &mut acceptor).await;
    common::small_round_trip(c.unwrap(), s.unwrap()).await;
}

#[tokio::test]
async fn wrong_server_name_is_refused() {
    let ca = Ca::new("chinwag test CA");
    let mut acceptor = acceptor(&ca, TlsConfig::default());
    let addr = format!("localhost:{}", acceptor.local_socket_addr().unwrap().port());
    let cc = ca
        .client_config()
        .with_server_name("elsewhere.example")
        .unwrap();
    let (c, _s) = dial(&addr, &cc, &mut acceptor).await;
    match c {
        Err(TransportError::Handshake(msg)) => assert!(msg.contains("not valid for name"), "{msg}"),
        other => panic!("expected a handshake error, got {other:?}"),
    }
}

#[tokio::test]
async fn silent_client_hits_the_handshake_timeout_and_others_still_get_in() {
    let ca = Ca::new("chinwag test CA");
    let mut config = TlsConfig::default();
    config.handshake_timeout = Duration::from_millis(200);
    let mut acceptor = acceptor(&ca, config);
    let addr = acceptor.local_socket_addr().unwrap();
    // Connects but never says hello.
    let _silent = within(tokio::net::TcpStream::connect(addr)).await.unwrap();
    match within(acceptor.accept()).await {
        Err(TransportError::Timeout(what)) => assert_eq!(what, "TLS handshake"),
        other => panic!("expected a handshake timeout, got {other:?}"),
    }
    let cc = ca.client_config();
    let name = format!("localhost:{}", addr.port());
    let (c, s) = dial(&name, &cc, &mut acceptor).await;
    common::small_round_trip(c.unwrap(), s.unwrap()).await;
}

/// A connection stalled in its TLS handshake is pending: with a pending share of 1, the next
/// connection evicts it (its socket is closed long before the handshake timeout), and a
/// client that completes its handshake still gets in.
#[tokio::test]
async fn a_stalled_handshake_is_evicted_at_the_pending_share() {
    let ca = Ca::new("chinwag test CA");
    let mut config = TlsConfig::default();
    config.handshake_timeout = Duration::from_secs(60);
    let mut acceptor = acceptor(&ca, config);
    let addr = acceptor.local_socket_addr().unwrap();
    let budget = acceptor.budget().clone().with_pending_share(1);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let accepting = tokio::spawn(async move {
        loop {
            let _ = tx.send(acceptor.offer().await);
        }
    });
    let mut first = within(tokio::net::TcpStream::connect(addr)).await.unwrap();
    within(async {
        while budget.pending() < 1 {
            tokio::task::yield_now().await;
        }
    })
    .await;
    let _second = within(tokio::net::TcpStream::connect(addr)).await.unwrap();
    let mut rest = Vec::new();
    let _ = within(first.read_to_end(&mut rest)).await;
    assert!(rest.is_empty());
    assert_eq!((budget.pending(), budget.evicted()), (1, 1));
    // An evicted handshake is not reported as an accept error.
    assert!(rx.try_recv().is_err());

    let cc = ca.client_config();
    let name = format!("localhost:{}", addr.port());
    let client = within(tls::connect(&name, &cc, &TlsConfig::default()))
        .await
        .unwrap();
    let offer = within(rx.recv()).await.unwrap().unwrap();
    assert_eq!(budget.evicted(), 2, "the second stalled one made room");
    let server = chinwag_transport::Offer::admit(offer, None).await.unwrap();
    server.permit().unwrap().establish();
    assert_eq!(budget.pending(), 0);
    common::small_round_trip(client, server).await;
    accepting.abort();
}

#[tokio::test]
async fn peer_that_vanishes_mid_frame_is_a_truncation_error() {
    let (c, s) = pair().await;
    let (mut sr, _sw) = s.split();
    let (cr, mut cw) = c.split();
    within(cw.send(Frame::Binary(Bytes::from_static(b"\0\0\0\x64only ten b"))))
        .await
        .unwrap();
    // Drop the connection without close_notify.
    drop(cr);
    drop(cw);
    let (got, end) = read_to_end(&mut sr).await;
    assert_eq!(got, b"\0\0\0\x64only ten b");
    match end {
        Err(TransportError::Io(e)) => assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof),
        other => panic!("expected UnexpectedEof, got {other:?}"),
    }
}

#[tokio::test]
async fn garbage_instead_of_a_client_hello_is_a_handshake_error() {
    let ca = Ca::new("chinwag test CA");
    let mut acceptor = acceptor(&ca, TlsConfig::default());
    let addr = acceptor.local_socket_addr().unwrap();
    let mut raw = within(tokio::net::TcpStream::connect(addr)).await.unwrap();
    raw.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    match within(acceptor.accept()).await {
        Err(TransportError::Handshake(_)) => {}
        other => panic!("expected a handshake error, got {other:?}"),
    }
}

#[test]
fn bad_pem_is_a_clear_config_error() {
    assert!(matches!(
        TlsClientConfig::from_pem_roots(b"not pem"),
        Err(TlsConfigError::NoCertificate)
    ));
    let ca = Ca::new("chinwag test CA");
    let (chain, _key) = ca.server_cert(&["localhost"]);
    let (_chain2, other_key) = ca.server_cert(&["localhost"]);
    assert!(matches!(
        TlsServerConfig::from_pem(chain.as_bytes(), b"no key here"),
        Err(TlsConfigError::Pem(_))
    ));
    // A key that does not belong to the certificate.
    assert!(TlsServerConfig::from_pem(chain.as_bytes(), other_key.as_bytes()).is_err());
}
