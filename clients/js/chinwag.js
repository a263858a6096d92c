// chinwag.js — a dependency-free gotalk v1 client over WebSocket, for browsers and Node.
//
// Wire format: docs/wire.md and the gotalk v1 description (conformance vectors included).
// Over WebSocket the version "01", every header and every non-empty payload are each one
// WebSocket message. Headers are sent as binary messages, string payloads as text messages and
// byte payloads as binary messages; payload messages are accepted as text or binary.
//
// The API (see chinwag.d.ts and README.md):
//   import { connect } from './chinwag.js';
//   const conn = connect('ws://127.0.0.1:9301/gotalk/', { WebSocket });   // `ws` in Node < 22
//   await conn.request('echo.json', { hello: 'world' });
//   conn.handle('greet', async (value) => ({ greeting: 'Hello ' + value.name }));
//
// SPDX-License-Identifier: MIT OR Apache-2.0

// Where this script was loaded from (the CommonJS build, chinwag.cjs, replaces this line).
const SCRIPT_URL = import.meta.url; // @esm-only
const te = new TextEncoder();
const tdStrict = new TextDecoder('utf-8', { fatal: true });
const EMPTY = new Uint8Array(0);

/** Protocol version spoken by this client. */
export const PROTOCOL_VERSION = 1;

/** Defaults of every option of `connect`. */
export const DEFAULTS = Object.freeze({
  /** Largest payload accepted from the peer, in bytes (checked from the header, before use). */
  maxPayload: 16 * 1024 * 1024,
  /** Longest operation / notification name accepted from the peer, in UTF-8 bytes. */
  maxNameLength: 1024,
  /** Messages that may wait for the connection while it is not open; over it, calls fail at once. */
  maxQueue: 1000,
  /** Automatic retries of a request answered with a RetryResult (`e`). */
  maxRetries: 3,
  /** Longest RetryResult wait honoured, in ms; a longer wait fails the request at once. */
  maxRetryWait: 30000,
  /** Interval between heartbeats sent (ms); 0 disables them. */
  heartbeatInterval: 20000,
  /** Close (protocol error 3, timeout) after this many ms without any message; 0 disables. */
  readTimeout: 0,
  /** Default timeout of a request (ms), counted from the call; 0 = none. */
  requestTimeout: 0,
  /** Reconnect when the connection is lost (not after `close()`, nor after "unsupported protocol"). */
  keepAlive: true,
  /** Backoff base (ms): the n-th reconnect waits a random time in [0, min(max, base * 2^n)). */
  reconnectBase: 500,
  /** Backoff ceiling (ms). */
  reconnectMax: 30000,
  /** Reconnect attempts in a row before giving up (Infinity = never give up). */
  reconnectAttempts: Infinity,
  /** Concurrent stream requests the peer may have open towards this client; over it, `e`. */
  maxIncomingStreams: 64,
  /** Wait (ms) put in the RetryResult sent when `maxIncomingStreams` is reached. */
  incomingStreamRetryWait: 1000,
  /** Bytes of result chunks buffered for one stream that nobody consumes yet; over it the stream fails. */
  maxStreamBuffer: 16 * 1024 * 1024,
});

/** gotalk protocol error codes (the `f` message). */
export const ProtocolErrorCode = Object.freeze({
  ABNORMAL: 0,
  UNSUPPORTED: 1,
  INVALID_MESSAGE: 2,
  TIMEOUT: 3,
});

const PROTOCOL_ERROR_NAMES = ['abnormal condition', 'unsupported protocol', 'invalid message', 'timeout'];

/**
 * Every error this module raises or rejects with. `code` says what kind:
 * 'remote' (the peer answered with an ErrorResult; `message` is its text, exactly),
 * 'closed' (the connection closed; `reason` says how), 'queue_full', 'retry_exhausted',
 * 'retry_refused' (a RetryResult that cannot be honoured), 'timeout', 'aborted', 'protocol'
 * (a malformed message; `protocolCode`), 'bad_json', 'too_large', 'stream'.
 */
export class ChinwagError extends Error {
  constructor(code, message, props) {
    super(message);
    this.name = 'ChinwagError';
    this.code = code;
    if (props) Object.assign(this, props);
  }
}

function invalid(message) {
  return new ChinwagError('protocol', message, { protocolCode: ProtocolErrorCode.INVALID_MESSAGE });
}

// ------------------------------------------------------------------------------------------------
// Codec (pure functions)

const HEX = te.encode('0123456789abcdef');

function hexVal(c) {
  if (c >= 48 && c <= 57) return c - 48;
  if (c >= 97 && c <= 102) return c - 87;
  if (c >= 65 && c <= 70) return c - 55;
  return -1;
}

function showByte(c) {
  return c >= 0x20 && c < 0x7f ? JSON.stringify(String.fromCharCode(c)) : '0x' + c.toString(16).padStart(2, '0');
}

function readHex(buf, off, n, field, type) {
  let v = 0;
  for (let i = 0; i < n; i++) {
    const d = hexVal(buf[off + i]);
    if (d < 0) {
      throw invalid(`invalid hex digit ${showByte(buf[off + i])} in the ${field} of a '${type}' message`);
    }
    v = v * 16 + d;
  }
  return v;
}

function writeHex(out, off, value, n, field) {
  if (!Number.isInteger(value) || value < 0 || value >= 16 ** n) {
    throw new RangeError(`${field} ${value} does not fit in ${n} hex digits`);
  }
  for (let i = n - 1; i >= 0; i--) {
    out[off + i] = HEX[value % 16];
    value = Math.floor(value / 16);
  }
}

function latin1(buf, off, n) {
  let s = '';
  for (let i = 0; i < n; i++) s += String.fromCharCode(buf[off + i]);
  return s;
}

const HAS_ID = new Set(['r', 's', 'p', 'R', 'S', 'E', 'e']);
const HAS_NAME = new Set(['r', 's', 'n']);

/** Header length in bytes of a message of `type` whose name is `nameLength` UTF-8 bytes. */
export function headerLength(type, nameLength = 0) {
  switch (type) {
    case 'r': case 's': return 16 + nameLength;
    case 'p': case 'R': case 'S': case 'E': case 'h': return 13;
    case 'e': return 21;
    case 'n': return 12 + nameLength;
    case 'f': return 9;
    default: throw new TypeError(`unknown message type ${JSON.stringify(type)}`);
  }
}

/**
 * Parses the header starting at `buf[off]`. Returns `null` when more bytes are needed, or
 * `{ msg, length }`. `msg` has `type` and, by type: `id` (4-char latin1 string: the raw bytes),
 * `name`, `wait`, `size` (payload size; 0 for `h` and `f`), `load`, `time`, `code`.
 * Throws a ChinwagError with code 'protocol' (and `protocolCode` 2) on a malformed header,
 * a name over `limits.maxNameLength` or a payload size over `limits.maxPayload`.
 */
export function parseHeader(buf, off = 0, limits = DEFAULTS) {
  if (buf.length - off < 1) return null;
  const c = buf[off];
  const t = String.fromCharCode(c);
  let p = off + 1;
  const need = (n) => buf.length - p >= n;
  const msg = { type: t };
  switch (t) {
    case 'r': case 's': case 'n': {
      if (t !== 'n') {
        if (!need(4)) return null;
        msg.id = latin1(buf, p, 4);
        p += 4;
      }
      if (!need(3)) return null;
      const nlen = readHex(buf, p, 3, 'name length', t);
      p += 3;
      if (nlen > limits.maxNameLength) {
        throw invalid(`name of ${nlen} bytes in a '${t}' message exceeds the limit of ${limits.maxNameLength}`);
      }
      if (!need(nlen + 8)) return null;
      try {
        msg.name = tdStrict.decode(buf.subarray(p, p + nlen));
      } catch {
        throw invalid(`the name in a '${t}' message is not valid UTF-8`);
      }
      p += nlen;
      msg.size = readHex(buf, p, 8, 'payload size', t);
      p += 8;
      break;
    }
    case 'p': case 'R': case 'S': case 'E': case 'e': {
      if (!need(t === 'e' ? 20 : 12)) return null;
      msg.id = latin1(buf, p, 4);
      p += 4;
      if (t === 'e') {
        msg.wait = readHex(buf, p, 8, 'wait', t);
        p += 8;
      }
      msg.size = readHex(buf, p, 8, 'payload size', t);
      p += 8;
      break;
    }
    case 'h': {
      if (!need(12)) return null;
      msg.load = readHex(buf, p, 4, 'load', t);
      msg.time = readHex(buf, p + 4, 8, 'time', t);
      msg.size = 0;
      p += 12;
      break;
    }
    case 'f': {
      if (!need(8)) return null;
      msg.code = readHex(buf, p, 8, 'code', t);
      msg.size = 0;
      p += 8;
      break;
    }
    default:
      throw invalid(`unknown message type ${showByte(c)}`);
  }
  if (msg.size > limits.maxPayload) {
    throw new ChinwagError(
      'protocol',
      `payload of ${msg.size} bytes in a '${t}' message exceeds the limit of ${limits.maxPayload} bytes`,
      { protocolCode: ProtocolErrorCode.INVALID_MESSAGE },
    );
  }
  return { msg, length: p - off };
}

function writeId(out, off, id) {
  if (typeof id === 'string') {
    if (id.length !== 4) throw new TypeError(`request id must be 4 bytes, got ${JSON.stringify(id)}`);
    for (let i = 0; i < 4; i++) {
      const c = id.charCodeAt(i);
      if (c > 255) throw new TypeError(`request id ${JSON.stringify(id)} is not 4 bytes`);
      out[off + i] = c;
    }
  } else if (id && id.length === 4) {
    out.set(id, off);
  } else {
    throw new TypeError('request id must be 4 bytes');
  }
}

/** Byte length of a payload (a string counts its UTF-8 bytes). */
export function payloadSize(payload) {
  if (payload == null) return 0;
  if (typeof payload === 'string') return utf8Length(payload);
  return payload.byteLength;
}

function utf8Length(s) {
  // Same count as TextEncoder (lone surrogates become U+FFFD, 3 bytes), without encoding.
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) n += 1;
    else if (c < 0x800) n += 2;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length && (s.charCodeAt(i + 1) & 0xfc00) === 0xdc00) {
      n += 4;
      i++;
    } else n += 3;
  }
  return n;
}

/**
 * Encodes the header of `msg` (`{type, id?, name?, wait?, size?, load?, time?, code?}`).
 * Hex is written lowercase. Returns a Uint8Array.
 */
export function encodeHeader(msg) {
  const t = msg.type;
  const nameBytes = HAS_NAME.has(t) ? te.encode(msg.name ?? '') : null;
  if (nameBytes && nameBytes.length > 0xfff) {
    throw new RangeError(`name of ${nameBytes.length} bytes is over the protocol's 4095`);
  }
  const out = new Uint8Array(headerLength(t, nameBytes ? nameBytes.length : 0));
  out[0] = t.charCodeAt(0);
  let p = 1;
  if (HAS_ID.has(t)) {
    writeId(out, p, msg.id);
    p += 4;
  }
  if (nameBytes) {
    writeHex(out, p, nameBytes.length, 3, 'name length');
    p += 3;
    out.set(nameBytes, p);
    p += nameBytes.length;
  }
  if (t === 'e') {
    writeHex(out, p, msg.wait ?? 0, 8, 'wait');
    p += 8;
  }
  if (t === 'h') {
    writeHex(out, p, msg.load ?? 0, 4, 'load');
    writeHex(out, p + 4, msg.time ?? 0, 8, 'time');
  } else if (t === 'f') {
    writeHex(out, p, msg.code ?? 0, 8, 'code');
  } else {
    writeHex(out, p, msg.size ?? 0, 8, 'payload size');
  }
  return out;
}

