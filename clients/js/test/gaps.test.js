// Gap filling of the chat client (fillGaps): a room's seq that jumps on a live subscription is
// filled from the room's history before the later publishes are emitted. The test plays the
// hub's chat door on a fake WebSocket (support/fake-chat.js). No server and no sleeps: every
// wait is for a request, an event or a promise, under a deadline.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CHAT_DEFAULTS } from '../chinwag.js';
import { fakeChatClient } from './support/fake-chat.js';
import { within, nextEvent } from './support/helpers.js';

const D = 5000;
const EPOCH = 7;

async function signedIn(options = {}) {
  const { client, nextServer } = fakeChatClient(options, D);
  const server = await nextServer();
  await server.signIn();
  await within(client.signedIn(), D, 'sign-in');
  return { client, server, nextServer };
}

/** Joins `room` at `seq` and records its 'room' events (as seqs) and 'gap' events, in one list. */
async function joined(client, server, room = 'r', seq = 0) {
  const pj = client.join(room);
  server.reply(await server.expect('join'), { room, epoch: EPOCH, seq, members: 2, protected: false });
  await within(pj, D, 'join');
  const log = [];
  client.on('room', (m) => m.room === room && log.push(m.seq));
  client.on('gap', (g) => {
    const { error, ...rest } = g;
    log.push(error ? { ...rest, error: error.code } : rest);
  });
  return log;
}

const pub = (seq, { room = 'r', epoch = EPOCH } = {}) => ({ room, epoch, seq, from: { user: 'bob', device: 'd' }, sent_at: seq, body: `m${seq}` });

function publish(server, ...seqs) {
  for (const seq of seqs) server.notify('room', pub(seq));
}

function page(from, to, { first = 1, last = to, epoch = EPOCH } = {}) {
  const publications = [];
  for (let s = from; s <= to; s++) publications.push(pub(s, { epoch }));
  return { room: 'r', epoch, first, last, publications };
}

/** Resolves once `log` holds `n` entries (checked on every room/gap event). */
function logged(client, log, n) {
  if (log.length >= n) return Promise.resolve(log);
  return new Promise((resolve) => {
    const check = () => {
      if (log.length < n) return;
      client.off('room', check).off('gap', check);
      resolve(log);
    };
    client.on('room', check).on('gap', check);
  });
}

/** Lets the notifications already received run (their handlers are microtasks; no timer). */
const settle = () => new Promise((r) => setImmediate(r));

const seqs = (from, to) => Array.from({ length: to - from + 1 }, (_, i) => from + i);

test('defaults: fillGaps on, at most 1000 filled and 1000 held', () => {
  assert.equal(CHAT_DEFAULTS.fillGaps, true);
  assert.equal(CHAT_DEFAULTS.maxGapFill, 1000);
  assert.equal(CHAT_DEFAULTS.maxGapHold, 1000);
});

test('a gap filled by one page: the missing publishes come first, in order, then gap filled, then the one that showed it', async () => {
  const { client, server } = await signedIn();
  const log = await joined(client, server, 'r', 2);
  publish(server, 3, 6);
  const h = await within(server.expect('history'), D, 'the history request');
  assert.deepEqual(h.value, { room: 'r', after: 3, limit: 2 });
  await settle();
  assert.deepEqual(log, [3], '6 is held while the gap is filled');
  assert.deepEqual(client.position('r'), { epoch: EPOCH, seq: 3 });
  const m4 = nextEvent(client, 'room', (m) => m.seq === 4);
  server.reply(h, page(4, 5));
  assert.equal((await within(m4, D)).body, 'm4', 'an ordinary room message');
  await within(logged(client, log, 5), D);
  assert.deepEqual(log, [3, 4, 5, { room: 'r', epoch: EPOCH, from: 4, to: 5, filled: true }, 6]);
  assert.deepEqual(client.position('r'), { epoch: EPOCH, seq: 6 });
  publish(server, 7);
  await within(logged(client, log, 6), D);
  assert.deepEqual(log.at(-1), 7, 'the stream carries on');
  await client.close();
});

