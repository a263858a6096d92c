// The web demo of chinwag-server in a real headless Chromium (Debian's, driven by
// playwright-core): two people chat in a room; a person who closed the page gets the direct
// messages sent meanwhile, in order, when they come back; a room's history shows on join and a
// network blink loses nothing; a second sign-on of the same user replaces the first tab, which
// says so; the lobby's member list, count and online dots follow presence events with the poll
// off; a second device sees the direct-message history, and the replaced tab, taking over
// again, shows what arrived while it was replaced. Screenshots go to target/browser-screenshots/.
//
// No sleeps: every wait is for a selector or a page state, with a deadline.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { startChinwagServer } from '../support/chinwag-server.js';
import { launchChromium, screenshotDir } from '../support/browser.js';
import { signIn, joinRoom, say, bodies } from '../support/demo-page.js';

const D = 20000; // deadline of every wait
let server;
let browser;
const shots = screenshotDir();

before(async () => {
  server = await startChinwagServer();
  browser = await launchChromium();
});

after(async () => {
  if (browser) await browser.close();
  if (server) {
    await server.stop();
    server.removeDataDir();
  }
});

/**
 * A new browser context (a person on their own device) with one page of the demo. `poll: false`
 * turns the demo's fallback poll of members and online states off, so that only the server's
 * events can change them.
 */
async function person({ viewport = { width: 1280, height: 800 }, poll = true, at = server } = {}) {
  const context = await browser.newContext({ viewport });
  if (!poll) await context.addInitScript(() => (window.CHINWAG_DEMO = { peoplePollMs: 0 }));
  const page = await context.newPage();
  page.setDefaultTimeout(D);
  const errors = [];
  page.on('pageerror', (err) => errors.push(err));
  page.on('console', (m) => m.type() === 'error' && !/WebSocket|Failed to load resource/.test(m.text()) && errors.push(new Error(m.text())));
  await page.goto(at.http);
  return { context, page, errors };
}

test('two people chat in a room', async () => {
  // The poll off: the room made by joining tells ada that bob came (presence events).
  const ada = await person({ poll: false });
  const bob = await person({ poll: false });
  try {
    await ada.page.locator('#signin-user').waitFor();
    await ada.page.screenshot({ path: path.join(shots, 'signin.png'), animations: 'disabled' });
    await signIn(ada.page, 'ada');
    await signIn(bob.page, 'bob');
    await joinRoom(ada.page, 'design');
    await joinRoom(bob.page, 'design');
    // Both see the other as a member of the room.
    await ada.page.locator('#conv-sub', { hasText: '2 members' }).waitFor();

    await say(ada.page, 'Hi Bob! Shall we review the mockups?');
    await bodies(bob.page, 'review the mockups');
    await say(bob.page, 'Sure, give me five minutes.');
    await say(bob.page, 'Opening them now.');
    const seenByAda = await bodies(ada.page, 'Opening them now.');
    assert.deepEqual(seenByAda, ['Hi Bob! Shall we review the mockups?', 'Sure, give me five minutes.', 'Opening them now.']);
    assert.deepEqual(await bodies(bob.page, 'Opening them now.'), seenByAda);
    // Who is online: bob is listed as online on ada's side.
    await ada.page.locator('#people-list button[data-person="bob"] .dot.on').waitFor();
    await ada.page.screenshot({ path: path.join(shots, 'room-chat.png'), animations: 'disabled' });
    // The same page on a phone-sized screen: the sidebar is behind the menu button.
    await ada.page.setViewportSize({ width: 390, height: 760 });
    await ada.page.locator('#menu').waitFor({ state: 'visible' });
    await ada.page.screenshot({ path: path.join(shots, 'room-chat-narrow.png'), animations: 'disabled' });
    await ada.page.locator('#menu').click();
    await ada.page.locator('#room-list button[data-room="design"]').waitFor({ state: 'visible' });
    await ada.page.screenshot({ path: path.join(shots, 'sidebar-narrow.png'), animations: 'disabled' });
    assert.deepEqual([...ada.errors, ...bob.errors], []);
  } finally {
    await ada.context.close();
    await bob.context.close();
  }
});

