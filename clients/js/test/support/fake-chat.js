// Plays a chat server on a fake WebSocket (support/fake-websocket.js): reads the client's
// requests and answers them, sends notifications, closes. No real server, no timers.
import { chat, parseHeader, encodeHeader } from '../../chinwag.js';
import { fakeWebSocketClass } from './fake-websocket.js';
import { within } from './helpers.js';

const te = new TextEncoder();

export class FakeChatServer {
  constructor(ws) {
    this.ws = ws;
    this.cursor = 0;
  }

  /** Accepts the handshake and sends the version. */
  accept() {
    this.ws.accept();
    this.ws.recv('01');
    return this;
  }

  /** The next request the client sent: `{id, op, value}` (waits for it). */
  async next() {
    const msgs = await this.ws.waitMessages(this.cursor + 1);
    const header = msgs[this.cursor];
    const r = parseHeader(te.encode(header), 0);
    if (!r || r.msg.type !== 'r') throw new Error(`expected a request header, got ${JSON.stringify(header)}`);
    let value;
    if (r.msg.size > 0) {
      const all = await this.ws.waitMessages(this.cursor + 2);
      value = JSON.parse(all[this.cursor + 1]);
      this.cursor += 2;
    } else this.cursor += 1;
    return { id: r.msg.id, op: r.msg.name, value };
  }

  /** The next request, which must be `op`. */
  async expect(op) {
    const req = await this.next();
    if (req.op !== op) throw new Error(`expected a "${op}" request, got "${req.op}" ${JSON.stringify(req.value)}`);
    return req;
  }

  reply(req, value) {
    const text = JSON.stringify(value);
    this.ws.recv(encodeHeader({ type: 'R', id: req.id, size: te.encode(text).length }));
    this.ws.recv(text, { text: true });
  }

  error(req, code, message = code) {
    this.errorText(req, JSON.stringify({ code, message }));
  }

  errorText(req, text) {
    this.ws.recv(encodeHeader({ type: 'E', id: req.id, size: te.encode(text).length }));
    this.ws.recv(text, { text: true });
  }

  notify(name, value) {
    const text = JSON.stringify(value);
    this.ws.recv(encodeHeader({ type: 'n', name, size: te.encode(text).length }));
    this.ws.recv(text, { text: true });
  }

  /** Sends `bye`, then closes with its code (as the hub does). */
  bye(code, name, reconnect, reason = name) {
    this.notify('bye', { code, name, reason, reconnect });
    this.ws.drop(code);
  }

  /** Answers the auth request with an identity. */
  async signIn(user = 'ann', device = 'web', conn = 1, seq = 1) {
    const req = await this.expect('auth');
    this.reply(req, { user, device, conn, seq });
    return req;
  }
}

/**
 * A chat client on fake sockets, reconnecting at once (1 ms backoff), no heartbeats or read
 * timeout; `nextServer()` is the server side of the next socket it opens, accepted (waiting at
 * most `deadline` ms for it).
 */
export function fakeChatClient(options = {}, deadline = 5000) {
  const WS = fakeWebSocketClass();
  const client = chat('ws://fake/gotalk/', {
    WebSocket: WS,
    token: 'tok-1',
    heartbeatInterval: 0,
    readTimeout: 0,
    reconnectBase: 1,
    reconnectMax: 1,
    ...options,
  });
  const nextServer = async () => new FakeChatServer(await within(WS.next(), deadline, 'a new socket')).accept();
  return { WS, client, nextServer };
}
