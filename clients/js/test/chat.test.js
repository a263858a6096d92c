// Unit tests of the chat client (ChatClient) against a fake WebSocket: the test plays the hub's
// chat door (support/fake-chat.js). No server, and no sleeps: every wait is for an event or a
// frame, under a deadline.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ChatError, closeAdvice, CLOSE_CODES, tokenExpiry } from '../chinwag.js';
import { fakeChatClient } from './support/fake-chat.js';
import { within, nextEvent } from './support/helpers.js';

const D = 5000;

/** A chat client on fake sockets; reconnects are immediate-ish (1 ms backoff base). */
function setup(options = {}) {
  const { WS, client, nextServer } = fakeChatClient(options, D);
  const states = [];
  client.on('state', (s) => states.push(s.state));
  return { WS, client, states, nextServer };
}

async function signedIn(options) {
  const s = setup(options);
  const server = await s.nextServer();
  const auth = await server.signIn();
  await within(s.client.signedIn(), D, 'sign-in');
  return { ...s, server, auth };
}

test('signs in with auth as the first request; states connecting, open, signed-in', async () => {
  const { client, states, server, auth, WS } = await signedIn();
  assert.deepEqual(auth.value, { token: 'tok-1' });
  assert.equal(WS.sockets[0].protocols, undefined, 'no subprotocol: the token goes in auth');
  assert.deepEqual(states, ['open', 'signed-in']); // 'connecting' is the initial state
  assert.equal(client.state, 'signed-in');
  assert.deepEqual(client.me, { user: 'ann', device: 'web', conn: 1, seq: 1 });
  assert.equal(client.user, 'ann');
  const p = client.whoami();
  const req = await server.expect('whoami');
  assert.deepEqual(req.value, {});
  server.reply(req, { user: 'ann', device: 'web', conn: 1, seq: 1 });
  assert.equal((await within(p, D)).user, 'ann');
  await client.close();
  assert.equal(client.state, 'closed');
  assert.equal(client.closeInfo.name, 'normal');
});

test('calls made before the sign-in wait for it, then go out in order', async () => {
  const { client, nextServer } = setup();
  const sent = client.send('bob', 'first');
  const joined = client.join('lobby');
  const server = await nextServer();
  await server.signIn();
  const s = await server.expect('send');
  assert.deepEqual(s.value, { to: 'bob', body: 'first' });
  const j = await server.expect('join');
  assert.deepEqual(j.value, { room: 'lobby' });
  server.reply(s, { id: 7, delivered: 0, failed: 0, queued: true });
  server.reply(j, { room: 'lobby', epoch: 1, seq: 0, members: 1, protected: false });
  assert.deepEqual(await within(sent, D), { id: 7, delivered: 0, failed: 0, queued: true });
  assert.equal((await within(joined, D)).room, 'lobby');
  assert.deepEqual(client.joined, ['lobby']);
  await client.close();
});

test('operations send the documented payloads; results are unwrapped where documented', async () => {
  const { client, server } = await signedIn();
  const cases = [
    [() => client.send('bob', 'hi', { ttlMs: 0 }), 'send', { to: 'bob', body: 'hi', ttl_ms: 0 }, { id: 1, delivered: 1, failed: 0, queued: false }],
    [() => client.send('bob', Uint8Array.of(0, 255)), 'send', { to: 'bob', body_base64: 'AP8=' }, { id: 2, delivered: 0, failed: 0, queued: true }],
    [() => client.join('vip', { password: 'pw' }), 'join', { room: 'vip', password: 'pw' }, { room: 'vip', epoch: 3, seq: 0, members: 1, protected: true }],
    [() => client.publish('vip', 'yo'), 'publish', { room: 'vip', body: 'yo' }, { seq: 1, delivered: 1, dropped: 0, filtered: 0 }],
    [() => client.members('vip', { after: 4, limit: 2 }), 'members', { room: 'vip', after: 4, limit: 2 }, { members: [], next: null }],
    [() => client.online(['bob', 'cy']), 'online', { users: ['bob', 'cy'] }, { users: { bob: ['web'], cy: [] }, online: 2 }],
    [() => client.online('bob'), 'online', { users: ['bob'] }, { users: { bob: [] }, online: 1 }],
    [() => client.leave('vip'), 'leave', { room: 'vip' }, { left: true }],
    [() => client.ack(9), 'ack', { id: 9 }, { removed: 1 }],
    [() => client.app('x'), 'app', { body: 'x' }, {}],
    [() => client.refresh('tok-2'), 'refresh', { token: 'tok-2' }, { expires_at: null }],
  ];
  for (const [call, op, payload, result] of cases) {
    const p = call();
    const req = await server.expect(op);
    assert.deepEqual(req.value, payload, op);
    server.reply(req, result);
    assert.deepEqual(await within(p, D), result, op);
  }
  const pr = client.rooms();
  server.reply(await server.expect('rooms'), { rooms: [{ room: 'a', epoch: 1, seq: 0, members: 1, protected: false }] });
  assert.deepEqual((await within(pr, D)).map((r) => r.room), ['a']);
  assert.deepEqual(client.joined, [], 'leave forgets the room');
  await client.close();
});