test('a gap of 250 needs three pages (at most 100 each), asked one after another from the position', async () => {
  const { client, server } = await signedIn();
  const log = await joined(client, server, 'r', 0);
  publish(server, 1, 252);
  for (const [after, limit] of [[1, 100], [101, 100], [201, 50]]) {
    const h = await within(server.expect('history'), D, `history after ${after}`);
    assert.deepEqual(h.value, { room: 'r', after, limit });
    assert.deepEqual(client.position('r'), { epoch: EPOCH, seq: after }, 'the position moves as the pages are emitted');
    server.reply(h, page(after + 1, after + limit, { last: 252 }));
  }
  await within(logged(client, log, 253), D);
  assert.deepEqual(log, [...seqs(1, 251), { room: 'r', epoch: EPOCH, from: 2, to: 251, filled: true }, 252]);
  await client.close();
});

test('live publishes during a fill are held and follow it in order, without duplicates; a second hole is filled too', async () => {
  const { client, server } = await signedIn();
  const log = await joined(client, server, 'r', 2);
  publish(server, 3, 6);
  const h1 = await within(server.expect('history'), D);
  assert.deepEqual(h1.value, { room: 'r', after: 3, limit: 2 });
  // Meanwhile: 7, a duplicate 6, 8, then 9 is dropped by the send queue, 10, 11, and 3 again.
  publish(server, 7, 6, 8, 10, 11, 3);
  await settle();
  assert.deepEqual(log, [3], 'nothing after the hole before it is filled');
  server.reply(h1, page(4, 5, { last: 11 }));
  const h2 = await within(server.expect('history'), D, 'the second hole');
  assert.deepEqual(h2.value, { room: 'r', after: 8, limit: 1 });
  assert.deepEqual(log, [3, 4, 5, { room: 'r', epoch: EPOCH, from: 4, to: 5, filled: true }, 6, 7, 8]);
  publish(server, 12);
  server.reply(h2, page(9, 9, { last: 12 }));
  await within(logged(client, log, 12), D);
  assert.deepEqual(log, [
    3, 4, 5, { room: 'r', epoch: EPOCH, from: 4, to: 5, filled: true }, 6, 7, 8,
    9, { room: 'r', epoch: EPOCH, from: 9, to: 9, filled: true }, 10, 11, 12,
  ]);
  assert.deepEqual(client.position('r'), { epoch: EPOCH, seq: 12 });
  await client.close();
});

test('other rooms are not held while one room fills', async () => {
  const { client, server } = await signedIn();
  await joined(client, server, 'r', 0);
  const other = await joined(client, server, 'o', 0);
  publish(server, 1, 5);
  const h = await within(server.expect('history'), D);
  const seen = nextEvent(client, 'room', (m) => m.room === 'o');
  server.notify('room', pub(1, { room: 'o' }));
  await within(seen, D, 'a publish of another room during the fill');
  assert.deepEqual(other, [1]);
  server.reply(h, page(2, 4));
  await client.close();
});

