//! `chinwag-server`: the ready chat server on the `chinwag` facade.
//!
//! With no configuration at all it serves, on `127.0.0.1:8080`, the web demo at `/`, the
//! JavaScript client at `/chinwag.js`, the gotalk chat door over WebSocket at `/gotalk/`, the
//! raw WebSocket room door at `/ws`, `/metrics`, `/healthz` and `/readyz`; the chat door over
//! TCP on `127.0.0.1:8081` and the tok-style door on `127.0.0.1:8082`; and keeps the offline
//! queue durable (redb) in `./chinwag-data`. Without a secret, on loopback, `/dev/token`
//! hands out development tokens. See `docs/server.md` for every key.
//!
//! Once listening it prints, one per line on stdout: `http URL`, `chat-ws URL`, `rooms URL`,
//! `chat-tcp ADDR`, `tok-tcp ADDR`, `tok-ws URL` (the doors that are on), `cluster-node ID` (with
//! `cluster.redis_url`), then `ready`.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chinwag::hub::auth::{JwtConfig, JwtIssuer, JwtKey};
use chinwag::{HistoryBackend, QueueBackend, Server};
use chinwag_server::config::{self, Algorithm, Backend, ConfigError, Settings};
use chinwag_server::web;
use clap::{Arg, ArgAction, Command};

#[cfg(unix)]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let keys = config::keys();
    let switches = config::switches();
    let cli = cli(&keys, &switches).get_matches();
    let flags: Vec<(String, String)> = keys
        .iter()
        .chain(&switches)
        .filter_map(|k| cli.get_one::<String>(k).map(|v| (k.clone(), v.clone())))
        .collect();
    let env: Vec<(String, String)> = std::env::vars().collect();
    let file = cli.get_one::<PathBuf>("config");
    let (settings, origins) = match config::load_traced(file.map(PathBuf::as_path), &env, &flags) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("chinwag-server: {e}");
            return ExitCode::from(2);
        }
    };
    if cli.get_flag("print-config") {
        print!("{}", settings.to_toml());
        return ExitCode::SUCCESS;
    }
    if let Err(e) = init_logs(&settings) {
        eprintln!("chinwag-server: {e}");
        return ExitCode::from(2);
    }
    match settings.deflate_unsupported(&origins) {
        Some((true, why)) => tracing::warn!("{why}"),
        Some((false, why)) => tracing::debug!("{why}"),
        None => {}
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("chinwag-server: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let json = settings.log.json;
    // Printed once: as a log record when logs are JSON (for the log pipeline), else as a line.
    let report = |e: &str| {
        if json {
            tracing::error!("{e}");
        } else {
            eprintln!("chinwag-server: {e}");
        }
    };
    match rt.block_on(run(settings)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Config(e)) => {
            report(&e);
            ExitCode::from(2)
        }
        Err(Failure::Run(e)) => {
            report(&e);
            ExitCode::FAILURE
        }
    }
}

