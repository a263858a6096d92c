// Unit tests of Connection against an in-memory WebSocket (the test plays the server). No server.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { connect, ChinwagError } from '../chinwag.js';
import { fakeWebSocketClass } from './support/fake-websocket.js';
import { within, nextEvent } from './support/helpers.js';

const D = 5000; // deadline of every await

/** A connection on a fake socket, opened, with the server's version sent. */
function setup(options = {}) {
  const WS = fakeWebSocketClass();
  const conn = connect('ws://fake/gotalk/', { WebSocket: WS, heartbeatInterval: 0, ...options });
  const ws = WS.sockets[0];
  return { WS, conn, ws };
}

function open(options) {
  const s = setup(options);
  s.ws.accept();
  s.ws.recv('01');
  return s;
}

test('handshake: version 01 first as a binary message; binaryType arraybuffer', async () => {
  const { conn, ws } = setup({ heartbeatInterval: 20000 });
  assert.equal(conn.state, 'connecting');
  assert.equal(ws.binaryType, 'arraybuffer');
  ws.accept();
  assert.equal(conn.state, 'open');
  assert.ok(ws.sent[0] instanceof Uint8Array);
  assert.equal(ws.sentText[0], '01');
  // A heartbeat goes out at once: load 0 and the current UNIX time.
  const h = ws.sentText[1];
  assert.match(h, /^h0000[0-9a-f]{8}$/);
  assert.ok(Math.abs(parseInt(h.slice(5), 16) - Date.now() / 1000) < 5);
  await conn.close();
});

test('request: header binary, JSON payload text; R resolves with the decoded value', async () => {
  const { conn, ws } = open();
  const p = conn.request('echo.json', { message: 'Hello World' });
  assert.deepEqual(ws.messages, ['r0000009echo.json00000019', '{"message":"Hello World"}']);
  assert.ok(ws.sent[1] instanceof Uint8Array, 'header is binary');
  assert.equal(typeof ws.sent[2], 'string', 'string payload is text');
  ws.recv('R000000000019');
  ws.recv('{"message":"Hello World"}', { text: true });
  assert.deepEqual(await within(p, D), { message: 'Hello World' });
  // The next request gets the next base-36 id; a value-less request has no payload frame.
  const p2 = conn.request('ping');
  assert.equal(ws.messages.at(-1), 'r0001004ping00000000');
  ws.recv('R000100000004');
  ws.recv('null');
  assert.equal(await within(p2, D), null);
  await conn.close();
});

test('requestBytes: binary payload; a binary or text result arrives as bytes', async () => {
  const { conn, ws } = open();
  const p = conn.requestBytes('echo', Uint8Array.of(0, 255, 7));
  assert.ok(ws.sent.at(-1) instanceof Uint8Array);
  assert.deepEqual([...ws.sent.at(-1)], [0, 255, 7]);
  ws.recv('R000000000003');
  ws.recv(Uint8Array.of(0, 255, 7));
  assert.deepEqual([...(await within(p, D))], [0, 255, 7]);
  const p2 = conn.requestBytes('echo', 'héllo');
  assert.equal(ws.messages.at(-2), 'r0001004echo00000006');
  ws.recv('R000100000006');
  ws.recv('héllo', { text: true });
  assert.equal(new TextDecoder().decode(await within(p2, D)), 'héllo');
  await conn.close();
});

test('an E result rejects with the text as the message; JSON errors reject clearly', async () => {
  const { conn, ws } = open();
  const p = conn.request('fail', 'x');
  ws.recv('E000000000004');
  ws.recv('boom', { text: true });
  await assert.rejects(within(p, D), (e) => e instanceof ChinwagError && e.code === 'remote' && e.message === 'boom');
  const p2 = conn.request('bad');
  ws.recv('R000100000003{no');
  await assert.rejects(within(p2, D), (e) => e.code === 'bad_json');
  await conn.close();
});

test('streamed result: requestStream yields each S part as JSON; size-0 S ends it', async () => {
  const { conn, ws } = open();
  const rs = conn.requestStream('count', 3);
  assert.deepEqual(ws.messages, ['r0000005count00000001', '3']);
  for (const k of [1, 2, 3]) {
    ws.recv('S000000000001');
    ws.recv(String(k), { text: true });
  }
  ws.recv('S000000000000');
  assert.deepEqual(await within(rs.collect(), D), [1, 2, 3]);
  // request() on a streamed result concatenates the parts (the protocol's example split).
  const p = conn.request('split');
  ws.recv('S00010000000b{"message":');
  ws.recv('S00010000000e"Hello World"}');
  ws.recv('S000100000000');
  assert.deepEqual(await within(p, D), { message: 'Hello World' });
  // An E ends a stream with an error.
  const rs2 = conn.requestStream('count', 1);
  ws.recv('S000200000001');
  ws.recv('1');
  ws.recv('E000200000004nope');
  const it = rs2[Symbol.asyncIterator]();
  assert.deepEqual(await it.next(), { value: 1, done: false });
  await assert.rejects(it.next(), /nope/);
  await conn.close();
});

