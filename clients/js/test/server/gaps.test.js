// Gap filling (fillGaps) against the real chinwag-server: a reader whose socket is paused
// misses publishes (its send queue on the server is full: the hub drops them for it, and the
// publisher's result counts them in `dropped`); once it reads again, the next publish shows the
// jump and the client reads the missed ones from the room's history by itself. The server runs
// without a message rate (the publisher sends a few hundred publishes at once) and with its
// default history (redb, the last 1 000 publishes). No sleeps: every wait is for a result or
// an event, under a deadline. Missing binary = failing test (support/chinwag-server.js).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import WebSocket from 'ws';
import { chat } from '../../chinwag.js';
import { startChinwagServer } from '../support/chinwag-server.js';
import { within, nextEvent } from '../support/helpers.js';

const D = 60000;
let server;
const clients = new Set();

before(async () => {
  server = await startChinwagServer({ extraArgs: ['--hub-limits-message-rate-per-second', '0'] });
});

after(async () => {
  for (const c of clients) await c.close();
  if (server) {
    await server.stop();
    server.removeDataDir();
  }
});

/** `ws`, remembering the sockets it made (to pause one). */
class Tracked extends WebSocket {
  constructor(...args) {
    super(...args);
    Tracked.sockets.push(this);
  }
}
Tracked.sockets = [];

async function signedIn(user, options = {}) {
  const c = chat(server.chatWs, {
    WebSocket: options.WebSocket ?? WebSocket,
    token: async () => (await server.devToken(user)).token,
    ...options,
  });
  c.on('error', () => {});
  clients.add(c);
  await within(c.signedIn(), D, `${user} signs in`);
  return c;
}

test('a reader that stopped reading misses publishes (dropped by its send queue); the client fills the gap from the history, in order, once', async (t) => {
  const room = 'js-gap-fill';
  const reader = await signedIn('gap-reader', { WebSocket: Tracked });
  const publisher = await signedIn('gap-publisher');
  await reader.join(room);
  await publisher.join(room);
  const readerSocket = Tracked.sockets.at(-1);

  const log = [];
  reader.on('room', (m) => m.room === room && log.push(m.seq));
  reader.on('gap', (g) => g.room === room && log.push({ from: g.from, to: g.to, filled: g.filled, reason: g.reason }));
  const emitted = (seq) => (log.includes(seq) ? Promise.resolve() : nextEvent(reader, 'room', (m) => m.room === room && m.seq >= seq));

  // The reader stops reading: the server's writes fill the socket buffers, then its send queue
  // (4 MiB), after which publishes are dropped for it. Publish 16 KiB bodies, 32 at a time,
  // until a publish says one member missed it.
  readerSocket.pause();
  const body = 'x'.repeat(16 * 1024);
  const dropped = new Set();
  let last = 0;
  for (let batch = 0; dropped.size === 0; batch++) {
    assert.ok(batch < 100, 'no publish was dropped for the paused reader within 3 200 publishes');
    const rs = await within(Promise.all(Array.from({ length: 32 }, () => publisher.publish(room, body))), D, 'a batch of publishes');
    for (const r of rs) {
      if (r.dropped > 0) dropped.add(r.seq);
      last = Math.max(last, r.seq);
    }
  }
  const firstDropped = Math.min(...dropped);
  readerSocket.resume();

  // Everything queued before the first drop arrives; then one more publish shows the jump.
  await within(emitted(firstDropped - 1), D, `the reader reads up to ${firstDropped - 1}`);
  let final;
  do {
    final = await within(publisher.publish(room, 'after the gap'), D);
    last = final.seq;
    if (final.dropped > 0) dropped.add(final.seq);
  } while (final.dropped > 0 && final.seq - firstDropped < 1000);
  await within(emitted(last), D, `the reader gets up to ${last}`);

  const seqs = log.filter((e) => typeof e === 'number');
  const gaps = log.filter((e) => typeof e !== 'number');
  assert.deepEqual(seqs, Array.from({ length: last }, (_, i) => i + 1), 'every publish once, in seq order');
  assert.ok(gaps.length > 0, 'the reader saw a gap');
  for (const g of gaps) {
    assert.equal(g.filled, true, `filled from the history: ${JSON.stringify(g)}`);
    for (let s = g.from; s <= g.to; s++) assert.ok(dropped.has(s), `${s} was dropped for the reader`);
  }
  assert.ok(gaps.some((g) => g.from === firstDropped), 'the first dropped publish starts a gap');
  assert.deepEqual(reader.position(room).seq, last);
  t.diagnostic(`${last} publishes, ${dropped.size} dropped for the paused reader, filled in ${gaps.length} gap(s)`);
});
