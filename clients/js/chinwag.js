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

/**
 * One gotalk connection over WebSocket, reconnecting when keep-alive is on. Create it with
 * `connect(url, options)`. Calls made while it is not open wait in a bounded queue.
 */
export class Connection {
  constructor(url, options = {}) {
    if (url == null) url = defaultUrl();
    this.url = String(url);
    this.options = { ...DEFAULTS, ...options };
    const WS = options.WebSocket ?? globalThis.WebSocket;
    if (typeof WS !== 'function') {
      throw new TypeError('no WebSocket available: pass { WebSocket } in the options (e.g. from the "ws" package in Node)');
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
    this._listeners = new Map();
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

  /**
   * Events: 'open' (), 'close' ({reason, message, willReconnect, protocolCode?, wsCode?}),
   * 'heartbeat' ({load, time}), 'retry' ({op, wait, attempt, text}), 'error' (Error from a
   * notification handler, or a send failure).
   */
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

  /** `once(event, fn)` registers fn for one event; `once(event)` returns a Promise of it. */
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
  const here = typeof import.meta !== 'undefined' ? import.meta.url : '';
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

export default { connect, Connection, ChinwagError, DEFAULTS };
