// GENERATED from chinwag.d.ts by scripts/build-cjs.mjs: do not edit (npm run build).
// Type declarations of chinwag.js: a gotalk v1 client over WebSocket for browsers and Node.
// SPDX-License-Identifier: MIT OR Apache-2.0

/** Anything sent as a payload: a string goes out as a WebSocket text message (UTF-8). */
export type Payload = Uint8Array | ArrayBuffer | ArrayBufferView | string;

/** Any JSON-encodable value. */
export type JSONValue = unknown;

/** The constructor of a WebSocket: the browser's global, or `WebSocket` from the `ws` package. */
export interface WebSocketConstructor {
  new (url: string, protocols?: string | string[]): WebSocketLike;
}

/** The part of the WebSocket API chinwag.js uses. */
export interface WebSocketLike {
  readonly readyState: number;
  binaryType: string;
  send(data: string | Uint8Array | ArrayBuffer): void;
  close(code?: number, reason?: string): void;
  onopen: ((ev: any) => void) | null;
  onmessage: ((ev: { data: any }) => void) | null;
  onerror: ((ev: any) => void) | null;
  onclose: ((ev: { code?: number; reason?: string }) => void) | null;
}

/** Options of `connect`. Every limit has a default in `DEFAULTS`. */
export interface ConnectOptions {
  /** WebSocket constructor; defaults to `globalThis.WebSocket` (pass `ws`'s in Node < 22). */
  WebSocket?: WebSocketConstructor;
  /** WebSocket sub-protocols to offer. */
  protocols?: string | string[];
  /** Largest payload accepted from the peer, bytes (default 16 MiB). Larger: protocol error 2, close. */
  maxPayload?: number;
  /** Longest operation/notification name accepted from the peer, UTF-8 bytes (default 1024). */
  maxNameLength?: number;
  /** Messages that may wait while not connected (default 1000); over it calls fail with 'queue_full'. */
  maxQueue?: number;
  /** Automatic retries after a RetryResult (default 3). */
  maxRetries?: number;
  /** Longest RetryResult wait honoured, ms (default 30000); longer fails with 'retry_refused'. */
  maxRetryWait?: number;
  /** Heartbeat interval, ms (default 20000; 0 = none). Heartbeats carry load 0 and the UNIX time. */
  heartbeatInterval?: number;
  /** Close with protocol error 3 after this many ms without a message (default 0 = never). */
  readTimeout?: number;
  /** Default per-request timeout, ms (default 0 = none). */
  requestTimeout?: number;
  /** Reconnect when the connection is lost (default true). */
  keepAlive?: boolean;
  /** Backoff base, ms (default 500): attempt n waits random [0, min(reconnectMax, base * 2^n)). */
  reconnectBase?: number;
  /** Backoff ceiling, ms (default 30000). */
  reconnectMax?: number;
  /** Reconnect attempts in a row before giving up (default Infinity). */
  reconnectAttempts?: number;
  /** Concurrent stream requests the peer may open towards this client (default 64). */
  maxIncomingStreams?: number;
  /** Wait (ms) of the RetryResult sent when maxIncomingStreams is reached (default 1000). */
  incomingStreamRetryWait?: number;
  /** Unconsumed result bytes buffered per stream (default 16 MiB); over it the stream fails. */
  maxStreamBuffer?: number;
  /** Called for every heartbeat received. */
  onHeartbeat?: (hb: Heartbeat) => void;
}

export declare const DEFAULTS: Readonly<Required<Omit<ConnectOptions, 'WebSocket' | 'protocols' | 'onHeartbeat'>>>;
export declare const PROTOCOL_VERSION: 1;
export declare const ProtocolErrorCode: Readonly<{ ABNORMAL: 0; UNSUPPORTED: 1; INVALID_MESSAGE: 2; TIMEOUT: 3 }>;

export type ErrorCode =
  | 'remote' // the peer answered with an ErrorResult; message = its text
  | 'closed' // the connection closed (reason says how)
  | 'queue_full'
  | 'retry_exhausted'
  | 'retry_refused'
  | 'timeout'
  | 'aborted'
  | 'protocol'
  | 'bad_json'
  | 'too_large'
  | 'stream';

