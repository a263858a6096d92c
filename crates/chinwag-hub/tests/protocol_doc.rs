//! `docs/chat-protocol.md` against the code, so that the two cannot drift apart: the close code
//! table (every `CloseCode::ALL` code with its name and reconnect advice), the operations the
//! chat door serves (from its source, and asked of a running door) with their request and
//! result fields, the notifications and their fields, every error code, the defaults the page
//! quotes, and the byte-level examples, replayed byte for byte against a real door over TCP and
//! WebSocket. Also the request rules (a JSON object; `null` as absent) and the expiry rule
//! against a real chat door, the message limits against the servers' settings, and the other
//! two doors (sections 9 and 10): the room door's refusals, its close codes and its liveness
//! against a real door and its source, and the tok door's frames against a real door, byte for
//! byte. No test sleeps: every wait is for an event, bounded by a deadline.

mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use chinwag_hub::auth::{
    AuthError, JwtAuthenticator, JwtConfig, JwtKey, TokenSources, jsonwebtoken,
};
use chinwag_hub::doors::DoorHandle;
use chinwag_hub::doors::chat::{
    ChatDoor, DEFAULT_MEMBERS_PAGE, FROM_FIELDS, MAX_AUTH_FAILURES, MAX_ONLINE_QUERY,
    NOTIFICATIONS, OPERATIONS,
};
use chinwag_hub::doors::rooms::RoomsDoor;
use chinwag_hub::doors::tok::{ByeFn, TokDoor};
use chinwag_hub::{
    App, Body, Close, CloseCode, ConversationError, DEFAULT_DEVICE, Device, DirectoryError, Hub,
    HubConfig, Incoming, PartialDelivery, Rate, Reconnect, Rejection, RoomError, RoomOptions,
    SendError, SendOptions, ShareLimit, SignOn, SignOnError, ids,
};
use chinwag_rpc::{Handlers, Peer, RpcConfig, RpcError};
use chinwag_session::{OverflowPolicy, ServerConfig, SessionConfig};
use chinwag_transport::{CloseReason, Frame, FrameRead, FrameWrite, Transport};
use chinwag_wire::{Message, Name, RequestId, StreamDecoder, WireLimits};
use chinwag_ws::{ConnectOptions, WsAcceptor, WsConfig};
use chinwag_ws_tungstenite::Tungstenite;
use common::{
    DEADLINE, RawAnswer, RawOpts, addr_of, bearer_header, chat_tcp, config, raw_request,
    read_ws_frame, ws_config,
};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

const DOC: &str = include_str!("../../../docs/chat-protocol.md");
const ERROR_RS: &str = include_str!("../src/error.rs");
const AUTH_RS: &str = include_str!("../src/auth/mod.rs");
/// The driver's sources, where the hub's own close reasons are written.
const DRIVER_RS: [&str; 5] = [
    include_str!("../src/driver/signon.rs"),
    include_str!("../src/driver/replay.rs"),
    include_str!("../src/driver/rooms.rs"),
    include_str!("../src/driver/direct.rs"),
    include_str!("../src/driver/timers.rs"),
];
/// The chat door's sources, where its own error codes are written.
const CHAT_RS: [&str; 5] = [
    include_str!("../src/doors/chat/mod.rs"),
    include_str!("../src/doors/chat/ops/mod.rs"),
    include_str!("../src/doors/chat/ops/session.rs"),
    include_str!("../src/doors/chat/ops/direct.rs"),
    include_str!("../src/doors/chat/ops/presence.rs"),
];
const PRESENCE_RS: &str = include_str!("../src/driver/presence.rs");
const ROOMS_RS: &str = include_str!("../src/core/rooms.rs");

/// The HS256 secret of the page's example token.
const DOC_SECRET: &str = "chat-protocol example secret";

// ---- reading the page ---------------------------------------------------------------------

/// The lines under the heading `heading` (exactly as written, e.g. `## 6. Close codes`), up to
/// the next heading of the same or a higher level (headings inside code blocks do not count).
fn section(heading: &str) -> String {
    let level = heading.chars().take_while(|&c| c == '#').count();
    let mut out = String::new();
    let mut inside = false;
    let mut fence = false;
    for line in DOC.lines() {
        if line.starts_with("```") {
            fence = !fence;
        }
        if !fence && line.starts_with('#') {
            let l = line.chars().take_while(|&c| c == '#').count();
            if inside && l <= level {
                break;
            }
            if line == heading {
                inside = true;
                continue;
            }
        }
        if inside {
            out.push_str(line);
            out.push('\n');
        }
    }
    assert!(inside, "the page has no heading {heading:?}");
    out
}

/// The `### `name`` subsections of `text`: (name, body).
fn subsections(text: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    let mut fence = false;
    for line in text.lines() {
        if line.starts_with("```") {
            fence = !fence;
        }
        if !fence && line.starts_with("### ") {
            let name = line
                .strip_prefix("### `")
                .and_then(|r| r.strip_suffix('`'))
                .map(str::to_owned);
            match name {
                Some(n) => out.push((n, String::new())),
                None => out.push((String::new(), String::new())),
            }
            continue;
        }
        if let Some((_, body)) = out.last_mut() {
            body.push_str(line);
            body.push('\n');
        }
    }
    out.retain(|(n, _)| !n.is_empty());
    out
}

fn subsection(text: &str, name: &str) -> String {
    subsections(text)
        .into_iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("no subsection `{name}`"))
        .1
}

/// The table row of `text` whose first cell is `first`.
fn row<'a>(text: &'a str, first: &str) -> Option<&'a str> {
    let start = format!("| {first} |");
    text.lines().find(|l| l.starts_with(&start))
}

/// The names in the first cells of the table rows of `text` that start with a backticked name:
/// `| `a` / `b` | ...` gives `a` and `b`.
fn first_cells(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in text.lines().filter(|l| l.starts_with("| `")) {
        let cell = line[1..].split('|').next().unwrap();
        for name in cell.split('/') {
            out.insert(name.trim().trim_matches('`').to_owned());
        }
    }
    out
}

/// The lines of the fenced block that follows `marker`.
fn block(marker: &str) -> Vec<&'static str> {
    let at = DOC.find(marker).unwrap_or_else(|| panic!("no {marker}"));
    let rest = &DOC[at..];
    let start = rest
        .find("```text\n")
        .expect("a text block after the marker")
        + 8;
    let end = rest[start..].find("```").expect("the end of the block");
    rest[start..start + end].lines().collect()
}

/// One gotalk message written in the page (it must be exactly one, complete).
fn parse_wire(text: &str) -> Message {
    let mut buf = BytesMut::from(text.as_bytes());
    let m = StreamDecoder::without_version(WireLimits::default())
        .decode(&mut buf)
        .unwrap_or_else(|e| panic!("the page's {text:?} is not gotalk: {e}"))
        .unwrap_or_else(|| panic!("the page's {text:?} is incomplete"));
    assert!(
        buf.is_empty(),
        "the page's {text:?} has bytes after its message"
    );
    m
}

fn encode(m: &Message) -> Bytes {
    let mut out = BytesMut::new();
    m.encode(&mut out).unwrap();
    out.freeze()
}

fn json_of(m: &Message) -> Value {
    serde_json::from_slice(m.payload().expect("a payload")).expect("a JSON payload")
}

// ---- reading the code ---------------------------------------------------------------------

fn squeeze(s: &str) -> String {
    s.chars().filter(|c| !c.is_whitespace()).collect()
}

/// Every string literal that directly follows `pat` in `src`.
fn literals_after(src: &str, pat: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = src;
    while let Some(i) = rest.find(pat) {
        rest = &rest[i + pat.len()..];
        let end = rest.find('"').unwrap();
        out.push(rest[..end].to_owned());
    }
    out
}

/// The JSON field names of `struct name` in `src` (serde defaults: no renames), with
/// `#[serde(flatten)]` fields replaced by the fields of their type (looked up in `src`).
fn struct_fields(src: &str, name: &str) -> BTreeSet<String> {
    let pat = format!("struct {name}");
    let mut from = 0;
    let start = loop {
        let i = src[from..]
            .find(&pat)
            .map(|i| i + from)
            .unwrap_or_else(|| panic!("no struct {name}"));
        let next = src[i + pat.len()..].chars().next().unwrap();
        if !(next.is_alphanumeric() || next == '_') {
            break i + pat.len();
        }
        from = i + pat.len();
    };
    let rest = &src[start..];
    let body = &rest[rest.find('{').unwrap() + 1..];
    let mut out = BTreeSet::new();
    if body.trim_start().starts_with('}') {
        return out;
    }
    let mut flatten = false;
    for line in body.lines() {
        let line = line.trim();
        if line == "}" {
            break;
        }
        if line.starts_with("#[") {
            flatten |= line.contains("flatten");
            continue;
        }
        if line.starts_with("//") || line.is_empty() {
            continue;
        }
        let (field, ty) = line.split_once(':').expect("a field");
        let field = field.trim().trim_start_matches("pub ").trim();
        let ty = ty.trim().trim_end_matches(',');
        if flatten {
            out.extend(struct_fields(src, ty));
            flatten = false;
        } else {
            out.insert(field.to_owned());
        }
    }
    out
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| (*s).to_owned()).collect()
}

/// "65 536", "1 000", "64".
fn grouped(n: u64) -> String {
    let digits = n.to_string();
    if digits.len() <= 3 {
        return digits;
    }
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(' ');
        }
        out.push(c);
    }
    out
}

// ---- a server for the page's examples -----------------------------------------------------

#[derive(serde::Serialize)]
struct DocClaims<'a> {
    sub: &'a str,
    device: &'a str,
    exp: u64,
}

