// Compression (permessage-deflate, RFC 7692) in a real headless Chromium: the web demo of
// chinwag-server on the yawc engine with `[websocket.deflate]` set, where the browser's offer is
// agreed (the handshake's answer, read through the DevTools protocol) and two people chat in a
// room with messages over the 256-byte threshold, which reach the browsers as compressed frames
// (RSV1 set, read by a TCP relay in front of the server: the page and DevTools only see inflated
// payloads); and the same demo on the default engine, tungstenite, which agrees to no extension and
// sends every frame plain. Screenshots go to target/browser-screenshots/.
//
// No sleeps: every wait is for a selector or an event, with a deadline.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { startChinwagServer } from '../support/chinwag-server.js';
import { launchChromium, screenshotDir } from '../support/browser.js';
import { signIn, joinRoom, say, bodies } from '../support/demo-page.js';
import { startTap } from '../support/ws-tap.js';

const D = 20000; // deadline of every wait
const THRESHOLD = 256; // websocket.deflate.threshold's default: shorter messages go plain
const shots = screenshotDir();
let browser;
const servers = {};

// What the two people say: short lines, and paragraphs of a few hundred bytes and over 1 KiB.
const SHORT = 'Hi Bob! I have the notes from the design review.';
const PARAGRAPH =
  'The review went well: the sidebar stays on the left, the composer grows with its text up to ' +
  'six lines, and the member list moves into a drawer on narrow screens. We still need a decision ' +
  'on the unread badges, since two people asked for counts and one for dots only. (paragraph end)';
const LONG = Array.from(
  { length: 8 },
  (_, i) => `Point ${i + 1}: the room list keeps its order across reloads, and a room with unread messages shows a badge until it is opened.`,
).join(' ') + ' (long end)';
const REPLY =
  'Thanks Ada. Counts for direct messages and dots for rooms would keep both camps happy, and it ' +
  'matches what the mockups already show for the lobby. I will update the mockups tonight and ' +
  'share them in this room tomorrow morning before the stand-up. (reply end)';

before(async () => {
  browser = await launchChromium();
  // yawc with `[websocket.deflate]` set explicitly, so that the test holds whatever the server's
  // default (chinwag_server::config::DEFLATE_BY_DEFAULT); tungstenite with the defaults.
  servers.yawc = await startChinwagServer({
    extraArgs: ['--engine', 'yawc', '--websocket-deflate-server-no-context-takeover', 'true'],
  });
  servers.tungstenite = await startChinwagServer();
  for (const s of Object.values(servers)) s.tap = await startTap({ host: '127.0.0.1', port: s.port });
});

after(async () => {
  if (browser) await browser.close();
  for (const s of Object.values(servers)) {
    if (s.tap) await s.tap.close();
    await s.stop();
    s.removeDataDir();
  }
});