export type CloseReason =
  | 'closed' // close() was called
  | 'transport' // the WebSocket closed or could not connect
  | 'protocol' // the peer sent a protocol error `f`
  | 'malformed' // the peer sent a malformed message; we sent f00000002
  | 'timeout' // readTimeout expired; we sent f00000003
  | 'unsupported'; // protocol version mismatch (either side); never reconnects

export declare class ChinwagError extends Error {
  /** An ErrorCode; on a ChatError a ChatErrorCode. */
  readonly code: ErrorCode | ChatErrorCode;
  /** For code 'closed': why the connection closed. */
  readonly reason?: CloseReason;
  /** For protocol errors: the gotalk code (0..3). */
  readonly protocolCode?: number;
  /** For retry errors: the wait the peer asked for, ms. */
  readonly wait?: number;
  /** For 'remote' errors: the operation. */
  readonly op?: string;
  constructor(code: ErrorCode, message: string, props?: object);
}

export interface Heartbeat {
  /** 0 (idle) .. 65535 (fully loaded). */
  load: number;
  /** The sender's clock (second precision). */
  time: Date;
}

export interface CloseInfo {
  reason: CloseReason;
  message: string;
  willReconnect: boolean;
  /** ms until the reconnect attempt, when willReconnect. */
  reconnectIn?: number;
  protocolCode?: number;
  wsCode?: number;
}

export interface RetryInfo {
  op: string;
  wait: number;
  attempt: number;
  text: string;
}

export interface RequestOptions {
  /** ms; overrides `requestTimeout`. */
  timeout?: number;
  signal?: AbortSignal;
}

export interface HandlerContext {
  op: string;
  connection: Connection;
  /** The request id chosen by the peer (4 bytes as a latin1 string). */
  id: string;
}

/** Async iterable of result chunks (Uint8Array, or decoded JSON for `requestStream`). */
export declare class ResultStream<T = Uint8Array> implements AsyncIterable<T> {
  readonly done: boolean;
  [Symbol.asyncIterator](): AsyncIterator<T>;
  /** Every remaining chunk once the stream ends; rejects like iteration does. */
  collect(): Promise<T[]>;
}

/** A streaming request: write parts, end, iterate the results. */
export declare class StreamRequest extends ResultStream<Uint8Array> {
  readonly op: string;
  /** "!000".."!zzz" once sent, else null. */
  readonly id: string | null;
  /** Sends a part (empty chunks are skipped). Throws ChinwagError when ended, failed or the queue is full. */
  write(chunk: Payload): void;
  /** Ends the request stream (the size-0 part), after an optional last chunk. */
  end(chunk?: Payload): void;
  bytes(): Promise<Uint8Array>;
  text(): Promise<string>;
  json(): Promise<any>;
}

export type ConnectionState = 'connecting' | 'open' | 'reconnecting' | 'closed';

export interface ConnectionEvents {
  open: void;
  close: CloseInfo;
  heartbeat: Heartbeat;
  retry: RetryInfo;
  error: Error;
}

export declare class Connection {
  constructor(url?: string, options?: ConnectOptions);
  readonly url: string;
  readonly options: Readonly<ConnectOptions>;
  readonly state: ConnectionState;
  /** Why the connection last closed, or null. */
  readonly closeInfo: CloseInfo | null;
  readonly stats: { opens: number; reconnects: number; retries: number; heartbeatsReceived: number; heartbeatsSent: number };
  /** Messages waiting for the connection. */
  readonly queued: number;
  /** Requests sent and awaiting their result. */
  readonly pending: number;
  onHeartbeat: ((hb: Heartbeat) => void) | null;

  on<K extends keyof ConnectionEvents>(event: K, fn: (arg: ConnectionEvents[K]) => void): this;
  off<K extends keyof ConnectionEvents>(event: K, fn: (arg: ConnectionEvents[K]) => void): this;
  once<K extends keyof ConnectionEvents>(event: K, fn: (arg: ConnectionEvents[K]) => void): this;
  once<K extends keyof ConnectionEvents>(event: K): Promise<ConnectionEvents[K]>;
  /** Resolves when open; rejects if the connection closes for good first. */
  opened(): Promise<this>;

