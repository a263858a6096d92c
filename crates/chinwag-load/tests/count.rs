//! `chinwag-load count` (fixed-count runs for instruction counts) against baseline servers
//! spawned in this process on 127.0.0.1:0: exactly the messages asked for, every delivery
//! counted; bad specs are refused with a clear error. No timing is asserted.

use chinwag_load::baselines;
use chinwag_load::count::{self, CountSpec, MAX_MEMBERS, MAX_MESSAGES};
use chinwag_load::hub::Mode;
use chinwag_load::load::MIN_PAYLOAD;
use chinwag_load::{ClientEngine, count::CountReport};
use tokio::net::TcpListener;

async fn listener() -> (TcpListener, std::net::SocketAddr) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    (l, addr)
}

fn spec(mode: Mode, target: String, messages: u64) -> CountSpec {
    CountSpec {
        mode,
        target,
        messages,
        size: 64,
        members: 1,
        client_engine: ClientEngine::Fastwebsockets,
        secret: None,
        source_ips: 2,
        connect_concurrency: 8,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_counts_exactly_the_messages_asked_for() {
    let (l, addr) = listener().await;
    tokio::spawn(baselines::tcp::serve(l));
    let r = count::run(&spec(Mode::Echo, format!("tcp://{addr}"), 50))
        .await
        .unwrap();
    assert_eq!(
        r,
        CountReport {
            sent: 50,
            deliveries: 50,
            connected: 1,
            ..CountReport::default()
        }
    );
    let (l, addr) = listener().await;
    tokio::spawn(baselines::fastwebsockets::serve(l));
    let mut s = spec(Mode::Echo, format!("ws://{addr}/"), 1);
    s.size = MIN_PAYLOAD;
    assert_eq!(count::run(&s).await.unwrap().deliveries, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fanout_counts_every_members_copy_of_each_publish() {
    let (l, addr) = listener().await;
    tokio::spawn(baselines::fanout::serve(l));
    let mut s = spec(Mode::Fanout, format!("ws://{addr}/ws?room=count"), 3);
    s.members = 5;
    let r = count::run(&s).await.unwrap();
    assert_eq!(r.sent, 3);
    assert_eq!(r.connected, 5);
    assert!(r.probes >= 1);
    // Every member has its probe; the publisher is a member too.
    assert!(r.probe_deliveries >= 5, "{r:?}");
    assert_eq!(r.deliveries - r.probe_deliveries, 3 * 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_specs_are_refused_with_a_reason() {
    let tcp = "tcp://127.0.0.1:9".to_owned();
    let err = |s: CountSpec| s.check().unwrap_err().to_string();
    assert!(err(spec(Mode::Echo, tcp.clone(), 0)).contains("--messages"));
    assert!(err(spec(Mode::Echo, tcp.clone(), MAX_MESSAGES + 1)).contains("--messages"));
    assert!(spec(Mode::Echo, tcp.clone(), MAX_MESSAGES).check().is_ok());
    let mut small = spec(Mode::Echo, tcp.clone(), 1);
    small.size = MIN_PAYLOAD - 1;
    assert!(err(small).contains("at least"));
    assert!(err(spec(Mode::Fanout, tcp.clone(), 1)).contains("room door"));
    let room = "ws://127.0.0.1:9/ws?room=r".to_owned();
    let mut many = spec(Mode::Fanout, room.clone(), 1);
    many.members = MAX_MEMBERS + 1;
    assert!(err(many).contains("--members"));
    let mut most = spec(Mode::Fanout, room.clone(), 1);
    most.members = MAX_MEMBERS;
    assert!(most.check().is_ok());
    let mut none = spec(Mode::Fanout, room, 1);
    none.members = 0;
    assert!(err(none).contains("--members"));
    assert!(err(spec(Mode::Send, tcp, 1)).contains("chat door"));
    let chat = "gotalk+tcp://127.0.0.1:9".to_owned();
    assert!(err(spec(Mode::Send, chat.clone(), 1)).contains("--secret"));
    assert!(err(spec(Mode::Replay, chat, 1)).contains("echo, fanout or send"));
    assert!(err(spec(Mode::Echo, "ws://10.0.0.1:9/".into(), 1)).contains("loopback"));
}
