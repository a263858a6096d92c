// An in-memory WebSocket stand-in with the browser API surface chinwag.js uses, driven by the
// test: the test plays the server (accepts, sends frames, closes) and reads what the client sent.

const te = new TextEncoder();
const td = new TextDecoder();

export function fakeWebSocketClass() {
  const sockets = [];
  const waiters = [];

  class FakeWebSocket {
    constructor(url, protocols) {
      this.url = url;
      this.protocols = protocols;
      this.readyState = 0;
      this.binaryType = 'blob';
      this.sent = []; // frames as sent: string (text) or Uint8Array (binary)
      this.closeCode = undefined;
      this._sentWaiters = [];
      sockets.push(this);
      const w = waiters.shift();
      if (w) w(this);
    }

    send(data) {
      if (this.readyState !== 1) throw new Error('InvalidStateError: not open');
      this.sent.push(typeof data === 'string' ? data : new Uint8Array(data.buffer ?? data, data.byteOffset ?? 0, data.byteLength));
      const ws = this._sentWaiters;
      this._sentWaiters = [];
      for (const w of ws) w();
    }

    close(code) {
      if (this.readyState >= 2) return;
      this.closeCode = code;
      this.readyState = 3;
      queueMicrotask(() => this.onclose && this.onclose({ code: code ?? 1005, reason: '' }));
    }

    // ---- test side ----

    /** The handshake succeeds. */
    accept() {
      this.readyState = 1;
      this.onopen && this.onopen({});
    }

    /** The handshake fails (nothing listening). */
    refuse() {
      this.readyState = 3;
      this.onerror && this.onerror({ message: 'connect ECONNREFUSED' });
      this.onclose && this.onclose({ code: 1006, reason: '' });
    }

    /** The server goes away. */
    drop(code = 1006) {
      this.readyState = 3;
      this.onclose && this.onclose({ code, reason: '' });
    }

    /** The server sends a frame: a string is a text message, else binary (an ArrayBuffer, as with binaryType arraybuffer). */
    recv(frame, { text = false } = {}) {
      let data = frame;
      if (typeof frame === 'string' && !text) {
        const u = te.encode(frame);
        data = u.buffer.slice(u.byteOffset, u.byteOffset + u.byteLength);
      } else if (frame instanceof Uint8Array) {
        data = frame.buffer.slice(frame.byteOffset, frame.byteOffset + frame.byteLength);
      }
      this.onmessage && this.onmessage({ data });
    }

    /** Sent frames as text. */
    get sentText() {
      return this.sent.map((f) => (typeof f === 'string' ? f : td.decode(f)));
    }

    /** Resolves once at least `n` frames were sent. */
    async waitSent(n) {
      while (this.sent.length < n) await new Promise((r) => this._sentWaiters.push(r));
      return this.sentText;
    }

    /** Sent frames after the version and heartbeats, as text. */
    get messages() {
      return this.sentText.filter((s, i) => !(i === 0 && s === '01') && !/^h[0-9a-f]{12}$/.test(s));
    }

    async waitMessages(n) {
      while (this.messages.length < n) await new Promise((r) => this._sentWaiters.push(r));
      return this.messages;
    }
  }

  FakeWebSocket.sockets = sockets;
  /** The next socket the client creates (or the latest one already created and not yet taken). */
  FakeWebSocket.next = () => new Promise((resolve) => waiters.push(resolve));
  return FakeWebSocket;
}
