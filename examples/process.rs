//! Process setup shared by the example servers (included with `#[path]`, not an example
//! itself): the allocator, logging through `tracing` (`RUST_LOG`, default `info`; connections
//! are logged at `debug`) and the signal that starts a graceful shutdown.

/// jemalloc with background threads returns freed memory to the system within seconds (its
/// decay), where glibc's malloc keeps a flood's peak: after 20 000 WebSocket connection attempts
/// came and went, ws_echo held 55 MiB (tungstenite) and 99 MiB (fastwebsockets) with glibc for
/// good, 26 MiB and 23 MiB with jemalloc 9 s later; mimalloc kept 66 and 135 MiB
/// (`docs/BENCHMARKS.md`, "Memory after a flood").
#[cfg(unix)]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Logs to stderr with an env filter (`RUST_LOG=debug` shows every connection).
pub(crate) fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

/// Resolves at the first SIGINT (Ctrl-C) or SIGTERM.
pub(crate) async fn signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
    tracing::info!("signal received: shutting down");
}