test('messages sent while a person is away show up, in order, when they come back', async () => {
  const ada = await person();
  let cy = await person();
  try {
    await signIn(ada.page, 'ada2');
    await signIn(cy.page, 'cy');
    await cy.context.close(); // cy closes the browser
    cy = null;

    // ada writes to cy, who is away.
    await ada.page.locator('#dm-form input[name=user]').fill('cy');
    await ada.page.locator('#dm-form button[type=submit]').click();
    await ada.page.locator('#conv-title', { hasText: 'cy' }).waitFor();
    const sent = ['Are you there?', 'The build is green again.', 'Ping me when you are back!'];
    for (const text of sent) await say(ada.page, text);
    await ada.page.locator('#messages .msg:not(.pending) .body', { hasText: sent[2] }).waitFor();
    assert.equal(await ada.page.locator('#messages .msg.pending').count(), 0);

    // cy comes back on a new browser: the messages wait in the DM list, in order.
    cy = await person();
    await signIn(cy.page, 'cy');
    const entry = cy.page.locator('#dm-list button[data-peer="ada2"]');
    await entry.locator('.badge', { hasText: '3' }).waitFor();
    await cy.page.locator('#toast', { hasText: 'arrived while you were away' }).waitFor();
    await entry.click();
    await cy.page.locator('#messages .divider', { hasText: 'While you were away' }).waitFor();
    assert.deepEqual(await bodies(cy.page, sent[2]), sent);
    await cy.page.screenshot({ path: path.join(shots, 'offline-messages.png'), animations: 'disabled' });

    // They were acknowledged: a reload shows them once (from this browser's history), no duplicates.
    await cy.page.reload();
    await cy.page.locator('#conn-state[data-state="signed-in"]').waitFor();
    await cy.page.locator('#dm-list button[data-peer="ada2"]').click();
    assert.deepEqual(await bodies(cy.page, sent[2]), sent);
    // And cy can answer.
    await say(cy.page, 'Back now!');
    const adaSees = await ada.page.locator('#messages .msg .body', { hasText: 'Back now!' });
    await adaSees.waitFor();
    assert.deepEqual([...ada.errors, ...cy.errors], []);
  } finally {
    await ada.context.close();
    if (cy) await cy.context.close();
  }
});

test('a new device shows the conversation, both ways, from the server', async () => {
  const ada = await person();
  const dee = await person();
  let ada2 = null;
  try {
    await signIn(ada.page, 'ada3');
    await signIn(dee.page, 'dee');
    await ada.page.locator('#dm-form input[name=user]').fill('dee');
    await ada.page.locator('#dm-form button[type=submit]').click();
    await ada.page.locator('#conv-title', { hasText: 'dee' }).waitFor();
    await say(ada.page, 'Did the release go out?');
    await dee.page.locator('#dm-list button[data-peer="ada3"]').click();
    await bodies(dee.page, 'Did the release go out?');
    await say(dee.page, 'Yes, at noon.');
    await bodies(ada.page, 'Yes, at noon.');
    // ada opens chinwag on another computer: nothing in its storage, nothing left to replay
    // (the first device acknowledged dee's message). The conversation comes from the server.
    await ada.context.close();
    ada2 = await person();
    await signIn(ada2.page, 'ada3');
    await ada2.page.locator('#dm-form input[name=user]').fill('dee');
    await ada2.page.locator('#dm-form button[type=submit]').click();
    await ada2.page.locator('#conv-title', { hasText: 'dee' }).waitFor();
    assert.deepEqual(await bodies(ada2.page, 'Yes, at noon.'), ['Did the release go out?', 'Yes, at noon.']);
    await ada2.page.screenshot({ path: path.join(shots, 'conversation-new-device.png'), animations: 'disabled' });
    assert.deepEqual([...dee.errors, ...ada2.errors], []);
  } finally {
    await ada.context.close().catch(() => {});
    await dee.context.close();
    if (ada2) await ada2.context.close();
  }
});

