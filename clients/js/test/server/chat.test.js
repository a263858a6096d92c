// The chat client (ChatClient) against the real `chinwag-server` binary: direct messages in
// order, the offline queue replayed after a reconnect and after a server restart, rooms, a
// second sign-on replacing the first (and no reconnect after 4003), errors of the real server.
// Missing binary = failing tests (support/chinwag-server.js). No sleeps: every wait is for an
// event or a result, under a deadline.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import WebSocket from 'ws';
import { chat, ChatError } from '../../chinwag.js';
import { startChinwagServer } from '../support/chinwag-server.js';
import { within, nextEvent } from '../support/helpers.js';

const D = 20000;
let server;
const clients = new Set();

before(async () => {
  server = await startChinwagServer();
});

after(async () => {
  for (const c of clients) await c.close();
  if (server) {
    await server.stop();
    server.removeDataDir();
  }
});

/** A client of `user` signing in with dev tokens (fetched again for every attempt). */
function client(user, options = {}, srv = server) {
  const c = chat(options.url ?? srv.chatWs, {
    WebSocket,
    token: async () => (await (options.tokenServer ?? srv).devToken(user, options.device)).token,
    ...options,
  });
  c.on('error', () => {}); // asserted where it matters
  c.ackedUpTo = 0;
  c.on('acked', ({ id }) => (c.ackedUpTo = Math.max(c.ackedUpTo, id)));
  clients.add(c);
  return c;
}

async function signedIn(user, options) {
  const c = client(user, options);
  await within(c.signedIn(), D, `${user} signs in`);
  return c;
}

/** Resolves with the next `n` direct messages of `c`. */
function messages(c, n) {
  return new Promise((resolve) => {
    const got = [];
    const fn = (m) => {
      got.push(m);
      if (got.length === n) {
        c.off('message', fn);
        resolve(got);
      }
    };
    c.on('message', fn);
  });
}

/** Resolves once `c`'s automatic acks have covered `lastId` (the server removed them). */
async function acked(c, lastId) {
  if (c.ackedUpTo >= lastId) return;
  await within(nextEvent(c, 'acked', ({ id }) => id >= lastId), D, `ack of ${lastId}`);
}

test('direct messages arrive in order, with ids that grow, and are acknowledged', async () => {
  const ann = await signedIn('ann-order');
  const bob = await signedIn('bob-order');
  const N = 50;
  const got = messages(bob, N);
  const sent = [];
  for (let i = 0; i < N; i++) sent.push(ann.send('bob-order', `m${i}`));
  const results = await within(Promise.all(sent), D);
  assert.ok(results.every((r) => r.queued && r.delivered === 1));
  const ms = await within(got, D, 'bob gets 50 messages');
  assert.deepEqual(ms.map((m) => m.body), results.map((_, i) => `m${i}`));
  assert.deepEqual(ms.map((m) => m.id), results.map((r) => r.id));
  for (let i = 1; i < N; i++) assert.ok(ms[i].id > ms[i - 1].id);
  assert.deepEqual(ms[0].from, { user: 'ann-order', device: 'web' });
  assert.equal(typeof ms[0].sent_at, 'number');
  await acked(bob, results[N - 1].id);
  assert.ok(bob.stats.acks >= 1 && bob.stats.acks <= N, 'acks are cumulative');

  // Everything was acknowledged: a new connection of bob gets nothing replayed. A message sent
  // after it signed in is the first thing it gets.
  await bob.close();
  const bob2 = await signedIn('bob-order');
  const next = messages(bob2, 1);
  const r = await ann.send('bob-order', 'after');
  const [m] = await within(next, D);
  assert.equal(m.id, r.id, 'nothing older was replayed');
  assert.equal(bob2.stats.duplicates, 0);
});

test('offline queue: messages to a user with no connection are replayed in order on sign-in', async () => {
  const ann = await signedIn('ann-offline');
  const ids = [];
  for (let i = 0; i < 5; i++) ids.push((await ann.send('bob-offline', `while away ${i}`)).id);
  const bob = client('bob-offline');
  const got = await within(messages(bob, 5), D, 'replay');
  assert.deepEqual(got.map((m) => m.body), [0, 1, 2, 3, 4].map((i) => `while away ${i}`));
  assert.deepEqual(got.map((m) => m.id), ids);
  await within(bob.signedIn(), D);
  await acked(bob, ids[4]);
});

test('unacknowledged messages come again after a reconnect; a client that saw them drops the duplicates', async () => {
  const ann = await signedIn('ann-dup');
  const ids = [];
  for (let i = 0; i < 3; i++) ids.push((await ann.send('bob-dup', `d${i}`)).id);
  // bob's first client processes them but acknowledges nothing.
  const bob1 = client('bob-dup', { autoAck: false });
  await within(messages(bob1, 3), D);
  await bob1.close();
  // A later client that remembers the last id it processed (here: the second) drops 1 and 2,
  // shows 3, and acknowledges all three.
  const bob2 = client('bob-dup', { lastMessageId: ids[1] });
  const [m] = await within(messages(bob2, 1), D);
  assert.equal(m.id, ids[2]);
  await within(bob2.signedIn(), D);
  await acked(bob2, ids[2]);
  assert.equal(bob2.stats.duplicates, 2);
  await bob2.close();
  // Acknowledged: nothing is replayed any more.
  const bob3 = client('bob-dup', { autoAck: false });
  await within(bob3.signedIn(), D);
  const after = messages(bob3, 1);
  const r = await ann.send('bob-dup', 'fresh');
  assert.equal((await within(after, D))[0].id, r.id);
});