for (const [name, answer, gap] of [
  ['trimmed (the history starts after the hole)', (s, h) => s.reply(h, { room: 'r', epoch: EPOCH, first: 6, last: 6, publications: [pub(6)] }), { reason: 'trimmed' }],
  ['another epoch (the history was lost)', (s, h) => s.reply(h, page(4, 5, { epoch: EPOCH + 1 })), { reason: 'epoch_changed' }],
  ['history_unavailable', (s, h) => s.error(h, 'history_unavailable'), { reason: 'unavailable', error: 'history_unavailable' }],
  ['not_member', (s, h) => s.error(h, 'not_member'), { reason: 'not_member', error: 'not_member' }],
  ['no_such_room (the room keeps no history)', (s, h) => s.error(h, 'no_such_room'), { reason: 'no_history', error: 'no_such_room' }],
]) {
  test(`history cannot fill the gap: ${name} → gap filled false, then the held publishes`, async () => {
    const { client, server } = await signedIn();
    const log = await joined(client, server, 'r', 2);
    publish(server, 3, 6);
    const h = await within(server.expect('history'), D);
    publish(server, 7);
    await settle();
    answer(server, h);
    await within(logged(client, log, 4), D);
    assert.deepEqual(log, [3, { room: 'r', epoch: EPOCH, from: 4, to: 5, filled: false, ...gap }, 6, 7]);
    publish(server, 8);
    await within(logged(client, log, 5), D);
    assert.equal(log[4], 8, 'the stream carries on');
    if (gap.reason === 'no_history') {
      // Known now: the next gap of that room is reported at once, without asking again.
      publish(server, 10);
      await within(logged(client, log, 7), D);
      assert.deepEqual(log.slice(5), [{ room: 'r', epoch: EPOCH, from: 9, to: 9, filled: false, reason: 'no_history' }, 10]);
    }
    const next = client.whoami(); // the next request is this one, not another history
    server.reply(await server.expect('whoami'), { user: 'ann', device: 'web', conn: 1, seq: 1 });
    await within(next, D);
    await client.close();
  });
}

test('the history holds only the end of the hole: the lost start is a gap, the rest is emitted', async () => {
  const { client, server } = await signedIn();
  const log = await joined(client, server, 'r', 2);
  publish(server, 3, 8);
  const h = await within(server.expect('history'), D);
  assert.deepEqual(h.value, { room: 'r', after: 3, limit: 4 });
  server.reply(h, page(6, 7, { first: 6, last: 8 }));
  await within(logged(client, log, 5), D);
  assert.deepEqual(log, [3, { room: 'r', epoch: EPOCH, from: 4, to: 5, filled: false, reason: 'trimmed' }, 6, 7, 8]);
  await client.close();
});

test('a room without history where publishes race: a late one closes the hole, no gap at all', async () => {
  const { client, server } = await signedIn();
  const log = await joined(client, server, 'r', 2);
  publish(server, 3, 5);
  const h = await within(server.expect('history'), D);
  publish(server, 4);
  await settle();
  server.error(h, 'no_such_room');
  await within(logged(client, log, 3), D);
  assert.deepEqual(log, [3, 4, 5]);
  await client.close();
});

test('more held than maxGapHold: the fill gives up (overflow); its late answer changes nothing', async () => {
  const { client, server } = await signedIn({ maxGapHold: 2 });
  const log = await joined(client, server, 'r', 2);
  publish(server, 3, 6);
  const h = await within(server.expect('history'), D);
  publish(server, 7, 8);
  await within(logged(client, log, 5), D);
  assert.deepEqual(log, [3, { room: 'r', epoch: EPOCH, from: 4, to: 5, filled: false, reason: 'overflow' }, 6, 7, 8]);
  server.reply(h, page(4, 5));
  publish(server, 9);
  await within(logged(client, log, 6), D);
  assert.deepEqual(log.slice(5), [9], 'the late page is not emitted');
  await client.close();
});

test('a gap larger than maxGapFill is not asked for (too_many)', async () => {
  const { client, server } = await signedIn({ maxGapFill: 3 });
  const log = await joined(client, server, 'r', 2);
  publish(server, 3, 8);
  await within(logged(client, log, 3), D);
  assert.deepEqual(log, [3, { room: 'r', epoch: EPOCH, from: 4, to: 7, filled: false, reason: 'too_many' }, 8]);
  const next = client.whoami();
  server.reply(await server.expect('whoami'), { user: 'ann', device: 'web', conn: 1, seq: 1 });
  await within(next, D);
  await client.close();
});