  /** JSON request; resolves with the decoded result (streamed results are concatenated first). */
  request<R = any>(op: string, value?: JSONValue, opts?: RequestOptions): Promise<R>;
  /** Raw request; resolves with the result bytes. */
  requestBytes(op: string, payload?: Payload, opts?: RequestOptions): Promise<Uint8Array>;
  /** JSON request whose result chunks (S parts, or one R) are iterated, each decoded as JSON. */
  requestStream<T = any>(op: string, value?: JSONValue, opts?: RequestOptions): ResultStream<T>;
  /** Raw request whose result chunks are iterated. */
  requestStreamBytes(op: string, payload?: Payload, opts?: RequestOptions): ResultStream<Uint8Array>;
  /** A streaming request (s, p..., empty p). */
  streamRequest(op: string, opts?: RequestOptions): StreamRequest;
  /** JSON notification. Throws ChinwagError ('queue_full' | 'closed'). */
  notify(name: string, value?: JSONValue): void;
  notifyBytes(name: string, payload?: Payload): void;
  /** Sends a heartbeat now; load 0..1. Returns false when not open. */
  sendHeartbeat(load?: number): boolean;

  /** The peer may call `op` (JSON). A throw answers E with its message. '' = fallback. null removes. */
  handle(op: string, fn: ((value: any, ctx: HandlerContext) => unknown) | null): this;
  handleBytes(op: string, fn: ((payload: Uint8Array, ctx: HandlerContext) => Payload | void | Promise<Payload | void>) | null): this;
  /**
   * Streaming handler: gets the request's chunks; returns an (async) iterable of result chunks
   * (sent as S parts, then the end) or one payload (sent as R).
   */
  handleStream(
    op: string,
    fn:
      | ((input: AsyncIterable<Uint8Array>, ctx: HandlerContext) => AsyncIterable<Payload> | Iterable<Payload> | Payload | Promise<AsyncIterable<Payload> | Iterable<Payload> | Payload>)
      | null,
  ): this;
  handleNotification(name: string, fn: ((value: any, name: string) => void) | null): this;
  handleNotificationBytes(name: string, fn: ((payload: Uint8Array, name: string) => void) | null): this;

  /** Closes for good: no reconnect; pending and queued calls fail with 'closed'. */
  close(): Promise<void>;
}

/** Opens a connection (in a browser the url defaults to the directory chinwag.js was served from). */
export declare function connect(url?: string, options?: ConnectOptions): Connection;

// ---- codec (pure functions) ---------------------------------------------------------------------

export type MessageType = 'r' | 's' | 'p' | 'R' | 'S' | 'E' | 'e' | 'n' | 'h' | 'f';

export interface Message {
  type: MessageType;
  /** 4 bytes as a latin1 string (r s p R S E e). */
  id?: string;
  /** r s n */
  name?: string;
  /** e, ms */
  wait?: number;
  /** payload size (0 for h and f) */
  size?: number;
  /** h */
  load?: number;
  /** h, UNIX seconds */
  time?: number;
  /** f */
  code?: number;
  /** set by the decoders */
  payload?: Uint8Array;
}

export interface Limits {
  maxPayload: number;
  maxNameLength: number;
}

export declare function headerLength(type: MessageType, nameLength?: number): number;
export declare function parseHeader(buf: Uint8Array, off?: number, limits?: Limits): { msg: Message; length: number } | null;
export declare function encodeHeader(msg: Message): Uint8Array;
export declare function encodeFramed(msg: Message, payload?: Payload): [Uint8Array] | [Uint8Array, Uint8Array | string];
export declare function encodeMessage(msg: Message, payload?: Payload): Uint8Array;
export declare function encodeVersion(version?: number): Uint8Array;
export declare function payloadSize(payload: Payload | null | undefined): number;
export declare function requestId(n: number): string;
export declare function streamRequestId(n: number): string;
export declare function decodeJSON(bytes: Uint8Array): any;
export declare function encodeJSON(value: JSONValue): string;

export declare class StreamDecoder {
  constructor(limits?: Partial<Limits>, opts?: { expectVersion?: boolean });
  push(bytes: Payload): Array<Message | { type: 'version'; version: number }>;
  readonly buffered: number;
}

export declare class FrameDecoder {
  constructor(limits?: Partial<Limits>, opts?: { expectVersion?: boolean });
  push(frame: Uint8Array | string): Message | { type: 'version'; version: number } | null;
}

