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
//! `chat-tcp ADDR`, `tok-tcp ADDR` (the doors that are on), then `ready`.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chinwag::hub::auth::{JwtConfig, JwtIssuer, JwtKey};
use chinwag::hub::{HubConfig, HubLimits, PartialDelivery, Rate, SignOn};
use chinwag::queue::{OverflowPolicy, QueueConfig};
use chinwag::ws::{HostPolicy, OriginPolicy, WsConfig};
use chinwag::{QueueBackend, Server, WsEngine};
use chinwag_server::config::{self, ConfigError, KEYS, Settings};
use chinwag_server::web;
use clap::{Arg, ArgAction, Command};

#[cfg(unix)]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let cli = cli().get_matches();
    let flags: Vec<(String, String)> = KEYS
        .iter()
        .filter_map(|(k, _)| {
            cli.get_one::<String>(k)
                .map(|v| ((*k).to_owned(), v.clone()))
        })
        .collect();
    let env: Vec<(String, String)> = std::env::vars().collect();
    let file = cli.get_one::<PathBuf>("config");
    let settings = match config::load(file.map(PathBuf::as_path), &env, &flags) {
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
    match rt.block_on(run(settings)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Config(e)) => {
            tracing::error!("{e}");
            eprintln!("chinwag-server: {e}");
            ExitCode::from(2)
        }
        Err(Failure::Run(e)) => {
            tracing::error!("{e}");
            eprintln!("chinwag-server: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The command line: `--config`, `--print-config`, and one flag per configuration key.
fn cli() -> Command {
    let defaults = config::default_table();
    let mut cmd = Command::new("chinwag-server")
        .version(env!("CARGO_PKG_VERSION"))
        .about("A ready chat server: web demo, gotalk chat door (WebSocket, TCP), raw WebSocket rooms, tok-style TCP, durable offline queue.")
        .after_help(
            "Precedence: flags > CHINWAG_* environment variables > the TOML file > defaults.\n\
             Every key is also a variable: limits.max_connections is CHINWAG_LIMITS_MAX_CONNECTIONS.\n\
             Durations are written 500ms, 10s, 5m, 2h, 7d. Reference: docs/server.md",
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
    for (key, help) in KEYS {
        let default = config::lookup(&defaults, key).expect("every key has a default");
        let shown = match default {
            toml::Value::String(s) if s.is_empty() => "(empty)".to_owned(),
            toml::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let (section, name) = key.split_once('.').expect("section.name");
        // Built once at start: leaking the few names is the simplest way to give clap the
        // `'static` strings it wants.
        let long: &'static str = Box::leak(config::flag_name(key).into_boxed_str());
        let mut arg = Arg::new(*key)
            .long(long)
            .value_name("VALUE")
            .help(format!(
                "{help} [default: {shown}] [env: {}]",
                config::env_name(key)
            ))
            .help_heading(&*Box::leak(format!("[{section}]").into_boxed_str()));
        if section == "server" {
            let short: &'static str = Box::leak(name.replace('_', "-").into_boxed_str());
            arg = arg.visible_alias(short);
        }
        cmd = cmd.arg(arg);
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

fn secs(d: config::Dur) -> Duration {
    d.0
}

fn usize_of(v: u64) -> usize {
    usize::try_from(v).unwrap_or(usize::MAX)
}

fn rate(per_second: u64, burst: u64) -> Option<Rate> {
    (per_second > 0).then(|| {
        Rate::new(
            u32::try_from(per_second).unwrap_or(u32::MAX),
            u32::try_from(burst).unwrap_or(u32::MAX),
        )
    })
}

/// The hub's configuration from the settings.
fn hub_config(s: &Settings) -> HubConfig {
    let l = &s.limits;
    let limits = HubLimits::default()
        .with_max_connections(usize_of(l.max_connections))
        .with_max_rooms(usize_of(l.max_rooms))
        .with_max_members_per_room(usize_of(l.max_members_per_room))
        .with_max_rooms_per_connection(usize_of(l.max_rooms_per_connection))
        .with_connection_rate(rate(l.connection_rate, l.connection_burst))
        .with_message_rate(rate(l.message_rate, l.message_burst))
        .with_rate_limit_strikes(u32::try_from(l.rate_limit_strikes).unwrap_or(u32::MAX))
        .with_max_body_bytes(usize_of(l.max_body_bytes))
        .with_max_room_name_bytes(usize_of(l.max_room_name_bytes))
        .with_max_password_bytes(usize_of(l.max_password_bytes))
        .with_max_held_live(usize_of(l.max_held_live))
        .with_max_unacked(usize_of(l.max_unacked))
        .with_max_page(usize_of(l.max_page))
        .with_password_checks(usize_of(l.password_checks))
        .with_password_wait(secs(l.password_wait))
        .with_max_tracked_ips(usize_of(l.max_tracked_ips));
    let h = &s.hub;
    let sign_on = match h.sign_on.as_str() {
        "per_device" => SignOn::PerDevice,
        "multi" => SignOn::Multi {
            max: usize_of(h.max_connections_per_user),
        },
        _ => SignOn::Single,
    };
    let partial = match h.partial.as_str() {
        "all_or_error" => PartialDelivery::AllOrError,
        "queue_for_user" => PartialDelivery::QueueForUser {
            ttl: secs(h.default_ttl),
        },
        _ => PartialDelivery::AnyDelivered,
    };
    let a = &s.auth;
    let tokens = HubConfig::default()
        .tokens
        .with_first_message(a.first_message)
        .with_query((!a.query_param.is_empty()).then(|| a.query_param.clone()))
        .with_max_token_len(usize_of(a.max_token_len));
    HubConfig::default()
        .with_sign_on(sign_on)
        .with_limits(limits)
        .with_tokens(tokens)
        .with_anonymous(a.anonymous)
        .with_auth_timeout(secs(h.auth_timeout))
        .with_token_grace(secs(h.token_grace))
        .with_default_ttl(secs(h.default_ttl))
        .with_max_ttl(secs(h.max_ttl))
        .with_partial(partial)
        .with_replay_page(usize_of(h.replay_page))
        .with_replay_timeout(secs(h.replay_timeout))
        .with_auto_create_rooms(h.auto_create_rooms)
        .with_sweep_interval(secs(h.sweep_interval))
}

fn ws_config(s: &Settings) -> WsConfig {
    let w = &s.websocket;
    let origins: Vec<String> = w
        .allowed_origins
        .split(',')
        .map(str::trim)
        .filter(|o| !o.is_empty())
        .map(str::to_owned)
        .collect();
    let ping = secs(w.ping_interval);
    let hosts: Vec<String> = w
        .allowed_hosts
        .split(',')
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .map(str::to_owned)
        .collect();
    // DNS rebinding: with dev sign-in on, a page of any site whose name resolves to 127.0.0.1
    // could ask /dev/token for any user. Only loopback names are answered then.
    let host = if !hosts.is_empty() {
        HostPolicy::allow(hosts)
    } else if s.dev_sign_in() {
        HostPolicy::loopback()
    } else {
        HostPolicy::any()
    };
    WsConfig::default()
        .with_host(host)
        .with_max_connections(usize_of(w.max_connections))
        .with_max_message_size(usize_of(w.max_message_size))
        .with_max_frame_size(usize_of(w.max_message_size))
        .with_max_header_size(usize_of(w.max_header_size))
        .with_handshake_timeout(secs(w.handshake_timeout))
        .with_ping_interval((!ping.is_zero()).then_some(ping))
        .with_pong_wait(secs(w.pong_wait))
        .with_origin(OriginPolicy::allow(origins))
}

fn queue_config(s: &Settings) -> QueueConfig {
    let q = &s.queue;
    let mut c = QueueConfig::default();
    c.max_entries_per_recipient = q.max_entries_per_recipient;
    c.max_bytes_per_recipient = q.max_bytes_per_recipient;
    c.max_total_bytes = q.max_total_bytes;
    c.max_payload_bytes = q.max_payload_bytes;
    c.overflow = if q.overflow == "drop_oldest" {
        OverflowPolicy::DropOldest
    } else {
        OverflowPolicy::Refuse
    };
    c
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
        let key = match a.algorithm.as_str() {
            "RS256" => JwtKey::rs256_pem(&pem),
            "ES256" => JwtKey::es256_pem(&pem),
            _ => JwtKey::ed25519_pem(&pem),
        };
        key.map_err(|e| Failure::Config(format!("bad value for `auth.public_key`: {e}")))?
    } else {
        return Ok(None);
    };
    let mut c = JwtConfig::new(key);
    c.issuer = (!a.issuer.is_empty()).then(|| a.issuer.clone());
    c.audience = (!a.audience.is_empty()).then(|| a.audience.clone());
    c.leeway = secs(a.leeway);
    c.device_claim = a.device_claim.clone();
    c.max_token_len = usize_of(a.max_token_len);
    Ok(Some(c))
}

fn addr(key: &str, v: &str) -> Result<std::net::SocketAddr, Failure> {
    v.parse()
        .map_err(|_| Failure::Config(format!("bad value for `{key}`: `{v}` is not an address")))
}

async fn run(s: Settings) -> Result<(), Failure> {
    let metrics = install_metrics()?;
    let engine: WsEngine = s.server.engine.parse().map_err(|e: chinwag::Error| {
        Failure::Config(format!("bad value for `server.engine`: {e}"))
    })?;
    let mut b = Server::builder()
        .http(addr("server.listen", &s.server.listen)?)
        .engine(engine)
        .ws_config(ws_config(&s))
        .config(hub_config(&s))
        .queue_config(queue_config(&s));
    if !s.server.tcp_listen.is_empty() {
        b = b.chat_tcp(addr("server.tcp_listen", &s.server.tcp_listen)?);
    }
    if !s.server.tok_listen.is_empty() {
        b = b.tok_tcp(addr("server.tok_listen", &s.server.tok_listen)?);
    }
    let dev = if let Some(jwt) = jwt_config(&s)? {
        b = b.jwt(jwt);
        None
    } else if s.dev_sign_in() {
        let secret: [u8; 32] = rand::random();
        b = b.jwt_secret(secret);
        Some(web::DevTokens {
            issuer: JwtIssuer::hs256(secret),
            ttl: secs(s.auth.dev_token_ttl),
        })
    } else {
        if !s.auth.anonymous {
            return Err(Failure::Config(
                "nobody could sign in: set `auth.secret` or `auth.public_key`, enable \
                 `auth.anonymous`, or bind every door to loopback for dev sign-in"
                    .into(),
            ));
        }
        None
    };
    b = match s.queue.backend.as_str() {
        "memory" => b.queue_backend(QueueBackend::Memory),
        "redis" => b.redis_queue(s.queue.redis_url.clone()),
        _ => {
            let path = if s.queue.path.is_empty() {
                std::fs::create_dir_all(&s.server.data_dir).map_err(|e| {
                    Failure::Config(format!(
                        "bad value for `server.data_dir`: cannot create {}: {e}",
                        s.server.data_dir
                    ))
                })?;
                PathBuf::from(&s.server.data_dir).join("queue.redb")
            } else {
                PathBuf::from(&s.queue.path)
            };
            b = b.redb_queue(path.clone());
            tracing::info!(path = %path.display(), "offline queue: redb");
            b
        }
    };
    if !s.tls.cert.is_empty() {
        let tls = chinwag::tls::server_config_from_files(&s.tls.cert, &s.tls.key)
            .map_err(|e| Failure::Config(format!("bad value for `tls.cert`/`tls.key`: {e}")))?;
        b = b.tls(tls);
    }
    let ready = Arc::new(AtomicBool::new(false));
    let dev_on = dev.is_some();
    let web = web::Web::new(metrics, ready.clone(), dev);
    b = b.http_fallback(web.into_fallback());

    let server = b.start().await?;
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
    let _ = writeln!(out, "ready");
    let _ = out.flush();
    drop(out);
    ready.store(true, Ordering::Release);
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
    let deadline = secs(s.server.shutdown_timeout);
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