test("a room's recent history shows on join, and after a network blink nothing is missing", async () => {
  const { chat } = await import('../../chinwag.js');
  const WebSocket = (await import('ws')).default;
  const ned = chat(server.chatWs, { WebSocket, token: async () => (await server.devToken('ned')).token });
  ned.on('error', () => {});
  await ned.signedIn();
  await ned.join('blink');
  await ned.publish('blink', 'said before ivy came 1');
  await ned.publish('blink', 'said before ivy came 2');
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  // Every WebSocket of the page, so the test can cut one as a network blink would.
  await context.addInitScript(() => {
    const Native = window.WebSocket;
    window.__sockets = [];
    window.WebSocket = class extends Native {
      constructor(...args) {
        super(...args);
        window.__sockets.push(this);
      }
    };
  });
  const page = await context.newPage();
  page.setDefaultTimeout(D);
  try {
    await page.goto(server.http);
    await signIn(page, 'ivy');
    await joinRoom(page, 'blink');
    assert.deepEqual(await bodies(page, 'said before ivy came 2'), ['said before ivy came 1', 'said before ivy came 2']);
    await ned.publish('blink', 'live 1');
    await bodies(page, 'live 1');
    // The blink: the socket goes; ned keeps talking; the page reconnects by itself and
    // rejoins with the last seq it saw.
    await page.evaluate(() => window.__sockets.at(-1).close());
    await page.locator('#conn-state:not([data-state="signed-in"])').waitFor();
    for (let i = 1; i <= 3; i++) await ned.publish('blink', `while ivy blinked ${i}`);
    await page.locator('#conn-state[data-state="signed-in"]').waitFor();
    await ned.publish('blink', 'after the blink');
    assert.deepEqual(await bodies(page, 'after the blink'), [
      'said before ivy came 1',
      'said before ivy came 2',
      'live 1',
      'while ivy blinked 1',
      'while ivy blinked 2',
      'while ivy blinked 3',
      'after the blink',
    ]);
    assert.equal(await page.locator('#messages .msg.system', { hasText: 'could not be recovered' }).count(), 0);
    await page.screenshot({ path: path.join(shots, 'after-blink.png'), animations: 'disabled' });
  } finally {
    await context.close();
    await ned.close();
  }
});

test('a second sign-on of the same user replaces the first tab, which shows a notice and stays off', async () => {
  const first = await person();
  const second = await person();
  try {
    await signIn(first.page, 'eve');
    await signIn(second.page, 'eve');
    const notice = first.page.locator('#replaced');
    await notice.waitFor({ state: 'visible' });
    await first.page.locator('#replaced-title', { hasText: 'You signed in somewhere else' }).waitFor();
    await first.page.locator('#conn-state[data-state="closed"]', { hasText: 'Signed in elsewhere' }).waitFor();
    await first.page.screenshot({ path: path.join(shots, 'replaced.png'), animations: 'disabled' });
    // The newer tab stays signed in: a message to itself goes through its connection.
    await second.page.locator('#dm-form input[name=user]').fill('eve');
    await second.page.locator('#dm-form button[type=submit]').click();
    await say(second.page, 'note to self');
    await second.page.locator('#messages .msg:not(.pending) .body', { hasText: 'note to self' }).waitFor();
    assert.equal(await second.page.locator('#conn-state').getAttribute('data-state'), 'signed-in');
    // The replaced tab did not reconnect (it would have replaced the newer one in turn).
    assert.equal(await first.page.evaluate(() => document.querySelector('#conn-state').dataset.state), 'closed');
    assert.equal(await second.page.locator('#replaced').isVisible(), false);
    // "Use chinwag here" takes over again: now the other tab is the replaced one.
    await first.page.locator('#replaced-here').click();
    await first.page.locator('#conn-state[data-state="signed-in"]').waitFor();
    await second.page.locator('#replaced').waitFor({ state: 'visible' });
    assert.deepEqual([...first.errors, ...second.errors], []);
  } finally {
    await first.context.close();
    await second.context.close();
  }
});