test('rooms: join, publish to every member in seq order, rooms, members, online, leave', async () => {
  const ann = await signedIn('ann-room');
  const bob = await signedIn('bob-room', { device: 'laptop' });
  const j1 = await ann.join('js-lobby');
  assert.equal(j1.room, 'js-lobby');
  assert.equal(j1.protected, false);
  const j2 = await bob.join('js-lobby');
  assert.equal(j2.members, 2);
  assert.equal(j2.epoch, j1.epoch);
  const bobGot = new Promise((resolve) => {
    const got = [];
    bob.on('room', (m) => m.room === 'js-lobby' && got.push(m) === 3 && resolve(got));
  });
  const annGot = nextEvent(ann, 'room', (m) => m.room === 'js-lobby' && m.body === 'p2');
  const rs = [];
  for (let i = 0; i < 3; i++) rs.push(await ann.publish('js-lobby', `p${i}`));
  assert.deepEqual(rs.map((r) => r.seq), [1, 2, 3]);
  assert.ok(rs.every((r) => r.delivered === 2));
  const got = await within(bobGot, D);
  assert.deepEqual(got.map((m) => [m.seq, m.body, m.from.user]), [
    [1, 'p0', 'ann-room'],
    [2, 'p1', 'ann-room'],
    [3, 'p2', 'ann-room'],
  ]);
  assert.equal((await within(annGot, D)).seq, 3, 'the publisher gets its own publish');
  const rooms = await ann.rooms();
  const lobby = rooms.find((r) => r.room === 'js-lobby');
  assert.equal(lobby.members, 2);
  const page = await ann.members('js-lobby');
  assert.deepEqual(page.members.map((m) => `${m.user}/${m.device}`).sort(), ['ann-room/web', 'bob-room/laptop']);
  assert.equal(page.next, null);
  const on = await ann.online(['bob-room', 'nobody-here']);
  assert.deepEqual(on.users, { 'bob-room': ['laptop'], 'nobody-here': [] });
  assert.ok(on.online >= 2);
  assert.deepEqual(await bob.leave('js-lobby'), { left: true });
  assert.deepEqual(bob.joined, []);
  assert.equal((await ann.publish('js-lobby', 'alone')).delivered, 1);
});

test('rooms: a client whose connection blinks recovers exactly what it missed, on every reconnect', async () => {
  const room = 'js-recover';
  const pub = await signedIn('rec-pub');
  const sub = await signedIn('rec-sub', { reconnectBase: 50 });
  await pub.join(room);
  await sub.join(room);
  const seen = [];
  sub.on('room', (m) => m.room === room && seen.push(m.seq));
  const sawUpTo = async (seq) => {
    if (seen.includes(seq)) return;
    await within(nextEvent(sub, 'room', (m) => m.room === room && m.seq >= seq), D, `seq ${seq}`);
  };
  let last = 0;
  for (let round = 0; round < 3; round++) {
    for (let i = 0; i < 3; i++) last = (await pub.publish(room, `live ${round}.${i}`)).seq;
    await sawUpTo(last);
    assert.deepEqual(sub.position(room).seq, last);
    // A network blink: the socket dies without a close frame; the client reconnects by itself
    // and rejoins with the position it saw last, while the room goes on.
    const rejoined = nextEvent(sub, 'rejoined', (r) => r.room === room);
    const disc = nextEvent(sub, 'disconnected');
    sub._conn._ws.terminate();
    const d = await within(disc, D, 'the blink is seen');
    assert.equal(d.willReconnect, true);
    for (let i = 0; i < 4; i++) last = (await pub.publish(room, `while away ${round}.${i}`)).seq;
    const r = await within(rejoined, D, `rejoin ${round}`);
    assert.equal(r.recovered, true, JSON.stringify(r));
  }
  await sawUpTo(last);
  const all = Array.from({ length: last }, (_, i) => i + 1);
  assert.deepEqual(seen, all, 'every publish once, in order, across three blinks');
  const page = await sub.history(room, { limit: 2 });
  assert.deepEqual(page.publications.map((p) => p.seq), [last, last - 1]);
  assert.equal(page.publications[0].body, 'while away 2.3');
  await sub.close();
  await pub.close();
});