test('error results become ChatErrors with the server code; non-JSON text is internal', async () => {
  const { client, server } = await signedIn();
  const p = client.join('vip');
  server.error(await server.expect('join'), 'wrong_password', 'wrong password');
  await assert.rejects(within(p, D), (e) => e instanceof ChatError && e.code === 'wrong_password' && e.message === 'wrong password' && e.op === 'join');
  assert.deepEqual(client.joined, [], 'a failed join is not remembered');
  const p2 = client.request('nope', {});
  server.errorText(await server.expect('nope'), 'unknown operation "nope"');
  await assert.rejects(within(p2, D), (e) => e instanceof ChatError && e.code === 'internal' && /unknown operation/.test(e.message));
  await client.close();
});

test('direct messages: emitted in order, duplicates dropped, cumulative acks with one in flight', async () => {
  const { client, server } = await signedIn();
  const got = [];
  client.on('message', (m) => got.push(m.id));
  server.notify('message', { id: 10, from: { user: 'bob', device: 'd' }, sent_at: 1, body: 'a' });
  const a1 = await server.expect('ack');
  assert.deepEqual(a1.value, { id: 10 });
  // While that ack is in flight, a burst arrives (and a duplicate): one ack covers it.
  server.notify('message', { id: 11, from: { user: 'bob', device: 'd' }, sent_at: 2, body: 'b' });
  server.notify('message', { id: 10, from: { user: 'bob', device: 'd' }, sent_at: 1, body: 'a' });
  server.notify('message', { id: 12, from: null, sent_at: 3, body_base64: 'AQI=' });
  await new Promise((r) => setImmediate(r)); // let the notification handlers run (no timer)
  assert.deepEqual(got, [10, 11, 12]);
  assert.equal(client.stats.duplicates, 1);
  server.reply(a1, { removed: 1 });
  const a2 = await server.expect('ack');
  assert.deepEqual(a2.value, { id: 12 });
  server.reply(a2, { removed: 2 });
  assert.equal(client.lastMessageId, 12);
  await client.close();
});

test('a binary body also arrives as bytes', async () => {
  const { client, server } = await signedIn({ autoAck: false });
  const m = nextEvent(client, 'message');
  server.notify('message', { id: 1, from: null, sent_at: 3, body_base64: 'AQL/' });
  assert.deepEqual([...(await within(m, D)).bytes], [1, 2, 255]);
  const r = nextEvent(client, 'room');
  server.notify('room', { room: 'x', epoch: 1, seq: 1, from: null, sent_at: 1, body: 'hey' });
  assert.equal((await within(r, D)).body, 'hey');
  const pr = nextEvent(client, 'presence');
  server.notify('presence', { room: 'x', user: 'bob', device: 'd', event: 'join' });
  assert.equal((await within(pr, D)).event, 'join');
  await client.close();
});