/// The command line: `--config`, `--print-config`, and one flag per configuration key, in the
/// order of the reference (`docs/server.md`), whose rows are the help texts; then one per
/// switch (a table that may be `off`).
fn cli(keys: &[String], switches: &[String]) -> Command {
    let defaults = config::default_table();
    let reference = config::reference();
    let mut ordered: Vec<(&str, &str)> = reference
        .iter()
        .filter(|d| keys.contains(&d.key))
        .map(|d| (d.key.as_str(), d.meaning.as_str()))
        .collect();
    // A key without a row still gets its flag (a test keeps the reference complete).
    for k in keys {
        if !ordered.iter().any(|(o, _)| o == k) {
            ordered.push((k, ""));
        }
    }
    let mut cmd = Command::new("chinwag-server")
        .version(env!("CARGO_PKG_VERSION"))
        .about("A ready chat server: web demo, gotalk chat door (WebSocket, TCP), raw WebSocket rooms, tok-style TCP, durable offline queue.")
        .after_help(
            "Precedence: flags > CHINWAG_* environment variables > the TOML file > defaults.\n\
             Every key is also a variable: hub.limits.max_connections is CHINWAG_HUB_LIMITS_MAX_CONNECTIONS.\n\
             Durations are written 500ms, 10s, 5m, 2h, 7d (off: none). Lists: a,b,c. \
             Forms such as { multi = 3 } are TOML. Reference: docs/server.md",
        )
        .arg(
            Arg::new("config")
                .short('c')
                .long("config")
                .value_name("FILE")
                .value_parser(clap::value_parser!(PathBuf))
                .help("TOML configuration file (also CHINWAG_CONFIG)"),
        )
        .arg(
            Arg::new("print-config")
                .long("print-config")
                .action(ArgAction::SetTrue)
                .help("print the effective configuration (TOML, secrets redacted) and exit"),
        );
    for (key, meaning) in ordered {
        let default = config::lookup(&defaults, key).expect("every key has a default");
        let help = meaning.replace('`', "");
        let (section, name) = key.rsplit_once('.').expect("a.b");
        // Built once at start: leaking the names is the simplest way to give clap the
        // `'static` strings it wants.
        let id: &'static str = Box::leak(key.to_owned().into_boxed_str());
        let long: &'static str = Box::leak(config::flag_name(key).into_boxed_str());
        let mut arg = Arg::new(id)
            .long(long)
            .value_name("VALUE")
            .help(format!(
                "{help} [default: {}] [env: {}]",
                config::shown(default, false),
                config::env_name(key)
            ))
            .help_heading(&*Box::leak(format!("[{section}]").into_boxed_str()));
        if section == "server" {
            let short: &'static str = Box::leak(name.replace('_', "-").into_boxed_str());
            arg = arg.visible_alias(short);
        }
        if default.is_bool() {
            // `--hub-anonymous` alone means true; `--hub-anonymous false` still works.
            arg = arg.num_args(0..=1).default_missing_value("true");
        }
        cmd = cmd.arg(arg);
    }
    for key in switches {
        let (section, _) = key.rsplit_once('.').expect("a.b");
        let id: &'static str = Box::leak(key.to_owned().into_boxed_str());
        let long: &'static str = Box::leak(config::flag_name(key).into_boxed_str());
        cmd = cmd.arg(
            Arg::new(id)
                .long(long)
                .value_name("off")
                .help(format!(
                    "off: turns [{key}] off (its keys turn it back on) [env: {}]",
                    config::env_name(key)
                ))
                .help_heading(&*Box::leak(format!("[{section}]").into_boxed_str())),
        );
    }
    cmd
}

fn init_logs(s: &Settings) -> Result<(), ConfigError> {
    let filter = tracing_subscriber::EnvFilter::try_new(&s.log.filter)
        .map_err(|e| ConfigError(format!("bad value for `log.filter`: {e}")))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if s.log.json {
        builder.json().init();
    } else {
        builder.init();
    }
    Ok(())
}

enum Failure {
    Config(String),
    Run(String),
}

impl From<chinwag::Error> for Failure {
    fn from(e: chinwag::Error) -> Self {
        if matches!(e, chinwag::Error::Config(_)) {
            Failure::Config(e.to_string())
        } else {
            Failure::Run(e.to_string())
        }
    }
}

/// A failure to start, with what to do about the common ones: a port in use (which flag moves
/// that door), a data directory another server holds.
fn starting(e: chinwag::Error, s: &Settings) -> Failure {
    if let chinwag::Error::Bind { what, source, .. } = &e
        && source.kind() == std::io::ErrorKind::AddrInUse
    {
        let flag = match *what {
            "chat-tcp" => "--tcp-listen",
            "tok" => "--tok-listen",
            _ => "--listen",
        };
        return Failure::Run(format!(
            "{e} (another program has that port: stop it, or give this door another address \
             with {flag} HOST:PORT; the three doors default to 8080, 8081 and 8082, and \
             `--tcp-listen \"\" --tok-listen \"\"` turns the TCP doors off)"
        ));
    }
    let text = e.to_string();
    if text.contains("already open") {
        return Failure::Run(format!(
            "{text} (another chinwag-server uses the data directory {}: stop it, or give this \
             one its own with --data-dir DIR)",
            s.server.data_dir.display()
        ));
    }
    Failure::from(e)
}

fn jwt_config(s: &Settings) -> Result<Option<JwtConfig>, Failure> {
    let a = &s.auth;
    let key = if !a.secret.is_empty() {
        JwtKey::hs256(a.secret.as_bytes())
    } else if !a.public_key.is_empty() {
        let pem = std::fs::read(&a.public_key).map_err(|e| {
            Failure::Config(format!(
                "bad value for `auth.public_key`: cannot read {}: {e}",
                a.public_key
            ))
        })?;
        let key = match a.algorithm {
            Algorithm::Rs256 => JwtKey::rs256_pem(&pem),
            Algorithm::Es256 => JwtKey::es256_pem(&pem),
            Algorithm::EdDSA | Algorithm::Hs256 => JwtKey::ed25519_pem(&pem),
        };
        key.map_err(|e| Failure::Config(format!("bad value for `auth.public_key`: {e}")))?
    } else {
        return Ok(None);
    };
    let mut c = JwtConfig::new(key);
    c.issuer = (!a.issuer.is_empty()).then(|| a.issuer.clone());
    c.audience = (!a.audience.is_empty()).then(|| a.audience.clone());
    c.leeway = a.leeway;
    c.device_claim = a.device_claim.clone();
    c.max_token_len = s.hub.tokens.max_token_len;
    Ok(Some(c))
}