/// The page's example token, made again from the secret and claims the page states.
fn doc_token() -> String {
    assert!(DOC.contains(&format!("the secret `{DOC_SECRET}`")));
    assert!(DOC.contains(r#"`{"sub":"alice","device":"phone","exp":4102444800}`"#));
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &DocClaims {
            sub: "alice",
            device: "phone",
            exp: 4_102_444_800,
        },
        &jsonwebtoken::EncodingKey::from_secret(DOC_SECRET.as_bytes()),
    )
    .unwrap()
}

/// A fresh hub that verifies the page's token (its first connection gets `conn` 1, `seq` 1).
fn doc_hub() -> Hub {
    let jwt = JwtAuthenticator::new(JwtConfig::new(JwtKey::hs256(DOC_SECRET)));
    Hub::builder()
        .config(config())
        .authenticator(Arc::new(jwt))
        .build()
}

async fn chat_ws(hub: &Hub) -> (chinwag_hub::doors::DoorHandle, String) {
    let acc =
        WsAcceptor::<Tungstenite>::bind_path("127.0.0.1:0".parse().unwrap(), "/chat", ws_config())
            .await
            .unwrap();
    let url = format!("ws://{}/chat", acc.local_addr());
    (ChatDoor::new(hub.clone()).serve(acc), url)
}

async fn rpc_tcp(addr: SocketAddr) -> Peer {
    let t = chinwag_transport::tcp::connect(addr, &Default::default())
        .await
        .unwrap();
    chinwag_rpc::connect(t, Arc::new(Handlers::new()), RpcConfig::client())
}

/// A raw gotalk connection over TCP: exact bytes in, exact messages out.
struct Wire {
    sock: TcpStream,
    buf: BytesMut,
    dec: StreamDecoder,
}

impl Wire {
    async fn connect(addr: SocketAddr) -> Wire {
        Wire {
            sock: TcpStream::connect(addr).await.unwrap(),
            buf: BytesMut::new(),
            dec: StreamDecoder::without_version(WireLimits::default()),
        }
    }

    async fn write(&mut self, b: &[u8]) {
        self.sock.write_all(b).await.unwrap();
    }

    /// Reads more bytes; false at the end of the stream.
    async fn fill(&mut self) -> bool {
        let n = tokio::time::timeout(DEADLINE, self.sock.read_buf(&mut self.buf))
            .await
            .expect("the server answers within the deadline")
            .expect("the connection works");
        n > 0
    }

    async fn version(&mut self) -> Bytes {
        while self.buf.len() < 2 {
            assert!(self.fill().await, "the stream ended before the version");
        }
        self.buf.split_to(2).freeze()
    }

    /// The next message and its exact bytes (heartbeats skipped); `None` at the end of the
    /// stream.
    async fn next(&mut self) -> Option<(Message, Bytes)> {
        loop {
            let mut probe = self.buf.clone();
            if let Some(m) = self
                .dec
                .decode(&mut probe)
                .expect("the server speaks gotalk")
            {
                let used = self.buf.len() - probe.len();
                let raw = self.buf.split_to(used).freeze();
                if matches!(m, Message::Heartbeat { .. }) {
                    continue;
                }
                return Some((m, raw));
            }
            if !self.fill().await {
                assert!(self.buf.is_empty(), "the stream ended inside a message");
                return None;
            }
        }
    }
}

// ---- the close code table -----------------------------------------------------------------

#[test]
fn every_close_code_is_in_the_table_with_its_name_and_advice() {
    let table = section("## 6. Close codes");
    for c in CloseCode::ALL {
        let r = row(&table, &c.0.to_string())
            .unwrap_or_else(|| panic!("close code {} has no row", c.0));
        let cells: Vec<&str> = r.split('|').map(str::trim).collect();
        assert_eq!(cells[2], format!("`{}`", c.name()), "name of {}: {r}", c.0);
        assert_eq!(
            cells[3],
            format!("`{}`", c.reconnect().as_str()),
            "reconnect advice of {}: {r}",
            c.0
        );
    }
    // 1006 (no close frame) is a row too, with the advice the code gives it.
    let r = row(&table, "1006").expect("a row for 1006");
    assert!(r.contains(&format!("`{}`", CloseCode(1006).reconnect().as_str())));
    // No other codes: the table's rows are exactly the hub's codes plus 1006.
    let rows = table
        .lines()
        .filter(|l| {
            l.strip_prefix("| ")
                .is_some_and(|r| r.starts_with(|c: char| c.is_ascii_digit()))
        })
        .count();
    assert_eq!(rows, CloseCode::ALL.len() + 1);
    // Every advice a `bye` can carry is named where `bye` is described.
    let bye = subsection(&section("## 4. Notifications"), "bye");
    for r in [
        Reconnect::AtOnce,
        Reconnect::Backoff,
        Reconnect::AfterRefresh,
        Reconnect::Never,
    ] {
        assert!(bye.contains(&format!("`{}`", r.as_str())), "{r:?}");
    }
}

#[test]
fn every_bye_in_the_page_is_consistent_with_the_table() {
    let mut seen = 0;
    let mut rest = DOC;
    while let Some(i) = rest.find("{\"code\":") {
        rest = &rest[i..];
        let end = rest.find('}').unwrap() + 1;
        let bye: Value = serde_json::from_str(&rest[..end]).unwrap();
        rest = &rest[end..];
        let Some(code) = bye["code"].as_u64() else {
            continue; // an error object: `{"code":"...","message":"..."}`
        };
        let code = CloseCode(u16::try_from(code).unwrap());
        assert!(CloseCode::ALL.contains(&code), "{bye}");
        assert_eq!(bye["name"], code.name(), "{bye}");
        assert_eq!(bye["reconnect"], code.reconnect().as_str(), "{bye}");
        // The reason is the hub's own text for that close.
        let reason = bye["reason"].as_str().unwrap();
        assert!(
            DRIVER_RS
                .iter()
                .any(|src| src.contains(&format!("\"{reason}\""))),
            "{bye}"
        );
        seen += 1;
    }
    assert!(seen >= 3, "the page shows byes");
}

// ---- operations ---------------------------------------------------------------------------

#[test]
fn the_operations_are_exactly_those_the_door_serves_with_their_fields() {
    let ops = section("## 3. Operations");
    let documented: Vec<String> = subsections(&ops).into_iter().map(|(n, _)| n).collect();
    let served: BTreeSet<String> = OPERATIONS.iter().map(|o| o.name.to_owned()).collect();
    assert_eq!(
        documented.iter().cloned().collect::<BTreeSet<_>>(),
        served,
        "the page's operations vs the door's table"
    );
    let whoami = OPERATIONS.iter().find(|o| o.name == "whoami").unwrap();
    let whoami_fields = set(whoami.result);
    for op in &OPERATIONS {
        let sub = subsection(&ops, op.name);
        let (req, res) = doc_fields(&sub, &whoami_fields);
        let req = req.unwrap_or_else(|| panic!("`{}`: no request documented", op.name));
        assert_eq!(req, set((op.request)()), "`{}`: request fields", op.name);
        let res = res.unwrap_or_else(|| panic!("`{}`: no result documented", op.name));
        assert_eq!(res, set(op.result), "`{}`: result fields", op.name);
    }
    // The nested objects of `members` and `rooms`.
    let members = subsection(&ops, "members");
    for f in struct_fields(PRESENCE_RS, "Member") {
        assert!(members.contains(&format!("\"{f}\"")), "members: {f}");
    }
    let rooms = subsection(&ops, "rooms");
    for f in struct_fields(ROOMS_RS, "RoomInfo") {
        assert!(rooms.contains(&format!("`{f}`")), "rooms: {f}");
    }
}

/// The request and result fields an operation's subsection documents: its `| request field`
/// and `| result field` tables, `Request: `{}`` / `Result: `{}`` for none, and
/// `Result: as [`whoami`]`.
fn doc_fields(
    sub: &str,
    whoami: &BTreeSet<String>,
) -> (Option<BTreeSet<String>>, Option<BTreeSet<String>>) {
    let mut req = None;
    let mut res = None;
    let mut table: Option<bool> = None; // Some(true): request table, Some(false): result
    for line in sub.lines() {
        if line.starts_with("| request field") {
            table = Some(true);
            req = Some(BTreeSet::new());
        } else if line.starts_with("| result field") {
            table = Some(false);
            res = Some(BTreeSet::new());
        } else if line.trim().is_empty() {
            table = None;
        } else if line.starts_with("| `") {
            let names = first_cells(line);
            match table {
                Some(true) => req.as_mut().unwrap().extend(names),
                Some(false) => res.as_mut().unwrap().extend(names),
                None => {}
            }
        } else if line.starts_with("Request: `{}`") {
            req = Some(BTreeSet::new());
        } else if line.starts_with("Result: `{}`") {
            res = Some(BTreeSet::new());
        } else if line.starts_with("Result: as [`whoami`]") {
            res = Some(whoami.clone());
        }
    }
    (req, res)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_operation_is_served_and_others_are_unknown() {
    let hub = doc_hub();
    let (door, addr) = chat_tcp(&hub);
    let peer = rpc_tcp(addr).await;
    let ops = section("## 3. Operations");
    let documented: Vec<String> = subsections(&ops).into_iter().map(|(n, _)| n).collect();
    assert_eq!(documented.len(), OPERATIONS.len());
    for op in &documented {
        // Not signed in: every operation answers with a JSON error (`not_signed_in`, or
        // `bad_request` when `{}` lacks a required field), never gotalk's "unknown operation".
        let r = tokio::time::timeout(DEADLINE, peer.request_bytes(op, Bytes::from_static(b"{}")))
            .await
            .unwrap();
        let Err(RpcError::Remote { message }) = r else {
            panic!("`{op}` without signing in: {r:?}");
        };
        let v: Value = serde_json::from_str(&message)
            .unwrap_or_else(|_| panic!("`{op}` answered a non-JSON error: {message}"));
        let code = v["code"].as_str().unwrap();
        assert!(
            code == "not_signed_in" || code == "bad_request",
            "`{op}`: {v}"
        );
    }
    // An operation the page does not document is unknown, with the text the page gives.
    for op in ["nope", "subscribe", "typing"] {
        assert!(!documented.iter().any(|d| d == op));
        let r = peer.request_bytes(op, Bytes::from_static(b"{}")).await;
        let Err(RpcError::Remote { message }) = r else {
            panic!("{op}: {r:?}");
        };
        assert_eq!(message, format!("unknown operation \"{op}\""));
    }
    assert!(DOC.contains("`unknown operation \"nope\"`"));
    peer.close();
    hub.shutdown(DEADLINE).await;
    door.shutdown(DEADLINE).await;
}

// ---- notifications ------------------------------------------------------------------------

#[test]
fn the_notifications_are_those_the_door_sends_with_their_fields() {
    let notes = section("## 4. Notifications");
    let documented: BTreeSet<String> = subsections(&notes).into_iter().map(|(n, _)| n).collect();
    let sent: BTreeSet<String> = NOTIFICATIONS.iter().map(|n| n.name.to_owned()).collect();
    assert_eq!(
        documented, sent,
        "the page's notifications vs the door's table"
    );
    for n in &NOTIFICATIONS {
        let sub = subsection(&notes, n.name);
        let fields = set(n.fields);
        assert_eq!(first_cells(&sub), fields, "`{}` fields", n.name);
        // The example has those fields (one of the two body fields).
        let start = sub.find("```json\n").expect("an example") + 8;
        let end = sub[start..].find("```").unwrap();
        let example: Value = serde_json::from_str(&sub[start..start + end]).unwrap();
        let keys: BTreeSet<String> = example.as_object().unwrap().keys().cloned().collect();
        assert!(keys.is_subset(&fields), "`{}` example: {keys:?}", n.name);
        let missing: BTreeSet<String> = fields.difference(&keys).cloned().collect();
        assert!(
            missing.is_empty() || missing == set(&["body_base64"]),
            "`{}` example lacks {missing:?}",
            n.name
        );
    }
    for f in FROM_FIELDS {
        assert!(notes.contains(&format!("\"{f}\": string")), "from.{f}");
    }
}

// ---- error codes --------------------------------------------------------------------------

#[test]
fn every_error_code_is_in_the_error_table() {
    let send = [
        SendError::Offline("u".into()),
        SendError::TooLarge { len: 2, limit: 1 },
        SendError::BadRecipient(ids::check_user("").unwrap_err()),
        SendError::Queue(chinwag_queue::QueueError::InvalidRecipient { reason: "q" }),
        SendError::Quota(ShareLimit::SenderBytes),
        SendError::Partial {
            delivered: 1,
            total: 2,
        },
        SendError::Undelivered,
        SendError::Refused("r".into()),
        SendError::RateLimited,
        SendError::Busy,
        SendError::ShuttingDown,
    ];
    let room = [
        RoomError::NoSuchRoom,
        RoomError::BadName(ids::check_room("", 1).unwrap_err()),
        RoomError::Full,
        RoomError::TooManyRooms,
        RoomError::TooManyRoomsOnServer,
        RoomError::WrongPassword,
        RoomError::BadPassword,
        RoomError::Exists,
        RoomError::NotMember,
        RoomError::Busy,
        RoomError::GuessingTooFast,
        RoomError::TooLarge { len: 2, limit: 1 },
        RoomError::Refused("r".into()),
        RoomError::RateLimited,
        RoomError::History(chinwag_hub::HistoryFailure::new(
            chinwag_queue::QueueError::backend("h"),
        )),
    ];
    let sign_on = [
        SignOnError::Full,
        SignOnError::ShuttingDown,
        SignOnError::BadIdentity(ids::check_user("").unwrap_err()),
        SignOnError::Directory(DirectoryError::unavailable("d")),
        SignOnError::Closed,
    ];
    let auth = [
        AuthError::Missing,
        AuthError::TooLarge { len: 2, limit: 1 },
        AuthError::Malformed("m".into()),
        AuthError::Algorithm,
        AuthError::BadSignature,
        AuthError::Expired,
        AuthError::NotYetValid,
        AuthError::Audience,
        AuthError::Issuer,
        AuthError::Claims("c".into()),
        AuthError::OtherUser,
        AuthError::Refused("r".into()),
        AuthError::Unavailable("u".into()),
    ];
    let conversation = [
        ConversationError::NotKept,
        ConversationError::BadUser(ids::check_user("").unwrap_err()),
        ConversationError::History(chinwag_hub::HistoryFailure::new(
            chinwag_queue::QueueError::backend("h"),
        )),
    ];
    let mut hub_codes: BTreeSet<String> = send.iter().map(|e| e.code().to_owned()).collect();
    hub_codes.extend(conversation.iter().map(|e| e.code().to_owned()));
    hub_codes.extend(room.iter().map(|e| e.code().to_owned()));
    hub_codes.extend(sign_on.iter().map(|e| e.code().to_owned()));
    let reasons: BTreeSet<String> = auth.iter().map(|e| e.reason().to_owned()).collect();
    // Every variant is constructed above: the codes in the sources are exactly these (a new
    // variant makes this fail until it is added here and to the page).
    assert_eq!(
        literals_after(ERROR_RS, "=> \"")
            .into_iter()
            .collect::<BTreeSet<_>>(),
        hub_codes,
        "codes in error.rs"
    );
    assert_eq!(
        literals_after(AUTH_RS, "=> \"")
            .into_iter()
            .collect::<BTreeSet<_>>(),
        reasons,
        "reasons in auth/mod.rs"
    );
    let chat: BTreeSet<String> = CHAT_RS
        .iter()
        .flat_map(|src| literals_after(&squeeze(src), "ChatError::new(\""))
        .collect();
    assert!(chat.contains("bad_request") && chat.contains("not_signed_in"));
    assert!(CHAT_RS[1].contains("format!(\"auth_{}\", e.reason())"));

    let mut all = hub_codes.clone();
    all.extend(chat);
    all.extend(reasons.iter().map(|r| format!("auth_{r}")));
    let table = section("### Errors");
    let documented = first_cells(&table);
    for code in &all {
        assert!(
            row(&table, &format!("`{code}`")).is_some(),
            "error code `{code}` has no row in the page's error table"
        );
    }
    assert_eq!(
        &documented, &all,
        "the error table lists codes the code does not have"
    );

    // `auth` names every sign-on failure; every refusal status at connect has a row.
    let auth_op = subsection(&section("## 3. Operations"), "auth");
    for e in &sign_on {
        assert!(auth_op.contains(&format!("`{}`", e.code())), "{e:?}");
    }
    let refusals = section("### Refusals before the connection starts");
    for e in &auth {
        assert!(
            row(&refusals, &format!("`{}`", e.status())).is_some(),
            "{e:?}"
        );
    }
    for status in [429, 503] {
        assert!(row(&refusals, &format!("`{status}`")).is_some());
    }
}

// ---- defaults -----------------------------------------------------------------------------

#[test]
fn the_defaults_the_page_quotes_are_the_codes() {
    let c = HubConfig::default();
    let l = &c.limits;
    let limits = section("## 7. Limits");
    let row_of = |key: &str| {
        limits
            .lines()
            .find(|line| line.starts_with('|') && line.contains(key))
            .unwrap_or_else(|| panic!("no limits row with {key}"))
    };
    let has = |key: &str, text: &str| {
        let r = row_of(key);
        assert!(r.contains(text), "row {key} should say {text:?}: {r}");
    };
    let mib = |n: usize| format!("{} MiB", n >> 20);
    let secs = |d: Duration| format!("{} s", d.as_secs());
    let days = |d: Duration| format!("{} days", d.as_secs() / 86_400);
    let rate = |r: Option<chinwag_hub::Rate>| {
        let r = r.expect("a rate by default");
        format!("{}/s, bursts of {}", r.per_second, r.burst)
    };

    has(
        "`limits.max_body_bytes`",
        &format!("{} KiB", l.max_body_bytes >> 10),
    );
    has("`limits.max_body_bytes`", &grouped(l.max_body_bytes as u64));
    let tokens = TokenSources::default();
    assert_eq!(c.tokens, tokens);
    has(
        "`tokens.max_token_len`",
        &grouped(tokens.max_token_len as u64),
    );
    has("`auth_timeout`", &secs(c.auth_timeout));
    has("`token_grace`", &secs(c.token_grace));
    has("`default_ttl`", &days(c.default_ttl));
    has("`default_ttl`", &grouped(c.default_ttl.as_millis() as u64));
    has("`max_ttl`", &days(c.max_ttl));
    has("`max_ttl`", &grouped(c.max_ttl.as_millis() as u64));
    has(
        "`limits.max_rooms_per_connection`",
        &grouped(l.max_rooms_per_connection as u64),
    );
    has(
        "`limits.max_members_per_room`",
        &grouped(l.max_members_per_room as u64),
    );
    has("`limits.max_rooms`", &grouped(l.max_rooms as u64));
    has(
        "`limits.max_room_name_bytes`",
        &format!("1 to {} bytes", l.max_room_name_bytes),
    );
    has(
        "`limits.max_password_bytes`",
        &format!("{} bytes", l.max_password_bytes),
    );
    has("`limits.message_rate`", &rate(l.message_rate));
    has("`limits.connection_rate`", &rate(l.connection_rate));
    has(
        "`limits.rate_limit_strikes`",
        &grouped(u64::from(l.rate_limit_strikes)),
    );
    has("`limits.max_page`", &grouped(l.max_page as u64));
    let o = &l.offline;
    has(
        "`limits.offline.per_sender_bytes`",
        &mib(o.per_sender_bytes as usize),
    );
    has(
        "`limits.offline.per_sender_messages`",
        &grouped(o.per_sender_messages),
    );
    has(
        "`limits.offline.reserve_bytes`",
        &mib(o.reserve_bytes as usize),
    );
    has(
        "`limits.offline.reserve_bytes`",
        &format!("{} GiB", o.total_bytes >> 30),
    );
    has(
        "`limits.offline.light_sender_bytes`",
        &mib(o.light_sender_bytes as usize),
    );
    has(
        "`limits.password_guess_rate`",
        &rate(Some(l.password_guess_rate)),
    );
    has(
        "`limits.password_guess_rate_per_ip`",
        &rate(Some(l.password_guess_rate_per_ip)),
    );
    has("`limits.password_strikes`", &l.password_strikes.to_string());
    has("`limits.max_held_live`", &grouped(l.max_held_live as u64));
    has(
        "`limits.max_connections`",
        &grouped(l.max_connections as u64),
    );
    has(
        "recipient user id",
        &format!(
            "1 to {} bytes",
            grouped(chinwag_queue::MAX_RECIPIENT_LEN as u64)
        ),
    );
    // The door's own constants.
    has("users per `online` request", &MAX_ONLINE_QUERY.to_string());
    has("refused `auth` requests", &MAX_AUTH_FAILURES.to_string());
    let online = subsection(&section("## 3. Operations"), "online");
    assert!(online.contains(&format!("at most {MAX_ONLINE_QUERY}")));
    let members = subsection(&section("## 3. Operations"), "members");
    assert!(members.contains(&format!(
        "default {DEFAULT_MEMBERS_PAGE}, at least 1, at most {}",
        grouped(l.max_page as u64)
    )));

    // The offline queue, the RPC layer and the server the chat door runs on by default.
    let q = chinwag_queue::QueueConfig::default();
    has(
        "offline queue per user",
        &format!(
            "{} messages, {} MiB",
            grouped(q.max_entries_per_recipient),
            q.max_bytes_per_recipient >> 20
        ),
    );
    // The chat door runs with the RPC defaults.
    let rpc = RpcConfig::default();
    let door_rpc = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async { ChatDoor::new(doc_hub()).rpc_config().clone() });
    assert_eq!(format!("{door_rpc:?}"), format!("{rpc:?}"));
    has("RPC `max_requests`", &rpc.max_requests.to_string());
    has("RPC `wire`", &mib(rpc.wire.max_payload as usize));
    has(
        "RPC `wire`",
        &format!("{} bytes", grouped(u64::from(rpc.wire.max_name_len))),
    );
    has(
        "RPC `session.idle_timeout`",
        &secs(rpc.session.idle_timeout.unwrap()),
    );
    has(
        "RPC `session`",
        &format!(
            "{} messages, {}",
            grouped(rpc.session.queue_max_messages as u64),
            mib(rpc.session.queue_max_bytes)
        ),
    );
    let framing = section("## 1. Transport and framing");
    assert!(framing.contains(&format!(
        "sends `h` after {} s",
        rpc.session.heartbeat_interval.unwrap().as_secs()
    )));
    assert!(framing.contains(&format!(
        "nothing arrived for {} s",
        rpc.session.idle_timeout.unwrap().as_secs()
    )));
    assert!(framing.contains(&format!(
        "has too many requests in progress ({}",
        rpc.max_requests
    )));
    // The page says a full send queue makes a chat member miss a publish (it is not closed):
    // true while the door's session blocks (and `try_send` fails at once) instead of closing.
    assert!(
        matches!(rpc.session.overflow, OverflowPolicy::Block { .. }),
        "update the Rooms part of section 5"
    );
    let server = chinwag_session::ServerConfig::default();
    let refusals = section("### Refusals before the connection starts");
    assert!(refusals.contains(&format!("longer than {}", secs(server.admission_timeout))));

    // Sign-in and delivery defaults stated in prose.
    assert_eq!(c.sign_on, SignOn::Single);
    assert!(DOC.contains("| `Single` (default) |"));
    assert_eq!(c.partial, PartialDelivery::AnyDelivered);
    assert!(DOC.contains("| `AnyDelivered` (default) |"));
    assert!(tokens.bearer && tokens.subprotocol && tokens.first_message);
    assert!(tokens.query.is_none());
    assert!(!c.anonymous && c.auto_create_rooms);
    assert!(DOC.contains(&format!(
        "within the auth timeout (default {})**",
        secs(c.auth_timeout)
    )));
    assert!(DOC.contains(&format!("grace period (default {})**", secs(c.token_grace))));
    assert!(DOC.contains(&format!(
        "did not read its queued messages for {}",
        secs(c.replay_timeout)
    )));
    assert!(DOC.contains(&format!("device `{DEFAULT_DEVICE}`")));
    let jwt = JwtConfig::new(JwtKey::hs256("k"));
    assert_eq!(jwt.device_claim, "device");
    assert!(DOC.contains(&format!("the leeway, default {})", secs(jwt.leeway))));
}

// ---- the byte-level examples, replayed ----------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tcp_transcript_is_what_a_server_says() {
    let token = doc_token();
    let hub = doc_hub();
    let (door, addr) = chat_tcp(&hub);
    let mut w = Wire::connect(addr).await;
    let mut me: Option<String> = None;
    // (as in the page, as sent now): message ids the client echoes in `ack`.
    let mut ids: Vec<(String, String)> = Vec::new();
    let mut others: Vec<Peer> = Vec::new();
    let lines = block("<!-- protocol_doc: tcp-transcript -->");
    assert!(lines.len() >= 10);
    for line in lines {
        if let Some(c) = line.strip_prefix("C: ") {
            if c == "01" {
                w.write(b"01").await;
                continue;
            }
            let mut m = parse_wire(c);
            assert_eq!(encode(&m), c.as_bytes(), "the page writes canonical gotalk");
            if let Message::SingleRequest { op, payload, .. } = &mut m {
                if op.as_str() == "auth" {
                    let v: Value = serde_json::from_slice(payload).unwrap();
                    assert_eq!(v["token"], token.as_str(), "the page's token");
                }
                let mut text = String::from_utf8(payload.to_vec()).unwrap();
                for (doc, real) in &ids {
                    text = text.replace(doc.as_str(), real);
                }
                *payload = Bytes::from(text);
            }
            w.write(&encode(&m)).await;
        } else if let Some(s) = line.strip_prefix("S: ") {
            if s == "01" {
                assert_eq!(&w.version().await[..], b"01");
                continue;
            }
            let want = parse_wire(s);
            assert_eq!(
                encode(&want),
                s.as_bytes(),
                "the page writes canonical gotalk"
            );
            // What makes the server send a notification the page shows.
            if let Message::Notification { name, .. } = &want {
                let v = json_of(&want);
                match name.as_str() {
                    "message" => {
                        let from = Device::new(
                            v["from"]["user"].as_str().unwrap(),
                            v["from"]["device"].as_str().unwrap(),
                        );
                        let to = me.as_deref().expect("signed in before a message");
                        hub.send_as(
                            Some(&from),
                            to,
                            Body::text(v["body"].as_str().unwrap()),
                            SendOptions::default(),
                        )
                        .await
                        .unwrap();
                    }
                    "bye" => {
                        assert_eq!(
                            v["code"],
                            CloseCode::REPLACED.0,
                            "the page's bye is a replacement"
                        );
                        let p = rpc_tcp(addr).await;
                        p.request::<_, Value>("auth", &json!({ "token": token }))
                            .await
                            .unwrap();
                        others.push(p);
                    }
                    other => panic!("the transcript shows a {other} notification: teach this test"),
                }
            }
            let (got, raw) = w
                .next()
                .await
                .unwrap_or_else(|| panic!("closed before {s}"));
            assert_eq!(raw, encode(&got), "the server writes canonical gotalk");
            let got = match got {
                Message::Notification { name, payload } if name.as_str() == "message" => {
                    // Its id and time are the moment's: put the page's in their place.
                    let real: Value = serde_json::from_slice(&payload).unwrap();
                    let doc = json_of(&want);
                    let mut text = String::from_utf8(payload.to_vec()).unwrap();
                    for key in ["id", "sent_at"] {
                        text = text.replacen(
                            &format!("\"{key}\":{}", real[key]),
                            &format!("\"{key}\":{}", doc[key]),
                            1,
                        );
                    }
                    ids.push((doc["id"].to_string(), real["id"].to_string()));
                    Message::Notification {
                        name,
                        payload: Bytes::from(text),
                    }
                }
                other => other,
            };
            assert_eq!(got, want, "line {line}");
            if let Message::SingleResult { .. } = &got
                && let Some(user) = json_of(&got)["user"].as_str()
            {
                me = Some(user.to_owned());
            }
        } else {
            panic!("a transcript line is `C: ` or `S: `: {line}");
        }
    }
    // After `bye`, the connection ends.
    assert!(w.next().await.is_none(), "the connection ends after bye");
    for p in others {
        p.close();
    }
    hub.shutdown(DEADLINE).await;
    door.shutdown(DEADLINE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_recovery_transcript_is_what_a_server_says() {
    const DOC_EPOCH: &str = "1767225600000000";
    let jwt = JwtAuthenticator::new(JwtConfig::new(JwtKey::hs256(DOC_SECRET)));
    let history = Arc::new(chinwag_queue::MemoryHistory::new(Default::default()));
    let hub = Hub::builder()
        .config(config())
        .authenticator(Arc::new(jwt))
        .history(history)
        .build();
    // The room as the page describes it: bob published three times.
    let room = hub.create_room("lobby", RoomOptions::new()).await.unwrap();
    let real_epoch = room.epoch.to_string();
    assert_eq!(
        real_epoch.len(),
        DOC_EPOCH.len(),
        "same width: same frame sizes"
    );
    let bob = Device::new("bob", "laptop");
    for body in ["hello", "are you there?", "back soon"] {
        hub.publish_as(Some(&bob), "lobby", Body::text(body))
            .await
            .unwrap();
    }
    let (door, addr) = chat_tcp(&hub);
    let mut w = Wire::connect(addr).await;
    let lines = block("<!-- protocol_doc: recovery-transcript -->");
    assert!(lines.len() >= 8);
    for line in lines {
        if let Some(c) = line.strip_prefix("C: ") {
            if c == "01" {
                w.write(b"01").await;
                continue;
            }
            assert_eq!(encode(&parse_wire(c)), c.as_bytes(), "canonical gotalk");
            if c.contains("\"auth\"") || c.contains("auth0") {
                let v = json_of(&parse_wire(c));
                assert_eq!(v["token"], doc_token().as_str(), "the page's token");
            }
            // The page's epoch is the moment's: send the real one (same width).
            w.write(c.replace(DOC_EPOCH, &real_epoch).as_bytes()).await;
        } else if let Some(s) = line.strip_prefix("S: ") {
            if s == "01" {
                assert_eq!(&w.version().await[..], b"01");
                continue;
            }
            let want = parse_wire(s);
            assert_eq!(encode(&want), s.as_bytes(), "canonical gotalk");
            let (got, raw) = w
                .next()
                .await
                .unwrap_or_else(|| panic!("closed before {s}"));
            assert_eq!(raw, encode(&got), "the server writes canonical gotalk");
            // The moment's epoch and times, in the page's place.
            let mut text = String::from_utf8(raw.to_vec()).unwrap();
            text = text.replace(&real_epoch, DOC_EPOCH);
            let doc = json_of(&want);
            if let Some(at) = doc["sent_at"].as_u64() {
                let real = json_of(&got)["sent_at"].as_u64().unwrap();
                text = text.replacen(
                    &format!("\"sent_at\":{real}"),
                    &format!("\"sent_at\":{at}"),
                    1,
                );
            }
            assert_eq!(text, s, "line {line}");
        } else {
            panic!("a transcript line is `C: ` or `S: `: {line}");
        }
    }
    hub.shutdown(DEADLINE).await;
    door.shutdown(DEADLINE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_websocket_frames_are_what_a_server_says() {
    let token = doc_token();
    let hub = doc_hub();
    let (door, url) = chat_ws(&hub).await;
    let (tcp_door, addr) = chat_tcp(&hub);
    let conn =
        chinwag_ws::connect_with::<Tungstenite>(&url, &ws_config(), &ConnectOptions::default())
            .await
            .unwrap();
    let (mut r, mut w) = conn.split();
    let lines = block("<!-- protocol_doc: ws-frames -->");
    assert!(lines.len() >= 6);
    for line in lines {
        let (who, rest) = line.split_once(' ').unwrap();
        let (kind, content) = rest.trim_start().split_once(' ').unwrap();
        let content = content.trim_start();
        if content.starts_with('{') && content.contains("\"token\"") {
            let v: Value = serde_json::from_str(content).unwrap();
            assert_eq!(v["token"], token.as_str());
        }
        let bytes = Bytes::from(content.to_owned());
        match (who, kind) {
            ("C", "binary") => w.send(Frame::Binary(bytes)).await.unwrap(),
            ("C", "text") => w.send(Frame::Text(bytes)).await.unwrap(),
            ("S", "binary") => {
                let (f, _) = next_frame(&mut r).await;
                assert_eq!(f, Some(Frame::Binary(bytes)), "line {line}");
            }
            _ => panic!("a frame line is `C|S binary|text <content>`: {line}"),
        }
    }
    // A newer sign-on replaces the connection: `bye` (header and payload frames), then a
    // close frame with the same code.
    let p = rpc_tcp(addr).await;
    p.request::<_, Value>("auth", &json!({ "token": token }))
        .await
        .unwrap();
    let (header, _) = next_frame(&mut r).await;
    let Some(Frame::Binary(header)) = header else {
        panic!("{header:?}")
    };
    assert!(header.starts_with(b"n003bye"), "{header:?}");
    let (payload, _) = next_frame(&mut r).await;
    let Some(Frame::Binary(payload)) = payload else {
        panic!("{payload:?}")
    };
    let bye: Value = serde_json::from_slice(&payload).unwrap();
    assert_eq!(bye["code"], CloseCode::REPLACED.0);
    let (end, reason) = next_frame(&mut r).await;
    assert_eq!(end, None, "the close follows the bye");
    let reason = reason.expect("a close frame");
    assert_eq!(reason.code.0, CloseCode::REPLACED.0);
    assert_eq!(reason.reason, bye["reason"].as_str().unwrap());
    p.close();
    hub.shutdown(DEADLINE).await;
    door.shutdown(DEADLINE).await;
    tcp_door.shutdown(DEADLINE).await;
}

/// The next WebSocket message (heartbeats skipped), and the close reason once it is `None`.
async fn next_frame<R: FrameRead>(r: &mut R) -> (Option<Frame>, Option<CloseReason>) {
    loop {
        let f = tokio::time::timeout(DEADLINE, r.read_frame())
            .await
            .expect("a frame within the deadline")
            .expect("the connection works");
        match f {
            // A heartbeat: one 13-byte message.
            Some(Frame::Binary(b)) if b.len() == 13 && b[0] == b'h' => continue,
            other => return (other, r.close_reason().cloned()),
        }
    }
}

// ---- sign-in behaviours the page states ---------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_third_refused_auth_is_not_answered_bye_4001_then_the_end() {
    assert!(says(
        "**The third refused `auth` is not answered:** the server sends `bye` with code **4001** (`auth_failed`) and closes."
    ));
    let hub = doc_hub();
    let (door, addr) = chat_tcp(&hub);
    let mut w = Wire::connect(addr).await;
    w.write(b"01").await;
    assert_eq!(&w.version().await[..], b"01");
    let ids = [*b"0001", *b"0002", *b"0003"];
    for id in ids {
        let m = Message::SingleRequest {
            id: RequestId(id),
            op: Name::from_static("auth"),
            payload: Bytes::from_static(br#"{"token":"garbage"}"#),
        };
        w.write(&encode(&m)).await;
    }
    let mut got = Vec::new();
    while let Some((m, _)) = w.next().await {
        got.push(m);
    }
    assert_eq!(got.len(), 3, "two error results and a bye: {got:?}");
    for (m, id) in got[..2].iter().zip(ids) {
        let Message::ErrorResult { id: i, payload } = m else {
            panic!("{m:?}")
        };
        assert_eq!(i.0, id);
        let v: Value = serde_json::from_slice(payload).unwrap();
        assert_eq!(v["code"], "auth_malformed");
    }
    let Message::Notification { name, payload } = &got[2] else {
        panic!("{:?}", got[2])
    };
    assert_eq!(name.as_str(), "bye");
    let v: Value = serde_json::from_slice(payload).unwrap();
    let c = CloseCode::AUTH_FAILED;
    assert_eq!(v["code"], c.0);
    assert_eq!(v["name"], c.name());
    assert_eq!(v["reconnect"], c.reconnect().as_str());
    hub.shutdown(DEADLINE).await;
    door.shutdown(DEADLINE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_subprotocol_rule_and_a_refusal_before_the_upgrade() {
    let token = doc_token();
    let hub = doc_hub();
    let (door, url) = chat_ws(&hub).await;
    // The token as a subprotocol, next to another one: that other one is confirmed, and the
    // connection is signed in before the `101`.
    assert!(says(
        "it offers e.g. `[\"chinwag.v1\", \"bearer.<jwt>\"]`. The server confirms the **first offered subprotocol that does not start with `bearer.`**"
    ));
    let (status, head, s1) = upgrade(
        &url,
        &[(
            "Sec-WebSocket-Protocol",
            format!("chinwag.v1, bearer.{token}"),
        )],
    )
    .await;
    assert_eq!(status, 101, "{head}");
    assert_eq!(
        header(&head, "sec-websocket-protocol").as_deref(),
        Some("chinwag.v1")
    );
    assert_eq!(hub.connections_of("alice").len(), 1);
    // The token alone: signed in too, but no subprotocol confirmed (a browser fails that).
    let (status, head, s2) = upgrade(
        &url,
        &[("Sec-WebSocket-Protocol", format!("bearer.{token}"))],
    )
    .await;
    assert_eq!(status, 101, "{head}");
    assert_eq!(header(&head, "sec-websocket-protocol"), None);
    // A bad token: refused before the upgrade, the reason as the body.
    let (status, head, mut s3) =
        upgrade(&url, &[("Authorization", "Bearer garbage".to_owned())]).await;
    assert_eq!(status, 401, "{head}");
    assert_eq!(
        header(&head, "content-type").as_deref(),
        Some("text/plain; charset=utf-8")
    );
    let len: usize = header(&head, "content-length").unwrap().parse().unwrap();
    let mut body = vec![0u8; len];
    s3.read_exact(&mut body).await.unwrap();
    let body = String::from_utf8(body).unwrap();
    let reason = body.strip_suffix('\n').expect("the reason and a newline");
    assert!(says(&format!(
        "e.g. `401` with the body `{reason}` for `Authorization: Bearer garbage`"
    )));
    // Raw sockets do not answer close frames: drop them rather than wait for them.
    drop((s1, s2, s3));
    hub.shutdown(DEADLINE).await;
    door.shutdown(DEADLINE).await;
}

/// Sends a WebSocket upgrade request by hand: the status, the response head, the socket.
async fn upgrade(url: &str, headers: &[(&str, String)]) -> (u16, String, TcpStream) {
    let rest = url.strip_prefix("ws://").unwrap();
    let (host, path) = rest.split_once('/').unwrap();
    let mut s = TcpStream::connect(host).await.unwrap();
    let mut req = format!(
        "GET /{path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        tokio::time::timeout(DEADLINE, s.read_exact(&mut b))
            .await
            .expect("an answer within the deadline")
            .unwrap();
        head.push(b[0]);
    }
    let head = String::from_utf8(head).unwrap();
    let status = head[9..12].parse().unwrap();
    (status, head, s)
}

fn header(head: &str, name: &str) -> Option<String> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_owned())
    })
}

/// Whether the page says `text` (whitespace runs count as one space, so line breaks do not
/// matter).
fn says(text: &str) -> bool {
    let norm = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
    norm(DOC).contains(&norm(text))
}

// ---- the request rules and the expiry rule, against a real chat door ------------------------

/// The chat error code of an answer (`ok` for a result).
fn chat_code(r: Result<Bytes, RpcError>) -> String {
    match r {
        Ok(_) => "ok".to_owned(),
        Err(RpcError::Remote { message }) => {
            let v: Value = serde_json::from_str(&message)
                .unwrap_or_else(|_| panic!("a non-JSON error: {message}"));
            v["code"].as_str().unwrap().to_owned()
        }
        Err(e) => panic!("{e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_must_be_a_json_object_and_null_is_absent() {
    for text in [
        "**Every request must be a JSON object**, for every operation: a payload that is an array, \
         a string, a number, `true`, `false` or `null` is `bad_request` — `join [\"room\"]` and \
         `whoami []` too.",
        "**Unknown fields are refused** (`bad_request`), in every operation.",
        "**An optional field given as `null` is the same as an absent one**: \
         `online {\"users\": null}` asks about nobody, `join {\"room\": \"r\", \"password\": null}` \
         gives no password, and a `send` with `\"body_base64\": null` next to its `body` has \
         exactly one body. A required field given as `null` is `bad_request`.",
    ] {
        assert!(says(text), "the page should say: {text}");
    }
    let hub = doc_hub();
    let (door, addr) = chat_tcp(&hub);
    let peer = rpc_tcp(addr).await;
    peer.request::<_, Value>("auth", &json!({ "token": doc_token() }))
        .await
        .unwrap();
    let ask = |op: &'static str, payload: &str| {
        let p = peer.clone();
        let payload = Bytes::from(payload.to_owned());
        async move {
            let r = tokio::time::timeout(DEADLINE, p.request_bytes(op, payload))
                .await
                .expect("an answer within the deadline");
            chat_code(r)
        }
    };
    // A payload each operation would take (its answer may still be an error, never
    // `bad_request`): with one unknown field more, it is `bad_request`.
    let valid: [(&str, &str); 13] = [
        ("auth", r#"{"token":"t"}"#),
        ("whoami", "{}"),
        ("refresh", r#"{"token":"t"}"#),
        ("send", r#"{"to":"bob","body":"x"}"#),
        ("ack", r#"{"id":1}"#),
        ("join", r#"{"room":"r"}"#),
        ("leave", r#"{"room":"r"}"#),
        ("publish", r#"{"room":"r","body":"x"}"#),
        ("rooms", "{}"),
        ("members", r#"{"room":"r"}"#),
        ("history", r#"{"room":"r"}"#),
        ("online", "{}"),
        ("app", r#"{"body":"x"}"#),
    ];
    let names: BTreeSet<&str> = valid.iter().map(|(n, _)| *n).collect();
    assert_eq!(
        names,
        OPERATIONS.iter().map(|o| o.name).collect::<BTreeSet<_>>(),
        "a payload for every operation"
    );
    for (op, payload) in valid {
        for bad in [
            "[]",
            "null",
            "\"x\"",
            "7",
            "true",
            "false",
            "[\"room\"]",
            "[{}]",
        ] {
            assert_eq!(ask(op, bad).await, "bad_request", "{op} {bad}");
        }
        assert_ne!(ask(op, payload).await, "bad_request", "{op} {payload}");
        let unknown = format!("{},\"zz\":1}}", &payload[..payload.len() - 1]).replace("{,", "{");
        assert_eq!(ask(op, &unknown).await, "bad_request", "{op} {unknown}");
    }
    assert_eq!(ask("join", "[\"room\"]").await, "bad_request");
    assert_eq!(ask("whoami", "[]").await, "bad_request");
    // `null` for an optional field is absent; for a required one, `bad_request`.
    let online: Value = peer
        .request("online", &json!({ "users": null }))
        .await
        .unwrap();
    assert_eq!(online, json!({ "users": {}, "online": 1 }));
    assert_eq!(ask("join", r#"{"room":"n","password":null}"#).await, "ok");
    assert_eq!(
        ask("send", r#"{"to":"bob","body":"x","body_base64":null}"#).await,
        "ok"
    );
    assert_eq!(
        ask("members", r#"{"room":"n","after":null,"limit":null}"#).await,
        "ok"
    );
    assert_eq!(ask("leave", r#"{"room":null}"#).await, "bad_request");
    peer.close();
    hub.shutdown(DEADLINE).await;
    door.shutdown(DEADLINE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_lives_until_the_later_of_exp_and_now_plus_the_grace() {
    let grace = HubConfig::default().token_grace;
    assert!(says(&format!(
        "A connection lives until **the later of its token's `exp` and the moment the token was \
         accepted, plus the grace period (default {} s)**",
        grace.as_secs()
    )));
    assert!(says(
        "the connection's expiry becomes the later of the new token's `exp` and the moment of \
         the refresh, plus the grace period"
    ));
    // The rule as the code writes it (`core/expiry.rs::expiry_at`): now + (exp - now, or 0) + grace.
    assert!(
        squeeze(include_str!("../src/core/expiry.rs"))
            .contains("now+Duration::from_millis(exp_unix_ms.saturating_sub(now_unix_ms))+grace"),
        "update the page's expiry rule"
    );
    // A real door: a token 10 minutes past its `exp`, accepted within a leeway of an hour. Were
    // the connection closed at `exp` + grace, it would be closed at once; it is not: another
    // connection's auth timeout (1 s) comes and goes first, and the connection still answers.
    let jwt = JwtAuthenticator::new(
        JwtConfig::new(JwtKey::hs256(DOC_SECRET)).with_leeway(Duration::from_secs(3600)),
    );
    let hub = Hub::builder()
        .config(config().with_auth_timeout(Duration::from_secs(1)))
        .authenticator(Arc::new(jwt))
        .build();
    let (door, addr) = chat_tcp(&hub);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let late = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &DocClaims {
            sub: "late",
            device: "d",
            exp: now - 600,
        },
        &jsonwebtoken::EncodingKey::from_secret(DOC_SECRET.as_bytes()),
    )
    .unwrap();
    let mut c = common::Client::tcp(addr, None).await;
    c.req("auth", json!({ "token": late }))
        .await
        .expect("accepted within the leeway");
    let mut silent = common::Client::tcp(addr, None).await;
    assert_eq!(silent.bye().await["code"], CloseCode::AUTH_TIMEOUT.0);
    assert!(
        c.notes.try_recv().is_err(),
        "no bye: the grace runs from now"
    );
    assert_eq!(c.whoami().await["user"], "late");
    hub.shutdown(DEADLINE).await;
    door.shutdown(DEADLINE).await;
}

// ---- the message limits and the ready server's settings -------------------------------------

const FACADE_SERVER_RS: &str = include_str!("../../chinwag/src/server.rs");
const LIMITS_MD: &str = include_str!("../../../docs/limits.md");

/// Whether `text` contains `part`, whitespace runs counting as one space.
fn has_text(text: &str, part: &str) -> bool {
    let norm = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
    norm(text).contains(&norm(part))
}

/// The first table row of `text` that contains `key`.
fn row_with<'a>(text: &'a str, key: &str) -> &'a str {
    text.lines()
        .find(|l| l.starts_with('|') && l.contains(key))
        .unwrap_or_else(|| panic!("no row with {key}"))
}

#[test]
fn the_message_limits_are_stated_where_a_client_reads_them() {
    let mib = |n: usize| format!("{} MiB", n >> 20);
    let body = HubConfig::default().limits.max_body_bytes;
    let gotalk = RpcConfig::default().wire.max_payload as usize;
    let library = WsConfig::default().max_message_size;
    // The ready server's WebSocket message (and frame) limit: that its settings' default is
    // this is checked by chinwag-server's tests/server_doc.rs (this crate cannot see them).
    let ready = 1usize << 20;

    // Section 1, where a gotalk client reads about the wire.
    let framing = section("## 1. Transport and framing");
    assert!(has_text(
        &framing,
        &format!("**the gotalk payload limit, {}**", mib(gotalk))
    ));
    assert!(has_text(
        &framing,
        &format!(
            "It is **{} on the ready server** (`chinwag-server`'s `websocket.max_message_size`) \
             and {} by default on a server built on the library (`chinwag-ws`'s \
             `WsConfig::max_message_size`)",
            mib(ready),
            mib(library)
        )
    ));
    assert!(has_text(
        &framing,
        &format!("a message body is at most {} KiB", body >> 10)
    ));
    // Section 7: the three next to each other.
    let limits = section("## 7. Limits");
    let rows: Vec<&str> = limits.lines().filter(|l| l.starts_with("| ")).collect();
    let at = rows
        .iter()
        .position(|r| r.contains("`limits.max_body_bytes`"))
        .unwrap();
    assert!(rows[at].contains(&format!("{} KiB", body >> 10)));
    assert!(rows[at + 1].starts_with(&format!(
        "| WebSocket message | {} on the ready server; {} on a library server |",
        mib(ready),
        mib(library)
    )));
    assert!(rows[at + 2].starts_with(&format!(
        "| gotalk payload, operation name | {},",
        mib(gotalk)
    )));
    // Section 9 (the room door) and docs/limits.md.
    let room = section("### Limits of the room door");
    let r = row_with(&room, "| WebSocket message |");
    assert!(r.contains(&format!("{} on the ready server", mib(ready))));
    assert!(r.contains(&format!("{} on a library server", mib(library))));
    let r = row_with(&room, "| message body");
    assert!(r.contains(&format!(
        "{} KiB ({} bytes",
        body >> 10,
        grouped(body as u64)
    )));
    assert!(r.contains(&format!("over the limit of {body}")));
    assert!(
        LIMITS_MD
            .lines()
            .any(|l| l.contains("`websocket.max_message_size`") && l.contains("| 1 MiB |")),
        "docs/limits.md has a row for the ready server's WebSocket message limit"
    );
    assert!(
        LIMITS_MD
            .lines()
            .any(|l| l.starts_with("| `WsConfig::max_message_size`")
                && l.contains(&format!("| {} /", mib(library))))
    );

    // Where the ready server serves the doors.
    assert!(FACADE_SERVER_RS.contains("pub const DEFAULT_CHAT_PATH: &str = \"/gotalk/\";"));
    assert!(FACADE_SERVER_RS.contains("pub const DEFAULT_ROOMS_PATH: &str = \"/ws\";"));
    assert!(says(
        "serves the door at **`/ws`** on its HTTP port, next to the chat door at `/gotalk/`"
    ));
    assert!(says("`server.tok_listen`, default `127.0.0.1:8082`"));
}

// ---- the raw room door (section 9) ----------------------------------------------------------

const ROOM_DOOR_RS: &str = include_str!("../src/doors/rooms.rs");

type WsHalves = (
    <chinwag_ws::WsConnection<Tungstenite> as Transport>::Reader,
    <chinwag_ws::WsConnection<Tungstenite> as Transport>::Writer,
);

/// `door` on loopback at `/ws` with `ws`: its handle and URL.
async fn room_door(door: RoomsDoor, ws: WsConfig) -> (DoorHandle, String) {
    let acc = WsAcceptor::<Tungstenite>::bind_path("127.0.0.1:0".parse().unwrap(), "/ws", ws)
        .await
        .unwrap();
    let url = format!("ws://{}/ws", acc.local_addr());
    (door.serve(acc), url)
}

/// A member of `room` as `user` (device `web`, the test secret's token).
async fn room_member(url: &str, room: &str, user: &str) -> WsHalves {
    let opts = ConnectOptions::default().with_header(
        "authorization",
        format!("Bearer {}", common::token(user, "web")),
    );
    chinwag_ws::connect_with::<Tungstenite>(&format!("{url}?room={room}"), &ws_config(), &opts)
        .await
        .unwrap_or_else(|e| panic!("{user} in {room}: {e}"))
        .split()
}

/// A hand-written upgrade request to `url` + `query`.
async fn ask(url: &str, query: &str, headers: &[(&str, String)]) -> RawAnswer {
    raw_request(&format!("{url}{query}"), headers, RawOpts::default()).await
}

/// Whether `pattern` (the page's text, where each `<...>` stands for any text) matches `text`.
fn like(pattern: &str, text: &str) -> bool {
    // The literal parts, in order: the first starts the text, the last ends it.
    let mut parts = Vec::new();
    let mut rest = pattern;
    while let Some((lit, after)) = rest.split_once('<') {
        parts.push(lit);
        rest = after.split_once('>').map_or("", |(_, a)| a);
    }
    parts.push(rest);
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || text.len() < first.len() + last.len() {
        return false;
    }
    let mut at = first.len();
    for mid in &parts[1..parts.len() - 1] {
        match text[at..].find(mid) {
            Some(i) => at += i + mid.len(),
            None => return false,
        }
    }
    text.len() >= at + last.len() && text.ends_with(last)
}

/// The backticked texts of `cell`.
fn backticked(cell: &str) -> Vec<&str> {
    cell.split('`').skip(1).step_by(2).collect()
}

/// The body rows of the tables of `text` (not their header rows).
fn body_rows(text: &str) -> Vec<&str> {
    let lines: Vec<&str> = text.lines().collect();
    lines
        .iter()
        .enumerate()
        .filter(|(i, l)| {
            l.starts_with("| ") && !lines.get(i + 1).is_some_and(|n| n.starts_with("|---"))
        })
        .map(|(_, l)| *l)
        .collect()
}

/// The index (in [`body_rows`]) and text of the row of `table` whose first cell names `first`
/// (backticked or not) and whose second cell has a backticked text that matches `text`.
fn row_matching<'a>(table: &'a str, first: &str, text: &str) -> Option<(usize, &'a str)> {
    body_rows(table).into_iter().enumerate().find(|(_, l)| {
        let cells: Vec<&str> = l.split('|').map(str::trim).collect();
        let firsts: Vec<&str> = cells[1]
            .split(',')
            .map(|c| c.trim().trim_matches('`'))
            .collect();
        firsts.contains(&first) && backticked(cells[2]).iter().any(|p| like(p, text))
    })
}

/// Checks a refused upgrade against the page's refusal table; returns the row it matched.
fn refused(table: &str, a: &RawAnswer, status: u16, retry: Option<u64>) -> usize {
    assert_eq!(a.status, status, "{}{}", a.head, a.body);
    assert_eq!(a.header("content-type"), Some("text/plain; charset=utf-8"));
    let body = a.body.strip_suffix('\n').expect("the reason and a newline");
    let (i, row) = row_matching(table, &status.to_string(), body)
        .unwrap_or_else(|| panic!("the page's refusals have no row `{status}` `{body}`"));
    let retry_after = a.header("retry-after").map(|v| v.parse::<u64>().unwrap());
    assert_eq!(retry_after, retry, "{}", a.head);
    if let Some(n) = retry {
        assert!(row.contains(&format!("`Retry-After: {n}`")), "{row}");
    }
    i
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_room_door_refusals_are_what_a_door_answers() {
    let table = section("### Refusals");
    let rows = body_rows(&table).len();
    let mut seen = BTreeSet::new();
    let t = |user: &str| bearer_header(&common::token(user, "web"));
    let pw = |p: &str| ("X-Room-Password", p.to_owned());

    // A hub with a password room, a room for one, and a guess rate of 1 per address.
    let mut cfg = config();
    cfg.limits = cfg.limits.with_password_guess_rate_per_ip(Rate::new(1, 1));
    let hub = common::hub(cfg, None);
    hub.create_room("locked", RoomOptions::new().with_password("pw"))
        .await
        .unwrap();
    hub.create_room("tiny", RoomOptions::new().with_max_members(1))
        .await
        .unwrap();
    let (door, url) = room_door(RoomsDoor::new(hub.clone()), ws_config()).await;
    let a = ask(&url, "", &[]).await;
    seen.insert(refused(&table, &a, 400, None));
    let a = ask(&url, "?room=lobby", &[]).await;
    seen.insert(refused(&table, &a, 401, None));
    let a = ask(
        &url,
        "?room=lobby",
        &[("Authorization", "Bearer garbage".to_owned())],
    )
    .await;
    seen.insert(refused(&table, &a, 401, None));
    let a = ask(&url, "?room=*", &[t("u1")]).await;
    seen.insert(refused(&table, &a, 400, None));
    let long = "p".repeat(hub.config().limits.max_password_bytes + 1);
    let a = ask(&url, "?room=lobby", &[t("u2"), pw(&long)]).await;
    seen.insert(refused(&table, &a, 400, None));
    let a = ask(&url, "?room=locked", &[t("u3")]).await;
    seen.insert(refused(&table, &a, 403, None));
    // Two wrong guesses from one address, one after the other: one is checked (403), the
    // other is over the address's guess rate (429).
    let wrong = ask(&url, "?room=locked", &[t("u4"), pw("nope")]).await;
    seen.insert(refused(&table, &wrong, 403, None));
    let fast = ask(&url, "?room=locked", &[t("u5"), pw("nope")]).await;
    seen.insert(refused(&table, &fast, 429, Some(1)));
    // A room for one: the first member is in (the subprotocol rule is the chat door's), the
    // second is refused.
    let token6 = common::token("u6", "web");
    let first = ask(
        &url,
        "?room=tiny",
        &[(
            "Sec-WebSocket-Protocol",
            format!("chinwag.rooms, bearer.{token6}"),
        )],
    )
    .await;
    assert_eq!(first.status, 101, "{}", first.head);
    assert_eq!(
        first.header("sec-websocket-protocol"),
        Some("chinwag.rooms")
    );
    assert!(says(
        "so a browser offers e.g. `[\"chinwag.rooms\", \"bearer.<jwt>\"]`"
    ));
    let a = ask(&url, "?room=tiny", &[t("u7")]).await;
    seen.insert(refused(&table, &a, 503, Some(5)));
    drop(first);
    hub.shutdown(DEADLINE).await;
    door.shutdown(DEADLINE).await;

    // Rooms are not made by joining: an unknown room is 404. Spaces around the header's
    // password are dropped.
    let hub = common::hub(config().with_auto_create_rooms(false), None);
    hub.create_room("locked", RoomOptions::new().with_password("pw"))
        .await
        .unwrap();
    let (door, url) = room_door(RoomsDoor::new(hub.clone()), ws_config()).await;
    let a = ask(&url, "?room=nowhere", &[t("u8")]).await;
    seen.insert(refused(&table, &a, 404, None));
    let inside = ask(&url, "?room=locked", &[t("u9"), pw("  pw  ")]).await;
    assert_eq!(inside.status, 101, "{}{}", inside.head, inside.body);
    drop(inside);
    hub.shutdown(DEADLINE).await;
    door.shutdown(DEADLINE).await;

    // The connection rate of an address.
    let mut cfg = config();
    cfg.limits = cfg.limits.with_connection_rate(Some(Rate::new(1, 1)));
    let hub = common::hub(cfg, None);
    let (door, url) = room_door(RoomsDoor::new(hub.clone()), ws_config()).await;
    let first = ask(&url, "?room=lobby", &[t("v1")]).await;
    assert_eq!(first.status, 101, "{}", first.head);
    let a = ask(&url, "?room=lobby", &[t("v2")]).await;
    seen.insert(refused(&table, &a, 429, Some(1)));
    drop(first);
    hub.shutdown(DEADLINE).await;
    door.shutdown(DEADLINE).await;

    // A full server; too many rooms.
    let mut cfg = config();
    cfg.limits = cfg.limits.with_max_connections(1).with_max_rooms(1);
    let hub = common::hub(cfg, None);
    let (door, url) = room_door(RoomsDoor::new(hub.clone()), ws_config()).await;
    let first = ask(&url, "?room=a", &[t("w1")]).await;
    assert_eq!(first.status, 101, "{}", first.head);
    let a = ask(&url, "?room=a", &[t("w2")]).await;
    seen.insert(refused(&table, &a, 503, Some(5)));
    drop(first);
    hub.shutdown(DEADLINE).await;
    door.shutdown(DEADLINE).await;
    let mut cfg = config();
    cfg.limits = cfg.limits.with_max_rooms(1);
    let hub = common::hub(cfg, None);
    let (door, url) = room_door(RoomsDoor::new(hub.clone()), ws_config()).await;
    let first = ask(&url, "?room=a", &[t("x1")]).await;
    assert_eq!(first.status, 101, "{}", first.head);
    let a = ask(&url, "?room=b", &[t("x2")]).await;
    seen.insert(refused(&table, &a, 503, Some(5)));
    drop(first);
    hub.shutdown(DEADLINE).await;
    door.shutdown(DEADLINE).await;

    // A server without an authenticator refuses every token: 403.
    let hub = Hub::builder().config(config()).build();
    let (door, url) = room_door(RoomsDoor::new(hub.clone()), ws_config()).await;
    let a = ask(&url, "?room=lobby", &[t("y1")]).await;
    seen.insert(refused(&table, &a, 403, None));
    hub.shutdown(DEADLINE).await;
    door.shutdown(DEADLINE).await;

    assert_eq!(
        seen.len(),
        rows,
        "every row of the page's refusal table is what a door answers"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_door_connection_is_a_sign_on_like_any_other() {
    assert!(says(
        "**Everything a join can refuse is checked before the connection is signed on** (the \
         room's name, that it exists or may be made, that it has room, its password): a refused \
         join leaves the user's other connections alone."
    ));
    let hub = common::hub(config(), None);
    assert_eq!(hub.config().sign_on, SignOn::Single);
    hub.create_room("locked", RoomOptions::new().with_password("pw"))
        .await
        .unwrap();
    let (door, url) = room_door(RoomsDoor::new(hub.clone()), ws_config()).await;
    let (chat, addr) = chat_tcp(&hub);
    // A refused join leaves the user's chat connection alone.
    let c = common::Client::tcp(addr, Some(&common::token("pat", "phone"))).await;
    let a = ask(
        &url,
        "?room=locked",
        &[
            bearer_header(&common::token("pat", "web")),
            ("X-Room-Password", "nope".to_owned()),
        ],
    )
    .await;
    assert_eq!(a.status, 403, "{}", a.head);
    assert_eq!(c.whoami().await["device"], "phone", "not replaced");
    assert!(c.peer.close_reason().is_none());
    // A second room of the same user replaces the first connection.
    let (mut r1, _w1) = room_member(&url, "one", "pat").await;
    let (_r2, _w2) = room_member(&url, "two", "pat").await;
    let (f, why) = next_frame(&mut r1).await;
    assert_eq!(f, None);
    let why = why.expect("a close frame");
    assert_eq!(why.code.0, CloseCode::REPLACED.0);
    let closes = section("### Close codes of the room door");
    assert!(
        row_matching(&closes, "4003", &why.reason).is_some(),
        "{why:?}"
    );
    hub.shutdown(DEADLINE).await;
    door.shutdown(DEADLINE).await;
    chat.shutdown(DEADLINE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_room_door_example_is_what_a_door_does() {
    let hub = common::hub(config(), None);
    let (door, url) = room_door(RoomsDoor::new(hub.clone()), ws_config()).await;
    let (mut r, mut w) = room_member(&url, "lobby", "ann").await;
    let lines = block("<!-- protocol_doc: rooms-messages -->");
    assert!(lines.len() >= 6);
    for line in lines {
        let (who, rest) = line.split_once(' ').unwrap();
        let (kind, content) = rest.trim_start().split_once(' ').unwrap();
        let content = content.trim_start();
        let bytes: Bytes = match kind {
            "binary" => content
                .split(' ')
                .map(|h| u8::from_str_radix(h, 16).unwrap())
                .collect::<Vec<_>>()
                .into(),
            _ => match content
                .strip_prefix('(')
                .and_then(|c| c.strip_suffix(" bytes)"))
            {
                Some(n) => vec![b'x'; n.replace(' ', "").parse().unwrap()].into(),
                None => Bytes::from(content.to_owned()),
            },
        };
        match (who, kind) {
            ("C", "text") => w.send(Frame::Text(bytes)).await.unwrap(),
            ("C", "binary") => w.send(Frame::Binary(bytes)).await.unwrap(),
            ("S", "text") => assert_eq!(next_frame(&mut r).await.0, Some(Frame::Text(bytes))),
            ("S", "binary") => {
                assert_eq!(next_frame(&mut r).await.0, Some(Frame::Binary(bytes)));
            }
            ("S", "close") => {
                let (code, reason) = content.split_once(' ').unwrap();
                let (f, why) = next_frame(&mut r).await;
                assert_eq!(f, None, "{line}");
                let why = why.expect("a close frame");
                assert_eq!(why.code.0.to_string(), code, "{line}");
                assert_eq!(why.reason, reason, "{line}");
            }
            _ => panic!("a line is `C|S text|binary|close <content>`: {line}"),
        }
    }
    // Queued direct messages come first, as their bodies.
    hub.send(
        "ben",
        Body::text("while you were out"),
        SendOptions::default(),
    )
    .await
    .unwrap();
    let (mut br, _bw) = room_member(&url, "lobby", "ben").await;
    assert_eq!(
        next_frame(&mut br).await.0,
        Some(Frame::Text(Bytes::from_static(b"while you were out")))
    );
    // A direct message and a broadcast arrive as their bodies, like publishes; a direct
    // message counts as delivered once it is on the connection's send queue.
    let sent = hub
        .send("ben", Body::text("psst"), SendOptions::default())
        .await
        .unwrap();
    assert_eq!(sent.delivered, 1);
    assert_eq!(
        next_frame(&mut br).await.0,
        Some(Frame::Text(Bytes::from_static(b"psst")))
    );
    // Written counts as delivered: the hub acknowledges it (in its next batch of acks).
    common::queue_empties(&hub, "ben").await;
    hub.broadcast(Body::binary(vec![7u8])).unwrap();
    assert_eq!(
        next_frame(&mut br).await.0,
        Some(Frame::Binary(Bytes::from_static(&[7])))
    );
    // No presence events: in a room that has them, the first thing a member gets after another
    // joined is that one's publish.
    hub.create_room("desk", RoomOptions::new().with_presence_events(true))
        .await
        .unwrap();
    let (mut dr, _dw) = room_member(&url, "desk", "dee").await;
    let (_er, mut ew) = room_member(&url, "desk", "eve").await;
    ew.send(Frame::Text(Bytes::from_static(b"eve is here")))
        .await
        .unwrap();
    assert_eq!(
        next_frame(&mut dr).await.0,
        Some(Frame::Text(Bytes::from_static(b"eve is here")))
    );
    assert!(says("Presence events are never sent."));
    hub.shutdown(DEADLINE).await;
    door.shutdown(DEADLINE).await;
}

/// The door's source: which close code answers which refused publish (`_` for the rest).
fn refusal_arms() -> Vec<(String, CloseCode)> {
    let src = squeeze(ROOM_DOOR_RS);
    let body = &src[src.find("fnrefusal_close").expect("fn refusal_close")..];
    let body = &body[..body.find("Close::new").unwrap()];
    let mut arms = Vec::new();
    for arm in body.split(',') {
        let Some((pat, code)) = arm.split_once("=>CloseCode::") else {
            continue;
        };
        let variant = match pat.rsplit_once("RoomError::") {
            Some((_, v)) => v
                .chars()
                .take_while(char::is_ascii_alphanumeric)
                .collect::<String>(),
            None => {
                assert!(pat.ends_with('_'), "{pat}");
                "_".to_owned()
            }
        };
        let code = match code.trim_end_matches('}') {
            "TOO_BIG" => CloseCode::TOO_BIG,
            "RATE_LIMITED" => CloseCode::RATE_LIMITED,
            "TRY_AGAIN_LATER" => CloseCode::TRY_AGAIN_LATER,
            "POLICY" => CloseCode::POLICY,
            other => panic!("teach this test CloseCode::{other}"),
        };
        arms.push((variant, code));
    }
    assert!(arms.iter().any(|(v, _)| v == "_"), "{arms:?}");
    arms
}

/// Apps that refuse a publish whose body is `darn`.
struct Strict;

impl App for Strict {
    fn before_receive(&self, _from: &Device, msg: Incoming) -> Result<Incoming, Rejection> {
        match &msg {
            Incoming::Publish { body, .. } if body.as_text() == Some("darn") => {
                Err("no swearing".into())
            }
            _ => Ok(msg),
        }
    }
}

/// Sends `frames` as `user` in `room`; returns what it read before the close, and the close.
async fn publish_until_closed(
    url: &str,
    room: &str,
    user: &str,
    frames: &[Frame],
) -> (Vec<Frame>, CloseReason) {
    let (mut r, mut w) = room_member(url, room, user).await;
    for f in frames {
        w.send(f.clone()).await.unwrap();
    }
    let mut got = Vec::new();
    loop {
        match next_frame(&mut r).await {
            (Some(f), _) => got.push(f),
            (None, why) => return (got, why.expect("a close frame")),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_publish_closes_with_the_code_the_page_gives() {
    let closes = section("### Close codes of the room door");
    // The page against the door's source: every refusal a publish can meet, with its code.
    let arms = refusal_arms();
    let refusals = [
        RoomError::TooLarge { len: 2, limit: 1 },
        RoomError::RateLimited,
        RoomError::Refused("r".into()),
        RoomError::NotMember,
        RoomError::NoSuchRoom,
        RoomError::Busy,
        RoomError::History(chinwag_hub::HistoryFailure::new(
            chinwag_queue::QueueError::backend("h"),
        )),
    ];
    let variant = |e: &RoomError| {
        format!("{e:?}")
            .chars()
            .take_while(char::is_ascii_alphanumeric)
            .collect::<String>()
    };
    for (v, _) in &arms {
        assert!(
            v == "_" || refusals.iter().any(|e| &variant(e) == v),
            "the door answers RoomError::{v}: add it here and to the page"
        );
    }
    for e in &refusals {
        let code = arms
            .iter()
            .find(|(v, _)| *v == variant(e))
            .or_else(|| arms.iter().find(|(v, _)| v == "_"))
            .unwrap()
            .1;
        let row = row_with(&closes, &format!("`{}`", e.code()));
        assert!(
            row.starts_with(&format!("| {} |", code.0)),
            "{e:?} closes with {}: {row}",
            code.0
        );
    }

    // A real door: over the body limit, over the rate, refused by the application, after the
    // room was removed; and over the WebSocket message limit (a door with a smaller one).
    let mut cfg = config();
    cfg.limits = cfg.limits.with_message_rate(Some(Rate::new(1, 1)));
    let hub = Hub::builder()
        .config(cfg)
        .authenticator(common::authenticator())
        .app(Arc::new(Strict))
        .build();
    let (door, url) = room_door(RoomsDoor::new(hub.clone()), ws_config()).await;
    let limit = hub.config().limits.max_body_bytes;
    let check = |why: &CloseReason, code: CloseCode| {
        assert_eq!(why.code.0, code.0, "{why:?}");
        assert!(
            row_matching(&closes, &code.0.to_string(), &why.reason).is_some(),
            "the page's room-door closes have no row {} `{}`",
            code.0,
            why.reason
        );
    };
    let big = Frame::Text(vec![b'x'; limit + 1].into());
    let (got, why) = publish_until_closed(&url, "r1", "m1", &[big]).await;
    assert!(got.is_empty());
    check(&why, CloseCode::TOO_BIG);
    let one = Frame::Text(Bytes::from_static(b"1"));
    let two = Frame::Text(Bytes::from_static(b"2"));
    let (got, why) = publish_until_closed(&url, "r2", "m2", &[one.clone(), two]).await;
    assert_eq!(got, [one], "the first is published, the second closes");
    check(&why, CloseCode::RATE_LIMITED);
    let darn = Frame::Text(Bytes::from_static(b"darn"));
    let (_, why) = publish_until_closed(&url, "r3", "m3", &[darn]).await;
    check(&why, CloseCode::POLICY);
    assert_eq!(why.reason, "refused: no swearing");
    let (mut r4, mut w4) = room_member(&url, "gone", "m4").await;
    assert!(hub.remove_room("gone"));
    w4.send(Frame::Text(Bytes::from_static(b"anyone?")))
        .await
        .unwrap();
    let (f, why) = next_frame(&mut r4).await;
    assert_eq!(f, None);
    let why = why.expect("a close frame");
    check(&why, CloseCode::POLICY);
    assert_eq!(why.reason, RoomError::NotMember.to_string());
    // A WebSocket message limit above the body limit: a message over it is the WebSocket
    // layer's to refuse.
    let small = limit * 2;
    let (door2, url2) = room_door(
        RoomsDoor::new(hub.clone()),
        ws_config().with_max_message_size(small),
    )
    .await;
    let over = Frame::Text(vec![b'x'; small + 1].into());
    let (_, why) = publish_until_closed(&url2, "r5", "m5", &[over]).await;
    check(&why, CloseCode::TOO_BIG);
    let (_, row) = row_matching(&closes, "1009", &why.reason).unwrap();
    assert!(
        row.contains("WebSocket message limit"),
        "the WebSocket layer's close, not the hub's: {why:?}"
    );
    hub.shutdown(DEADLINE).await;
    door.shutdown(DEADLINE).await;
    door2.shutdown(DEADLINE).await;
}

// On the hub's clock, paused: seconds of pings and silence pass at once.
#[tokio::test(start_paused = true)]
async fn a_room_door_member_that_answers_pings_stays_and_one_that_answers_nothing_is_closed() {
    // The defaults the page quotes, and where they come from.
    let idle = SessionConfig::default()
        .idle_timeout
        .expect("an idle timeout");
    assert!(says(&format!(
        "**The door closes a member from which nothing at all arrived for {} s**, with 1001 \
         (`idle timeout`)",
        idle.as_secs()
    )));
    let room_limits = section("### Limits of the room door");
    assert!(
        row_with(&room_limits, "| silence from the client |")
            .contains(&format!("| {} s |", idle.as_secs()))
    );
    let src = squeeze(ROOM_DOOR_RS);
    assert!(src.contains("server:ServerConfig::default(),"));
    assert!(src.contains("server.session=server.session.clone().with_heartbeat_interval(None);"));
    assert!(
        !src.contains("with_idle_timeout"),
        "update the page's liveness"
    );
    assert!(squeeze(FACADE_SERVER_RS).contains("letsessions=self.sessions.unwrap_or_default();"));
    let ws = WsConfig::default();
    assert!(says(&format!(
        "pings a member from which no frame arrived for {} s",
        ws.ping_interval.unwrap().as_secs()
    )));
    assert!(says(&format!(
        "when no frame comes within {} s after the ping",
        ws.pong_wait.as_secs()
    )));
    let queue = SessionConfig::default();
    assert!(row_with(&room_limits, "| send queue |").contains(&format!(
        "| {} messages, {} MiB |",
        grouped(queue.queue_max_messages as u64),
        queue.queue_max_bytes >> 20
    )));
    assert_eq!(
        queue.overflow,
        OverflowPolicy::Close,
        "update the page: slow members"
    );

    // A member that answers every ping but sends nothing stays through many idle timeouts (2 s
    // here; pinged every 50 ms); one that answers nothing is closed at the idle timeout.
    let hub = common::hub(config(), None);
    let server = ServerConfig::default()
        .with_session(SessionConfig::default().with_idle_timeout(Some(Duration::from_secs(2))));
    let ws = ws_config().with_ping_interval(Some(Duration::from_millis(50)));
    let (door, url) = room_door(RoomsDoor::new(hub.clone()).with_server_config(server), ws).await;
    let mut listener = ask(
        &url,
        "?room=quiet",
        &[bearer_header(&common::token("lis", "web"))],
    )
    .await;
    assert_eq!(listener.status, 101, "{}", listener.head);
    let answering = tokio::spawn(async move {
        let mut pings = 0;
        while let Some((op, payload)) = read_ws_frame(&mut listener.socket).await {
            if op == 0x9 {
                pings += 1;
                // A masked pong with the ping's payload (mask 0).
                let mut pong = vec![0x8a, 0x80 | payload.len() as u8, 0, 0, 0, 0];
                pong.extend_from_slice(&payload);
                if listener.socket.write_all(&pong).await.is_err() {
                    break;
                }
            }
        }
        pings
    });
    let mut silent = ask(
        &url,
        "?room=quiet",
        &[bearer_header(&common::token("mute", "web"))],
    )
    .await;
    assert_eq!(silent.status, 101, "{}", silent.head);
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(
        hub.connections_of("lis").len(),
        1,
        "it answered pings: it stays"
    );
    assert!(
        hub.connections_of("mute").is_empty(),
        "it answered nothing: closed"
    );
    let close = loop {
        match read_ws_frame(&mut silent.socket).await {
            Some((0x9, _)) => continue,
            Some((0x8, payload)) => break payload,
            other => panic!("{other:?}"),
        }
    };
    let code = u16::from_be_bytes([close[0], close[1]]);
    let reason = std::str::from_utf8(&close[2..]).unwrap();
    assert_eq!((code, reason), (CloseCode::GOING_AWAY.0, "idle timeout"));
    let closes = section("### Close codes of the room door");
    assert!(row_matching(&closes, "1001", reason).is_some());
    hub.shutdown(DEADLINE).await;
    door.shutdown(DEADLINE).await;
    assert!(answering.await.unwrap() > 0, "it was pinged and answered");
}

// ---- the tok door (section 10) ----------------------------------------------------------------

const TOK_RS: &str = include_str!("../src/doors/tok.rs");

/// Forwards every application message, (from, body), into a channel.
struct Forward(mpsc::UnboundedSender<(String, Bytes)>);

impl App for Forward {
    fn on_receive<'a>(
        &'a self,
        _hub: &'a Hub,
        conn: &'a chinwag_hub::Conn,
        body: Body,
    ) -> chinwag_hub::auth::BoxFuture<'a, Result<Option<Body>, chinwag_hub::Rejection>> {
        let _ = self
            .0
            .send((conn.device().to_string(), body.bytes().clone()));
        Box::pin(async { Ok(None) })
    }
}

/// A hub with the page's example key (and `config`), whose application messages come out of
/// the receiver.
fn tok_hub(config: HubConfig) -> (Hub, mpsc::UnboundedReceiver<(String, Bytes)>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let jwt = JwtAuthenticator::new(JwtConfig::new(JwtKey::hs256(DOC_SECRET)));
    let hub = Hub::builder()
        .config(config)
        .authenticator(Arc::new(jwt))
        .app(Arc::new(Forward(tx)))
        .build();
    (hub, rx)
}

/// A token for `user` signed with the page's example key.
fn doc_key_token(user: &str) -> String {
    chinwag_hub::auth::JwtIssuer::hs256(DOC_SECRET.as_bytes()).issue(
        user,
        Some("d"),
        Duration::from_secs(3600),
    )
}

/// The page's goodbye: the text `bye <code> <reason>`.
fn page_bye() -> ByeFn {
    Arc::new(|c: &Close| Some(Bytes::from(format!("bye {} {}", c.code.0, c.reason))))
}

fn tok_door(hub: &Hub, server: Option<ServerConfig>) -> (DoorHandle, SocketAddr) {
    let acc = chinwag_transport::tcp::TcpAcceptor::bind(
        "127.0.0.1:0".parse().unwrap(),
        Default::default(),
    )
    .unwrap();
    let mut d = TokDoor::new(hub.clone()).with_bye(page_bye());
    if let Some(s) = server {
        d = d.with_server_config(s);
    }
    let door = d.serve(acc);
    let addr = addr_of(&door);
    (door, addr)
}

async fn tok_write(s: &mut TcpStream, body: &[u8]) {
    let mut b = u32::try_from(body.len()).unwrap().to_be_bytes().to_vec();
    b.extend_from_slice(body);
    // (A connection the server dropped may refuse the write; the read says what happened.)
    let _ = s.write_all(&b).await;
}

/// The next frame; `None` at the end of the stream (or a reset).
async fn tok_read(s: &mut TcpStream) -> Option<Vec<u8>> {
    tokio::time::timeout(DEADLINE, async {
        let mut len = [0u8; 4];
        s.read_exact(&mut len).await.ok()?;
        let mut b = vec![0u8; u32::from_be_bytes(len) as usize];
        s.read_exact(&mut b).await.ok()?;
        Some(b)
    })
    .await
    .expect("a frame or the end within the deadline")
}

/// Checks a goodbye `bye <code> <reason>` against the page's table of tok closes; returns the
/// code.
fn tok_goodbye(frame: &[u8]) -> u16 {
    let text = std::str::from_utf8(frame).unwrap();
    let rest = text.strip_prefix("bye ").expect("the page's goodbye");
    let (code, reason) = rest.split_once(' ').unwrap();
    let table = section("### Closing a tok connection");
    assert!(
        row_matching(&table, code, reason).is_some(),
        "the page's tok closes have no row {code} `{reason}`"
    );
    code.parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tok_transcript_is_what_a_door_says() {
    assert!(says(
        "on a server whose goodbye is the text `bye <code> <reason>`"
    ));
    let token = doc_token();
    assert!(says(&format!(
        "The token ({} bytes, `0x{:x}`)",
        token.len(),
        token.len()
    )));
    let (hub, mut app) = tok_hub(config());
    let (door, addr) = tok_door(&hub, None);
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut others = Vec::new();
    let mut signed_in = false;
    let lines = block("<!-- protocol_doc: tok-transcript -->");
    assert!(lines.len() >= 4);
    for line in lines {
        let (who, rest) = line.split_once(": ").unwrap();
        let (len, content) = rest.split_once(' ').unwrap();
        assert_eq!(len.len(), 8, "{line}");
        let len = u32::from_str_radix(len, 16).unwrap();
        assert_eq!(
            len as usize,
            content.len(),
            "{line}: the prefix is the length"
        );
        let mut frame = len.to_be_bytes().to_vec();
        frame.extend_from_slice(content.as_bytes());
        match who {
            "C" if !signed_in => {
                assert_eq!(content, token, "the first frame is the page's token");
                s.write_all(&frame).await.unwrap();
                signed_in = true;
            }
            "C" => {
                s.write_all(&frame).await.unwrap();
                let (from, body) = tokio::time::timeout(DEADLINE, app.recv())
                    .await
                    .expect("the application gets it")
                    .unwrap();
                assert_eq!(from, "alice/phone");
                assert_eq!(&body[..], content.as_bytes(), "{line}");
            }
            "S" => {
                if let Some(bye) = content.strip_prefix("bye ") {
                    assert!(
                        bye.starts_with(&format!("{} ", CloseCode::REPLACED.0)),
                        "the page's goodbye is a replacement: {line}"
                    );
                    let mut other = TcpStream::connect(addr).await.unwrap();
                    tok_write(&mut other, token.as_bytes()).await;
                    others.push(other);
                } else {
                    hub.send_as(
                        Some(&Device::new("bob", "laptop")),
                        "alice",
                        Body::text(content),
                        SendOptions::default(),
                    )
                    .await
                    .unwrap();
                }
                let mut got = vec![0u8; frame.len()];
                tokio::time::timeout(DEADLINE, s.read_exact(&mut got))
                    .await
                    .expect("a frame within the deadline")
                    .unwrap();
                assert_eq!(got, frame, "{line}");
                if content.starts_with("bye ") {
                    tok_goodbye(content.as_bytes());
                }
            }
            _ => panic!("a transcript line is `C: ` or `S: `: {line}"),
        }
    }
    assert_eq!(
        tok_read(&mut s).await,
        None,
        "the stream ends after the goodbye"
    );
    drop(others);
    hub.shutdown(DEADLINE).await;
    door.shutdown(DEADLINE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tok_door_closes_as_the_page_says() {
    let (hub, _app) = tok_hub(config().with_auth_timeout(Duration::from_millis(300)));
    let (door, addr) = tok_door(&hub, None);
    // A refused token: the goodbye (4001), then the end.
    let mut s = TcpStream::connect(addr).await.unwrap();
    tok_write(&mut s, b"garbage").await;
    let bye = tok_read(&mut s).await.expect("a goodbye");
    assert_eq!(tok_goodbye(&bye), CloseCode::AUTH_FAILED.0);
    assert_eq!(tok_read(&mut s).await, None);
    // No token within the auth timeout: 4009.
    let mut s = TcpStream::connect(addr).await.unwrap();
    let bye = tok_read(&mut s).await.expect("a goodbye");
    assert_eq!(tok_goodbye(&bye), CloseCode::AUTH_TIMEOUT.0);
    assert_eq!(tok_read(&mut s).await, None);
    // Whitespace around the token is ignored; a kick says goodbye.
    let mut s = TcpStream::connect(addr).await.unwrap();
    tok_write(&mut s, format!(" {}\r\n", doc_key_token("kim")).as_bytes()).await;
    hub.send("kim", Body::text("signed in"), SendOptions::default())
        .await
        .unwrap();
    assert_eq!(tok_read(&mut s).await.as_deref(), Some(&b"signed in"[..]));
    assert_eq!(hub.kick("kim", None, "out you go"), 1);
    let bye = tok_read(&mut s).await.expect("a goodbye");
    assert_eq!(bye, b"bye 4004 out you go");
    assert_eq!(tok_goodbye(&bye), CloseCode::KICKED.0);
    assert_eq!(tok_read(&mut s).await, None);
    // A frame over the limit ends the connection without a goodbye, from its prefix alone;
    // a frame of the limit goes out whole.
    let max = hub
        .config()
        .limits
        .max_body_bytes
        .max(hub.config().tokens.max_token_len);
    assert!(format!("{:?}", TokDoor::new(hub.clone())).contains(&format!("max_frame: {max}")));
    let tok_limits = section("### Limits of the tok door");
    assert!(
        row_with(&tok_limits, "| frame, either direction |").contains(&format!(
            "| {} KiB ({} bytes)",
            max >> 10,
            grouped(max as u64)
        ))
    );
    let mut s = TcpStream::connect(addr).await.unwrap();
    tok_write(&mut s, doc_key_token("max").as_bytes()).await;
    hub.send("max", Body::binary(vec![1u8; max]), SendOptions::default())
        .await
        .unwrap();
    assert_eq!(tok_read(&mut s).await.map(|f| f.len()), Some(max));
    let over = u32::try_from(max + 1).unwrap().to_be_bytes();
    s.write_all(&over).await.unwrap();
    assert_eq!(tok_read(&mut s).await, None, "no goodbye");
    hub.shutdown(DEADLINE).await;
    door.shutdown(DEADLINE).await;

    // Frames over the rate are dropped without a word; the strikes close (4008).
    let mut cfg = config();
    cfg.limits = cfg
        .limits
        .with_message_rate(Some(Rate::new(1, 1)))
        .with_rate_limit_strikes(2);
    let (hub, mut app) = tok_hub(cfg);
    assert!(says(&format!(
        "the {}th refusal in a row for the rate closes the connection",
        HubConfig::default().limits.rate_limit_strikes
    )));
    let (door, addr) = tok_door(&hub, None);
    let mut s = TcpStream::connect(addr).await.unwrap();
    tok_write(&mut s, doc_key_token("rae").as_bytes()).await;
    for f in ["one", "two", "three"] {
        tok_write(&mut s, f.as_bytes()).await;
    }
    let bye = tok_read(&mut s).await.expect("only the goodbye");
    assert_eq!(tok_goodbye(&bye), CloseCode::RATE_LIMITED.0);
    assert_eq!(tok_read(&mut s).await, None);
    let (_, first) = app.recv().await.unwrap();
    assert_eq!(&first[..], b"one");
    assert!(app.try_recv().is_err(), "the others were dropped");
    hub.shutdown(DEADLINE).await;
    door.shutdown(DEADLINE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_tok_client_is_never_closed_for_idleness() {
    assert!(says(
        "Over TCP the door never closes a connection for being quiet: it has no idle timeout, and \
         a client need not send anything after its token. By default the server sends no \
         heartbeat either"
    ));
    // The heartbeat is the configured ping only; no idle close over TCP.
    assert!(
        squeeze(TOK_RS).contains(".with_heartbeat_interval(self.ping.as_ref().map(|p|p.every));")
    );
    assert!(squeeze(TOK_RS).contains("if!over_ws{session=session.with_idle_timeout(None);}"));
    assert!(
        !include_str!("../../chinwag-transport/src/tcp.rs")
            .to_lowercase()
            .contains("keepalive"),
        "the page says the server sets no TCP keepalive"
    );
    // Sessions that would be idle after 100 ms; the door turns that off. The quiet client
    // signed in before another client's auth timeout (500 ms) ran out: it is still there after.
    let (hub, _app) = tok_hub(config().with_auth_timeout(Duration::from_millis(500)));
    let server = ServerConfig::default()
        .with_session(SessionConfig::default().with_idle_timeout(Some(Duration::from_millis(100))));
    let (door, addr) = tok_door(&hub, Some(server));
    let mut quiet = TcpStream::connect(addr).await.unwrap();
    tok_write(&mut quiet, doc_key_token("quiet").as_bytes()).await;
    hub.send("quiet", Body::text("signed in"), SendOptions::default())
        .await
        .unwrap();
    assert_eq!(
        tok_read(&mut quiet).await.as_deref(),
        Some(&b"signed in"[..])
    );
    let mut late = TcpStream::connect(addr).await.unwrap();
    let bye = tok_read(&mut late).await.expect("a goodbye");
    assert_eq!(tok_goodbye(&bye), CloseCode::AUTH_TIMEOUT.0);
    let r = hub
        .send("quiet", Body::text("still here"), SendOptions::live_only())
        .await
        .unwrap();
    assert_eq!(r.delivered, 1);
    assert_eq!(
        tok_read(&mut quiet).await.as_deref(),
        Some(&b"still here"[..])
    );
    hub.shutdown(DEADLINE).await;
    door.shutdown(DEADLINE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tok_door_always_takes_its_token_from_the_first_frame() {
    assert!(says(
        "The first frame is the token whatever the server says about tokens on other doors: \
         first-message logins turned off (`TokenSources::first_message`, `chinwag-server`'s \
         `auth.first_message`) or anonymous connections let in change nothing here."
    ));
    for cfg in [
        config().with_tokens(TokenSources::default().with_first_message(false)),
        config().with_anonymous(true),
    ] {
        let (hub, _app) = tok_hub(cfg);
        let (door, addr) = tok_door(&hub, None);
        let mut s = TcpStream::connect(addr).await.unwrap();
        tok_write(&mut s, doc_key_token("tokker").as_bytes()).await;
        common::until(&hub, "signed in by its first frame", |h| {
            h.connections_of("tokker").len() == 1
        })
        .await;
        hub.shutdown(DEADLINE).await;
        door.shutdown(DEADLINE).await;
    }
}