test('streamRequest: s with the first chunk, p parts, empty p ends; results iterate', async () => {
  const { conn, ws } = open();
  const s = conn.streamRequest('stream.echo');
  s.write('{"message":');
  s.write(new Uint8Array(0)); // skipped: an empty part would end the stream
  s.write('"Hello World"}');
  s.end();
  assert.deepEqual(ws.messages, [
    's!000' + '00bstream.echo0000000b',
    '{"message":',
    'p!0000000000e',
    '"Hello World"}',
    'p!00000000000',
  ]);
  assert.equal(s.id, '!000');
  ws.recv('S!0000000000b{"message":');
  ws.recv('S!0000000000e"Hello World"}');
  ws.recv('S!00000000000');
  assert.deepEqual(await within(s.json(), D), { message: 'Hello World' });
  assert.throws(() => s.write('x'), /already ended/);
  // end() without any write sends an empty s then the end part; a single R result works too.
  const s2 = conn.streamRequest('x');
  s2.end();
  assert.deepEqual(ws.messages.slice(-2), ['s!001001x00000000', 'p!00100000000']);
  ws.recv('R!00100000002ok');
  assert.equal(await within(s2.text(), D), 'ok');
  await conn.close();
});

test('notify sends n; handleNotification gets JSON', async () => {
  const { conn, ws } = open();
  conn.notify('chat message', { message: 'Hi', from: 'nthn', room: 'gonuts' });
  assert.deepEqual(ws.messages, ['n00cchat message0000002e', '{"message":"Hi","from":"nthn","room":"gonuts"}']);
  const got = new Promise((resolve) => conn.handleNotification('note.ack', (v, name) => resolve([v, name])));
  ws.recv('n008note.ack00000007');
  ws.recv('{"a":1}');
  assert.deepEqual(await within(got, D), [{ a: 1 }, 'note.ack']);
  await conn.close();
});

test('handle: the server calls the client; R, E with the thrown message, E naming unknown ops', async () => {
  const { conn, ws } = open();
  conn.handle('greet', async (v) => ({ greeting: 'Hello ' + v.name }));
  conn.handle('throws', () => {
    throw new Error('no greeting today');
  });
  conn.handleBytes('raw', (b) => Uint8Array.from(b, (x) => x + 1));
  // Go-style raw binary ids are echoed verbatim.
  ws.recv(Uint8Array.of(0x72, 1, 0, 0, 0, ...new TextEncoder().encode('005greet00000010')));
  ws.recv('{"name":"Rasmus"}'.slice(0, 16), { text: true }); // 16 bytes: {"name":"Rasmus
  // ^ invalid JSON on purpose: the handler is not called, the caller gets an E.
  ws.recv('r0002005greet00000011{"name":"Rasmus"}');
  ws.recv('r0003006throws00000000');
  ws.recv('r0004007nothere00000000');
  ws.recv('r0005003raw00000002');
  ws.recv(Uint8Array.of(1, 2));
  const msgs = await within(ws.waitMessages(9), D, 'five answers');
  const answers = new Map();
  for (let i = 0; i < msgs.length; i++) {
    const m = msgs[i];
    const size = parseInt(m.slice(5, 13), 16);
    answers.set(m.slice(0, 5), size ? msgs[++i] : '');
  }
  const first = ws.sent.find((f) => f instanceof Uint8Array && f[0] === 0x45 && f[1] === 1);
  assert.ok(first, 'E with the raw id \\x01\\x00\\x00\\x00');
  assert.deepEqual([...first.subarray(1, 5)], [1, 0, 0, 0]);
  assert.equal(answers.get('R0002'), '{"greeting":"Hello Rasmus"}');
  assert.equal(answers.get('E0003'), 'no greeting today');
  assert.equal(answers.get('E0004'), 'unknown operation "nothere"');
  assert.deepEqual(answers.get('R0005'), '\x02\x03');
  await conn.close();
});