/**
 * Sets the WebSocket constructor used when the options give none and there is no global
 * `WebSocket` (Node < 22; the package's Node entry points do this with `ws` when it is
 * installed). Returns the previous one.
 */
export declare function useWebSocket(WS: WebSocketConstructor | null): WebSocketConstructor | null;

// ---- chat client (docs/chat-protocol.md) ----------------------------------------------------------

/** What to do after a close (the `reconnect` field of `bye`, and the close-code table). */
export type ReconnectAdvice = 'never' | 'backoff' | 'after_refresh' | 'at_once';

/** The close-code table: code → name and advice. */
export declare const CLOSE_CODES: Readonly<Record<number, Readonly<{ name: string; reconnect: ReconnectAdvice }>>>;

/** The table's advice for a code (`unknown`/`backoff` when it is not in the table). */
export declare function closeAdvice(code: number): { code: number; name: string; reconnect: ReconnectAdvice };

/** The `exp` claim of a JWT in ms since the epoch, or null. */
export declare function tokenExpiry(token: string): number | null;

/** Why a token is asked for. `refused`: the error code the previous token was refused with. */
export interface TokenRequest {
  reason: 'connect' | 'reconnect' | 'refresh';
  refused?: string | null;
}

/** A token, or a function (possibly async) called for every connection attempt and refresh. */
export type TokenSource = string | ((req: TokenRequest) => string | Promise<string>);

export interface ChatOptions {
  /** Required: the token (a JWT), or a function that fetches one. */
  token: TokenSource;
  /** WebSocket constructor; defaults to the global one (or `ws` via the Node entry on Node < 22). */
  WebSocket?: WebSocketConstructor;
  /** 'auth' (default: first-message login, precise errors) or 'subprotocol' (`bearer.<token>`; a refusal is an HTTP 401 the browser cannot see). */
  tokenIn?: 'auth' | 'subprotocol';
  /** Subprotocols to offer (with 'subprotocol' the default is ['chinwag.v1'] besides the token). */
  protocols?: string | string[] | null;
  /** Acknowledge direct messages automatically, after the 'message' listeners ran (default true). */
  autoAck?: boolean;
  /** Rejoin the rooms this client is in after a reconnect, before 'signed-in' (default true). */
  rejoin?: boolean;
  /** Reconnect when the close-code table says so (default true). */
  reconnect?: boolean;
  /** Backoff base, ms (default 500): attempt n waits random [0, min(reconnectMax, base * 2^n)). */
  reconnectBase?: number;
  /** Backoff ceiling, ms (default 30000). */
  reconnectMax?: number;
  /** Reconnect attempts in a row before giving up (default Infinity). */
  reconnectAttempts?: number;
  /** Signed in for this long (ms, default 5000) = "stayed up": the backoff starts again at attempt 0. */
  stableAfter?: number;
  /** With a token function: `refresh` this many ms before the JWT's exp (default 30000; 0 = never). */
  refreshBefore?: number;
  /** Heartbeat interval, ms (default 20000). */
  heartbeatInterval?: number;
  /** The connection counts as lost after this many ms without a message from the server (default 70000). */
  readTimeout?: number;
  /** Calls that may wait for the next sign-in (default 1000); over it: 'queue_full'. */
  maxWaiting?: number;
  /** Highest direct-message id already processed (e.g. stored by the app); lower ids are dropped. */
  lastMessageId?: number;
  /**
   * Fill a gap seen on a live subscription (a room's seq jumped: the server's send queue dropped
   * publishes) from the room's history (default true): the missing publishes are emitted as
   * 'room' events, in order, before the live ones that came meanwhile (held until then), and a
   * 'gap' event says whether it worked. false: only 'gap' (`filled: false`, `reason: 'off'`).
   */
  fillGaps?: boolean;
  /** A gap of more publishes than this (default 1000) is not filled: 'gap' with reason 'too_many'. */
  maxGapFill?: number;
  /** Live publishes of one room held while its gap is filled (default 1000); one more and the fill gives up: reason 'overflow'. */
  maxGapHold?: number;
  /** Other options of the underlying gotalk Connection. */
  connection?: ConnectOptions;
}

export declare const CHAT_DEFAULTS: Readonly<Required<Omit<ChatOptions, 'token' | 'WebSocket' | 'connection'>>>;