function toBytes(payload) {
  if (payload == null) return EMPTY;
  if (typeof payload === 'string') return te.encode(payload);
  if (payload instanceof Uint8Array) return payload;
  if (payload instanceof ArrayBuffer) return new Uint8Array(payload);
  if (ArrayBuffer.isView(payload)) return new Uint8Array(payload.buffer, payload.byteOffset, payload.byteLength);
  throw new TypeError('payload must be a string, Uint8Array, ArrayBuffer or ArrayBufferView');
}

function normPayload(payload) {
  if (payload == null) return EMPTY;
  if (typeof payload === 'string' || payload instanceof Uint8Array) return payload;
  return toBytes(payload);
}

/**
 * The framed (WebSocket) layout of a message: `[header]` or `[header, payload]` (no payload frame
 * for an empty payload). A string payload stays a string (sent as a text message).
 * `msg.size` is set from the payload.
 */
export function encodeFramed(msg, payload) {
  payload = normPayload(payload);
  const size = msg.type === 'h' || msg.type === 'f' ? 0 : payloadSize(payload);
  const header = encodeHeader({ ...msg, size });
  return size === 0 ? [header] : [header, payload];
}

/** The streamed (TCP) layout: header and payload contiguous, as one Uint8Array. */
export function encodeMessage(msg, payload) {
  const bytes = msg.type === 'h' || msg.type === 'f' ? EMPTY : toBytes(payload);
  const header = encodeHeader({ ...msg, size: bytes.length });
  const out = new Uint8Array(header.length + bytes.length);
  out.set(header);
  out.set(bytes, header.length);
  return out;
}

/** `"01"`: the version frame / prefix. */
export function encodeVersion(version = PROTOCOL_VERSION) {
  const out = new Uint8Array(2);
  writeHex(out, 0, version, 2, 'version');
  return out;
}

function checkVersion(bytes) {
  const v = readHex(bytes, 0, 2, 'version', 'version');
  if (v !== PROTOCOL_VERSION) {
    throw new ChinwagError('protocol', `unsupported protocol version ${latin1(bytes, 0, 2)} (this client speaks 01)`, {
      protocolCode: ProtocolErrorCode.UNSUPPORTED,
    });
  }
  return v;
}

/**
 * Incremental decoder of the streamed layout (version, then messages with contiguous payloads),
 * used for byte-stream transports and for checking the conformance vectors.
 * `push(bytes)` returns the messages completed so far (each with `payload`, a Uint8Array;
 * the version appears as `{type: 'version', version}`); throws ChinwagError('protocol').
 */
export class StreamDecoder {
  constructor(limits = {}, { expectVersion = true } = {}) {
    this.limits = { ...DEFAULTS, ...limits };
    this.buf = EMPTY;
    this.needVersion = expectVersion;
  }

  push(bytes) {
    bytes = toBytes(bytes);
    if (this.buf.length === 0) this.buf = bytes;
    else {
      const b = new Uint8Array(this.buf.length + bytes.length);
      b.set(this.buf);
      b.set(bytes, this.buf.length);
      this.buf = b;
    }
    const out = [];
    let off = 0;
    for (;;) {
      if (this.needVersion) {
        if (this.buf.length - off < 2) break;
        out.push({ type: 'version', version: checkVersion(this.buf.subarray(off, off + 2)) });
        off += 2;
        this.needVersion = false;
        continue;
      }
      const r = parseHeader(this.buf, off, this.limits);
      if (!r) break;
      const end = off + r.length + r.msg.size;
      if (this.buf.length < end) break;
      r.msg.payload = this.buf.slice(off + r.length, end);
      out.push(r.msg);
      off = end;
    }
    this.buf = this.buf.slice(off);
    return out;
  }

  /** Bytes buffered waiting for the rest of a message. */
  get buffered() {
    return this.buf.length;
  }
}

/**
 * Decoder of the framed (WebSocket) layout, one WebSocket message at a time: first the version,
 * then a header per message and, when its payload size is non-zero, the next message is the
 * whole payload (text or binary). As a tolerance, a header message that also carries exactly its
 * payload is accepted. `push(frame)` returns `null` while a payload is awaited, otherwise the
 * message (`payload` is a Uint8Array) or `{type: 'version', version}`.
 * Throws ChinwagError('protocol') with `protocolCode` 1 (version) or 2 (anything else).
 */
export class FrameDecoder {
  constructor(limits = {}, { expectVersion = true } = {}) {
    this.limits = { ...DEFAULTS, ...limits };
    this.needVersion = expectVersion;
    this.awaiting = null;
  }

  push(frame) {
    const bytes = toBytes(frame);
    if (this.needVersion) {
      if (bytes.length !== 2) {
        throw invalid(`expected the 2-byte protocol version as the first message, got ${bytes.length} bytes`);
      }
      const version = checkVersion(bytes);
      this.needVersion = false;
      return { type: 'version', version };
    }
    if (this.awaiting) {
      const msg = this.awaiting;
      this.awaiting = null;
      if (bytes.length !== msg.size) {
        throw invalid(`payload message of ${bytes.length} bytes after a '${msg.type}' header announcing ${msg.size}`);
      }
      msg.payload = bytes;
      return msg;
    }
    if (bytes.length === 0) throw invalid('empty WebSocket message where a header was expected');
    const r = parseHeader(bytes, 0, this.limits);
    if (!r) {
      throw invalid(`truncated '${String.fromCharCode(bytes[0])}' header: a ${bytes.length}-byte WebSocket message`);
    }
    const { msg, length } = r;
    if (length === bytes.length) {
      if (msg.size > 0) {
        this.awaiting = msg;
        return null;
      }
      msg.payload = EMPTY;
      return msg;
    }
    if (bytes.length - length === msg.size) {
      msg.payload = bytes.subarray(length);
      return msg;
    }
    throw invalid(`'${msg.type}' header message has ${bytes.length - length} bytes after its ${length}-byte header`);
  }
}

const ID_SPACE = 36 ** 4;
const STREAM_ID_SPACE = 36 ** 3;

/** gotalk.js request id number n: 4 base-36 characters ("0000", "0001", ... "zzzz"). */
export function requestId(n) {
  return (n % ID_SPACE).toString(36).padStart(4, '0');
}

/** gotalk.js stream request id number n: "!" and 3 base-36 characters ("!000" ... "!zzz"). */
export function streamRequestId(n) {
  return '!' + (n % STREAM_ID_SPACE).toString(36).padStart(3, '0');
}

/** Decodes a JSON payload (Uint8Array); an empty payload is `undefined`. */
export function decodeJSON(bytes) {
  if (bytes.length === 0) return undefined;
  let text;
  try {
    text = tdStrict.decode(bytes);
  } catch {
    throw new ChinwagError('bad_json', 'payload is not valid UTF-8, so not JSON');
  }
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new ChinwagError('bad_json', `payload is not valid JSON (${err.message}): ${JSON.stringify(text.slice(0, 80))}`);
  }
}

/** Encodes a value as a JSON payload string; `undefined` is an empty payload. */
export function encodeJSON(value) {
  if (value === undefined) return '';
  const s = JSON.stringify(value);
  return s === undefined ? '' : s;
}

function concat(chunks, total) {
  if (chunks.length === 1) return chunks[0];
  const out = new Uint8Array(total);
  let p = 0;
  for (const c of chunks) {
    out.set(c, p);
    p += c.length;
  }
  return out;
}

function errorText(err) {
  if (err instanceof Error) return err.message || err.name || 'error';
  if (typeof err === 'string') return err;
  try {
    return String(err);
  } catch {
    return 'error';
  }
}

function isChunkIterable(v) {
  if (v == null || typeof v === 'string' || v instanceof Uint8Array || ArrayBuffer.isView(v) || v instanceof ArrayBuffer) {
    return false;
  }
  return typeof v[Symbol.asyncIterator] === 'function' || typeof v[Symbol.iterator] === 'function';
}

// ------------------------------------------------------------------------------------------------
// Result streams

/**
 * An async-iterable sequence of result chunks. For requests it receives `S` parts (a size-0 `S`
 * ends it) or a single `R` (one chunk, then the end); an `E` makes iteration throw.
 * Chunks are Uint8Arrays, or JSON values when made by `requestStream`.
 */
export class ResultStream {
  constructor(decode, maxBuffer) {
    this._decode = decode || identity;
    this._maxBuffer = maxBuffer ?? DEFAULTS.maxStreamBuffer;
    this._chunks = [];
    this._buffered = 0;
    this._ended = false;
    this._error = null;
    this._discard = false;
    this._waiters = [];
  }

  /** @internal */
  _push(chunk) {
    if (this._ended || this._error || this._discard) return;
    this._buffered += chunk.length;
    if (this._buffered > this._maxBuffer) {
      this._chunks = [];
      this._fail(new ChinwagError('too_large', `more than ${this._maxBuffer} bytes of unconsumed result chunks buffered`));
      return;
    }
    this._chunks.push(chunk);
    this._wake();
  }

  /** @internal */
  _end() {
    if (this._ended || this._error) return;
    this._ended = true;
    this._wake();
  }

  /** @internal */
  _fail(err) {
    if (this._ended || this._error) return;
    this._error = err; // chunks that arrived before the error are still delivered first
    this._wake();
  }

  get done() {
    return this._ended || this._error !== null;
  }

  _wake() {
    const ws = this._waiters;
    this._waiters = [];
    for (const w of ws) w();
  }

  async _next() {
    for (;;) {
      if (this._chunks.length > 0) {
        const c = this._chunks.shift();
        this._buffered -= c.length;
        return { value: this._decode(c), done: false };
      }
      if (this._error) throw this._error;
      if (this._ended) return { value: undefined, done: true };
      await new Promise((resolve) => this._waiters.push(resolve));
    }
  }

  [Symbol.asyncIterator]() {
    return {
      next: () => this._next(),
      return: async () => {
        // The consumer stopped: later chunks are dropped instead of buffered.
        this._discard = true;
        this._chunks = [];
        this._buffered = 0;
        return { value: undefined, done: true };
      },
      [Symbol.asyncIterator]() {
        return this;
      },
    };
  }

  /** All remaining chunks (decoded), once the stream ends. */
  async collect() {
    const out = [];
    for await (const v of this) out.push(v);
    return out;
  }
}

// ------------------------------------------------------------------------------------------------
// Connection

let connectionCount = 0;
let fallbackWebSocket = null;

/**
 * Sets the WebSocket constructor used when an option gives none and there is no global
 * `WebSocket` (Node < 22). The package's Node entry points call it with the `ws` package's
 * constructor when it is installed. Returns the previous one.
 */
export function useWebSocket(WS) {
  if (WS != null && typeof WS !== 'function') throw new TypeError('useWebSocket: not a constructor');
  const prev = fallbackWebSocket;
  fallbackWebSocket = WS ?? null;
  return prev;
}