fn addr(key: &str, v: &str) -> Result<std::net::SocketAddr, Failure> {
    config::socket_addr(v)
        .ok_or_else(|| Failure::Config(format!("bad value for `{key}`: `{v}` is not an address")))
}

async fn run(s: Settings) -> Result<(), Failure> {
    let metrics = install_metrics()?;
    let mut hub = s.hub.clone();
    // A cluster node runs under `cluster.node`, or a fresh random id at each start.
    let node = s.cluster.is_on().then(|| s.cluster.node_id());
    if let Some(n) = node {
        hub.node = chinwag::hub::NodeId(n);
    }
    let mut b = Server::builder()
        .http(addr("server.listen", &s.server.listen)?)
        .engine(s.server.engine)
        .ws_config(s.ws_config())
        .config(hub)
        .session_config(s.sessions.clone())
        .queue_config(s.queue.limits.clone())
        .rooms_password_in_query(s.rooms.password_query);
    for r in &s.rooms.declared {
        b = b.room(&r.name, r.options(&s.hub.history));
    }
    if !s.server.tcp_listen.is_empty() {
        b = b.chat_tcp(addr("server.tcp_listen", &s.server.tcp_listen)?);
    }
    if !s.server.tok_listen.is_empty() {
        b = b.tok_tcp(addr("server.tok_listen", &s.server.tok_listen)?);
    }
    // tok clients: the frame limit, the ping, the door over WebSocket, static tokens.
    b = b
        .tok_max_frame(s.tok.max_frame(&s.hub))
        .tok_ping(s.tok.ping())
        .tok_ws_path((!s.tok.ws_path.is_empty()).then_some(s.tok.ws_path.as_str()))
        .tok_ws_token_query(
            (!s.tok.ws_token_query.is_empty()).then_some(s.tok.ws_token_query.as_str()),
        );
    let static_tokens = s.tok.static_tokens().map_err(|e| Failure::Config(e.0))?;
    let has_static = !static_tokens.is_empty();
    if has_static {
        tracing::info!(
            tokens = static_tokens.len(),
            "static tokens (tok.tokens) sign in first"
        );
        b = b.static_tokens(static_tokens);
    }
    // The event proxy; with a connect URL it signs connections in (no JWT, no dev sign-in).
    let proxy = match s.proxy.proxy_config().map_err(|e| Failure::Config(e.0))? {
        Some(c) => {
            Some(chinwag::proxy::EventProxy::new(c).map_err(|e| Failure::Config(e.to_string()))?)
        }
        None => None,
    };
    let proxy_signs_in = proxy.as_ref().is_some_and(|p| p.authenticates());
    if let Some(p) = proxy {
        tracing::info!(config = ?p.config(), "event proxy to the application's backend");
        b = b.event_proxy(p);
    }
    let dev = if proxy_signs_in {
        None
    } else if let Some(jwt) = jwt_config(&s)? {
        b = b.jwt(jwt);
        None
    } else if s.dev_sign_in() {
        let secret: [u8; 32] = rand::random();
        b = b.jwt_secret(secret);
        Some(web::DevTokens {
            issuer: JwtIssuer::hs256(secret),
            ttl: s.auth.dev_token_ttl,
        })
    } else {
        if !s.hub.anonymous && !has_static {
            return Err(Failure::Config(
                "nobody could sign in: set `auth.secret` or `auth.public_key`, `tok.tokens`, \
                 enable `hub.anonymous`, or bind every door to loopback for dev sign-in"
                    .into(),
            ));
        }
        None
    };
    // Room history is kept where the offline queue is: in memory, in a redb file beside the
    // queue's (`history.redb` in the data directory), or in the same Redis.
    let data_dir = || {
        std::fs::create_dir_all(&s.server.data_dir).map_err(|e| {
            Failure::Config(format!(
                "bad value for `server.data_dir`: cannot create {}: {e}",
                s.server.data_dir.display()
            ))
        })
    };
    b = match s.queue.backend {
        Backend::Memory => b
            .queue_backend(QueueBackend::Memory)
            .history_backend(HistoryBackend::Memory),
        Backend::Redis => b
            .redis_queue(s.queue_redis_url())
            .history_backend(HistoryBackend::Redis(s.queue_redis_url().to_owned())),
        Backend::Redb => {
            data_dir()?;
            let path = if s.queue.path.is_empty() {
                s.server.data_dir.join("queue.redb")
            } else {
                PathBuf::from(&s.queue.path)
            };
            let history = s.server.data_dir.join("history.redb");
            tracing::info!(path = %path.display(), history = %history.display(), "offline queue and room history: redb");
            b.redb_queue_with(path, s.queue.redb.clone())
                .history_backend(HistoryBackend::Redb(history, s.queue.redb.clone()))
        }
    };
    if let Some(node) = node {
        b = b.redis_cluster_with(
            s.cluster.redis_url.clone(),
            s.cluster.prefix.clone(),
            s.cluster.directory_config(),
        );
        tracing::info!(node, prefix = %s.cluster.prefix, "cluster node through Redis: sign-on policies, online counts, direct messages and rooms that keep history are cluster-wide (docs/cluster.md)");
    }
    if !s.tls.cert.is_empty() {
        let tls = chinwag::tls::server_config_from_files(&s.tls.cert, &s.tls.key)
            .map_err(|e| Failure::Config(format!("bad value for `tls.cert`/`tls.key`: {e}")))?;
        b = b.tls(tls);
    }
    let ready = Arc::new(AtomicBool::new(false));
    let dev_on = dev.is_some();
    let web = web::Web::new(metrics, ready.clone(), dev);
    let cluster = web.cluster_slot();
    b = b.http_fallback(web.into_fallback());
    if !s.api.key.is_empty() {
        b = b.api(s.api.api_config());
    }

    let server = b.start().await.map_err(|e| starting(e, &s))?;
    if let Some(status) = server.cluster_status() {
        let _ = cluster.set(status);
    }
    let tls = !s.tls.cert.is_empty();
    let (http, ws) = if tls {
        ("https", "wss")
    } else {
        ("http", "ws")
    };
    let mut out = std::io::stdout().lock();
    if let Some(a) = server.http_addr() {
        let _ = writeln!(out, "http {http}://{a}/");
        let _ = writeln!(out, "chat-ws {ws}://{a}/gotalk/");
        let _ = writeln!(out, "rooms {ws}://{a}/ws");
    }
    if let Some(a) = server.chat_tcp_addr() {
        let _ = writeln!(out, "chat-tcp {a}");
    }
    if let Some(a) = server.tok_addr() {
        let _ = writeln!(out, "tok-tcp {a}");
    }
    if let Some(u) = server.tok_ws_url() {
        let _ = writeln!(out, "tok-ws {u}");
    }
    if let Some(n) = node {
        let _ = writeln!(out, "cluster-node {n}");
    }
    // `/readyz` turns ready before the `ready` line, so that whoever read the line finds it so.
    ready.store(true, Ordering::Release);
    let _ = writeln!(out, "ready");
    let _ = out.flush();
    drop(out);
    if let Some(a) = server.http_addr() {
        tracing::info!("chinwag is up: open {http}://{a}/ in a browser");
    }
    if dev_on {
        tracing::warn!(
            "DEV SIGN-IN IS ON: /dev/token?user=NAME hands out tokens for any name, signed with \
             a random secret made at this start. Set auth.secret (or auth.public_key) for real \
             sign-in; dev sign-in is never on off loopback or with a secret."
        );
    }

    wait_for_signal().await;
    ready.store(false, Ordering::Release);
    let deadline = s.server.shutdown_timeout;
    tracing::info!(?deadline, "shutting down: closing connections with 1001");
    let summary = server.shutdown(deadline).await;
    tracing::info!(?summary, "stopped");
    Ok(())
}