test('while the server restarts the page says it is offline, then reconnects by itself and shows what was queued', async () => {
  // A server of its own, restarted on the same port and data directory.
  const own = await startChinwagServer();
  let current = own;
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await context.newPage();
  page.setDefaultTimeout(D);
  try {
    await page.goto(own.http);
    await signIn(page, 'gus');
    await own.stop();
    await page.locator('#conn-state[data-state="reconnecting"]').waitFor();
    await page.locator('#banner', { hasText: 'You are offline' }).waitFor();
    await page.screenshot({ path: path.join(shots, 'reconnecting.png'), animations: 'disabled' });
    current = await startChinwagServer({ dataDir: own.dataDir, port: own.port });
    // Someone writes to gus before the page is back (it may still be waiting for its next try).
    const { chat } = await import('../../chinwag.js');
    const WebSocket = (await import('ws')).default;
    const hal = chat(current.chatWs, { WebSocket, token: async () => (await current.devToken('hal')).token });
    await hal.signedIn();
    await hal.send('gus', 'first while you were out');
    await hal.send('gus', 'second while you were out');
    await hal.close();
    await page.locator('#conn-state[data-state="signed-in"]').waitFor();
    await page.locator('#banner').waitFor({ state: 'hidden' });
    await page.locator('#dm-list button[data-peer="hal"] .badge', { hasText: '2' }).waitFor();
    await page.locator('#dm-list button[data-peer="hal"]').click();
    assert.deepEqual(await bodies(page, 'second while you were out'), ['first while you were out', 'second while you were out']);
  } finally {
    await context.close();
    await current.stop();
    own.removeDataDir();
  }
});

/** The number in the People heading's "· N online". */
async function onlineCount(page) {
  const t = await page.locator('#online-count').textContent();
  const m = /(\d+) online/.exec(t || '');
  return m ? Number(m[1]) : null;
}

test("the lobby's members, count and online dots follow presence events, with no poll", async () => {
  // A server of its own: nobody else is online, so the counts are exact.
  const own = await startChinwagServer();
  const ada = await person({ poll: false, at: own });
  let bob = await person({ poll: false, at: own });
  try {
    await signIn(ada.page, 'ada-p');
    await ada.page.locator('#conv-title', { hasText: '# lobby' }).waitFor();
    await ada.page.locator('#conv-sub', { hasText: '1 member here' }).waitFor();
    await ada.page.locator('#online-count', { hasText: '1 online' }).waitFor();
    const before = await onlineCount(ada.page);
    assert.equal(before, 1);
    assert.equal(await ada.page.evaluate(() => window.CHINWAG_DEMO.peoplePollMs), 0, 'the poll is off');

    // bob signs in: he joins the lobby, and ada's page learns it from the presence event alone.
    await signIn(bob.page, 'bob-p');
    await ada.page.locator('#conv-sub', { hasText: '2 members here' }).waitFor();
    await ada.page.locator('#messages .msg.system', { hasText: 'bob-p joined.' }).waitFor();
    await ada.page.locator('#people-list button[data-person="bob-p"] .dot.on').waitFor();
    await ada.page.locator('#online-count', { hasText: `${before + 1} online` }).waitFor();
    await ada.page.screenshot({ path: path.join(shots, 'presence-joined.png'), animations: 'disabled' });

    // ada opens the conversation with bob: online, as the People list says.
    await ada.page.locator('#people-list button[data-person="bob-p"]').click();
    await ada.page.locator('#conv-sub', { hasText: 'online' }).waitFor();

    // bob closes his browser: the leave event turns him away everywhere on ada's page.
    await bob.context.close();
    bob = null;
    await ada.page.locator('#conv-sub', { hasText: 'away' }).waitFor();
    await ada.page.locator('#people-list button[data-person="bob-p"] .meta', { hasText: 'away' }).waitFor();
    assert.equal(await ada.page.locator('#people-list button[data-person="bob-p"] .dot.on').count(), 0);
    await ada.page.locator('#online-count', { hasText: `${before} online` }).waitFor();
    // A message to him now: the header and the message say the same thing.
    await say(ada.page, 'Are you still there?');
    await ada.page.locator('#messages .msg .note', { hasText: 'bob-p was away when you sent this' }).waitFor();
    await ada.page.locator('#conv-sub', { hasText: 'away' }).waitFor();
    await ada.page.screenshot({ path: path.join(shots, 'presence-left-dm.png'), animations: 'disabled' });
    await ada.page.locator('#room-list button[data-room="lobby"]').click();
    await ada.page.locator('#conv-sub', { hasText: '1 member here' }).waitFor();
    await ada.page.locator('#messages .msg.system', { hasText: 'bob-p left.' }).waitFor();
    await ada.page.screenshot({ path: path.join(shots, 'presence-left.png'), animations: 'disabled' });
    assert.deepEqual(ada.errors, []);
  } finally {
    await ada.context.close();
    if (bob) await bob.context.close();
    await own.stop();
    own.removeDataDir();
  }
});