test('1001 going away: reconnects, rejoins rooms before signed-in, replay drops duplicates and acks them on the new connection', async () => {
  const { client, server, nextServer } = await signedIn();
  const pj = client.join('lobby', { password: 'pw' });
  server.reply(await server.expect('join'), { room: 'lobby', epoch: 1, seq: 0, members: 1, protected: true });
  await within(pj, D);
  server.notify('message', { id: 5, from: null, sent_at: 1, body: 'x' });
  const ack = await server.expect('ack');
  // The server shuts down before answering the ack: the message stays queued.
  const disc = nextEvent(client, 'disconnected');
  server.bye(1001, 'going_away', 'backoff', 'server shutting down');
  const d = await within(disc, D);
  assert.equal(d.code, 1001);
  assert.equal(d.willReconnect, true);
  assert.ok(d.delay >= 0 && d.delay < 1);
  assert.equal(client.state, 'reconnecting');
  void ack;

  const got = [];
  client.on('message', (m) => got.push(m.id));
  const s2 = await nextServer();
  await s2.signIn('ann', 'web', 2, 2);
  const rejoin = await s2.expect('join');
  // With the position seen last (the join's epoch and seq): the server recovers what was missed.
  assert.deepEqual(rejoin.value, { room: 'lobby', password: 'pw', since: { epoch: 1, seq: 0 } });
  assert.equal(client.state, 'open', 'not signed-in before the rooms are rejoined');
  s2.notify('message', { id: 5, from: null, sent_at: 1, body: 'x' }); // replayed
  s2.notify('message', { id: 6, from: null, sent_at: 2, body: 'y' });
  const signed = nextEvent(client, 'signed-in');
  s2.reply(rejoin, { room: 'lobby', epoch: 1, seq: 3, members: 1, protected: true });
  const si = await within(signed, D);
  assert.equal(si.reconnected, true);
  const a = await s2.expect('ack');
  assert.ok(a.value.id === 5 || a.value.id === 6);
  s2.reply(a, { removed: 1 });
  if (a.value.id === 5) {
    const b = await s2.expect('ack');
    assert.deepEqual(b.value, { id: 6 });
    s2.reply(b, { removed: 1 });
  }
  assert.deepEqual(got, [6], 'the replayed 5 was a duplicate');
  await client.close();
});

test('room positions (fillGaps off): each publish moves the position, a seq that jumps is a gap, never back', async () => {
  const { client, server } = await signedIn({ fillGaps: false });
  const pj = client.join('r');
  server.reply(await server.expect('join'), { room: 'r', epoch: 7, seq: 2, members: 1, protected: false });
  await within(pj, D);
  assert.deepEqual(client.position('r'), { epoch: 7, seq: 2 });
  const gaps = [];
  client.on('gap', (g) => gaps.push(g));
  const four = nextEvent(client, 'room', (m) => m.seq === 4);
  for (const seq of [3, 5, 4]) {
    server.notify('room', { room: 'r', epoch: 7, seq, from: null, sent_at: 1, body: `s${seq}` });
  }
  await within(four, D, 'the late 4');
  assert.deepEqual(gaps, [{ room: 'r', epoch: 7, from: 4, to: 4, filled: false, reason: 'off' }]);
  assert.equal(server.ws.messages.filter((t) => /history/.test(t)).length, 0, 'no history request');
  assert.deepEqual(client.position('r'), { epoch: 7, seq: 5 }, 'a late 4 does not move it back');
  assert.equal(client.position('other'), null);
});

test('rejoin: open rooms at once, rooms with a password one after another; busy keeps a room for next time', async () => {
  const { client, server, nextServer } = await signedIn();
  for (const [room, password] of [['a', 'pa'], ['open', null], ['b', 'pb']]) {
    const pj = client.join(room, password ? { password } : {});
    server.reply(await server.expect('join'), { room, epoch: 1, seq: 0, members: 1, protected: !!password });
    await within(pj, D);
  }
  server.bye(1001, 'going_away', 'backoff', 'server shutting down');
  const s2 = await nextServer();
  await s2.signIn('ann', 'web', 2, 2);
  // The open room and the first locked one are asked at once; the second locked one only
  // after the first is answered.
  const first = await s2.expect('join');
  const second = await s2.expect('join');
  const asked = [first.value, second.value].sort((x, y) => x.room.localeCompare(y.room));
  const since = { epoch: 1, seq: 0 };
  assert.deepEqual(asked, [
    { room: 'a', password: 'pa', since },
    { room: 'open', since },
  ]);
  for (const r of [first, second]) s2.reply(r, { room: r.value.room, epoch: 1, seq: 0, members: 1, protected: false });
  const third = await s2.expect('join');
  assert.deepEqual(third.value, { room: 'b', password: 'pb', since });
  const err = nextEvent(client, 'error');
  s2.error(third, 'busy', 'busy; try again');
  assert.equal((await within(err, D)).code, 'busy');
  assert.deepEqual(client.joined, ['a', 'b', 'open'], 'a busy room is kept for the next reconnect');
  await client.close();
});

