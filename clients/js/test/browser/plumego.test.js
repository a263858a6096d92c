// plumego's Quick Start client, as its README writes it, in a real headless Chromium against
// chinwag-server started with the plumego profile of docs/server.md: the right room password gets
// in and messages flow (to every member, the sender too, as plumego's BroadcastRoom does); a wrong
// or missing one is refused with plumego's status, 403, before the upgrade.
//
// The client code below is the README's code block verbatim; the test substitutes only the port
// (the server listens on one the system chose) and, for the refusals, the password in the URL.
// It runs in a page of its own origin (a small HTTP server of the test), as an application page
// would: the profile's `websocket.origin.allowed = ["*"]` lets it in, as plumego's ServeWSWithAuth
// does. No sleeps: every wait has a deadline.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { mkdtempSync, readFileSync, writeFileSync, rmSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import os from 'node:os';
import { startChinwagServer } from '../support/chinwag-server.js';
import { launchChromium, screenshotDir } from '../support/browser.js';

const D = 20000;

// plumego's README, "Quick Start" > "Client Connection", verbatim.
const QUICK_START = `// JavaScript client
const ws = new WebSocket('ws://localhost:8080/ws?room=chat&room_password=room-password');

ws.onopen = () => {
    ws.send('Hello, Server!');
};

ws.onmessage = (event) => {
    console.log('Received:', event.data);
};`;

// The plumego profile, as docs/server.md writes it (its first TOML block after the heading): the
// page and this test cannot drift apart. The test's --listen flag beats the file's address.
const DOCS = readFileSync(path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..', '..', 'docs', 'server.md'), 'utf8');
const PROFILE = (() => {
  const at = DOCS.indexOf('## The plumego profile');
  const m = at < 0 ? null : /```toml\n([\s\S]*?)```/.exec(DOCS.slice(at));
  if (!m) throw new Error('docs/server.md has no plumego profile (a ```toml block after "## The plumego profile")');
  return m[1];
})();

let server;
let browser;
let page_server;
let pageOrigin;
let confDir;

before(async () => {
  confDir = mkdtempSync(path.join(os.tmpdir(), 'chinwag-plumego-'));
  const conf = path.join(confDir, 'plumego.toml');
  writeFileSync(conf, PROFILE);
  server = await startChinwagServer({ extraArgs: ['--config', conf] });
  browser = await launchChromium();
  // The application's page: the client code in a <script>, served from another origin.
  page_server = http.createServer((req, res) => {
    const u = new URL(req.url, 'http://x');
    const code = u.searchParams.get('code') ?? '';
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
    res.end(`<!doctype html><meta charset="utf-8"><title>plumego client</title><pre id="log"></pre><script>${code}</script>`);
  });
  await new Promise((resolve) => page_server.listen(0, '127.0.0.1', resolve));
  pageOrigin = `http://127.0.0.1:${page_server.address().port}`;
});

after(async () => {
  if (browser) await browser.close();
  if (page_server) await new Promise((resolve) => page_server.close(resolve));
  if (server) {
    await server.stop();
    server.removeDataDir();
  }
  if (confDir) rmSync(confDir, { recursive: true, force: true });
});

/** The README's code, on this server's port; `password` replaces the URL's password (null: none). */
function client({ password = 'room-password' } = {}) {
  let code = QUICK_START.replace('ws://localhost:8080/', `ws://localhost:${server.port}/`);
  if (password === null) code = code.replace('&room_password=room-password', '');
  else code = code.replace('room_password=room-password', `room_password=${encodeURIComponent(password)}`);
  return code;
}

/** A page running `code`; what it logs, and the life of its WebSocket (observed, not changed). */
async function open(code) {
  const context = await browser.newContext();
  await context.addInitScript(() => {
    const Native = window.WebSocket;
    window.__life = [];
    window.WebSocket = class extends Native {
      constructor(...args) {
        super(...args);
        this.addEventListener('open', () => window.__life.push('open'));
        this.addEventListener('close', (e) => window.__life.push(`close ${e.code}`));
      }
    };
  });
  const page = await context.newPage();
  page.setDefaultTimeout(D);
  const logged = [];
  page.on('console', (m) => m.type() === 'log' && logged.push(m.text()));
  await page.goto(`${pageOrigin}/?code=${encodeURIComponent(code)}`);
  return { context, page, logged };
}

async function until(what, fn) {
  const deadline = Date.now() + D;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setImmediate(r));
  }
}

/** The status of a raw upgrade of `url` from Node (what the browser does not show a page). */
function upgradeStatus(url, origin) {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const s = net.connect(Number(u.port), '127.0.0.1', () => {
      s.write(
        `GET ${u.pathname}${u.search} HTTP/1.1\r\nHost: ${u.host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
          `Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nOrigin: ${origin}\r\n\r\n`,
      );
    });
    let got = '';
    s.setEncoding('utf8');
    const done = () => resolve({ status: Number(got.split(' ')[1]), text: got });
    s.on('data', (d) => {
      got += d;
      // A 101 is all head; a refusal is read to its end (its body is the reason).
      if (got.startsWith('HTTP/1.1 101') && got.includes('\r\n\r\n')) {
        s.destroy();
        done();
      } else if (/\r\n\r\n[\s\S]*\n$/.test(got)) {
        s.destroy();
        done();
      }
    });
    s.on('end', done);
    s.on('error', reject);
    setTimeout(() => reject(new Error(`no answer to the upgrade of ${url}`)), D).unref();
  });
}

test("plumego's Quick Start client, unchanged: the right password gets in and messages flow", async () => {
  const a = await open(client());
  const b = await open(client());
  try {
    // Each gets its own hello back (plumego's room echo) and the other's.
    await until('both hellos at the first client', () => a.logged.filter((l) => l === 'Received: Hello, Server!').length === 2);
    await until('both hellos at the second client', () => b.logged.filter((l) => l === 'Received: Hello, Server!').length >= 1);
    assert.deepEqual(await a.page.evaluate(() => window.__life), ['open']);
    assert.deepEqual(await b.page.evaluate(() => window.__life), ['open']);
    // Two anonymous connections: neither replaced the other.
    await b.page.evaluate(() => ws.send('second page here'));
    await until("the second page's message at the first", () => a.logged.includes('Received: second page here'));
    await a.page.evaluate((log) => (document.querySelector('#log').textContent = log.join('\n')), a.logged);
    await a.page.screenshot({ path: path.join(screenshotDir(), 'plumego-quick-start.png') });
  } finally {
    await a.context.close();
    await b.context.close();
  }
});

test("plumego's Quick Start client with a wrong or missing password is refused with 403", async () => {
  for (const password of ['wrong-password', null]) {
    const c = await open(client({ password }));
    try {
      const life = await until('the refusal', async () => {
        const l = await c.page.evaluate(() => window.__life);
        return l.length ? l : null;
      });
      assert.deepEqual(life, ['close 1006'], `${password}: never opened`);
      assert.deepEqual(c.logged, [], `${password}: nothing received`);
    } finally {
      await c.context.close();
    }
  }
  // The status the browser does not show: plumego's 403, with the reason, before the upgrade.
  const base = `ws://localhost:${server.port}/ws?room=chat`;
  for (const url of [`${base}&room_password=wrong-password`, base]) {
    const r = await upgradeStatus(url, pageOrigin);
    assert.equal(r.status, 403, r.text);
    assert.match(r.text, /wrong room password/);
  }
  assert.equal((await upgradeStatus(`${base}&room_password=room-password`, pageOrigin)).status, 101);
});