/**
 * A minimal event emitter: `on(event, fn)`, `off(event, fn)`, `once(event, fn)` (or
 * `once(event)` for a Promise of it). A listener that throws is reported as an 'error' event.
 * The base of `Connection` and `ChatClient`. @internal
 */
class Emitter {
  constructor() {
    this._listeners = new Map();
  }

  on(event, fn) {
    let set = this._listeners.get(event);
    if (!set) this._listeners.set(event, (set = new Set()));
    set.add(fn);
    return this;
  }

  off(event, fn) {
    this._listeners.get(event)?.delete(fn);
    return this;
  }

  once(event, fn) {
    if (fn) {
      const w = (arg) => {
        this.off(event, w);
        fn(arg);
      };
      return this.on(event, w);
    }
    return new Promise((resolve) => this.once(event, resolve));
  }

  _emit(event, arg) {
    const set = this._listeners.get(event);
    if (!set) return;
    for (const fn of [...set]) {
      try {
        fn(arg);
      } catch (err) {
        if (event !== 'error') this._emit('error', err);
      }
    }
  }
}

/**
 * One gotalk connection over WebSocket, reconnecting when keep-alive is on. Create it with
 * `connect(url, options)`. Calls made while it is not open wait in a bounded queue.
 *
 * Events: 'open' (), 'close' ({reason, message, willReconnect, protocolCode?, wsCode?}),
 * 'heartbeat' ({load, time}), 'retry' ({op, wait, attempt, text}), 'error' (Error from a
 * notification handler, or a send failure).
 */
export class Connection extends Emitter {
  constructor(url, options = {}) {
    super();
    if (url == null) url = defaultUrl();
    this.url = String(url);
    this.options = { ...DEFAULTS, ...options };
    const WS = options.WebSocket ?? globalThis.WebSocket ?? fallbackWebSocket;
    if (typeof WS !== 'function') {
      throw new TypeError('no WebSocket available: pass { WebSocket } in the options (e.g. from the "ws" package in Node < 22)');
    }
    this._WS = WS;
    /** 'connecting' | 'open' | 'reconnecting' | 'closed' */
    this.state = 'connecting';
    /** Called with `{load, time}` for every heartbeat the peer sends. */
    this.onHeartbeat = options.onHeartbeat ?? null;
    /** Counters, for monitoring and tests. */
    this.stats = { opens: 0, reconnects: 0, retries: 0, heartbeatsReceived: 0, heartbeatsSent: 0 };
    /** Why the connection last closed (an object with `reason`, `message`, ...), or null. */
    this.closeInfo = null;
    this._id = ++connectionCount;
    this._handlers = new Map();
    this._noteHandlers = new Map();
    this._queue = [];
    this._pending = new Map();
    this._incoming = new Map();
    this._waitingRetry = new Set();
    this._nextId = 0;
    this._nextStreamId = 0;
    this._ws = null;
    this._gen = 0;
    this._attempt = 0;
    this._closing = false;
    this._timers = { heartbeat: null, read: null, reconnect: null };
    this._closedPromise = null;
    this._open(true);
  }

  // ---- events ----------------------------------------------------------------------------------

  /** Resolves when the connection is open (at once if it is); rejects if it closes for good first. */
  opened() {
    if (this.state === 'open') return Promise.resolve(this);
    if (this.state === 'closed') return Promise.reject(this._closedError());
    return new Promise((resolve, reject) => {
      const onOpen = () => {
        this.off('close', onClose);
        resolve(this);
      };
      const onClose = (info) => {
        if (info.willReconnect) return;
        this.off('open', onOpen);
        this.off('close', onClose);
        reject(this._closedError());
      };
      this.on('open', onOpen);
      this.on('close', onClose);
    });
  }

  // ---- handlers --------------------------------------------------------------------------------

  /**
   * Handles operation `op` called by the peer with JSON: `fn(value, ctx)` returns (or resolves to)
   * the result value; a throw/rejection answers with an ErrorResult carrying the error's message.
   * `op` '' handles every operation without a handler of its own. `fn` null removes it.
   */
  handle(op, fn) {
    return this._setHandler(op, fn, 'json');
  }

  /** As `handle`, with raw payloads: `fn(Uint8Array, ctx)` returns Uint8Array | string. */
  handleBytes(op, fn) {
    return this._setHandler(op, fn, 'bytes');
  }

  /**
   * Handles operation `op` as a stream: `fn(input, ctx)` gets an async iterable of the request's
   * chunks (Uint8Array) and returns either an (async) iterable of result chunks (each sent as an
   * `S` part, then the size-0 `S` end) or a single Uint8Array | string (sent as `R`).
   */
  handleStream(op, fn) {
    return this._setHandler(op, fn, 'stream');
  }

  _setHandler(op, fn, kind) {
    if (fn == null) this._handlers.delete(op);
    else if (typeof fn !== 'function') throw new TypeError('handler must be a function');
    else this._handlers.set(op, { kind, fn });
    return this;
  }

  /** Handles notification `name` (JSON): `fn(value, name)`. `name` '' catches all others. */
  handleNotification(name, fn) {
    if (fn == null) this._noteHandlers.delete(name);
    else this._noteHandlers.set(name, { kind: 'json', fn });
    return this;
  }

  /** As `handleNotification`, with the raw payload: `fn(Uint8Array, name)`. */
  handleNotificationBytes(name, fn) {
    if (fn == null) this._noteHandlers.delete(name);
    else this._noteHandlers.set(name, { kind: 'bytes', fn });
    return this;
  }

  // ---- calls -----------------------------------------------------------------------------------

  /**
   * Requests `op` with `value` encoded as JSON; resolves with the decoded JSON result (a streamed
   * result's chunks are concatenated first). Options: `{timeout, signal}`.
   */
  request(op, value, opts) {
    let payload;
    try {
      payload = encodeJSON(value);
    } catch (err) {
      return Promise.reject(err);
    }
    return this._call(op, payload, opts).then(decodeJSON);
  }

  /** Requests `op` with raw bytes (a string is sent as UTF-8 text); resolves with the result bytes. */
  requestBytes(op, payload, opts) {
    try {
      payload = normPayload(payload);
    } catch (err) {
      return Promise.reject(err);
    }
    return this._call(op, payload, opts);
  }

  /** Requests `op` with a JSON value and iterates the result chunks, each decoded as JSON. */
  requestStream(op, value, opts) {
    const rs = new ResultStream(decodeJSON, this.options.maxStreamBuffer);
    this._startCall(op, encodeJSON(value), opts, rs);
    return rs;
  }

  /** Requests `op` with raw bytes and iterates the result chunks (Uint8Array). */
  requestStreamBytes(op, payload, opts) {
    const rs = new ResultStream(null, this.options.maxStreamBuffer);
    this._startCall(op, normPayload(payload), opts, rs);
    return rs;
  }

  /**
   * Starts a streaming request of `op`: `write(chunk)` sends a part, `end()` ends the request
   * stream. The returned object iterates the result chunks (Uint8Array) and has `bytes()`,
   * `text()` and `json()` for the whole result.
   */
  streamRequest(op, opts) {
    return new StreamRequest(this, op, opts || {});
  }

  /** Sends notification `name` with `value` as JSON. Throws ChinwagError on a full queue or when closed. */
  notify(name, value) {
    const payload = encodeJSON(value);
    this._checkSize(payload, `notification "${name}"`);
    this._enqueue(null, () => this._sendFrames({ type: 'n', name }, payload));
  }

  /** Sends notification `name` with raw bytes (a string is sent as text). */
  notifyBytes(name, payload) {
    payload = normPayload(payload);
    this._checkSize(payload, `notification "${name}"`);
    this._enqueue(null, () => this._sendFrames({ type: 'n', name }, payload));
  }

  /** Sends a heartbeat now (load 0..1, scaled to 0..0xffff). */
  sendHeartbeat(load = 0) {
    if (this.state !== 'open') return false;
    const l = Math.max(0, Math.min(0xffff, Math.round(load * 0xffff)));
    this._sendFrames({ type: 'h', load: l, time: Math.floor(Date.now() / 1000) % 2 ** 32 });
    this.stats.heartbeatsSent++;
    return true;
  }

  /** Number of messages waiting for the connection. */
  get queued() {
    return this._queue.length;
  }

  /** Number of requests sent and awaiting their result. */
  get pending() {
    return this._pending.size;
  }

  /**
   * Closes the connection for good: no reconnect; pending and queued calls fail with code
   * 'closed'. Resolves once the WebSocket has closed.
   */
  close() {
    if (this.state === 'closed') return this._closedPromise ?? Promise.resolve();
    this._closing = true;
    clearTimeout(this._timers.reconnect);
    this._timers.reconnect = null;
    this._lost({ reason: 'closed', message: 'closed by close()' }, 1000);
    return this._closedPromise ?? Promise.resolve();
  }

  // ---- internals: outgoing -----------------------------------------------------------------------

  _closedError() {
    const info = this.closeInfo;
    return new ChinwagError('closed', `connection is closed${info ? ': ' + info.message : ''}`, {
      reason: info ? info.reason : 'closed',
    });
  }

  _enqueue(owner, send) {
    if (this.state === 'closed') throw this._closedError();
    if (this.state === 'open' && this._queue.length === 0) {
      send();
      return;
    }
    if (this._queue.length >= this.options.maxQueue) {
      throw new ChinwagError(
        'queue_full',
        `send queue full: ${this.options.maxQueue} messages already wait for the connection (state: ${this.state})`,
      );
    }
    this._queue.push({ owner, send });
  }

  _flush() {
    const q = this._queue;
    this._queue = [];
    for (let i = 0; i < q.length; i++) {
      const item = q[i];
      if (item.owner && item.owner.done) continue;
      if (this.state !== 'open') {
        this._queue.push(...q.slice(i));
        return;
      }
      item.send();
    }
  }

  _sendFrames(msg, payload) {
    const ws = this._ws;
    const frames = encodeFramed(msg, payload);
    try {
      for (const f of frames) ws.send(f);
    } catch (err) {
      this._emit('error', err);
    }
  }

  _allocId(stream) {
    for (let i = 0; i < (stream ? STREAM_ID_SPACE : ID_SPACE); i++) {
      const id = stream ? streamRequestId(this._nextStreamId++) : requestId(this._nextId++);
      if (this._nextId >= ID_SPACE) this._nextId = 0;
      if (this._nextStreamId >= STREAM_ID_SPACE) this._nextStreamId = 0;
      if (!this._pending.has(id)) return id;
    }
    throw new ChinwagError('queue_full', 'every request id is in use');
  }

  _call(op, payload, opts) {
    return new Promise((resolve, reject) => {
      const sink = {
        chunks: [],
        total: 0,
        push: (c) => {
          sink.total += c.length;
          if (sink.total > this.options.maxPayload) {
            call.fail(new ChinwagError('too_large', `streamed result of "${op}" exceeds ${this.options.maxPayload} bytes`));
            return;
          }
          sink.chunks.push(c);
        },
        end: () => resolve(concat(sink.chunks, sink.total)),
        single: (b) => resolve(b),
        fail: reject,
      };
      const call = this._startCall(op, payload, opts, sink);
    });
  }

  _checkSize(payload, what) {
    const n = payloadSize(payload);
    if (n > this.options.maxPayload) {
      throw new ChinwagError('too_large', `${what}: payload of ${n} bytes is over maxPayload (${this.options.maxPayload}); send it as a stream of chunks`);
    }
  }