test('handleStream: an incoming stream request is answered with S parts', async () => {
  const { conn, ws } = open();
  conn.handleStream('upper', async function* (input) {
    for await (const chunk of input) yield new TextDecoder().decode(chunk).toUpperCase();
  });
  conn.handle('sum', (v) => v.reduce((a, b) => a + b, 0)); // a plain handler gets the parts joined
  ws.recv('s\x00\x00\x00\x01005upper00000002ab');
  ws.recv('p\x00\x00\x00\x0100000002cd');
  ws.recv('p\x00\x00\x00\x0100000000');
  ws.recv('sss01003sum00000002[1');
  ws.recv('pss0100000003,2]');
  ws.recv('pss0100000000');
  const msgs = await within(ws.waitMessages(7), D);
  assert.ok(msgs.includes('S\x00\x00\x00\x0100000002'));
  assert.ok(msgs.includes('AB') && msgs.includes('CD'));
  assert.ok(msgs.includes('S\x00\x00\x00\x0100000000'));
  assert.deepEqual(msgs.slice(msgs.indexOf('Rss0100000001'), msgs.indexOf('Rss0100000001') + 2), ['Rss0100000001', '3']);
  await conn.close();
});

test('RetryResult: wait, then retry with a fresh id; bounded; over-long waits refused', async () => {
  const { conn, ws } = open({ maxRetries: 2, maxRetryWait: 1000 });
  const retried = [];
  conn.on('retry', (r) => retried.push(r));
  const p = conn.request('sleep', 5);
  ws.recv('e00000000000500000014"request rate limit"');
  await within(ws.waitMessages(4), D, 'the retry');
  assert.deepEqual(ws.messages.slice(2), ['r0001005sleep00000001', '5']);
  ws.recv('R000100000001');
  ws.recv('5');
  assert.equal(await within(p, D), 5);
  assert.deepEqual(retried.map((r) => [r.op, r.wait, r.attempt]), [['sleep', 5, 1]]);
  assert.equal(conn.stats.retries, 1);

  // Exhausted after maxRetries.
  const p2 = conn.request('sleep', 1);
  ws.recv('e00020000000000000004busy');
  await within(ws.waitMessages(8), D);
  ws.recv('e00030000000000000004busy');
  await within(ws.waitMessages(10), D);
  ws.recv('e00040000000000000004busy');
  await assert.rejects(within(p2, D), (e) => e.code === 'retry_exhausted' && /after 2 retries/.test(e.message) && /busy/.test(e.message));

  // A wait over maxRetryWait fails at once (no 49-day timer, no 0-ms overflow).
  const p3 = conn.request('sleep', 1);
  ws.recv('e0005ffffffff00000000');
  await assert.rejects(within(p3, D), (e) => e.code === 'retry_refused' && e.wait === 0xffffffff);
  await conn.close();
});