test('a publish of a new epoch during a fill: the held ones first (gap unfilled), then the new epoch', async () => {
  const { client, server } = await signedIn();
  const log = await joined(client, server, 'r', 2);
  publish(server, 3, 6);
  const h = await within(server.expect('history'), D);
  server.notify('room', pub(1, { epoch: EPOCH + 1 }));
  await within(logged(client, log, 4), D);
  assert.deepEqual(log, [3, { room: 'r', epoch: EPOCH, from: 4, to: 5, filled: false, reason: 'epoch_changed' }, 6, 1]);
  assert.deepEqual(client.position('r'), { epoch: EPOCH + 1, seq: 1 });
  server.reply(h, page(4, 5));
  await client.close();
});

test('a reconnect during a fill: the rejoin recovers from the position (the last publish emitted), no duplicate', async () => {
  const { client, server, nextServer } = await signedIn();
  const log = await joined(client, server, 'r', 2);
  publish(server, 3, 6);
  const h = await within(server.expect('history'), D);
  publish(server, 7);
  await settle();
  server.ws.drop(1006); // the history answer never comes
  const s2 = await nextServer();
  await s2.signIn('ann', 'web', 2, 2);
  const rejoin = await s2.expect('join');
  assert.deepEqual(rejoin.value, { room: 'r', since: { epoch: EPOCH, seq: 3 } }, 'since the last publish emitted');
  publish(s2, 4, 5, 6, 7); // recovered from the history, before the join's result
  const rejoined = nextEvent(client, 'rejoined');
  s2.reply(rejoin, { room: 'r', epoch: EPOCH, seq: 7, members: 2, protected: false, recovered: true, missed: 4 });
  await within(rejoined, D);
  publish(s2, 8);
  await within(logged(client, log, 6), D);
  assert.deepEqual(log, [3, 4, 5, 6, 7, 8]);
  void h;
  await client.close();
});

test('a reconnect during a fill whose rejoin does not recover: the held ones were never emitted, the position stays', async () => {
  const { client, server, nextServer } = await signedIn();
  const log = await joined(client, server, 'r', 2);
  publish(server, 3, 6);
  await within(server.expect('history'), D);
  server.ws.drop(1006);
  const s2 = await nextServer();
  await s2.signIn('ann', 'web', 2, 2);
  const rejoin = await s2.expect('join');
  assert.deepEqual(rejoin.value.since, { epoch: EPOCH, seq: 3 });
  const rejoined = nextEvent(client, 'rejoined');
  s2.reply(rejoin, { room: 'r', epoch: EPOCH, seq: 9, members: 2, protected: false, recovered: false, reason: 'trimmed', missed: 0 });
  assert.equal((await within(rejoined, D)).recovered, false);
  assert.deepEqual(client.position('r'), { epoch: EPOCH, seq: 9 });
  publish(s2, 10);
  await within(logged(client, log, 2), D);
  assert.deepEqual(log, [3, 10], 'no gap event: the rejoined event said recovered false');
  await client.close();
});

test('leaving the room during a fill ends it: nothing more is emitted for it', async () => {
  const { client, server } = await signedIn();
  const log = await joined(client, server, 'r', 2);
  publish(server, 3, 6);
  const h = await within(server.expect('history'), D);
  const left = client.leave('r');
  server.reply(await server.expect('leave'), { left: true });
  await within(left, D);
  server.reply(h, page(4, 5));
  const next = client.whoami();
  server.reply(await server.expect('whoami'), { user: 'ann', device: 'web', conn: 1, seq: 1 });
  await within(next, D);
  await settle();
  assert.deepEqual(log, [3]);
  assert.equal(client.position('r'), null);
  await client.close();
});

test('fillGaps false: gap (filled false, reason off) at once, no history request', async () => {
  const { client, server } = await signedIn({ fillGaps: false });
  const log = await joined(client, server, 'r', 2);
  publish(server, 3, 6, 7);
  await within(logged(client, log, 4), D);
  assert.deepEqual(log, [3, { room: 'r', epoch: EPOCH, from: 4, to: 5, filled: false, reason: 'off' }, 6, 7]);
  const next = client.whoami();
  server.reply(await server.expect('whoami'), { user: 'ann', device: 'web', conn: 1, seq: 1 });
  await within(next, D);
  await client.close();
});