  _startCall(op, payload, opts, sink) {
    const call = new Call(this, op, payload, opts, sink);
    try {
      this._checkSize(payload, `request "${op}"`);
      this._enqueue(call, () => this._dispatchCall(call));
    } catch (err) {
      call.fail(err);
    }
    return call;
  }

  _dispatchCall(call) {
    if (call.done) return;
    const id = this._allocId(false);
    call.id = id;
    call.gen = this._gen;
    this._pending.set(id, call);
    this._sendFrames({ type: 'r', id, name: call.op }, call.payload);
  }

  _retry(call, msg) {
    const text = safeText(msg.payload);
    const o = this.options;
    if (msg.wait > o.maxRetryWait) {
      call.fail(
        new ChinwagError('retry_refused', `"${call.op}": the peer asked to retry after ${msg.wait} ms (over maxRetryWait ${o.maxRetryWait}): ${text}`, {
          wait: msg.wait,
        }),
      );
      return;
    }
    if (call.retries >= o.maxRetries || call.streaming) {
      const why = call.streaming
        ? `stream request "${call.op}" cannot be retried automatically`
        : `request "${call.op}" still refused after ${call.retries} retries`;
      call.fail(new ChinwagError('retry_exhausted', `${why}: the peer said "${text}" (retry after ${msg.wait} ms)`, { wait: msg.wait }));
      return;
    }
    call.retries++;
    this.stats.retries++;
    this._emit('retry', { op: call.op, wait: msg.wait, attempt: call.retries, text });
    this._waitingRetry.add(call);
    call.retryTimer = setTimeout(() => {
      call.retryTimer = null;
      this._waitingRetry.delete(call);
      if (call.done) return;
      try {
        this._enqueue(call, () => this._dispatchCall(call));
      } catch (err) {
        call.fail(err);
      }
    }, msg.wait);
  }

  // ---- internals: connection lifecycle ---------------------------------------------------------

  _open(first = false) {
    const gen = ++this._gen;
    this._decoder = new FrameDecoder(this.options);
    let ws;
    try {
      ws = new this._WS(this.url, this.options.protocols);
    } catch (err) {
      if (first) throw err; // e.g. an invalid URL: connect() throws rather than retrying forever
      this._ws = null;
      setTimeout(() => {
        if (gen === this._gen) this._lost({ reason: 'transport', message: `cannot open ${this.url}: ${err.message}` });
      }, 0);
      return;
    }
    this._ws = ws;
    try {
      ws.binaryType = 'arraybuffer';
    } catch {
      // some implementations have a fixed binaryType; frames are normalised anyway
    }
    ws.onopen = () => {
      if (gen === this._gen) this._onOpen();
    };
    ws.onmessage = (ev) => {
      if (gen === this._gen) this._onFrame(ev.data);
    };
    ws.onerror = (ev) => {
      if (gen === this._gen) this._lastWsError = ev && (ev.message || (ev.error && ev.error.message));
    };
    ws.onclose = (ev) => {
      if (gen !== this._gen) return;
      const code = ev && ev.code;
      const detail = [code && `code ${code}`, ev && ev.reason, this._lastWsError].filter(Boolean).join(', ');
      const wasOpen = this.state === 'open';
      this._lost({
        reason: 'transport',
        message: (wasOpen ? 'connection lost' : `cannot connect to ${this.url}`) + (detail ? ` (${detail})` : ''),
        wsCode: code,
      });
    };
  }

  _onOpen() {
    this.state = 'open';
    this._attempt = 0;
    this._lastWsError = null;
    this.stats.opens++;
    if (this.stats.opens > 1) this.stats.reconnects++;
    try {
      this._ws.send(encodeVersion());
    } catch (err) {
      this._emit('error', err);
    }
    if (this.options.heartbeatInterval > 0) {
      const beat = () => {
        this.sendHeartbeat(0);
        this._timers.heartbeat = setTimeout(beat, this.options.heartbeatInterval);
      };
      beat();
    }
    this._touchRead();
    this._flush();
    this._emit('open');
  }

  _touchRead() {
    const t = this.options.readTimeout;
    if (!(t > 0)) return;
    clearTimeout(this._timers.read);
    const gen = this._gen;
    this._timers.read = setTimeout(() => {
      if (gen === this._gen && this.state === 'open') {
        this._violation(ProtocolErrorCode.TIMEOUT, `no message from the peer for ${t} ms`);
      }
    }, t);
  }

  _violation(code, message) {
    try {
      if (this._ws && this._ws.readyState === 1) this._ws.send(encodeHeader({ type: 'f', code }));
    } catch {
      // the socket is going away anyway
    }
    const reason = code === ProtocolErrorCode.TIMEOUT ? 'timeout' : code === ProtocolErrorCode.UNSUPPORTED ? 'unsupported' : 'malformed';
    this._lost(
      { reason, protocolCode: code, message: `sent protocol error ${code} (${PROTOCOL_ERROR_NAMES[code]}) to the peer: ${message}` },
      4000 + code,
    );
  }

  /** The transport is gone (or being shut down): fail what depends on it, then reconnect or stop. */
  _lost(info, wsCloseCode = 1000) {
    this._gen++;
    const ws = this._ws;
    this._ws = null;
    clearTimeout(this._timers.heartbeat);
    clearTimeout(this._timers.read);
    this._timers.heartbeat = this._timers.read = null;
    if (ws) this._closedPromise = shutdownSocket(ws, wsCloseCode);
    this.closeInfo = info;

    const err = new ChinwagError('closed', `connection closed before the result arrived: ${info.message}`, {
      reason: info.reason,
      protocolCode: info.protocolCode,
    });
    const pending = [...this._pending.values()];
    this._pending.clear();
    for (const call of pending) call.fail(err);
    const incoming = [...this._incoming.values()];
    this._incoming.clear();
    for (const s of incoming) s._fail(new ChinwagError('closed', `connection closed: ${info.message}`, { reason: info.reason }));

    const reconnect =
      !this._closing &&
      this.options.keepAlive &&
      info.reason !== 'unsupported' &&
      this._attempt < this.options.reconnectAttempts;
    if (reconnect) {
      this.state = 'reconnecting';
      const o = this.options;
      const ceiling = Math.min(o.reconnectMax, o.reconnectBase * 2 ** Math.min(this._attempt, 52));
      const delay = Math.floor(Math.random() * ceiling);
      this._attempt++;
      this._timers.reconnect = setTimeout(() => {
        this._timers.reconnect = null;
        if (this.state === 'reconnecting') {
          this.state = 'connecting';
          this._open();
        }
      }, delay);
      this._emit('close', { ...info, willReconnect: true, reconnectIn: delay });
      return;
    }
    this.state = 'closed';
    const qerr = new ChinwagError('closed', `connection closed before this was sent: ${info.message}`, { reason: info.reason });
    const queue = this._queue;
    this._queue = [];
    for (const item of queue) if (item.owner && !item.owner.done) item.owner.fail(qerr);
    for (const call of [...this._waitingRetry]) call.fail(qerr);
    this._waitingRetry.clear();
    this._emit('close', { ...info, willReconnect: false });
  }

  // ---- internals: incoming ---------------------------------------------------------------------

  _onFrame(data) {
    let frame;
    if (typeof data === 'string') frame = data;
    else if (data instanceof ArrayBuffer) frame = new Uint8Array(data);
    else if (ArrayBuffer.isView(data)) frame = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    else if (Array.isArray(data)) frame = concat(data.map(toBytes), data.reduce((n, b) => n + b.byteLength, 0));
    else {
      this._violation(ProtocolErrorCode.ABNORMAL, 'unsupported WebSocket message data type (set binaryType "arraybuffer")');
      return;
    }
    this._touchRead();
    let msg;
    try {
      msg = this._decoder.push(frame);
    } catch (err) {
      if (err instanceof ChinwagError && err.code === 'protocol') {
        this._violation(err.protocolCode, err.message);
        return;
      }
      throw err;
    }
    if (msg) this._onMessage(msg);
  }

  _onMessage(msg) {
    switch (msg.type) {
      case 'version':
        return;
      case 'f': {
        const code = msg.code;
        const name = PROTOCOL_ERROR_NAMES[code] ?? 'unknown code';
        this._lost(
          {
            reason: code === ProtocolErrorCode.UNSUPPORTED ? 'unsupported' : 'protocol',
            protocolCode: code,
            message: `the peer sent protocol error ${code} (${name})`,
          },
          4000 + (code <= 999 ? code : 0),
        );
        return;
      }
      case 'h': {
        this.stats.heartbeatsReceived++;
        const hb = { load: msg.load, time: new Date(msg.time * 1000) };
        if (typeof this.onHeartbeat === 'function') {
          try {
            this.onHeartbeat(hb);
          } catch (err) {
            this._emit('error', err);
          }
        }
        this._emit('heartbeat', hb);
        return;
      }
      case 'R': case 'S': case 'E': case 'e': {
        const call = this._pending.get(msg.id);
        if (!call) return; // a late answer to a call that timed out or was aborted
        if (msg.type === 'S') {
          if (msg.payload.length === 0) call.finishStream();
          else call.push(msg.payload);
          return;
        }
        this._pending.delete(msg.id);
        call.id = null;
        if (msg.type === 'R') call.finishSingle(msg.payload);
        else if (msg.type === 'E') call.fail(new ChinwagError('remote', safeText(msg.payload), { op: call.op }));
        else this._retry(call, msg);
        return;
      }
      case 'r':
        this._serve(msg.id, msg.name, null, msg.payload);
        return;
      case 's': {
        if (this._incoming.size >= this.options.maxIncomingStreams) {
          const wait = this.options.incomingStreamRetryWait;
          this._sendFrames({ type: 'e', id: msg.id, wait }, `too many concurrent stream requests (${this.options.maxIncomingStreams})`);
          return;
        }
        const input = new ResultStream(null, this.options.maxStreamBuffer);
        this._incoming.set(msg.id, input);
        if (msg.payload.length > 0) input._push(msg.payload);
        this._serve(msg.id, msg.name, input, null);
        return;
      }
      case 'p': {
        const input = this._incoming.get(msg.id);
        if (!input) return;
        if (msg.payload.length === 0) {
          this._incoming.delete(msg.id);
          input._end();
        } else input._push(msg.payload);
        return;
      }
      case 'n': {
        const h = this._noteHandlers.get(msg.name) ?? this._noteHandlers.get('');
        if (!h) return;
        Promise.resolve()
          .then(() => h.fn(h.kind === 'json' ? decodeJSON(msg.payload) : msg.payload, msg.name))
          .catch((err) => this._emit('error', err));
        return;
      }
      default:
        return;
    }
  }