test('a second device of the same user sees the direct messages; the replaced tab, back, shows what came meanwhile', async () => {
  const first = await person({ poll: false });
  const fay = await person({ poll: false });
  let second = null;
  try {
    await signIn(first.page, 'kim');
    await signIn(fay.page, 'fay');
    // Both are in the lobby; fay says something there that kim's first tab shows.
    await first.page.locator('#conv-title', { hasText: '# lobby' }).waitFor();
    await fay.page.locator('#conv-title', { hasText: '# lobby' }).waitFor();
    await say(fay.page, 'Lobby: morning all.');
    await bodies(first.page, 'Lobby: morning all.');
    await first.page.locator('#dm-form input[name=user]').fill('fay');
    await first.page.locator('#dm-form button[type=submit]').click();
    await first.page.locator('#conv-title', { hasText: 'fay' }).waitFor();
    await say(first.page, 'Lunch at one?');
    await fay.page.locator('#dm-list button[data-peer="kim"]').click();
    await bodies(fay.page, 'Lunch at one?');
    await say(fay.page, 'One works.');
    await bodies(first.page, 'One works.');

    // kim opens chinwag on another computer (its own storage): the first tab is replaced, and
    // the second shows the conversation, both ways, from the server.
    second = await person({ poll: false });
    await signIn(second.page, 'kim');
    await first.page.locator('#replaced').waitFor({ state: 'visible' });
    await second.page.locator('#dm-form input[name=user]').fill('fay');
    await second.page.locator('#dm-form button[type=submit]').click();
    await second.page.locator('#conv-title', { hasText: 'fay' }).waitFor();
    assert.deepEqual(await bodies(second.page, 'One works.'), ['Lunch at one?', 'One works.']);
    // More is said while the first tab is replaced: from the second device, and to it.
    await say(second.page, 'Booking the usual place.');
    await bodies(fay.page, 'Booking the usual place.');
    await say(fay.page, 'Great, see you there.');
    assert.deepEqual(await bodies(second.page, 'Great, see you there.'), ['Lunch at one?', 'One works.', 'Booking the usual place.', 'Great, see you there.']);
    await fay.page.locator('#room-list button[data-room="lobby"]').click();
    await say(fay.page, 'Lobby: the coffee machine is fixed.');
    await bodies(fay.page, 'Lobby: the coffee machine is fixed.');
    await second.page.screenshot({ path: path.join(shots, 'dm-second-device.png'), animations: 'disabled' });

    // The first tab takes over again: it keeps what it showed and adds what came meanwhile.
    await first.page.locator('#replaced-here').click();
    await first.page.locator('#conn-state[data-state="signed-in"]').waitFor();
    await second.page.locator('#replaced').waitFor({ state: 'visible' });
    await first.page.locator('#conv-title', { hasText: 'fay' }).waitFor();
    assert.deepEqual(await bodies(first.page, 'Great, see you there.'), ['Lunch at one?', 'One works.', 'Booking the usual place.', 'Great, see you there.']);
    await first.page.screenshot({ path: path.join(shots, 'dm-back-after-replaced.png'), animations: 'disabled' });
    // The lobby too: what it showed, then what was said there while it was replaced, in order.
    await first.page.locator('#room-list button[data-room="lobby"]').click();
    assert.deepEqual(await bodies(first.page, 'Lobby: the coffee machine is fixed.'), ['Lobby: morning all.', 'Lobby: the coffee machine is fixed.']);
    await first.page.screenshot({ path: path.join(shots, 'lobby-back-after-replaced.png'), animations: 'disabled' });
    assert.deepEqual([...first.errors, ...fay.errors, ...second.errors], []);
  } finally {
    await first.context.close();
    await fay.context.close();
    if (second) await second.context.close();
  }
});