test('a conversation is kept both ways and a new device reads it', async () => {
  const ann = await signedIn('ann-conv', { device: 'phone' });
  const bo = await signedIn('bo-conv');
  const first = await ann.send('bo-conv', 'hi bo');
  assert.equal(first.seq, 1, 'kept: its place in the conversation');
  const reply = await bo.send('ann-conv', 'hi ann');
  assert.equal(reply.seq, 2);
  assert.equal((await ann.send('bo-conv', 'typing', { ttlMs: 0 })).seq, undefined, 'live only: not kept');
  const tab = await signedIn('ann-conv', { device: 'new-laptop' });
  const page = await tab.conversation('bo-conv');
  assert.equal(page.with, 'bo-conv');
  assert.deepEqual(
    page.messages.map((m) => [m.seq, m.from.user, m.to, m.body]),
    [
      [2, 'bo-conv', 'ann-conv', 'hi ann'],
      [1, 'ann-conv', 'bo-conv', 'hi bo'],
    ],
  );
  assert.equal(page.messages[1].id, first.id, "the id bo's message event had");
  const after = await bo.conversation('ann-conv', { after: 1 });
  assert.deepEqual(after.messages.map((m) => m.body), ['hi ann']);
  await tab.close();
  await ann.close();
  await bo.close();
});

test('errors of the real server are ChatErrors with its codes', async () => {
  const ann = await signedIn('ann-err');
  await assert.rejects(ann.publish('js-not-joined', 'x'), (e) => e instanceof ChatError && e.code === 'not_member');
  await assert.rejects(ann.send('nobody-online-js', 'x', { ttlMs: 0 }), (e) => e instanceof ChatError && e.code === 'offline');
  await assert.rejects(ann.join(''), (e) => e.code === 'bad_room');
  await assert.rejects(ann.request('nope', {}), (e) => e.code === 'internal' && /unknown operation "nope"/.test(e.message));
});

test('a token the server refuses: closed for good with auth_failed, no retry with a fixed token', async () => {
  const c = chat(server.chatWs, { WebSocket, token: 'not-a-jwt' });
  clients.add(c);
  const closed = await within(nextEvent(c, 'closed'), D);
  assert.equal(closed.name, 'auth_failed');
  assert.equal(closed.error.code, 'auth_malformed');
  assert.equal(c.stats.connects, 1);
});

test('a second sign-on of the same user replaces the first: bye 4003, replaced, no reconnect', async () => {
  const first = await signedIn('dan-replaced');
  const events = [];
  for (const ev of ['bye', 'replaced', 'closed']) first.on(ev, (e) => events.push([ev, e.code]));
  const replaced = nextEvent(first, 'closed');
  const second = await signedIn('dan-replaced', { device: 'phone' });
  const c = await within(replaced, D, 'the first is replaced');
  assert.equal(c.code, 4003);
  assert.equal(c.name, 'replaced');
  assert.deepEqual(events, [
    ['bye', 4003],
    ['replaced', 4003],
    ['closed', 4003],
  ]);
  assert.equal(first.state, 'closed');
  assert.equal(first.stats.connects, 1);
  assert.equal(first._timers.reconnect, null, 'no reconnect scheduled');
  await assert.rejects(first.send('x', 'y'), (e) => e.code === 'closed');
  // The newer one stays: it is the user's only connection after a round trip to the server.
  assert.equal((await second.whoami()).device, 'phone');
  assert.deepEqual((await second.online(['dan-replaced'])).users['dan-replaced'], ['phone']);
  assert.equal(second.state, 'signed-in');
});

test('server restart (SIGTERM, same data dir and port): queued messages survive; a live client reconnects on its own and rejoins', async () => {
  const srv = await startChinwagServer();
  const port = srv.port;
  const dataDir = srv.dataDir;
  let current = srv;
  const tokenServer = { devToken: (u, d) => current.devToken(u, d) }; // new secret after the restart
  const eve = client('eve-restart', { tokenServer, reconnectBase: 200 }, srv);
  await within(eve.signedIn(), D);
  await eve.join('js-restart');
  const ann = client('ann-restart', { tokenServer }, srv);
  await within(ann.signedIn(), D);
  const ids = [];
  for (let i = 0; i < 3; i++) ids.push((await ann.send('fay-restart', `durable ${i}`)).id);
  await ann.close();

  const disc = nextEvent(eve, 'disconnected');
  const stopped = await srv.stop();
  assert.deepEqual(stopped, { code: 0, signal: null }, 'SIGTERM exits 0');
  const d = await within(disc, D);
  assert.equal(d.code, 1001);
  assert.equal(d.willReconnect, true);

  current = await startChinwagServer({ dataDir, port });
  try {
    const back = await within(nextEvent(eve, 'signed-in'), D, 'eve reconnects by herself');
    assert.equal(back.reconnected, true);
    assert.deepEqual(eve.joined, ['js-restart']);
    const members = await eve.members('js-restart');
    assert.deepEqual(members.members.map((m) => m.user), ['eve-restart'], 'rejoined after the restart');

    const fay = client('fay-restart', { tokenServer }, current);
    const got = await within(messages(fay, 3), D, 'queued messages after the restart');
    assert.deepEqual(got.map((m) => m.body), ['durable 0', 'durable 1', 'durable 2']);
    assert.deepEqual(got.map((m) => m.id), ids);
    await fay.close();
    await eve.close();
  } finally {
    await current.stop();
    srv.removeDataDir();
  }
});