  /** Runs the handler of an incoming request (single when `input` is null) and answers it. */
  async _serve(id, op, input, payload) {
    const gen = this._gen;
    const reply = (type, data) => {
      if (gen === this._gen && this.state === 'open') this._sendFrames({ type, id }, data);
    };
    const h = this._handlers.get(op) ?? this._handlers.get('');
    if (!h) {
      if (input) this._incoming.delete(id);
      reply('E', `unknown operation "${op}"`);
      return;
    }
    const ctx = { op, connection: this, id };
    try {
      if (h.kind === 'stream') {
        if (!input) {
          input = new ResultStream(null, Infinity);
          if (payload.length > 0) input._push(payload);
          input._end();
        }
        const out = await h.fn(input, ctx);
        if (isChunkIterable(out)) {
          for await (const chunk of out) {
            const c = normPayload(chunk);
            if (payloadSize(c) > 0) reply('S', c);
          }
          reply('S', EMPTY);
        } else {
          reply('R', normPayload(out));
        }
        return;
      }
      if (input) {
        const chunks = [];
        let total = 0;
        for await (const c of input) {
          total += c.length;
          if (total > this.options.maxPayload) {
            this._incoming.delete(id);
            throw new ChinwagError('too_large', `stream request over ${this.options.maxPayload} bytes`);
          }
          chunks.push(c);
        }
        payload = concat(chunks, total);
        if (chunks.length === 0) payload = EMPTY;
      }
      if (h.kind === 'json') {
        const out = await h.fn(decodeJSON(payload), ctx);
        reply('R', out === undefined ? 'null' : encodeJSON(out));
      } else {
        const out = await h.fn(payload, ctx);
        reply('R', normPayload(out));
      }
    } catch (err) {
      reply('E', errorText(err));
    }
  }
}

function safeText(bytes) {
  return new TextDecoder().decode(bytes);
}

function shutdownSocket(ws, code) {
  return new Promise((resolve) => {
    ws.onopen = null;
    ws.onmessage = null;
    ws.onerror = () => {}; // the `ws` package throws on an 'error' event without a listener
    if (ws.readyState === 3) {
      ws.onclose = null;
      resolve();
      return;
    }
    ws.onclose = () => resolve();
    try {
      ws.close(code);
    } catch {
      try {
        ws.close();
      } catch {
        resolve();
      }
    }
  });
}

/** An outgoing request awaiting its result. @internal */
class Call {
  constructor(conn, op, payload, opts, sink) {
    this.conn = conn;
    this.op = op;
    this.payload = payload;
    this.sink = sink; // {push, end, single, fail} or a ResultStream
    this.done = false;
    this.id = null;
    this.retries = 0;
    this.retryTimer = null;
    this.streaming = false;
    const timeout = opts?.timeout ?? conn.options.requestTimeout;
    this.timer = null;
    if (timeout > 0) {
      this.timer = setTimeout(
        () => this.fail(new ChinwagError('timeout', `request "${op}" got no result within ${timeout} ms`)),
        timeout,
      );
    }
    const signal = opts?.signal;
    if (signal) {
      if (signal.aborted) queueMicrotask(() => this.fail(new ChinwagError('aborted', `request "${op}" aborted`)));
      else {
        this._onAbort = () => this.fail(new ChinwagError('aborted', `request "${op}" aborted`));
        this._signal = signal;
        signal.addEventListener('abort', this._onAbort, { once: true });
      }
    }
  }

  _settle() {
    if (this.done) return false;
    this.done = true;
    clearTimeout(this.timer);
    clearTimeout(this.retryTimer);
    this.conn._waitingRetry.delete(this);
    if (this.id !== null && this.conn._pending.get(this.id) === this) this.conn._pending.delete(this.id);
    if (this._signal) this._signal.removeEventListener('abort', this._onAbort);
    return true;
  }

  push(chunk) {
    if (this.done) return;
    if (this.sink instanceof ResultStream) {
      this.sink._push(chunk);
      if (this.sink._error) this.fail(this.sink._error);
    } else this.sink.push(chunk);
  }

  finishSingle(bytes) {
    if (!this._settle()) return;
    if (this.sink instanceof ResultStream) {
      if (bytes.length > 0 || this.sink._decode !== identity) this.sink._push(bytes);
      this.sink._end();
    } else this.sink.single(bytes);
  }

  finishStream() {
    if (!this._settle()) return;
    if (this.sink instanceof ResultStream) this.sink._end();
    else this.sink.end();
  }

  fail(err) {
    if (!this._settle()) return;
    if (this.sink instanceof ResultStream) this.sink._fail(err);
    else this.sink.fail(err);
  }
}

function identity(b) {
  return b;
}

/**
 * A streaming request (`s` then `p` parts) whose result chunks can be iterated. @internal
 * Made by `Connection.streamRequest`.
 */
class StreamRequest extends ResultStream {
  constructor(conn, op, opts) {
    super(identity, conn.options.maxStreamBuffer);
    this.op = op;
    this._conn = conn;
    this._started = false;
    this._writeEnded = false;
    const self = this;
    this._call = new Call(conn, op, null, opts, {
      push: (c) => self._push(c),
      end: () => self._end(),
      single: (b) => {
        if (b.length > 0) self._push(b);
        self._end();
      },
      fail: (e) => self._fail(e),
    });
    this._call.streaming = true;
  }

  /** The request id once sent ("!000"...), else null. */
  get id() {
    return this._call.id;
  }

  /**
   * Sends one chunk (Uint8Array, or string as text). Empty chunks are skipped (an empty part
   * means "end"). Throws ChinwagError if the stream failed, was ended, or the queue is full.
   */
  write(chunk) {
    if (this._writeEnded) throw new ChinwagError('stream', `stream request "${this.op}" was already ended`);
    if (this._error) throw this._error;
    chunk = normPayload(chunk);
    if (payloadSize(chunk) === 0) return;
    this._conn._checkSize(chunk, `stream request "${this.op}"`);
    this._send(chunk);
  }

  /** Ends the request stream (sends the size-0 part), optionally after a last chunk. */
  end(chunk) {
    if (this._writeEnded) return;
    if (chunk != null) this.write(chunk);
    if (this._error) throw this._error;
    if (!this._started) this._send(EMPTY);
    this._writeEnded = true;
    const call = this._call;
    try {
      this._conn._enqueue(call, () => {
        if (call.id !== null) this._conn._sendFrames({ type: 'p', id: call.id }, EMPTY);
      });
    } catch (err) {
      call.fail(err);
      throw err;
    }
  }

  _send(chunk) {
    const conn = this._conn;
    const call = this._call;
    try {
      if (!this._started) {
        this._started = true;
        conn._enqueue(call, () => {
          if (call.done) return;
          const id = conn._allocId(true);
          call.id = id;
          call.gen = conn._gen;
          conn._pending.set(id, call);
          conn._sendFrames({ type: 's', id, name: this.op }, chunk);
        });
      } else {
        conn._enqueue(call, () => {
          if (call.id !== null) conn._sendFrames({ type: 'p', id: call.id }, chunk);
        });
      }
    } catch (err) {
      call.fail(err);
      throw err;
    }
  }

  /** The whole result, concatenated. */
  async bytes() {
    const chunks = await this.collect();
    return concat(chunks, chunks.reduce((n, c) => n + c.length, 0));
  }

  async text() {
    return new TextDecoder().decode(await this.bytes());
  }

  async json() {
    return decodeJSON(await this.bytes());
  }
}

export { StreamRequest };

function defaultUrl() {
  // The chinwag server serves this file at <mount>/chinwag.js: connect to <mount>/.
  const here = SCRIPT_URL;
  if (/^https?:/.test(here)) return here.replace(/^http/, 'ws').replace(/[^/]*$/, '');
  throw new TypeError('connect(url): no url given and this script was not loaded over http(s)');
}

/**
 * Opens a gotalk connection to `url` (ws:// or wss://; in a browser it defaults to the directory
 * this script was served from). Returns the Connection at once; calls made before it opens wait
 * in the send queue.
 */
export function connect(url, options) {
  return new Connection(url, options);
}


// ------------------------------------------------------------------------------------------------
// Chat client: the chat protocol of a chinwag hub on its gotalk door (docs/chat-protocol.md)

/**
 * The close-code table (docs/chat-protocol.md §6): code → `{name, reconnect}`. `reconnect` is
 * `never`, `backoff`, `after_refresh` or `at_once`; a code not in the table means `backoff`.
 */
export const CLOSE_CODES = Object.freeze({
  1000: Object.freeze({ name: 'normal', reconnect: 'never' }),
  1001: Object.freeze({ name: 'going_away', reconnect: 'backoff' }),
  1002: Object.freeze({ name: 'protocol_error', reconnect: 'backoff' }),
  1003: Object.freeze({ name: 'unsupported_data', reconnect: 'backoff' }),
  1006: Object.freeze({ name: 'abnormal', reconnect: 'backoff' }),
  1007: Object.freeze({ name: 'invalid_payload', reconnect: 'backoff' }),
  1008: Object.freeze({ name: 'policy', reconnect: 'backoff' }),
  1009: Object.freeze({ name: 'too_big', reconnect: 'backoff' }),
  1011: Object.freeze({ name: 'internal_error', reconnect: 'backoff' }),
  1013: Object.freeze({ name: 'try_again_later', reconnect: 'backoff' }),
  4001: Object.freeze({ name: 'auth_failed', reconnect: 'never' }),
  4002: Object.freeze({ name: 'token_expired', reconnect: 'after_refresh' }),
  4003: Object.freeze({ name: 'replaced', reconnect: 'never' }),
  4004: Object.freeze({ name: 'kicked', reconnect: 'never' }),
  4008: Object.freeze({ name: 'rate_limited', reconnect: 'backoff' }),
  4009: Object.freeze({ name: 'auth_timeout', reconnect: 'backoff' }),
  4010: Object.freeze({ name: 'too_many_guesses', reconnect: 'backoff' }),
});

/** What the close-code table advises for `code`: `{code, name, reconnect}`. */
export function closeAdvice(code) {
  const row = CLOSE_CODES[code];
  if (row) return { code, name: row.name, reconnect: row.reconnect };
  return { code, name: 'unknown', reconnect: 'backoff' };
}

/** Defaults of every option of `chat`. */
export const CHAT_DEFAULTS = Object.freeze({
  /** Where the token goes: 'auth' (first message; precise errors) or 'subprotocol' (`bearer.<token>`). */
  tokenIn: 'auth',
  /** Subprotocols offered besides the token one (with tokenIn 'subprotocol' at least one is needed). */
  protocols: null,
  /** Acknowledge direct messages automatically (cumulative, after the 'message' listeners ran). */
  autoAck: true,
  /** Join the rooms this client was in again after a reconnect. */
  rejoin: true,
  /** Reconnect when the close-code table says so. */
  reconnect: true,
  /** Backoff: attempt n waits a random time in [0, min(reconnectMax, reconnectBase * 2^n)). */
  reconnectBase: 500,
  reconnectMax: 30000,
  /** Attempts in a row before giving up (Infinity = never). */
  reconnectAttempts: Infinity,
  /** A connection signed in for this long (ms) counts as "stayed up": the backoff starts again at 0. */
  stableAfter: 5000,
  /** With a token function: refresh this many ms before the token's `exp` (JWT); 0 = never. */
  refreshBefore: 30000,
  /** Heartbeat interval (ms): the server closes a connection silent for 65 s. */
  heartbeatInterval: 20000,
  /** Treat the connection as lost after this many ms without anything from the server (it sends a heartbeat every 20 s). */
  readTimeout: 70000,
  /** Calls that may wait for the next sign-in; over it they fail with 'queue_full'. */
  maxWaiting: 1000,
  /** The highest direct-message id already processed (e.g. kept from an earlier session): older ones are dropped. */
  lastMessageId: 0,
  /**
   * Fill a gap seen on a live subscription (a room's `seq` jumped: the send queue dropped
   * publishes) from the room's history, emitting the missing publishes in order before the later
   * ones. Off: only a 'gap' event (`filled: false`, `reason: 'off'`).
   */
  fillGaps: true,
  /** A gap of more publishes than this is not filled ('gap' with `reason: 'too_many'`). */
  maxGapFill: 1000,
  /** Live publishes of a room held while its gap is filled; one more and the fill gives up ('overflow'). */
  maxGapHold: 1000,
});