/** Resolves with the first event `name` of `cdp`, or fails after the deadline. */
function nextEvent(cdp, name) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no ${name} within ${D} ms`)), D);
    cdp.once(name, (e) => {
      clearTimeout(timer);
      resolve(e);
    });
  });
}

/**
 * A person on their own browser context with the demo open through the server's relay; resolves
 * once the page is loaded, with `handshake`: a promise of the WebSocket handshake's response
 * headers (names in lowercase).
 */
async function person(server) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await context.newPage();
  page.setDefaultTimeout(D);
  const errors = [];
  page.on('pageerror', (err) => errors.push(err));
  page.on('console', (m) => m.type() === 'error' && !/WebSocket|Failed to load resource/.test(m.text()) && errors.push(new Error(m.text())));
  const cdp = await context.newCDPSession(page);
  await cdp.send('Network.enable');
  const handshake = nextEvent(cdp, 'Network.webSocketHandshakeResponseReceived').then(({ response }) =>
    Object.fromEntries(Object.entries(response.headers).map(([k, v]) => [k.toLowerCase(), v])),
  );
  await page.goto(server.tap.url('/'));
  return { context, page, errors, handshake };
}

/** Two people chat in `room` of `server`; returns both, their handshakes and what each saw. */
async function chatInARoom(server, room) {
  const ada = await person(server);
  const bob = await person(server);
  await signIn(ada.page, 'ada');
  await signIn(bob.page, 'bob');
  await joinRoom(ada.page, room);
  await joinRoom(bob.page, room);
  await ada.page.locator('#conv-sub', { hasText: '2 members' }).waitFor();
  await say(ada.page, SHORT);
  await say(ada.page, PARAGRAPH);
  await say(ada.page, LONG);
  await bodies(bob.page, '(long end)');
  await say(bob.page, REPLY);
  const want = [SHORT, PARAGRAPH, LONG, REPLY];
  assert.deepEqual(await bodies(ada.page, '(reply end)'), want, "ada's page");
  assert.deepEqual(await bodies(bob.page, '(reply end)'), want, "bob's page");
  return { ada, bob, handshakes: [await ada.handshake, await bob.handshake] };
}

/** The data frames (text, binary) the server sent on each WebSocket connection of `tap`. */
function dataFrames(tap) {
  return tap.connections.map((c) => c.frames.filter((f) => f.opcode === 1 || f.opcode === 2));
}

test('on yawc the browser agrees permessage-deflate, and long messages arrive compressed', async () => {
  const s = servers.yawc;
  const { ada, bob, handshakes } = await chatInARoom(s, 'design');
  try {
    for (const h of handshakes) {
      const ext = h['sec-websocket-extensions'];
      assert.match(ext ?? '', /^permessage-deflate\b/, `agreed: ${JSON.stringify(h)}`);
      // The server's settings: no context takeover either way.
      assert.match(ext, /server_no_context_takeover/, ext);
      assert.match(ext, /client_no_context_takeover/, ext);
    }
    await ada.page.screenshot({ path: path.join(shots, 'deflate-room-chat.png'), animations: 'disabled' });
    // Both people's connections got compressed frames; what went plain was under the threshold.
    const perConnection = dataFrames(s.tap).filter((frames) => frames.length > 0);
    const compressed = perConnection.filter((frames) => frames.some((f) => f.rsv1));
    assert.ok(compressed.length >= 2, `compressed frames on both connections: ${JSON.stringify(perConnection)}`);
    // And really smaller: the 1 KiB message (more with its envelope) in a frame of less.
    for (const frames of compressed) {
      assert.ok(frames.some((f) => f.rsv1 && f.length < LONG.length / 2), JSON.stringify(frames));
    }
    for (const f of perConnection.flat().filter((f) => !f.rsv1)) {
      assert.ok(f.length < THRESHOLD, `a plain frame of ${f.length} bytes`);
    }
    assert.doesNotMatch(s.stderr(), /permessage-deflate/, 'no warning: yawc implements it');
    assert.deepEqual([...ada.errors, ...bob.errors], []);
  } finally {
    await ada.context.close();
    await bob.context.close();
  }
});

test('on tungstenite no extension is agreed and every frame is plain', async () => {
  const s = servers.tungstenite;
  const { ada, bob, handshakes } = await chatInARoom(s, 'design');
  try {
    for (const h of handshakes) {
      assert.equal(h['sec-websocket-extensions'], undefined, `no extension: ${JSON.stringify(h)}`);
    }
    const frames = dataFrames(s.tap).flat();
    assert.ok(frames.some((f) => f.length >= THRESHOLD), `long messages went through: ${JSON.stringify(frames)}`);
    assert.ok(frames.every((f) => !f.rsv1), 'no frame is compressed');
    // Compression only by default (if at all) on an engine without it: nothing said above debug.
    assert.doesNotMatch(s.stderr(), /permessage-deflate|websocket\.deflate/);
    assert.deepEqual([...ada.errors, ...bob.errors], []);
  } finally {
    await ada.context.close();
    await bob.context.close();
  }
});