/// How often the metrics recorder is tidied (the exporter's own default).
const METRICS_UPKEEP: Duration = Duration::from_secs(5);

/// The Prometheus recorder, with fixed buckets for the hub's histograms (so they are
/// Prometheus histograms of constant size), and its upkeep: with `install_recorder` the
/// recorder keeps every histogram sample until upkeep drains it, which would grow without
/// bound on a server nobody scrapes.
fn install_metrics() -> Result<metrics_exporter_prometheus::PrometheusHandle, Failure> {
    use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
    let bad = |e: metrics_exporter_prometheus::BuildError| {
        Failure::Run(format!("cannot install the metrics recorder: {e}"))
    };
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full(chinwag::hub::metrics::FANOUT_SECONDS.into()),
            &[
                0.000_1, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
            ],
        )
        .map_err(bad)?
        .set_buckets_for_metric(
            Matcher::Full(chinwag::hub::metrics::SEND_QUEUE_DEPTH.into()),
            &[0.0, 1.0, 4.0, 16.0, 64.0, 256.0, 1024.0],
        )
        .map_err(bad)?
        .install_recorder()
        .map_err(bad)?;
    let upkeep = handle.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(METRICS_UPKEEP);
        loop {
            tick.tick().await;
            upkeep.run_upkeep();
        }
    });
    Ok(handle)
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