/** The largest page the `history` operation returns (the server cuts larger limits to it). */
const HISTORY_PAGE_MAX = 100;

/** Why a gap could not be filled, from the `history` error code. */
const GAP_REASONS = Object.freeze({ no_such_room: 'no_history', history_unavailable: 'unavailable', not_member: 'not_member' });

/**
 * An error of a chat operation. `code` is the server's error code (`room_full`,
 * `wrong_password`, `offline`, ... — docs/chat-protocol.md, Errors), `internal` for an error text
 * that is not JSON, or a local one: `closed` (the client closed for good, or the connection closed
 * before the result came: the operation may or may not have happened), `queue_full`, `timeout`,
 * `aborted`.
 */
export class ChatError extends ChinwagError {
  constructor(code, message, props) {
    super(code, message, props);
    this.name = 'ChatError';
  }
}

const TRANSIENT_AUTH = new Set(['auth_unavailable', 'connections', 'shutting_down', 'directory', 'closed', 'internal', 'busy']);

function toChatError(err, op) {
  if (err instanceof ChatError) return err;
  if (err instanceof ChinwagError) {
    if (err.code === 'remote') {
      let v = null;
      try {
        v = JSON.parse(err.message);
      } catch {
        // not JSON: gotalk's own error text (unknown operation, handler panic)
      }
      if (v && typeof v === 'object' && typeof v.code === 'string') {
        return new ChatError(v.code, typeof v.message === 'string' ? v.message : v.code, { op });
      }
      return new ChatError('internal', err.message, { op });
    }
    return new ChatError(err.code, err.message, { op, reason: err.reason });
  }
  return err;
}

function toBase64(bytes) {
  let s = '';
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  return btoa(s);
}

function fromBase64(text) {
  const s = atob(text);
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
  return out;
}

function bodyFields(body) {
  if (typeof body === 'string') return { body };
  if (body instanceof ArrayBuffer || ArrayBuffer.isView(body)) return { body_base64: toBase64(toBytes(body)) };
  throw new TypeError('a message body is a string (text) or bytes (Uint8Array, ArrayBuffer)');
}

/** A binary body (body_base64) also gets `bytes`. */
function withBytes(m) {
  if (m && typeof m === 'object' && typeof m.body_base64 === 'string' && m.bytes === undefined) {
    try {
      m.bytes = fromBase64(m.body_base64);
    } catch {
      // leave it: the caller still has body_base64
    }
  }
  return m;
}

/** The `exp` claim of a JWT, in ms, or null. */
export function tokenExpiry(token) {
  if (typeof token !== 'string') return null;
  const parts = token.split('.');
  if (parts.length !== 3) return null;
  try {
    let b = parts[1].replace(/-/g, '+').replace(/_/g, '/');
    while (b.length % 4) b += '=';
    const claims = JSON.parse(new TextDecoder().decode(fromBase64(b)));
    return typeof claims.exp === 'number' ? claims.exp * 1000 : null;
  } catch {
    return null;
  }
}


/**
 * A chat client on a hub's gotalk door. Create it with `chat(url, {token})`: it connects at once,
 * signs in, and from then on keeps itself connected as the close-code table says (backoff with
 * full jitter; never after `auth_failed`, `replaced`, `kicked` or a normal close). Operations
 * called while it is not signed in wait for the next sign-in. Direct messages are acknowledged
 * automatically and duplicates (ids at or below the last one processed) are dropped. Rooms are
 * joined again after a reconnect (with their passwords) before 'signed-in' is emitted.
 */
export class ChatClient extends Emitter {
  constructor(url, options = {}) {
    super();
    if (url == null) url = defaultUrl();
    this.url = String(url);
    this.options = { ...CHAT_DEFAULTS, ...options };
    if (this.options.token == null) throw new TypeError('chat(url, options): options.token (a string or a function returning one) is required');
    if (this.options.tokenIn !== 'auth' && this.options.tokenIn !== 'subprotocol') {
      throw new TypeError(`chat: tokenIn must be 'auth' or 'subprotocol', not ${JSON.stringify(this.options.tokenIn)}`);
    }
    /** 'connecting' | 'open' | 'signed-in' | 'reconnecting' | 'closed' */
    this.state = 'connecting';
    /** The identity of the last sign-in: `{user, device, conn, seq}`, or null. */
    this.me = null;
    /** Why the client closed for good (`{code, name, reason, reconnect, error?}`), or null. */
    this.closeInfo = null;
    /** The highest direct-message id processed: messages with an id at or below it are dropped. */
    this.lastMessageId = Number(this.options.lastMessageId) || 0;
    /** Counters. */
    this.stats = { connects: 0, signIns: 0, messages: 0, duplicates: 0, acks: 0, refreshes: 0 };
    this._rooms = new Map(); // joined rooms: name -> {password, pos: {epoch, seq} of the last publish emitted, fill, noHistory}
    this._waiting = [];
    this._conn = null;
    this._gen = 0;
    this._attempt = 0;
    this._refused = null; // the auth error of the previous attempt, if it was refused
    this._ack = null;
    this._timers = { reconnect: null, refresh: null };
    this._signedInAt = 0;
    this._closing = false;
    this._closedPromise = Promise.resolve();
    // Start on the next microtask, so listeners attached right after chat() see every event.
    queueMicrotask(() => {
      if (this.state !== 'closed') this._connect();
    });
  }

  // ---- state ------------------------------------------------------------------------------------

  /** The signed-in user id (of the last sign-in), or null. */
  get user() {
    return this.me ? this.me.user : null;
  }

  /** The rooms this client is in (and rejoins after a reconnect), sorted. */
  get joined() {
    return [...this._rooms.keys()].sort();
  }

  /** The underlying gotalk Connection while there is one (for `request` of other operations). */
  get connection() {
    return this._conn;
  }

  /** Resolves with `me` once signed in (at once if it is); rejects if the client closes for good first. */
  signedIn() {
    if (this.state === 'signed-in') return Promise.resolve(this.me);
    if (this.state === 'closed') return Promise.reject(this._closedError());
    return new Promise((resolve, reject) => {
      const ok = (me) => {
        this.off('signed-in', ok).off('closed', ko);
        resolve(me);
      };
      const ko = () => {
        this.off('signed-in', ok).off('closed', ko);
        reject(this._closedError());
      };
      this.on('signed-in', ok).on('closed', ko);
    });
  }

  _setState(state, detail) {
    const previous = this.state;
    if (previous === state) return;
    this.state = state;
    this._emit('state', { state, previous, ...detail });
  }

  _closedError() {
    const c = this.closeInfo;
    return new ChatError('closed', `the chat client is closed${c ? ` (${c.name}: ${c.reason})` : ''}`, { closeInfo: c });
  }

  // ---- operations -------------------------------------------------------------------------------

  /** `{user, device, conn, seq}` of this connection. */
  whoami(opts) {
    return this._call('whoami', {}, opts);
  }

  /**
   * Sends `body` (a string, or bytes sent as body_base64) to every connection of user `to`.
   * `ttlMs`: how long it may wait in the offline queue (default: the server's, 7 days; 0 = live
   * only). Resolves with `{id, delivered, failed, queued}`.
   */
  send(to, body, opts = {}) {
    const p = { to, ...bodyFields(body) };
    if (opts.ttlMs != null) p.ttl_ms = opts.ttlMs;
    return this._call('send', p, opts);
  }

  /** Acknowledges every direct message up to `id` (only needed with autoAck off). */
  ack(id, opts) {
    return this._call('ack', { id }, opts);
  }

  /**
   * Joins `room` (created when missing) and remembers it for rejoining. Resolves with the room's
   * state. With `opts.since` (`{epoch, seq}` of the last publish seen) the server recovers what
   * was missed, when its history still holds it: the result says `recovered` (and `reason`, `missed`).
   * After a reconnect the client rejoins with the position it saw last, by itself.
   */
  async join(room, opts = {}) {
    const p = { room };
    if (opts.password != null) p.password = opts.password;
    if (opts.since != null) p.since = { epoch: opts.since.epoch, seq: opts.since.seq };
    const r = await this._call('join', p, opts);
    const entry = this._rooms.get(room);
    if (entry) entry.password = opts.password ?? null; // joined already: keep its position (and a fill under way)
    else this._rooms.set(room, { password: opts.password ?? null, pos: null, fill: null, noHistory: false });
    this._positionAfterJoin(room, r);
    return r;
  }

  /**
   * A page of a room's history (servers with room history; members only): `opts.before` or
   * `opts.after` a `seq`, `opts.limit` (default 50). Resolves with `{room, epoch, first, last, publications}`.
   */
  history(room, opts = {}) {
    const p = { room };
    if (opts.before != null) p.before = opts.before;
    if (opts.after != null) p.after = opts.after;
    if (opts.limit != null) p.limit = opts.limit;
    return this._call('history', p, opts);
  }

  /**
   * A page of the conversation with user `user` (servers keeping conversation history): the
   * direct messages both ways, from any of this user's devices. `opts.before` or `opts.after` a
   * `seq`, `opts.limit` (default 50). Resolves with `{with, epoch, first, last, messages}`, each
   * message `{seq, id, from: {user, device}, to, sent_at, body | body_base64}` (`id`: the
   * 'message' event's, to drop duplicates of messages also received live).
   */
  conversation(user, opts = {}) {
    const p = { with: user };
    if (opts.before != null) p.before = opts.before;
    if (opts.after != null) p.after = opts.after;
    if (opts.limit != null) p.limit = opts.limit;
    return this._call('history', p, opts);
  }

  /**
   * Where `room` stands for this client: the `{epoch, seq}` of the last publish it emitted as a
   * 'room' event (or of the join, if later); null: none yet. Publishes held while a gap is
   * filled are not counted until they are emitted.
   */
  position(room) {
    const pos = this._rooms.get(room)?.pos;
    return pos ? { ...pos } : null;
  }

  // A join's result: publishes after its `seq` follow (those up to it were written before it
  // when it recovered). Never moves the position back within an epoch, nor past a gap being filled.
  _positionAfterJoin(room, r) {
    const entry = this._rooms.get(room);
    if (!entry || r == null || typeof r.epoch !== 'number') return;
    entry.noHistory = r.recovered === false && r.reason === 'no_history';
    if (entry.fill) {
      if (entry.fill.epoch === r.epoch) return; // the fill and the live publishes move it on
      this._giveUpFill(entry.fill, 'epoch_changed');
    }
    const pos = entry.pos;
    if (!pos || pos.epoch !== r.epoch || pos.seq < r.seq) entry.pos = { epoch: r.epoch, seq: r.seq };
  }