test('pending requests are rejected with the reason when the connection drops', async () => {
  const { conn, ws } = open({ keepAlive: false });
  const p = conn.request('sleep', 10000);
  const rs = conn.requestStream('count', 5);
  ws.drop(1006);
  await assert.rejects(
    within(p, D),
    (e) => e.code === 'closed' && e.reason === 'transport' && /before the result arrived: connection lost \(code 1006/.test(e.message),
  );
  await assert.rejects(within(rs.collect(), D), (e) => e.code === 'closed');
  assert.equal(conn.state, 'closed');
  await assert.rejects(conn.request('x'), (e) => e.code === 'closed');
  assert.throws(() => conn.notify('x'), (e) => e.code === 'closed');
});

test('protocol error f from the server: close with 4000+code, reject pending, reconnect unless code 1', async () => {
  const { WS, conn, ws } = open({ reconnectBase: 1, reconnectMax: 2 });
  const p = conn.request('x');
  const closed = nextEvent(conn, 'close');
  const next = WS.next();
  ws.recv('f00000003');
  const info = await within(closed, D);
  assert.equal(ws.closeCode, 4003);
  assert.deepEqual([info.reason, info.protocolCode, info.willReconnect], ['protocol', 3, true]);
  await assert.rejects(within(p, D), /protocol error 3 \(timeout\)/);
  const ws2 = await within(next, D, 'reconnect');
  ws2.accept();
  ws2.recv('01');
  const closed2 = nextEvent(conn, 'close');
  ws2.recv('f00000001');
  const info2 = await within(closed2, D);
  assert.deepEqual([info2.reason, info2.willReconnect, conn.state], ['unsupported', false, 'closed']);
  assert.equal(ws2.closeCode, 4001);
});

test('a malformed message from the server: the client sends f00000002 and closes', async () => {
  for (const bad of [['x0000'], ['R0000000g'], ['R000000000003', 'ab'], ['Rid0000000003abcd']]) {
    const { conn, ws } = open({ keepAlive: false });
    const closed = nextEvent(conn, 'close');
    for (const f of bad) ws.recv(f);
    const info = await within(closed, D);
    assert.equal(ws.sentText.at(-1), 'f00000002', JSON.stringify(bad));
    assert.equal(ws.closeCode, 4002);
    assert.equal(info.reason, 'malformed');
    assert.equal(info.protocolCode, 2);
  }
  // Over maxPayload: refused from the header alone.
  const { conn, ws } = open({ keepAlive: false, maxPayload: 10 });
  const closed = nextEvent(conn, 'close');
  ws.recv('R00000000000b');
  assert.match((await within(closed, D)).message, /exceeds the limit of 10/);
  assert.equal(ws.sentText.at(-1), 'f00000002');
  // A wrong version: f00000001, and no reconnect.
  const s = setup();
  s.ws.accept();
  const closedV = nextEvent(s.conn, 'close');
  s.ws.recv('09');
  const iv = await within(closedV, D);
  assert.equal(s.ws.sentText.at(-1), 'f00000001');
  assert.deepEqual([iv.reason, iv.willReconnect], ['unsupported', false]);
});

test('heartbeats: onHeartbeat and the heartbeat event see load and time', async () => {
  const seen = [];
  const { conn, ws } = open({ onHeartbeat: (hb) => seen.push(hb) });
  const ev = nextEvent(conn, 'heartbeat');
  ws.recv('h00025f63ee48');
  const hb = await within(ev, D);
  assert.equal(hb.load, 2);
  assert.equal(hb.time.toISOString(), '2020-09-17T23:16:24.000Z');
  assert.equal(seen.length, 1);
  assert.equal(conn.stats.heartbeatsReceived, 1);
  await conn.close();
});

test('queue while connecting: calls wait and go out on open, in order; bounded', async () => {
  const { conn, ws } = setup({ maxQueue: 3 });
  const p1 = conn.request('a', 1);
  conn.notify('n', 2);
  const p2 = conn.request('b', 3);
  assert.equal(conn.queued, 3);
  await assert.rejects(conn.request('c', 4), (e) => e.code === 'queue_full' && /3 messages/.test(e.message));
  assert.throws(() => conn.notify('n', 5), (e) => e.code === 'queue_full');
  assert.throws(() => conn.streamRequest('s').write('x'), (e) => e.code === 'queue_full');
  ws.accept();
  ws.recv('01');
  assert.equal(conn.queued, 0);
  assert.deepEqual(ws.messages, ['r0000001a00000001', '1', 'n001n00000001', '2', 'r0001001b00000001', '3']);
  ws.recv('R000000000001');
  ws.recv('1');
  ws.recv('R000100000001');
  ws.recv('3');
  assert.deepEqual(await within(Promise.all([p1, p2]), D), [1, 3]);
  await conn.close();
});

test('keep-alive: exponential backoff with full jitter, bounded attempts, queued calls fail at the end', async () => {
  const { WS, conn, ws } = setup({ reconnectBase: 4, reconnectMax: 16, reconnectAttempts: 4 });
  const p = conn.request('q');
  const closes = [];
  conn.on('close', (c) => closes.push(c));
  let sock = ws;
  for (let i = 0; i < 4; i++) {
    const next = WS.next();
    sock.refuse();
    sock = await within(next, D, `reconnect attempt ${i + 1}`);
  }
  const final = nextEvent(conn, 'close');
  sock.refuse();
  await within(final, D);
  assert.deepEqual(closes.map((c) => c.willReconnect), [true, true, true, true, false]);
  const ceilings = [4, 8, 16, 16];
  closes.slice(0, 4).forEach((c, i) => assert.ok(c.reconnectIn >= 0 && c.reconnectIn < ceilings[i], `delay ${c.reconnectIn} < ${ceilings[i]}`));
  assert.match(closes[0].message, /cannot connect to ws:\/\/fake\/gotalk\//);
  await assert.rejects(within(p, D), (e) => e.code === 'closed' && /before this was sent/.test(e.message));
  assert.equal(conn.state, 'closed');
});

test('keep-alive: after a drop, queued calls go out on the new connection', async () => {
  const { WS, conn, ws } = open({ reconnectBase: 1, reconnectMax: 2 });
  const lost = conn.request('lost');
  const next = WS.next();
  ws.drop();
  await assert.rejects(within(lost, D), (e) => e.code === 'closed');
  const p = conn.request('later', 'v');
  const ws2 = await within(next, D);
  assert.equal(ws2.sent.length, 0);
  const opened = nextEvent(conn, 'open');
  ws2.accept();
  await within(opened, D);
  assert.equal(conn.stats.reconnects, 1);
  assert.deepEqual(ws2.messages, ['r0001005later00000003', '"v"']);
  ws2.recv('01');
  ws2.recv('R000100000003');
  ws2.recv('"v"');
  assert.equal(await within(p, D), 'v');
  await conn.close();
});

test('request timeout and AbortSignal', async () => {
  const { conn, ws } = open();
  await assert.rejects(within(conn.request('slow', 1, { timeout: 5 }), D), (e) => e.code === 'timeout');
  assert.equal(conn.pending, 0);
  ws.recv('R000000000001'); // the late answer is ignored
  ws.recv('1');
  const ac = new AbortController();
  const p = conn.request('slow', 2, { signal: ac.signal });
  ac.abort();
  await assert.rejects(within(p, D), (e) => e.code === 'aborted');
  await conn.close();
});

test('close(): pending rejected with "closed by close()", no reconnect, later calls fail', async () => {
  const { conn, ws } = open();
  const p = conn.request('sleep', 1000);
  const closed = nextEvent(conn, 'close');
  await within(conn.close(), D);
  assert.equal(ws.closeCode, 1000);
  await assert.rejects(p, (e) => e.code === 'closed' && e.reason === 'closed' && /closed by close\(\)/.test(e.message));
  assert.equal((await closed).willReconnect, false);
  assert.equal(conn.state, 'closed');
  await assert.rejects(conn.opened(), (e) => e.code === 'closed');
});

test('outgoing payloads over maxPayload fail at once; nothing is sent', async () => {
  const { conn, ws } = open({ maxPayload: 8 });
  const before = ws.sent.length;
  await assert.rejects(conn.requestBytes('echo', new Uint8Array(9)), (e) => e.code === 'too_large' && /over maxPayload \(8\)/.test(e.message));
  assert.throws(() => conn.notify('n', 'x'.repeat(20)), (e) => e.code === 'too_large');
  const s = conn.streamRequest('up');
  assert.throws(() => s.write(new Uint8Array(9)), (e) => e.code === 'too_large');
  assert.equal(ws.sent.length, before);
  assert.deepEqual([...(await (async () => { const p = conn.requestBytes('echo', new Uint8Array(8)); ws.recv('R000000000001'); ws.recv(Uint8Array.of(9)); return p; })())], [9]);
  await conn.close();
});

test('breaking out of a result stream drops later chunks; the stream still completes', async () => {
  const { conn, ws } = open({ maxStreamBuffer: 4 });
  const rs = conn.requestStreamBytes('count', 'x');
  ws.recv('S000000000001a');
  for await (const c of rs) {
    assert.equal(new TextDecoder().decode(c), 'a');
    break;
  }
  for (let i = 0; i < 10; i++) ws.recv('S000000000001b'); // would overflow maxStreamBuffer if kept
  ws.recv('S000000000000');
  assert.equal(conn.pending, 0);
  assert.equal(rs.done, true);
  await conn.close();
});

test('readTimeout: silence from the peer sends f00000003 and closes (reason timeout), then reconnects', async () => {
  const { WS, conn, ws } = setup({ readTimeout: 20, reconnectBase: 1, reconnectMax: 2 });
  const closed = nextEvent(conn, 'close');
  const next = WS.next();
  ws.accept();
  const info = await within(closed, D, 'the read timeout');
  assert.deepEqual([info.reason, info.protocolCode, info.willReconnect], ['timeout', 3, true]);
  assert.equal(ws.sentText.at(-1), 'f00000003');
  assert.equal(ws.closeCode, 4003);
  await within(next, D, 'the reconnect');
  await conn.close();
});

test('connect() throws at once when the WebSocket constructor refuses the URL', () => {
  class Refusing {
    constructor(url) {
      throw new SyntaxError(`invalid url ${url}`);
    }
  }
  assert.throws(() => connect('nope://', { WebSocket: Refusing }), /invalid url/);
  if (!globalThis.WebSocket) assert.throws(() => connect('ws://x/', {}), /no WebSocket available/);
});