/** `{user, device}` of a sender; null when the server itself sent it. */
export interface Sender {
  user: string;
  device: string;
}

export interface Identity {
  user: string;
  device: string;
  /** The connection's id on the server. */
  conn: number;
  /** Its place in sign-on order (larger = newer). */
  seq: number;
}

/** A body is text (`body`) or binary (`body_base64`, also decoded into `bytes`). */
interface Body {
  body?: string;
  body_base64?: string;
  bytes?: Uint8Array;
}

/** The `message` notification: a direct message. */
export interface DirectMessage extends Body {
  /** Increasing per user. */
  id: number;
  from: Sender | null;
  /** UNIX ms. */
  sent_at: number;
}

/** The `room` notification: a publish (room `*`: a broadcast of the server). */
export interface RoomMessage extends Body {
  room: string;
  epoch: number;
  seq: number;
  from: Sender | null;
  sent_at: number;
}

export interface PresenceEvent {
  room: string;
  user: string;
  device: string;
  event: 'join' | 'leave';
}

/** The `bye` notification: the server is about to close the connection. */
export interface Bye {
  code: number;
  name: string;
  reason: string;
  reconnect: ReconnectAdvice;
}

/** Why a connection ended: a `bye`, the WebSocket close code, or a refused/failed sign-in (code 0). */
export interface CloseAdvice {
  code: number;
  name: string;
  reason: string;
  reconnect: ReconnectAdvice;
  /** For a refused sign-in: the ChatError. */
  error?: ChatError;
}

export interface Disconnected extends CloseAdvice {
  willReconnect: boolean;
  /** ms until the next attempt, when willReconnect. */
  delay?: number;
}

export interface RoomState {
  room: string;
  epoch: number;
  seq: number;
  members: number;
  protected: boolean;
  /** Only for a join with `since` (every rejoin after a reconnect that saw a publish): whether exactly the missed publishes were written (before this result). */
  recovered?: boolean;
  /** When not recovered: 'no_history' | 'epoch_changed' | 'ahead' | 'too_many' | 'trimmed' | 'unavailable'. */
  reason?: string;
  /** Publishes written from the room's history. */
  missed?: number;
}

/**
 * Why a gap was not filled: 'off' (fillGaps false), 'not_signed_in' (seen while rejoining after
 * a reconnect), 'no_history' (the room keeps none: the history request said no_such_room, or a
 * rejoin said so), 'not_member', 'unavailable' (history_unavailable), 'epoch_changed' (the
 * history is of another epoch, or a publish of a new epoch came), 'trimmed' (the history no
 * longer holds them), 'missing' (the history page did not have them), 'too_many' (over
 * maxGapFill), 'overflow' (over maxGapHold held), or the code of another error of `history`.
 */
export type GapReason =
  | 'off'
  | 'not_signed_in'
  | 'no_history'
  | 'not_member'
  | 'unavailable'
  | 'epoch_changed'
  | 'trimmed'
  | 'missing'
  | 'too_many'
  | 'overflow'
  | (string & {});

/**
 * Publishes `from`..`to` of a room (in `epoch`) that a live subscription did not get (a seq
 * jumped). Emitted just before the 'room' event of the publish after them. `filled: true`: they
 * were read from the room's history and emitted (as 'room' events, just before this); `filled:
 * false`: they are missed, for `reason` (`error`: the ChatError of the history request, if one failed).
 */
export interface GapEvent {
  room: string;
  epoch: number;
  from: number;
  to: number;
  filled: boolean;
  reason?: GapReason;
  error?: ChatError;
}

/** Where a client stands in a room: the epoch and seq of the last publish it emitted. */
export interface RoomPosition {
  epoch: number;
  seq: number;
}

export interface HistoryPage {
  room: string;
  epoch: number;
  /** The oldest seq the history holds (last + 1: none). */
  first: number;
  last: number;
  publications: RoomMessage[];
}

export interface SendResult {
  id: number;
  delivered: number;
  failed: number;
  queued: boolean;
  /** Its place in the conversation's history, when the server kept it there. */
  seq?: number;
}

/** A direct message of a conversation's history. */
export interface ConversationMessage {
  seq: number;
  /** The id of the 'message' event the recipient got. */
  id: number;
  from: { user: string; device: string };
  to: string;
  sent_at: number;
  body?: string;
  body_base64?: string;
}