  // A `room` notification. The position is the `{epoch, seq}` of the last publish emitted; it only
  // moves forward within an epoch. A `seq` more than one above it in the same epoch means
  // publishes were missed (the send queue dropped them): with `fillGaps` they are read from the
  // history and emitted first (see _fill), else 'gap'.
  _onRoom(m) {
    const entry = this._rooms.get(m.room);
    if (!entry || typeof m.epoch !== 'number' || typeof m.seq !== 'number') {
      this._emit('room', m);
      return;
    }
    const f = entry.fill;
    if (f) {
      if (m.epoch === f.epoch) {
        this._hold(entry, f, m);
        return;
      }
      // Another epoch: the room's history was lost; what is held comes first, unfilled.
      this._giveUpFill(f, 'epoch_changed');
      if (this._rooms.get(m.room) !== entry) return;
    }
    const pos = entry.pos;
    if (pos && pos.epoch === m.epoch && m.seq > pos.seq + 1) {
      const o = this.options;
      const reason = !o.fillGaps ? 'off' : entry.noHistory ? 'no_history' : this.state !== 'signed-in' || !this._conn ? 'not_signed_in' : null;
      if (reason == null) {
        this._startFill(m.room, entry, m);
        return;
      }
      this._emit('gap', { room: m.room, epoch: m.epoch, from: pos.seq + 1, to: m.seq - 1, filled: false, reason });
    }
    if (!pos || pos.epoch !== m.epoch || m.seq > pos.seq) entry.pos = { epoch: m.epoch, seq: m.seq };
    this._emit('room', m);
  }

  // A live publish that arrived while the room's gap is being filled: held, in seq order (a
  // duplicate, or one at or below the position, is dropped). Past maxGapHold the fill gives up.
  _hold(entry, f, m) {
    if (m.seq <= entry.pos.seq) return;
    const held = f.held;
    let i = held.length;
    while (i > 0 && held[i - 1].seq > m.seq) i--;
    if (i > 0 && held[i - 1].seq === m.seq) return;
    held.splice(i, 0, m);
    if (held.length > this.options.maxGapHold) this._giveUpFill(f, 'overflow');
  }

  _startFill(room, entry, m) {
    const f = { room, entry, epoch: m.epoch, conn: this._conn, held: [m] };
    entry.fill = f;
    this._fill(f).catch((err) => {
      // A bug, or a listener that threw past _emit: never leave the room stuck.
      if (entry.fill === f) this._giveUpFill(f, 'error', err);
    });
  }

  _fillCurrent(f) {
    return f.entry.fill === f && this._rooms.get(f.room) === f.entry;
  }

  // Emits the held publishes that follow the position without a hole (dropping those at or
  // below it). False when the fill ended meanwhile (a listener left the room, closed, ...).
  _drainHeld(f) {
    const { entry, held } = f;
    while (held.length > 0 && held[0].seq <= entry.pos.seq + 1) {
      const m = held.shift();
      if (m.seq <= entry.pos.seq) continue;
      entry.pos = { epoch: f.epoch, seq: m.seq };
      this._emit('room', m);
      if (!this._fillCurrent(f)) return false;
    }
    return true;
  }

  // Fills the holes before the held publishes, one after another, from the room's history:
  // `history {after: position, limit}` pages (at most HISTORY_PAGE_MAX each) until the hole is
  // closed, each publish emitted as it comes (so the position, which a reconnect's rejoin
  // recovers from, only moves forward), then the held ones up to the next hole. A hole the
  // history cannot supply is a 'gap' with `filled: false`; a filled one a 'gap' with `filled: true`.
  async _fill(f) {
    const { room, entry, epoch } = f;
    for (;;) {
      if (!this._drainHeld(f)) return;
      if (f.held.length === 0) {
        entry.fill = null;
        return;
      }
      const from = entry.pos.seq + 1;
      let reason = null;
      let error;
      let lost = false;
      if (f.held[0].seq - from > this.options.maxGapFill) reason = 'too_many';
      while (reason == null && entry.pos.seq + 1 < f.held[0].seq) {
        const after = entry.pos.seq;
        const to = f.held[0].seq - 1;
        let page;
        try {
          page = await f.conn.request('history', { room, after, limit: Math.min(to - after, HISTORY_PAGE_MAX) });
        } catch (err) {
          if (!this._fillCurrent(f)) return;
          error = toChatError(err, 'history');
          if (error.code === 'closed') {
            // The connection is going: the fill ends with it (_releaseConn) and the rejoin
            // recovers from the position. Nothing is emitted past it.
            entry.fill = null;
            return;
          }
          reason = GAP_REASONS[error.code] ?? error.code;
          if (reason === 'no_history') entry.noHistory = true;
          break;
        }
        if (!this._fillCurrent(f)) return;
        if (!page || page.epoch !== epoch) {
          reason = 'epoch_changed';
          break;
        }
        const limit = f.held[0].seq - 1; // a late live one may have shortened the hole
        let moved = false;
        for (const p of Array.isArray(page.publications) ? page.publications : []) {
          if (!p || typeof p.seq !== 'number' || p.seq <= entry.pos.seq || p.seq > limit) continue;
          if (p.seq > entry.pos.seq + 1) {
            // The history does not hold the start of the hole (trimmed): what it holds comes.
            lost = true;
            this._emit('gap', { room, epoch, from: entry.pos.seq + 1, to: p.seq - 1, filled: false, reason: 'trimmed' });
            if (!this._fillCurrent(f)) return;
          }
          entry.pos = { epoch, seq: p.seq };
          moved = true;
          this._emit('room', withBytes(p));
          if (!this._fillCurrent(f)) return;
        }
        if (!moved) reason = typeof page.first === 'number' && page.first > entry.pos.seq + 1 ? 'trimmed' : 'missing';
      }
      if (reason != null) {
        lost = true;
        const to = f.held[0].seq - 1;
        if (to > entry.pos.seq) this._emit('gap', { room, epoch, from: entry.pos.seq + 1, to, filled: false, reason, ...(error ? { error } : {}) });
        if (!this._fillCurrent(f)) return;
      } else if (!lost && entry.pos.seq >= from) {
        this._emit('gap', { room, epoch, from, to: entry.pos.seq, filled: true });
        if (!this._fillCurrent(f)) return;
      }
      // The next held publish follows: emitted by _drainHeld even after an unfilled hole.
      if (f.held.length > 0 && f.held[0].seq > entry.pos.seq + 1) {
        const m = f.held.shift();
        entry.pos = { epoch, seq: m.seq };
        this._emit('room', m);
        if (!this._fillCurrent(f)) return;
      }
    }
  }

  // Ends a fill at once: the held publishes are emitted in order, each hole before them as a
  // 'gap' with `filled: false` and `reason`.
  _giveUpFill(f, reason, error) {
    const { room, entry, epoch, held } = f;
    if (entry.fill !== f) return;
    entry.fill = null;
    f.held = [];
    for (const m of held) {
      if (this._rooms.get(room) !== entry) return;
      if (m.seq <= entry.pos.seq) continue;
      if (m.seq > entry.pos.seq + 1) this._emit('gap', { room, epoch, from: entry.pos.seq + 1, to: m.seq - 1, filled: false, reason, ...(error ? { error } : {}) });
      entry.pos = { epoch, seq: m.seq };
      this._emit('room', m);
    }
  }

  /** Leaves `room` (and forgets it at once, so it is not rejoined). Resolves with `{left}`. */
  leave(room, opts) {
    this._rooms.delete(room);
    return this._call('leave', { room }, opts);
  }

  /** Publishes `body` to a room this client is in. Resolves with `{seq, delivered, dropped, filtered}`. */
  publish(room, body, opts) {
    return this._call('publish', { room, ...bodyFields(body) }, opts);
  }

  /** Every room on the server (`[{room, epoch, seq, members, protected}]`, sorted by name). */
  async rooms(opts) {
    return (await this._call('rooms', {}, opts)).rooms;
  }

  /** One page of a room's members: `{members: [{conn, user, device}], next}`. */
  members(room, opts = {}) {
    const p = { room };
    if (opts.after != null) p.after = opts.after;
    if (opts.limit != null) p.limit = opts.limit;
    return this._call('members', p, opts);
  }

  /** Which devices of `users` are online, and how many users are: `{users: {name: [device...]}, online}`. */
  online(users = [], opts) {
    return this._call('online', { users: typeof users === 'string' ? [users] : users }, opts);
  }

  /** A message for the server application (`app`). */
  app(body, opts) {
    return this._call('app', bodyFields(body), opts);
  }

  /**
   * Presents a fresh token for this connection (`refresh`): `token`, or one from the token
   * function. Resolves with `{expires_at}`. Done automatically before a JWT expires when the
   * token option is a function.
   */
  async refresh(token, opts) {
    if (token == null) token = await this._getToken({ reason: 'refresh' });
    const r = await this._call('refresh', { token }, opts);
    this._scheduleRefresh(r && r.expires_at != null ? r.expires_at * 1000 : null);
    return r;
  }

  /** Any other chat operation, JSON in and out, with the same waiting and errors. */
  request(op, value, opts) {
    return this._call(op, value ?? {}, opts);
  }

  /** Closes for good: no reconnect; waiting calls fail with 'closed'. Resolves once the socket closed. */
  close() {
    if (this.state === 'closed') return this._closedPromise;
    this._closing = true;
    this._finish({ code: 1000, name: 'normal', reason: 'closed by close()', reconnect: 'never' });
    return this._closedPromise;
  }

  _call(op, payload, opts = {}) {
    if (this.state === 'closed') return Promise.reject(this._closedError());
    if (this.state === 'signed-in' && this._conn) return this._dispatch(this._conn, op, payload, opts);
    if (this._waiting.length >= this.options.maxWaiting) {
      return Promise.reject(new ChatError('queue_full', `${this.options.maxWaiting} calls already wait for the connection (state: ${this.state})`, { op }));
    }
    return new Promise((resolve, reject) => {
      const w = { op, payload, opts, resolve, reject, timer: null, onAbort: null };
      const drop = (err) => {
        const i = this._waiting.indexOf(w);
        if (i >= 0) this._waiting.splice(i, 1);
        w.cleanup();
        reject(err);
      };
      w.cleanup = () => {
        clearTimeout(w.timer);
        if (w.onAbort) opts.signal.removeEventListener('abort', w.onAbort);
      };
      if (opts.timeout > 0) {
        w.deadline = Date.now() + opts.timeout;
        w.timer = setTimeout(() => drop(new ChatError('timeout', `"${op}" waited ${opts.timeout} ms for a sign-in`, { op })), opts.timeout);
      }
      if (opts.signal) {
        if (opts.signal.aborted) return drop(new ChatError('aborted', `"${op}" aborted`, { op }));
        w.onAbort = () => drop(new ChatError('aborted', `"${op}" aborted`, { op }));
        opts.signal.addEventListener('abort', w.onAbort, { once: true });
      }
      this._waiting.push(w);
    });
  }

  _dispatch(conn, op, payload, opts = {}) {
    const o = {};
    if (opts.timeout > 0) o.timeout = opts.deadline ? Math.max(1, opts.deadline - Date.now()) : opts.timeout;
    if (opts.signal) o.signal = opts.signal;
    return conn.request(op, payload, o).catch((err) => {
      throw toChatError(err, op);
    });
  }

  _flushWaiting() {
    const ws = this._waiting;
    this._waiting = [];
    for (const w of ws) {
      w.cleanup();
      this._dispatch(this._conn, w.op, w.payload, { ...w.opts, deadline: w.deadline }).then(w.resolve, w.reject);
    }
  }

  // ---- lifecycle --------------------------------------------------------------------------------

  async _getToken(ctx) {
    const t = this.options.token;
    const token = typeof t === 'function' ? await t(ctx) : t;
    if (typeof token !== 'string' || token.length === 0) throw new TypeError('the token function gave no token (a non-empty string is needed)');
    return token;
  }

