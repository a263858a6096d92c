// Integration tests of chinwag.js against the real chinwag server example `rpc_echo`, on both
// WebSocket engines. They FAIL (never skip) when the binary is missing: see support/server.js.
//
// No test sleeps to wait for something: each awaits a promise or an event under a deadline.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import zlib from 'node:zlib';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';
import { connect, ChinwagError } from '../chinwag.js';
import { startServer, requireRpcEcho } from './support/server.js';
import { within, nextEvent, prng } from './support/helpers.js';

const D = 20000; // deadline of a single await
const ENGINES = ['tungstenite', 'fastwebsockets'];
const te = new TextEncoder();
const td = new TextDecoder();
const jsRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/** Opens a client on `url`, waits until it is open. */
async function client(url, options = {}) {
  const conn = connect(url, { WebSocket, ...options });
  await within(conn.opened(), D, `connecting to ${url}`);
  return conn;
}

function get(url, headers = {}) {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { headers }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    req.on('error', reject);
  });
}

// The binary must exist: this test fails (it is not skipped) when it is missing.
test('the rpc_echo server binary exists', () => {
  requireRpcEcho();
});

for (const engine of ENGINES) {
  describe(`rpc_echo --engine ${engine}`, () => {
    let server;
    let conn;
    let idle; // a connection that stays idle, so that the server sends it a heartbeat
    let firstHeartbeat;
    const heartbeatsSeen = [];

    before(async () => {
      server = await startServer({ engine, extraArgs: ['--heartbeat-ms', '500'] });
      conn = await client(server.wsUrl);
      idle = await client(server.wsUrl, { heartbeatInterval: 0, onHeartbeat: (hb) => heartbeatsSeen.push(hb) });
      firstHeartbeat = nextEvent(idle, 'heartbeat');
    });

    after(async () => {
      if (conn) await within(conn.close(), D, 'close');
      if (idle) await within(idle.close(), D, 'close');
      if (server) await server.stop();
    });

    test('echo: bytes come back unchanged (binary, text, empty)', async () => {
      const all = Uint8Array.from({ length: 256 }, (_, i) => i);
      assert.deepEqual(await within(conn.requestBytes('echo', all), D), all);
      assert.equal(td.decode(await within(conn.requestBytes('echo', 'héllo wörld €😀'), D)), 'héllo wörld €😀');
      assert.equal((await within(conn.requestBytes('echo', new Uint8Array(0)), D)).length, 0);
    });

    test('echo.json: the JSON value comes back', async () => {
      const v = { message: 'Hello World', n: [1, 2.5, -3], nested: { ok: true, nil: null }, s: 'ünïcødé 😀' };
      assert.deepEqual(await within(conn.request('echo.json', v), D), v);
      assert.equal(await within(conn.request('echo.json', 'just a string'), D), 'just a string');
    });

    test('notify note: the server answers with note.ack carrying the same payload', async () => {
      const acked = new Promise((resolve) => conn.handleNotification('note.ack', (v) => resolve(v)));
      conn.notify('note', { hello: 'server', k: 7 });
      assert.deepEqual(await within(acked, D, 'note.ack'), { hello: 'server', k: 7 });
      conn.handleNotification('note.ack', null);
    });

    test('callback: the server requests an operation of the client (handle)', async () => {
      conn.handle('double', async (v) => v * 2);
      conn.handle('explode', () => {
        throw new Error('client-side failure 42');
      });
      assert.equal(await within(conn.request('callback', { op: 'double', value: 21 }), D), 42);
      await assert.rejects(
        within(conn.request('callback', { op: 'explode', value: null }), D),
        (e) => e instanceof ChinwagError && e.code === 'remote' && e.message.includes('client-side failure 42'),
      );
      await assert.rejects(
        within(conn.request('callback', { op: 'not.on.the.client', value: 1 }), D),
        (e) => e.code === 'remote' && e.message.includes('not.on.the.client'),
      );
    });

    test('fail: an E result whose text is the payload', async () => {
      await assert.rejects(
        within(conn.requestBytes('fail', 'this is the error text'), D),
        (e) => e instanceof ChinwagError && e.code === 'remote' && e.message === 'this is the error text',
      );
    });

    test('panic: an E result, and the connection survives', async () => {
      const opens = conn.stats.opens;
      await assert.rejects(within(conn.request('panic', null), D), (e) => e.code === 'remote');
      assert.equal(await within(conn.request('echo.json', 'still here'), D), 'still here');
      assert.equal(conn.stats.opens, opens);
      assert.equal(conn.state, 'open');
    });

    test('unknown operation: an E result naming it', async () => {
      await assert.rejects(
        within(conn.request('no.such.operation', 1), D),
        (e) => e.code === 'remote' && e.message.includes('no.such.operation'),
      );
    });

    test('count: a streamed result of n S parts, then the end', async () => {
      assert.deepEqual(await within(conn.requestStream('count', 5).collect(), D), [1, 2, 3, 4, 5]);
      assert.deepEqual(await within(conn.requestStream('count', 0).collect(), D), []);
      const got = [];
      for await (const k of conn.requestStream('count', 100)) got.push(k);
      assert.deepEqual(got, Array.from({ length: 100 }, (_, i) => i + 1));
    });

    test('stream.echo: every part comes back as an S part, in order; the end ends it', async () => {
      const s = conn.streamRequest('stream.echo');
      const parts = ['first', Uint8Array.of(0, 1, 2, 255), 'ünïcødé', 'x'.repeat(70000), 'last'];
      for (const p of parts) s.write(p);
      s.end();
      const chunks = await within(s.collect(), D, 'stream.echo results');
      assert.deepEqual(
        chunks.map((c) => Buffer.from(c).toString('hex')),
        parts.map((p) => Buffer.from(typeof p === 'string' ? te.encode(p) : p).toString('hex')),
      );
      // Streams interleave with single requests on the same connection.
      const s2 = conn.streamRequest('stream.echo');
      s2.write('a');
      const mid = conn.request('echo.json', 'between');
      s2.write('b');
      s2.end();
      assert.equal(await within(mid, D), 'between');
      assert.equal(await within(s2.text(), D), 'ab');
    });

    test('200 concurrent requests with mixed sizes', async () => {
      const rnd = prng(engine.length * 7919);
      const calls = [];
      for (let i = 0; i < 200; i++) {
        const r = rnd();
        const size = r < 0.05 ? 1024 * 1024 + Math.floor(rnd() * 1000) : r < 0.2 ? 65536 : Math.floor(rnd() * 4096);
        const payload = Uint8Array.from({ length: size }, (_, j) => (i * 31 + j) & 0xff);
        if (i % 5 === 0) {
          const v = { i, s: 'v'.repeat(size % 3000) };
          calls.push(conn.request('echo.json', v).then((got) => assert.deepEqual(got, v)));
        } else {
          calls.push(
            conn.requestBytes('echo', payload).then((got) => {
              assert.equal(got.length, payload.length, `request ${i}`);
              assert.ok(Buffer.from(got).equals(Buffer.from(payload)), `request ${i} payload`);
            }),
          );
        }
      }
      await within(Promise.all(calls), 60000, '200 concurrent requests');
    });

    test('heartbeats sent by the client are accepted', async () => {
      const opens = conn.stats.opens;
      for (let i = 0; i < 3; i++) assert.ok(conn.sendHeartbeat(i / 2));
      assert.equal(await within(conn.request('echo.json', 1), D), 1);
      assert.equal(conn.stats.opens, opens);
    });

    test('chinwag.js is served at <mount>/chinwag.js with an ETag, gzip, and 304', async () => {
      const url = server.httpBase + 'chinwag.js';
      const file = readFileSync(path.join(jsRoot, 'chinwag.js'));
      const plain = await within(get(url), D, 'GET chinwag.js');
      assert.equal(plain.status, 200);
      assert.match(String(plain.headers['content-type']), /javascript/);
      const etag = plain.headers.etag;
      assert.ok(etag, 'an ETag header');
      assert.notEqual(plain.headers['content-encoding'], 'gzip');
      assert.ok(
        plain.body.equals(file),
        'the served chinwag.js is clients/js/chinwag.js (rebuild rpc_echo if the file changed since)',
      );
      const gz = await within(get(url, { 'Accept-Encoding': 'gzip' }), D, 'GET chinwag.js gzip');
      assert.equal(gz.status, 200);
      assert.equal(gz.headers['content-encoding'], 'gzip');
      assert.ok(zlib.gunzipSync(gz.body).equals(file), 'gzip body inflates to the file');
      assert.ok(gz.body.length < file.length, 'gzip is smaller');
      const cached = await within(get(url, { 'If-None-Match': etag }), D, 'conditional GET');
      assert.equal(cached.status, 304);
      assert.equal(cached.body.length, 0);
      assert.equal(cached.headers.etag, etag);
      const stale = await within(get(url, { 'If-None-Match': '"not-the-etag"' }), D);
      assert.equal(stale.status, 200);
    });

    test('the server sends heartbeats to an idle connection (onHeartbeat sees load and time)', async () => {
      // The server sends one after 20 s without writing (its default); the deadline is generous.
      const hb = await within(firstHeartbeat, 90000, "the server's first heartbeat");
      assert.ok(Number.isInteger(hb.load) && hb.load >= 0 && hb.load <= 0xffff);
      assert.ok(Math.abs(hb.time.getTime() - Date.now()) < 24 * 3600 * 1000, 'a plausible UNIX time');
      assert.ok(heartbeatsSeen.length >= 1);
      assert.equal(idle.state, 'open');
    });

    test('RetryResult under --max-requests 1 is retried transparently', async () => {
      const limited = await startServer({ engine, maxRequests: 1 });
      const c = await client(limited.wsUrl, { maxRetries: 100, maxRetryWait: 60000 });
      try {
        const retries = [];
        c.on('retry', (r) => retries.push(r));
        // Both go out in the same tick; the server reads the second while the first sleeps.
        const both = await within(Promise.all([c.request('sleep', 1000), c.request('sleep', 1000)]), 60000, 'two sleeps');
        assert.deepEqual(both, [1000, 1000]);
        assert.ok(c.stats.retries >= 1, 'the server sent at least one RetryResult');
        assert.ok(retries.every((r) => r.op === 'sleep' && r.wait >= 0));
      } finally {
        await c.close();
        await limited.stop();
      }
    });

    test('RetryResult with maxRetries 0: the refused request fails with a clear error', async () => {
      const limited = await startServer({ engine, maxRequests: 1 });
      const c = await client(limited.wsUrl, { maxRetries: 0 });
      try {
        const results = await within(
          Promise.allSettled([c.request('sleep', 1000), c.request('sleep', 1000)]),
          60000,
          'two sleeps',
        );
        const ok = results.filter((r) => r.status === 'fulfilled');
        const refused = results.filter((r) => r.status === 'rejected');
        assert.equal(ok.length, 1);
        assert.equal(refused.length, 1);
        assert.equal(refused[0].reason.code, 'retry_exhausted');
        assert.match(refused[0].reason.message, /"sleep" still refused after 0 retries/);
      } finally {
        await c.close();
        await limited.stop();
      }
    });

    test('pending requests are rejected, saying why, when the server dies mid-request', async () => {
      const doomed = await startServer({ engine });
      const c = await client(doomed.wsUrl, { keepAlive: false });
      try {
        // Handlers are attached at once: the rejections happen while the test awaits the kill.
        const sleeping = c.request('sleep', 60000).then(() => assert.fail('sleep resolved'), (e) => e);
        const open = c.streamRequest('stream.echo'); // never ended
        open.write('part');
        const streaming = open.collect().then(() => assert.fail('stream ended'), (e) => e);
        // Requests are read in order: once this answer is back the server is inside `sleep`.
        assert.equal(await within(c.request('echo.json', 'in'), D), 'in');
        await doomed.kill();
        const e = await within(sleeping, D, 'the pending sleep');
        assert.ok(e instanceof ChinwagError);
        assert.equal(e.code, 'closed');
        assert.equal(e.reason, 'transport');
        assert.match(e.message, /before the result arrived: connection lost/);
        assert.equal((await within(streaming, D, 'the open stream')).code, 'closed');
        assert.equal(c.state, 'closed');
      } finally {
        await c.close();
        await doomed.kill();
      }
    });

    test('reconnect after a restart on the same port; bounded queue while disconnected', async () => {
      let srv = await startServer({ engine });
      const port = srv.wsPort;
      const c = await client(srv.wsUrl, { reconnectBase: 20, reconnectMax: 250, maxQueue: 5 });
      try {
        assert.equal(await within(c.request('echo.json', 'before'), D), 'before');
        const lost = nextEvent(c, 'close');
        await srv.kill();
        const info = await within(lost, D, 'the close event');
        assert.equal(info.willReconnect, true);
        assert.notEqual(c.state, 'open');

        // While disconnected: five calls wait, the sixth fails at once.
        const queued = [];
        for (let i = 0; i < 4; i++) queued.push(c.request('echo.json', { i }));
        c.notify('note', 'queued');
        assert.equal(c.queued, 5);
        await assert.rejects(c.request('echo.json', 'one too many'), (e) => e.code === 'queue_full' && /5 messages/.test(e.message));
        assert.throws(() => c.notify('note', 'x'), (e) => e.code === 'queue_full');

        const reopened = nextEvent(c, 'open');
        srv = await startServer({ engine, wsPort: port });
        assert.equal(srv.wsPort, port);
        await within(reopened, D, 'the reconnect');
        assert.ok(c.stats.reconnects >= 1);
        assert.deepEqual(await within(Promise.all(queued), D), [0, 1, 2, 3].map((i) => ({ i })));
        assert.equal(await within(c.request('echo.json', 'after'), D), 'after');
      } finally {
        await c.close();
        await srv.kill();
      }
    });
  });
}