export interface ConversationPage {
  with: string;
  /** 0: nothing kept yet. */
  epoch: number;
  /** The oldest seq the history holds (last + 1: none). */
  first: number;
  last: number;
  messages: ConversationMessage[];
}

export interface PublishResult {
  seq: number;
  delivered: number;
  dropped: number;
  filtered: number;
}

export interface MembersPage {
  /** `node`: the member's cluster node id (0 on a server on its own); `conn` its connection there. */
  members: Array<{ conn: number; node: number; user: string; device: string }>;
  next: number | null;
}

export interface OnlineResult {
  /** For each user asked about: device ids of its connections ([] = offline). */
  users: Record<string, string[]>;
  /** Users with at least one connection. */
  online: number;
}

export type ChatState = 'connecting' | 'open' | 'signed-in' | 'reconnecting' | 'closed';

export interface ChatEvents {
  /** Every state change. */
  state: { state: ChatState; previous: ChatState } & Partial<CloseAdvice> & { delay?: number; attempt?: number };
  /** A connection attempt starts (a token is fetched, then the socket opens). */
  connecting: { attempt: number };
  /** The WebSocket is open; signing in. */
  open: void;
  /** Signed in (after the rooms were rejoined). */
  'signed-in': Identity & { reconnected: boolean };
  /** A connection ended; `willReconnect` says whether another attempt follows. */
  disconnected: Disconnected;
  /** Closed for good (also after close()). */
  closed: CloseAdvice;
  /** A newer sign-on of the same user replaced this client (4003): it does not reconnect. Then 'closed'. */
  replaced: CloseAdvice;
  /** The server's `bye`, before the close. */
  bye: Bye;
  /** A direct message (duplicates already dropped); acknowledged after the listeners return. */
  message: DirectMessage;
  /** An automatic ack went through: every direct message up to `id` is removed from the offline queue. */
  acked: { id: number; removed: number };
  room: RoomMessage;
  presence: PresenceEvent;
  /** A room joined again after a reconnect, with the position seen last: `recovered` says whether the missed publishes came (as 'room' events, before this one). */
  rejoined: RoomState;
  /** Publishes of a room were missed on a live subscription (a seq jumped): filled from the history (`filled: true`, with fillGaps), or not (`filled: false`, `reason`). */
  gap: GapEvent;
  /** A failed ack or rejoin (a ChatError with `room`), a token function that threw, a listener that threw. */
  error: Error;
}

export interface ChatCallOptions {
  /** ms, counting the wait for a sign-in. */
  timeout?: number;
  signal?: AbortSignal;
}

/** The error codes of docs/chat-protocol.md (Errors), and the local ones of ChatError. */
export type ChatErrorCode =
  | 'bad_request' | 'not_signed_in' | 'already_signed_in' | 'closed' | 'internal' | 'too_many'
  | 'unavailable' | 'connections' | 'shutting_down' | 'directory' | 'offline' | 'too_large'
  | 'bad_recipient' | 'queue' | 'partial' | 'undelivered' | 'refused' | 'rate_limited'
  | 'no_such_room' | 'bad_room' | 'room_full' | 'too_many_rooms' | 'too_many_rooms_on_server'
  | 'wrong_password' | 'bad_password' | 'not_member' | 'busy' | 'auth_too_large' | 'auth_malformed'
  | 'auth_algorithm' | 'auth_bad_signature' | 'auth_expired' | 'auth_not_yet_valid' | 'auth_audience'
  | 'auth_issuer' | 'auth_claims' | 'auth_other_user' | 'auth_refused' | 'auth_unavailable'
  | 'queue_full' | 'timeout' | 'aborted'
  | (string & {});

/**
 * An error of a chat operation: `code` is the server's code (`room_full`, `offline`, ...),
 * `internal` (a non-JSON error text), or local: `closed`, `queue_full`, `timeout`, `aborted`.
 */
export declare class ChatError extends ChinwagError {
  readonly code: ChatErrorCode;
  readonly op?: string;
  /** For errors of a rejoin. */
  room?: string;
  /** For 'closed' of a closed client. */
  readonly closeInfo?: CloseAdvice | null;
}