for (const [code, name] of [
  [4003, 'replaced'],
  [4004, 'kicked'],
  [4001, 'auth_failed'],
  [1000, 'normal'],
]) {
  test(`bye ${code} (${name}): closed for good, no reconnect`, async () => {
    const { client, server, WS } = await signedIn();
    const events = [];
    for (const ev of ['bye', 'replaced', 'disconnected', 'closed']) client.on(ev, () => events.push(ev));
    const waiting = client.send('bob', 'x'); // dispatched on the connection that goes away
    await server.expect('send');
    const closed = nextEvent(client, 'closed');
    server.bye(code, name, 'never');
    const c = await within(closed, D);
    assert.equal(c.code, code);
    assert.equal(c.name, name);
    assert.equal(client.state, 'closed');
    assert.deepEqual(events, code === 4003 ? ['bye', 'replaced', 'disconnected', 'closed'] : ['bye', 'disconnected', 'closed']);
    assert.equal(client._timers.reconnect, null, 'no reconnect scheduled');
    assert.equal(WS.sockets.length, 1);
    await assert.rejects(within(waiting, D), (e) => e instanceof ChatError && e.code === 'closed');
    await assert.rejects(client.send('bob', 'y'), (e) => e instanceof ChatError && e.code === 'closed' && /replaced|kicked|auth_failed|normal/.test(e.message));
  });
}

test('a close code without a bye follows the table: 4003 never, 1011 backoff', async () => {
  const { client, server } = await signedIn();
  const replaced = nextEvent(client, 'replaced');
  server.ws.drop(4003);
  assert.equal((await within(replaced, D)).name, 'replaced');
  assert.equal(client.state, 'closed');

  const s = await signedIn();
  const disc = nextEvent(s.client, 'disconnected');
  s.server.ws.drop(1011);
  const d = await within(disc, D);
  assert.equal(d.name, 'internal_error');
  assert.equal(d.willReconnect, true);
  const s2 = await s.nextServer();
  await s2.signIn();
  await within(s.client.signedIn(), D);
  await s.client.close();
});

test('4002 token expired: a token function gets a fresh token and reconnects at once; a fixed token stops', async () => {
  const reasons = [];
  let n = 0;
  const { client, server, nextServer } = await signedIn({
    token: (req) => {
      reasons.push(req.reason);
      return `tok-${++n}`;
    },
    reconnectBase: 60000,
    reconnectMax: 60000,
  });
  const disc = nextEvent(client, 'disconnected');
  server.bye(4002, 'token_expired', 'after_refresh');
  const d = await within(disc, D);
  assert.equal(d.delay, 0, 'at once, not after the (here: one minute) backoff');
  const s2 = await nextServer();
  const auth = await s2.signIn();
  assert.deepEqual(auth.value, { token: 'tok-2' });
  assert.deepEqual(reasons, ['connect', 'reconnect']);
  await client.close();

  const fixed = await signedIn();
  const closed = nextEvent(fixed.client, 'closed');
  fixed.server.bye(4002, 'token_expired', 'after_refresh');
  assert.equal((await within(closed, D)).code, 4002);
});

test('a refused token: fixed token stops at once; a token function gets one more try', async () => {
  const s = setup();
  const server = await s.nextServer();
  const closed = nextEvent(s.client, 'closed');
  server.error(await server.expect('auth'), 'auth_bad_signature', 'bad signature');
  const c = await within(closed, D);
  assert.equal(c.name, 'auth_failed');
  assert.equal(c.error.code, 'auth_bad_signature');
  await assert.rejects(s.client.signedIn(), (e) => e.code === 'closed');

  const calls = [];
  const f = setup({ token: (req) => (calls.push(req), 'tok') });
  const s1 = await f.nextServer();
  f.client.on('error', () => {});
  s1.error(await s1.expect('auth'), 'auth_expired');
  const s2 = await f.nextServer();
  const closed2 = nextEvent(f.client, 'closed');
  s2.error(await s2.expect('auth'), 'auth_expired');
  assert.equal((await within(closed2, D)).error.code, 'auth_expired');
  assert.deepEqual(calls.map((c) => [c.reason, c.refused]), [['connect', null], ['reconnect', 'auth_expired']]);
});

