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
  readonly code: ErrorCode;
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

declare const _default: {
  connect: typeof connect;
  Connection: typeof Connection;
  ChinwagError: typeof ChinwagError;
  DEFAULTS: typeof DEFAULTS;
};
export default _default;