export declare class ChatClient {
  constructor(url: string | undefined, options: ChatOptions);
  readonly url: string;
  readonly options: Readonly<ChatOptions>;
  readonly state: ChatState;
  /** The identity of the last sign-in. */
  readonly me: Identity | null;
  readonly user: string | null;
  /** Why it closed for good, or null. */
  readonly closeInfo: CloseAdvice | null;
  /** The highest direct-message id processed (store it to drop duplicates across sessions). */
  readonly lastMessageId: number;
  /** Rooms this client is in and rejoins, sorted. */
  readonly joined: string[];
  /** The current gotalk connection, if any. */
  readonly connection: Connection | null;
  readonly stats: { connects: number; signIns: number; messages: number; duplicates: number; acks: number; refreshes: number };

  on<K extends keyof ChatEvents>(event: K, fn: (arg: ChatEvents[K]) => void): this;
  off<K extends keyof ChatEvents>(event: K, fn: (arg: ChatEvents[K]) => void): this;
  once<K extends keyof ChatEvents>(event: K, fn: (arg: ChatEvents[K]) => void): this;
  once<K extends keyof ChatEvents>(event: K): Promise<ChatEvents[K]>;
  /** Resolves once signed in; rejects with ChatError 'closed' if it closes for good first. */
  signedIn(): Promise<Identity>;

  whoami(opts?: ChatCallOptions): Promise<Identity>;
  /** A direct message: text, or bytes (sent as body_base64). `ttlMs` 0 = live only. */
  send(to: string, body: string | Uint8Array | ArrayBuffer, opts?: ChatCallOptions & { ttlMs?: number }): Promise<SendResult>;
  /** Cumulative ack (automatic unless autoAck is false). */
  ack(id: number, opts?: ChatCallOptions): Promise<{ removed: number }>;
  join(room: string, opts?: ChatCallOptions & { password?: string; since?: RoomPosition }): Promise<RoomState>;
  /** A page of a room's history (members only): before or after a seq, newest first without `after`. */
  history(room: string, opts?: ChatCallOptions & { before?: number; after?: number; limit?: number }): Promise<HistoryPage>;
  /** A page of the conversation with `user` (direct messages both ways, from any device): before or after a seq, newest first without `after`. */
  conversation(user: string, opts?: ChatCallOptions & { before?: number; after?: number; limit?: number }): Promise<ConversationPage>;
  /** The epoch and seq of the last publish of `room` this client emitted as a 'room' event, or the join's if later (null: none yet). Only moves forward within an epoch; a rejoin asks from it. */
  position(room: string): RoomPosition | null;
  leave(room: string, opts?: ChatCallOptions): Promise<{ left: boolean }>;
  publish(room: string, body: string | Uint8Array | ArrayBuffer, opts?: ChatCallOptions): Promise<PublishResult>;
  /** Every room on the server. */
  rooms(opts?: ChatCallOptions): Promise<RoomState[]>;
  members(room: string, opts?: ChatCallOptions & { after?: number; limit?: number }): Promise<MembersPage>;
  online(users?: string | string[], opts?: ChatCallOptions): Promise<OnlineResult>;
  app(body: string | Uint8Array | ArrayBuffer, opts?: ChatCallOptions): Promise<{}>;
  /** `refresh` with `token`, or one from the token function. */
  refresh(token?: string, opts?: ChatCallOptions): Promise<{ expires_at: number | null }>;
  /** Another operation, JSON in and out. */
  request<R = any>(op: string, value?: JSONValue, opts?: ChatCallOptions): Promise<R>;
  /** For good: no reconnect; waiting calls fail with 'closed'. */
  close(): Promise<void>;
}

/** Opens a chat client on a hub's gotalk door and signs in. */
export declare function chat(url: string | undefined, options: ChatOptions): ChatClient;

declare const _default: {
  connect: typeof connect;
  chat: typeof chat;
  Connection: typeof Connection;
  ChatClient: typeof ChatClient;
  ChinwagError: typeof ChinwagError;
  ChatError: typeof ChatError;
  DEFAULTS: typeof DEFAULTS;
  CHAT_DEFAULTS: typeof CHAT_DEFAULTS;
  CLOSE_CODES: typeof CLOSE_CODES;
};
export default _default;