test('a transient sign-in error (connections, shutting_down) backs off and tries again', async () => {
  const s = setup();
  const s1 = await s.nextServer();
  const disc = nextEvent(s.client, 'disconnected');
  s1.error(await s1.expect('auth'), 'connections', 'server full');
  assert.equal((await within(disc, D)).willReconnect, true);
  const s2 = await s.nextServer();
  await s2.signIn();
  await within(s.client.signedIn(), D);
  await s.client.close();
});

test('a socket that never opens (server down) backs off with full jitter, doubling up to the ceiling', async () => {
  const random = Math.random;
  Math.random = () => 0.999999;
  try {
    const s = setup({ reconnectBase: 2, reconnectMax: 10, reconnectAttempts: 5 });
    const delays = [];
    s.client.on('disconnected', (d) => delays.push(d));
    const closed = nextEvent(s.client, 'closed');
    for (let i = 0; i < 6; i++) (await within(s.WS.next(), D)).refuse();
    const c = await within(closed, D);
    assert.deepEqual(delays.slice(0, 5).map((d) => d.delay), [1, 3, 7, 9, 9]); // floor(0.999999 * min(10, 2 * 2^n))
    assert.ok(delays.slice(0, 5).every((d) => d.code === 1006 && d.willReconnect));
    assert.equal(c.code, 1006, 'gave up after reconnectAttempts');
  } finally {
    Math.random = random;
  }
});

test('the token function failing (e.g. the sign-in endpoint is down) is a backoff, not the end', async () => {
  let n = 0;
  const s = setup({
    token: async () => {
      if (++n === 1) throw new Error('fetch failed');
      return 'tok';
    },
  });
  const err = nextEvent(s.client, 'error');
  assert.match((await within(err, D)).message, /fetch failed/);
  const server = await s.nextServer();
  await server.signIn();
  await within(s.client.signedIn(), D);
  await s.client.close();
});

test('subprotocol sign-in offers chinwag.v1 and bearer.<token>, then asks whoami', async () => {
  const s = setup({ tokenIn: 'subprotocol' });
  const server = await s.nextServer();
  assert.deepEqual(server.ws.protocols, ['chinwag.v1', 'bearer.tok-1']);
  server.reply(await server.expect('whoami'), { user: 'ann', device: 'web', conn: 1, seq: 1 });
  assert.equal((await within(s.client.signedIn(), D)).user, 'ann');
  await s.client.close();
});

test('close() while waiting: waiting calls fail with closed; timeouts and aborts count the wait', async () => {
  const s = setup();
  await within(s.WS.next(), D); // never accepted
  const t = s.client.send('bob', 'x', { timeout: 1 });
  await assert.rejects(within(t, D), (e) => e.code === 'timeout');
  const ac = new AbortController();
  const a = s.client.send('bob', 'x', { signal: ac.signal });
  ac.abort();
  await assert.rejects(within(a, D), (e) => e.code === 'aborted');
  const w = s.client.send('bob', 'x');
  await s.client.close();
  await assert.rejects(within(w, D), (e) => e instanceof ChatError && e.code === 'closed');
  assert.equal(s.client.state, 'closed');
});

test('the close-code table and token expiry helpers', () => {
  assert.deepEqual(closeAdvice(4003), { code: 4003, name: 'replaced', reconnect: 'never' });
  assert.deepEqual(closeAdvice(4999), { code: 4999, name: 'unknown', reconnect: 'backoff' });
  const never = Object.entries(CLOSE_CODES).filter(([, v]) => v.reconnect === 'never').map(([k]) => Number(k));
  assert.deepEqual(never, [1000, 4001, 4003, 4004]);
  const claims = Buffer.from(JSON.stringify({ sub: 'a', exp: 4102444800 })).toString('base64url');
  assert.equal(tokenExpiry(`x.${claims}.y`), 4102444800000);
  assert.equal(tokenExpiry('garbage'), null);
});