  async _connect() {
    const gen = ++this._gen;
    this._setState('connecting', { attempt: this._attempt });
    this._emit('connecting', { attempt: this._attempt });
    let token;
    try {
      token = await this._getToken({ reason: this.stats.connects === 0 ? 'connect' : 'reconnect', refused: this._refused });
    } catch (err) {
      if (gen !== this._gen) return;
      this._emit('error', err);
      this._disconnected({ code: 0, name: 'token', reason: `could not get a token: ${err && err.message}`, reconnect: 'backoff' });
      return;
    }
    if (gen !== this._gen) return;
    const o = this.options;
    let protocols = o.protocols ?? undefined;
    if (o.tokenIn === 'subprotocol') {
      const base = protocols == null ? ['chinwag.v1'] : Array.isArray(protocols) ? protocols : [protocols];
      protocols = [...base, 'bearer.' + token];
    }
    let conn;
    try {
      conn = new Connection(this.url, {
        ...(o.connection || {}),
        WebSocket: o.WebSocket,
        protocols,
        keepAlive: false,
        heartbeatInterval: o.heartbeatInterval,
        readTimeout: o.readTimeout,
      });
    } catch (err) {
      this._finish({ code: 0, name: 'bad_url', reason: err.message, reconnect: 'never', error: err });
      return;
    }
    this.stats.connects++;
    this._conn = conn;
    this._bye = null;
    const ack = (this._ack = { conn, gen, ready: false, target: 0, acked: 0, inFlight: false });
    conn.handleNotification('message', (m) => gen === this._gen && this._onDirect(withBytes(m), ack));
    conn.handleNotification('room', (m) => gen === this._gen && this._onRoom(withBytes(m)));
    conn.handleNotification('presence', (m) => gen === this._gen && this._emit('presence', m));
    conn.handleNotification('bye', (m) => {
      if (gen !== this._gen) return;
      this._bye = m;
      this._emit('bye', m);
    });
    conn.on('open', () => {
      if (gen !== this._gen) return;
      this._setState('open');
      this._emit('open');
    });
    // A `bye` is handled on a microtask (as every notification): let it run before the close.
    conn.on('close', (info) => gen === this._gen && queueMicrotask(() => gen === this._gen && this._onConnClose(info)));
    conn.on('error', (err) => gen === this._gen && this._emit('error', err));

    let me;
    try {
      me = o.tokenIn === 'auth' ? await conn.request('auth', { token }) : await conn.request('whoami', {});
    } catch (err) {
      if (gen !== this._gen) return; // the connection closed: its close decided what comes next
      const e = toChatError(err, 'auth');
      if (e.code === 'closed' && !(err instanceof ChinwagError && err.code === 'remote')) return;
      if (TRANSIENT_AUTH.has(e.code)) {
        this._dropConnection({ code: 0, name: e.code, reason: e.message, reconnect: 'backoff' });
        return;
      }
      // Refused. A token function gets one more chance (it is told why: e.g. a server restarted
      // with a new secret refuses every earlier token); a fixed token never gets better.
      if (typeof o.token === 'function' && !this._refused) {
        this._refused = e.code;
        this._dropConnection({ code: 0, name: e.code, reason: e.message, reconnect: 'backoff' });
        return;
      }
      this._finish({ code: 4001, name: 'auth_failed', reason: e.message, reconnect: 'never', error: e });
      return;
    }
    if (gen !== this._gen || conn.state !== 'open') return;
    this._refused = null;
    await this._onAuthed(conn, gen, me, token);
  }

  async _onAuthed(conn, gen, me, token) {
    if (this.me && this.me.user !== me.user) this.lastMessageId = 0; // another user: other ids
    this.me = me;
    this._signedInAt = Date.now();
    this.stats.signIns++;
    this._ack.ready = true;
    this._pumpAck(this._ack);
    if (this.options.rejoin && this._rooms.size > 0) {
      // Open rooms at once; rooms with a password one after another (the server checks one
      // password per connection at a time, and answers a second `busy`).
      const open = [...this._rooms.entries()].filter(([, r]) => r.password == null);
      const locked = [...this._rooms.entries()].filter(([, r]) => r.password != null);
      const rooms = [...open, ...locked];
      // Each with the position it saw last: the server recovers what was missed meanwhile.
      const since = (r) => (r.pos ? { since: { epoch: r.pos.epoch, seq: r.pos.seq } } : {});
      const opened = Promise.allSettled(
        open.map(([room, r]) => conn.request('join', { room, ...since(r) })),
      );
      const unlocked = [];
      for (const [room, r0] of locked) {
        if (gen !== this._gen || conn.state !== 'open') return;
        const [r] = await Promise.allSettled([
          conn.request('join', { room, password: r0.password, ...since(r0) }),
        ]);
        unlocked.push(r);
      }
      const results = [...(await opened), ...unlocked];
      if (gen !== this._gen || conn.state !== 'open') return;
      results.forEach((r, i) => {
        const room = rooms[i][0];
        if (r.status === 'fulfilled') {
          this._positionAfterJoin(room, r.value);
          this._emit('rejoined', r.value);
        }
        else {
          const e = toChatError(r.reason, 'join');
          // Kept for the next reconnect when the refusal says "not now".
          if (!['closed', 'busy', 'guessing_too_fast'].includes(e.code)) this._rooms.delete(room);
          e.room = room;
          this._emit('error', e);
        }
      });
    }
    if (typeof this.options.token === 'function') this._scheduleRefresh(tokenExpiry(token));
    this._setState('signed-in');
    this._emit('signed-in', { ...me, reconnected: this.stats.signIns > 1 });
    if (this.state === 'signed-in' && this._conn === conn) this._flushWaiting();
  }

  _scheduleRefresh(expMs) {
    clearTimeout(this._timers.refresh);
    this._timers.refresh = null;
    const before = this.options.refreshBefore;
    if (!(before > 0) || expMs == null || typeof this.options.token !== 'function') return;
    const gen = this._gen;
    const delay = Math.max(1000, expMs - before - Date.now());
    if (delay > 2 ** 31 - 1) return;
    this._timers.refresh = setTimeout(async () => {
      this._timers.refresh = null;
      if (gen !== this._gen || this.state !== 'signed-in') return;
      try {
        await this.refresh();
        this.stats.refreshes++;
      } catch (err) {
        if (gen !== this._gen) return;
        this._emit('error', err);
        // Try again in 5 s; past exp + grace the server closes with 4002 and we reconnect.
        this._scheduleRefresh(Date.now() + before + 5000);
      }
    }, delay);
  }

  _onDirect(m, ack) {
    if (!m || typeof m.id !== 'number') return;
    if (m.id > ack.target) ack.target = m.id;
    if (m.id <= this.lastMessageId) {
      this.stats.duplicates++;
    } else {
      this.lastMessageId = m.id;
      this.stats.messages++;
      this._emit('message', m);
    }
    if (this.options.autoAck) this._pumpAck(ack);
  }

  /** One ack in flight per connection, for the highest id received on it (acks are cumulative). */
  _pumpAck(a) {
    if (!this.options.autoAck || !a.ready || a.inFlight || a.target <= a.acked || a.gen !== this._gen) return;
    const id = a.target;
    a.inFlight = true;
    a.conn.request('ack', { id }).then(
      (r) => {
        a.acked = Math.max(a.acked, id);
        this.stats.acks++;
        if (a.gen === this._gen) this._emit('acked', { id, removed: r && typeof r.removed === 'number' ? r.removed : 0 });
      },
      (err) => {
        if (a.gen === this._gen) this._emit('error', toChatError(err, 'ack'));
      },
    ).finally(() => {
      a.inFlight = false;
      this._pumpAck(a);
    });
  }

  _onConnClose(info) {
    this._gen++;
    const bye = this._bye;
    let advice;
    if (bye && typeof bye.code === 'number') {
      advice = { code: bye.code, name: bye.name ?? closeAdvice(bye.code).name, reason: bye.reason ?? '', reconnect: bye.reconnect ?? closeAdvice(bye.code).reconnect };
    } else {
      const code = typeof info.wsCode === 'number' && info.wsCode !== 1005 && info.wsCode !== 0 ? info.wsCode : 1006;
      advice = { ...closeAdvice(code), reason: info.message };
    }
    this._disconnected(advice);
  }

  /** We end the current connection ourselves (refused or failed sign-in), then go on as `advice` says. */
  _dropConnection(advice) {
    this._gen++;
    this._disconnected(advice);
  }

  _releaseConn() {
    // Fills under way end with the connection: what they held is after the position, and the
    // rejoin (with `since` = the position) recovers it, or says it could not.
    for (const entry of this._rooms.values()) entry.fill = null;
    const conn = this._conn;
    this._conn = null;
    this._ack = null;
    clearTimeout(this._timers.refresh);
    this._timers.refresh = null;
    if (conn) this._closedPromise = conn.close().catch(() => {});
  }

  _disconnected(advice) {
    const wasSignedIn = this.state === 'signed-in';
    this._releaseConn();
    if (this._closing || this.state === 'closed') return;
    const o = this.options;
    let r = advice.reconnect;
    if (r === 'after_refresh' && typeof o.token !== 'function') r = 'never';
    if (!o.reconnect) r = 'never';
    if (r !== 'never' && this._attempt >= o.reconnectAttempts) r = 'never';
    if (r === 'never') {
      this._finish(advice);
      return;
    }
    if (wasSignedIn && Date.now() - this._signedInAt >= o.stableAfter) this._attempt = 0;
    let delay;
    if (r === 'at_once' || r === 'after_refresh') delay = this._attempt === 0 || r === 'after_refresh' ? 0 : this._backoff();
    else delay = this._backoff();
    this._attempt++;
    this._setState('reconnecting', { ...advice, delay });
    this._emit('disconnected', { ...advice, willReconnect: true, delay });
    this._timers.reconnect = setTimeout(() => {
      this._timers.reconnect = null;
      if (this.state === 'reconnecting') this._connect();
    }, delay);
  }

  _backoff() {
    const o = this.options;
    const ceiling = Math.min(o.reconnectMax, o.reconnectBase * 2 ** Math.min(this._attempt, 52));
    return Math.floor(Math.random() * ceiling);
  }

  _finish(advice) {
    if (this.state === 'closed') return;
    this._gen++;
    clearTimeout(this._timers.reconnect);
    this._timers.reconnect = null;
    this._releaseConn();
    this.closeInfo = { ...advice };
    this._setState('closed', advice);
    const err = this._closedError();
    const ws = this._waiting;
    this._waiting = [];
    for (const w of ws) {
      w.cleanup();
      w.reject(err);
    }
    if (advice.code === 4003) this._emit('replaced', advice);
    this._emit('disconnected', { ...advice, willReconnect: false });
    this._emit('closed', advice);
  }
}

/**
 * Opens a chat client on the gotalk door at `url` (e.g. `ws://127.0.0.1:8080/gotalk/`) and signs
 * in with `options.token`: a string, or a function (possibly async) that returns one, called for
 * every connection attempt (`{reason: 'connect' | 'reconnect' | 'refresh', refused?}`).
 */
export function chat(url, options) {
  return new ChatClient(url, options);
}

export default { connect, chat, Connection, ChatClient, ChinwagError, ChatError, DEFAULTS, CHAT_DEFAULTS, CLOSE_CODES };
