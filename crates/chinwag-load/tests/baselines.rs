//! The load generator against each baseline server (spawned in this process on 127.0.0.1:0),
//! and against chinwag-rpc's gotalk server:
//! a short run must echo messages and see no errors. No timing is asserted.

use chinwag_load::load::{self, LoadSpec, RunOptions};
use chinwag_load::{ClientEngine, baselines};
use tokio::net::TcpListener;

async fn spawn(kind: &str) -> String {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    match kind {
        "tcp" => {
            tokio::spawn(baselines::tcp::serve(l));
            format!("tcp://{addr}")
        }
        "tungstenite" => {
            tokio::spawn(baselines::tungstenite::serve(l));
            format!("ws://{addr}/")
        }
        _ => {
            tokio::spawn(baselines::fastwebsockets::serve(l));
            format!("ws://{addr}/")
        }
    }
}

fn short(target: String) -> LoadSpec {
    LoadSpec {
        target,
        conns: 4,
        size: 64,
        in_flight: 2,
        warmup: 0.1,
        duration: 0.3,
        source_ips: 2,
        ..LoadSpec::default()
    }
}

fn opts() -> RunOptions {
    RunOptions {
        // This process serves, so its own /proc entry stands in for the server's.
        server_pid: Some(std::process::id()),
        worker_exe: Some(env!("CARGO_BIN_EXE_chinwag-load").into()),
        ..RunOptions::default()
    }
}

async fn check(spec: LoadSpec) -> chinwag_load::RunReport {
    let report = load::run(&spec, &opts()).await.unwrap();
    assert_eq!(report.errors, 0, "errors: {:?}", report.first_errors);
    assert_eq!(report.connected, spec.conns + spec.stalled);
    report
}

async fn echo(kind: &str, engine: ClientEngine) {
    let spec = LoadSpec {
        client_engine: engine,
        ..short(spawn(kind).await)
    };
    let report = check(spec).await;
    assert!(report.msgs_per_sec > 0.0, "{report:?}");
    assert!(report.latency_us.samples > 0);
    assert!(report.latency_us.p50 > 0.0);
    let server = report.server.expect("server usage from /proc");
    assert!(server.rss_end_kib > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_baseline_echoes() {
    echo("tcp", ClientEngine::Fastwebsockets).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tungstenite_baseline_echoes() {
    echo("tungstenite", ClientEngine::Tungstenite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fastwebsockets_baseline_echoes() {
    echo("fastwebsockets", ClientEngine::Fastwebsockets).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_loop_over_two_worker_processes() {
    let spec = LoadSpec {
        rate: Some(2000.0),
        procs: 2,
        ..short(spawn("fastwebsockets").await)
    };
    let report = check(spec).await;
    assert!(report.msgs_per_sec > 0.0, "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_and_a_stalled_consumer() {
    let idle = LoadSpec {
        idle: true,
        conns: 20,
        ..short(spawn("tungstenite").await)
    };
    let report = check(idle).await;
    let server = report.server.expect("server usage");
    assert!(server.rss_per_conn_kib.is_some());
    assert!(server.cpu_us_per_conn_sec.is_some());

    let slow = LoadSpec {
        stalled: 1,
        stalled_size: Some(64 * 1024),
        ..short(spawn("tcp").await)
    };
    let report = check(slow).await;
    assert!(report.msgs_per_sec > 0.0, "{report:?}");
}

/// gotalk RPC over TCP and WebSocket against chinwag-rpc's server with an `echo` operation (as
/// `examples/rpc_echo` serves it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gotalk_rpc_echo_over_tcp_and_websocket() {
    use std::sync::Arc;

    use bytes::Bytes;
    use chinwag_rpc::{HandlerError, Handlers, RpcConfig, RpcServer};
    use chinwag_transport::tcp::TcpAcceptor;

    let mut h = Handlers::new();
    h.handle_bytes(
        "echo",
        |_p, b: Bytes| async move { Ok::<_, HandlerError>(b) },
    );
    let handlers = Arc::new(h);
    let tcp = TcpAcceptor::bind("127.0.0.1:0".parse().unwrap(), Default::default()).unwrap();
    let tcp_addr = tcp.local_socket_addr().unwrap();
    let _tcp = RpcServer::spawn(tcp, handlers.clone(), RpcConfig::default(), None);
    let ws = chinwag_ws_fastwebsockets::WsAcceptor::bind(
        "127.0.0.1:0".parse().unwrap(),
        chinwag_ws_fastwebsockets::WsConfig::default(),
    )
    .await
    .unwrap();
    let ws_addr = ws.local_addr();
    let _ws = RpcServer::spawn(ws, handlers, RpcConfig::default(), None);

    for target in [
        format!("gotalk+tcp://{tcp_addr}"),
        format!("gotalk+ws://{ws_addr}/"),
    ] {
        let spec = LoadSpec {
            in_flight: 4,
            ..short(target)
        };
        let report = check(spec).await;
        assert!(report.msgs_per_sec > 0.0, "{report:?}");
    }
}
