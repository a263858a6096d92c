// chinwag web demo: rooms, direct messages, who is online, on the chat door of chinwag-server.
// Plain ES module, no build step; the client library is the server's /chinwag.js.
//
// Sign-in is the server's development sign-in (GET /dev/token?user=NAME). The chat client
// (chat() of chinwag.js) keeps the connection up as the close-code table says, rejoins rooms,
// acknowledges direct messages and drops duplicates; this file only draws.
//
// What is shown comes from the server: member lists, counts and who is online follow the rooms'
// `presence` events as they happen (the server's rooms, e.g. `lobby`, have them; rooms made by
// joining have none, and for those — and for people one shares no room with — a slow poll is the
// fallback: window.CHINWAG_DEMO = { peoplePollMs } sets it, 0 turns it off). Direct-message
// history is the server's conversation history (`history` with `with`); localStorage is only a
// cache of it, so another tab or device shows the same conversation.
import { chat } from '/chinwag.js';

const $ = (sel) => document.querySelector(sel);
const CHAT_URL = (() => {
  const u = new URL('/gotalk/', location.href);
  u.protocol = location.protocol === 'https:' ? 'wss:' : 'ws:';
  return u.href;
})();
const MAX_KEPT = 200; // direct messages kept per conversation in localStorage
const DEFAULT_ROOM = 'lobby';
const PEOPLE_POLL_MS = (() => {
  const v = Number((window.CHINWAG_DEMO || {}).peoplePollMs);
  return Number.isFinite(v) && v >= 0 ? v : 30000;
})();
const MAX_CONVERSATIONS_LOADED = 20; // conversations read from the server at each sign-in

const ui = {
  signin: $('#signin'),
  signinForm: $('#signin-form'),
  signinError: $('#signin-error'),
  app: $('#app'),
  state: $('#conn-state'),
  meName: $('#me-name'),
  meAvatar: $('#me-avatar'),
  roomList: $('#room-list'),
  serverRooms: $('#server-rooms'),
  browse: $('#browse'),
  joinForm: $('#join-form'),
  joinError: $('#join-error'),
  dmList: $('#dm-list'),
  dmForm: $('#dm-form'),
  people: $('#people-list'),
  onlineCount: $('#online-count'),
  title: $('#conv-title'),
  sub: $('#conv-sub'),
  leave: $('#leave'),
  banner: $('#banner'),
  messages: $('#messages'),
  empty: $('#empty'),
  composer: $('#composer'),
  input: $('#composer-input'),
  replaced: $('#replaced'),
  replacedUser: $('#replaced-user'),
  toast: $('#toast'),
};

/** Everything the page shows. */
let s = null;

function freshState(user) {
  return {
    user,
    client: null,
    view: null, // {kind: 'room', id} | {kind: 'dm', id}
    rooms: new Map(), // name -> {messages: [], unread, members: []}
    dms: new Map(), // peer -> {messages: [], unread}
    online: new Map(), // user -> devices
    onlineTotal: null,
    serverRooms: [],
    signedInAt: 0,
    awayCount: 0,
    peopleTimer: null,
    pendingSeq: 0,
  };
}

// ---- storage: the name (per tab), direct-message history and rooms (per user) -----------------

const store = {
  key: (user) => `chinwag.v1.${user}`,
  load(user) {
    try {
      return JSON.parse(localStorage.getItem(this.key(user))) || {};
    } catch {
      return {};
    }
  },
  save() {
    if (!s) return;
    const dms = {};
    for (const [peer, c] of s.dms) dms[peer] = c.messages.filter((m) => !m.pending && !m.kind).slice(-MAX_KEPT);
    const data = { dms, rooms: [...s.rooms.keys()], lastMessageId: s.client ? s.client.lastMessageId : 0 };
    try {
      localStorage.setItem(this.key(s.user), JSON.stringify(data));
    } catch {
      // storage full or off: history is only lost on reload
    }
  },
};

// ---- sign-in ------------------------------------------------------------------------------

async function devToken(user) {
  const res = await fetch(`/dev/token?user=${encodeURIComponent(user)}&device=web`, { cache: 'no-store' });
  if (res.status === 404) throw new Error('This server has no development sign-in (it has a secret configured, or does not listen on loopback).');
  if (!res.ok) throw new Error(`Sign-in failed: ${res.status} ${(await res.text()).trim()}`);
  return (await res.json()).token;
}

ui.signinForm.addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const user = ui.signinForm.user.value.trim();
  if (!user) return;
  const button = ui.signinForm.querySelector('button');
  button.disabled = true;
  ui.signinError.hidden = true;
  try {
    const first = await devToken(user); // fail here, in the form, if sign-in is not possible
    start(user, first);
  } catch (err) {
    ui.signinError.textContent = err.message;
    ui.signinError.hidden = false;
  } finally {
    button.disabled = false;
  }
});

function showSignin() {
  ui.app.hidden = true;
  ui.replaced.hidden = true;
  ui.signin.hidden = false;
  document.title = 'chinwag';
  ui.signinForm.user.value = localStorage.getItem('chinwag.v1.lastUser') || '';
  ui.signinForm.user.focus();
}

// `kept`: the state of this tab before it was replaced ("Use chinwag here"): what it showed
// stays, and what arrived elsewhere meanwhile is merged in from the server.
function start(user, firstToken, kept = null) {
  sessionStorage.setItem('chinwag.v1.user', user);
  localStorage.setItem('chinwag.v1.lastUser', user);
  s = freshState(user);
  const saved = store.load(user);
  if (kept) {
    s.dms = kept.dms;
    for (const c of s.dms.values()) c.messages = c.messages.filter((m) => !m.pending);
    for (const [name, r] of kept.rooms) s.rooms.set(name, { ...r, members: [], messages: r.messages.filter((m) => !m.pending) });
    s.view = kept.view;
  }
  for (const [peer, msgs] of Object.entries(saved.dms || {})) mergeDirect(dm(peer), msgs);
  const rooms = s.rooms.size ? [...s.rooms.keys()] : saved.rooms && saved.rooms.length ? saved.rooms : [DEFAULT_ROOM];
  for (const r of rooms) if (!s.rooms.has(r)) s.rooms.set(r, { messages: [], unread: 0, members: [] });

  ui.signin.hidden = true;
  ui.replaced.hidden = true;
  ui.app.hidden = false;
  ui.meName.textContent = user;
  paintAvatar(ui.meAvatar, user);

  let token = firstToken;
  const client = chat(CHAT_URL, {
    // A token for every connection attempt: the first one was fetched by the form; later ones
    // are fresh (a restarted server signs with a new secret).
    token: async () => {
      const t = token ?? (await devToken(user));
      token = null;
      return t;
    },
    lastMessageId: saved.lastMessageId || 0,
  });
  s.client = client;
  const mine = s;
  const live = (fn) => (arg) => s === mine && fn(arg);

  client.on('state', live(({ state, delay }) => paintState(state, delay)));
  client.on('signed-in', live(onSignedIn));
  client.on('message', live(onDirect));
  client.on('room', live(onRoom));
  client.on('presence', live(onPresence));
  client.on('rejoined', live(onRejoined));
  client.on('replaced', live(onReplaced));
  client.on('closed', live(onClosed));
  client.on('error', live((err) => console.warn('chinwag:', err)));
  paintState(client.state);

  for (const r of rooms) joinRoom(r, { quiet: true, open: false });
  openView(s.view && (s.view.kind === 'dm' || s.rooms.has(s.view.id)) ? s.view : { kind: 'room', id: rooms[0] });
  renderSidebar();
}

async function signOut() {
  const old = s;
  s = null;
  sessionStorage.removeItem('chinwag.v1.user');
  if (old) {
    clearInterval(old.peopleTimer);
    await old.client.close();
  }
  showSignin();
}

$('#signout').addEventListener('click', signOut);
$('#replaced-signout').addEventListener('click', signOut);
$('#replaced-here').addEventListener('click', () => {
  const user = s ? s.user : sessionStorage.getItem('chinwag.v1.user');
  const kept = s;
  if (s) clearInterval(s.peopleTimer);
  s = null;
  devToken(user).then((t) => start(user, t, kept), (err) => toast(err.message));
});

// ---- connection state ------------------------------------------------------------------------

function paintState(state, delay) {
  const text = {
    connecting: 'Connecting…',
    open: 'Signing in…',
    'signed-in': 'Connected',
    reconnecting: delay > 1500 ? `Reconnecting in ${Math.round(delay / 1000)} s…` : 'Reconnecting…',
    closed: 'Disconnected',
  }[state];
  ui.state.dataset.state = state;
  if (state === 'closed' && s && s.client.closeInfo) {
    const c = s.client.closeInfo;
    ui.state.textContent = c.code === 4003 ? 'Signed in elsewhere' : c.code === 4004 ? 'Removed by the server' : c.name === 'auth_failed' ? 'Sign-in refused' : 'Disconnected';
  } else ui.state.textContent = text;
  const away = state === 'reconnecting' || state === 'connecting' || state === 'open';
  if (away && s && s.signedInAt) {
    banner('You are offline. Direct messages sent to you are kept and show up when you are back; room messages meanwhile are missed.');
  } else if (state === 'signed-in') banner(null);
}

function banner(text) {
  ui.banner.hidden = !text;
  ui.banner.textContent = text || '';
}

function onSignedIn(me) {
  const again = s.signedInAt !== 0;
  s.signedInAt = Date.now();
  s.awayCount = 0;
  if (again) {
    for (const name of s.rooms.keys()) addSystem(s.rooms.get(name), 'Reconnected.');
    if (s.view && s.view.kind === 'room') renderMessages();
  }
  refreshPeople();
  clearInterval(s.peopleTimer);
  if (PEOPLE_POLL_MS > 0) s.peopleTimer = setInterval(() => s && s.client.state === 'signed-in' && refreshPeople(), PEOPLE_POLL_MS);
  refreshServerRooms();
  // The conversations as the server keeps them: what another tab or device of ours sent or got
  // (while this one was away or replaced) shows here too.
  const peers = [...s.dms.keys()].sort((a, b) => lastAt(s.dms.get(b)) - lastAt(s.dms.get(a)));
  for (const peer of peers.slice(0, MAX_CONVERSATIONS_LOADED)) loadConversation(peer);
  void me;
}

function onReplaced() {
  ui.replacedUser.textContent = s.user;
  ui.replaced.hidden = false;
  banner('This tab was replaced by a newer sign-on and is disconnected.');
  $('#replaced-here').focus();
}

function onClosed(info) {
  clearInterval(s.peopleTimer);
  if (info.code === 4003) return; // the notice says it
  // (The server's reason may start with "refused: " itself: said once, not "refused: refused: ".)
  if (info.name === 'auth_failed') banner(`Sign-in refused: ${String(info.reason || 'no reason given').replace(/^refused:\s*/, '')}. Sign out and in again.`);
  else if (info.code !== 1000) banner(`Disconnected: ${info.reason || info.name}. Reload the page to connect again.`);
}

// ---- direct messages --------------------------------------------------------------------------

function dm(peer) {
  let c = s.dms.get(peer);
  if (!c) s.dms.set(peer, (c = { messages: [], unread: 0 }));
  return c;
}

function onDirect(m) {
  const peer = m.from ? m.from.user : 'server';
  const c = dm(peer);
  if (c.messages.some((x) => x.id === m.id)) return; // our own send to ourselves
  // Sent before this connection signed in: it waited in the offline queue for us.
  const away = m.sent_at < s.signedInAt || s.signedInAt === 0;
  if (away) {
    if (!c.messages.some((x) => x.kind === 'divider' && x.session === s.signedInAt)) {
      c.messages.push({ kind: 'divider', text: 'While you were away', session: s.signedInAt });
    }
    s.awayCount++;
    toastSoon(() => `${s.awayCount} message${s.awayCount === 1 ? '' : 's'} arrived while you were away`);
  }
  c.messages.push({ id: m.id, from: peer, at: m.sent_at, body: textOf(m), away });
  markOnline(peer);
  if (!isOpen('dm', peer)) c.unread++;
  store.save();
  renderSidebar();
  if (isOpen('dm', peer)) renderMessages();
}

// The conversation as the server keeps it (both directions, from any of our devices): what is
// not in this browser yet (a new device, another tab, messages this browser sent before it was
// cleared) is merged in by id, in time order.
async function loadConversation(peer) {
  const mine = s;
  if (peer === 'server') return;
  let page;
  try {
    page = await s.client.conversation(peer, { limit: 50 });
  } catch {
    return; // a server that keeps no conversations
  }
  if (s !== mine) return;
  const c = dm(peer);
  const got = page.messages.map((m) => ({ id: m.id, from: m.from.user, at: m.sent_at, body: textOf(m) }));
  if (!mergeDirect(c, got)) return;
  store.save();
  renderSidebar();
  if (isOpen('dm', peer)) renderMessages();
}

// Merges messages (any order) into a conversation by id, in time order; returns how many were new.
function mergeDirect(c, msgs) {
  const have = new Set(c.messages.map((x) => x.id));
  const missing = msgs.filter((m) => m.id != null && !m.pending && !m.kind && !have.has(m.id)).sort((a, b) => a.at - b.at);
  for (const m of missing) {
    have.add(m.id);
    const at = c.messages.findIndex((x) => x.at != null && x.at > m.at);
    c.messages.splice(at < 0 ? c.messages.length : at, 0, m);
  }
  return missing.length;
}

async function sendDirect(peer, body) {
  const c = dm(peer);
  const pending = { id: `p${++s.pendingSeq}`, from: s.user, at: Date.now(), body, pending: true };
  c.messages.push(pending);
  renderMessages();
  try {
    const r = await s.client.send(peer, body);
    if (c.messages.some((x) => x !== pending && x.id === r.id)) {
      // A message to ourselves: it came back before the result.
      c.messages.splice(c.messages.indexOf(pending), 1);
      store.save();
      if (isOpen('dm', peer)) renderMessages();
      return;
    }
    pending.id = r.id;
    pending.pending = false;
    // The send's result says whether the peer has a connection now: the header follows it, so
    // the two never disagree.
    pending.note = r.delivered > 0 ? null : `${peer} was away when you sent this: it waits for them`;
    setOnline(peer, r.delivered > 0);
  } catch (err) {
    pending.pending = false;
    pending.failed = true;
    pending.note = `Not sent: ${err.message}`;
  }
  store.save();
  if (isOpen('dm', peer)) renderMessages();
}

// ---- rooms ------------------------------------------------------------------------------------

function room(name) {
  let r = s.rooms.get(name);
  if (!r) s.rooms.set(name, (r = { messages: [], unread: 0, members: [] }));
  return r;
}

async function joinRoom(name, { password, quiet = false, open = true } = {}) {
  const mine = s;
  try {
    const r = await s.client.join(name, password ? { password } : {});
    if (s !== mine) return;
    room(name).info = r;
    if (!quiet) addSystem(room(name), `You joined #${name}.`);
    loadHistory(name);
    store.save();
    if (open) openView({ kind: 'room', id: name });
    else renderSidebar();
    refreshMembers(name);
    refreshServerRooms();
  } catch (err) {
    if (s !== mine || err.code === 'closed') return;
    if (quiet) s.rooms.delete(name);
    else throw err;
    renderSidebar();
  }
}

async function leaveRoom(name) {
  s.rooms.delete(name);
  store.save();
  if (isOpen('room', name)) openView(null);
  renderSidebar();
  try {
    await s.client.leave(name);
  } catch {
    // gone anyway: the client forgot it and a closed connection leaves every room
  }
  refreshServerRooms();
}

// The room's recent history (servers that keep it): shown above what came since the join.
async function loadHistory(name) {
  const mine = s;
  let page;
  try {
    page = await s.client.history(name, { limit: 50 });
  } catch {
    return; // a server without room history, or no longer a member
  }
  const r = s.rooms.get(name);
  if (s !== mine || !r) return;
  const have = new Set(r.messages.map((x) => x.id));
  const missing = page.publications
    .slice()
    .reverse()
    .map(roomMessage)
    .filter((m) => !have.has(m.id));
  r.seen = r.seen || new Set();
  for (const m of missing) r.seen.add(m.seq);
  if (!r.messages.some((x) => x.seq != null && !x.pending)) r.messages.unshift(...missing);
  else {
    // Some are newer than what this tab shows (they came while it was replaced): in seq order.
    for (const m of missing) {
      const at = r.messages.findIndex((x) => x.seq != null && !x.pending && x.epoch === m.epoch && x.seq > m.seq);
      r.messages.splice(at < 0 ? r.messages.length : at, 0, m);
    }
  }
  if (isOpen('room', name)) renderMessages();
}

// After a reconnect: the client rejoined with the position it saw last; the server wrote what
// was missed (as room events) or says it could not.
function onRejoined(r) {
  if (r.recovered !== false || r.reason === 'no_history') return;
  const rm = s.rooms.get(r.room);
  if (!rm) return;
  addSystem(rm, 'Reconnected: some messages sent while you were away could not be recovered.');
  if (isOpen('room', r.room)) renderMessages();
}

function roomMessage(m) {
  const from = m.from ? m.from.user : 'server';
  return { id: `${m.epoch}:${m.seq}`, epoch: m.epoch, seq: m.seq, from, at: m.sent_at, body: textOf(m) };
}

function onRoom(m) {
  if (m.room === '*') {
    // A broadcast of the server to everyone.
    for (const r of s.rooms.values()) addSystem(r, `Announcement: ${textOf(m)}`);
    toast(`Announcement: ${textOf(m)}`);
    if (s.view && s.view.kind === 'room') renderMessages();
    return;
  }
  const r = s.rooms.get(m.room);
  if (!r) return;
  const msg = roomMessage(m);
  const from = msg.from;
  // Our own publish: it replaces its pending copy.
  const i = r.messages.findIndex((x) => x.pending && x.seq === m.seq && from === s.user);
  if (i >= 0) r.messages[i] = msg;
  else {
    r.messages.push(msg);
    if (r.messages.length > 500) r.messages.splice(0, r.messages.length - 500);
  }
  r.seen = r.seen || new Set();
  r.seen.add(m.seq);
  if (from !== 'server') markOnline(from);
  if (!isOpen('room', m.room)) r.unread++;
  renderSidebar();
  if (isOpen('room', m.room)) renderMessages();
}

async function publish(name, body) {
  const r = room(name);
  const pending = { id: `p${++s.pendingSeq}`, from: s.user, at: Date.now(), body, pending: true, seq: null };
  r.messages.push(pending);
  renderMessages();
  try {
    const res = await s.client.publish(name, body);
    if (r.seen && r.seen.has(res.seq)) {
      // The publish came back before its result.
      const i = r.messages.indexOf(pending);
      if (i >= 0) r.messages.splice(i, 1);
    } else pending.seq = res.seq;
  } catch (err) {
    pending.pending = false;
    pending.failed = true;
    pending.note = `Not sent: ${err.message}`;
  }
  if (isOpen('room', name)) renderMessages();
}

// A member joined or left (rooms with presence events): the member list and count change now,
// and who is online (and how many) is asked again for that person only.
function onPresence(p) {
  const r = s.rooms.get(p.room);
  if (!r) return;
  addSystem(r, `${p.user} ${p.event === 'join' ? 'joined' : 'left'}.`);
  if (p.event === 'join') {
    r.members.push({ user: p.user, device: p.device });
    markOnline(p.user, false);
  } else {
    const i = r.members.findIndex((m) => m.user === p.user && m.device === p.device);
    if (i >= 0) r.members.splice(i, 1);
  }
  refreshOnlineSoon(p.user);
  if (isOpen('room', p.room)) {
    paintHeader();
    renderMessages();
  } else if (s.view) paintHeader();
  renderSidebar();
}

function addSystem(r, text) {
  r.messages.push({ kind: 'system', text, at: Date.now() });
}

async function refreshMembers(name) {
  const mine = s;
  try {
    const page = await s.client.members(name, { limit: 200 });
    if (s !== mine || !s.rooms.has(name)) return;
    s.rooms.get(name).members = page.members;
    for (const m of page.members) markOnline(m.user, false);
    if (isOpen('room', name)) paintHeader();
    renderSidebar();
  } catch {
    // not there any more
  }
}

async function refreshServerRooms() {
  const mine = s;
  try {
    const rooms = await s.client.rooms();
    if (s !== mine) return;
    s.serverRooms = rooms;
    renderServerRooms();
  } catch {
    // next time
  }
}

// ---- people -----------------------------------------------------------------------------------

function knownPeople() {
  const people = new Set(s.dms.keys());
  for (const r of s.rooms.values()) for (const m of r.members) people.add(m.user);
  people.delete(s.user);
  people.delete('server');
  return [...people].sort();
}

async function refreshPeople() {
  const mine = s;
  for (const name of s.rooms.keys()) refreshMembers(name);
  const users = knownPeople().slice(0, 100);
  try {
    const r = await s.client.online(users);
    if (s !== mine) return;
    for (const u of users) s.online.set(u, r.users[u] || []);
    s.onlineTotal = r.online;
    renderSidebar();
    if (s.view) paintHeader();
  } catch {
    // next time
  }
}

// The people of a burst of presence events (a busy room) are asked about in one request.
let onlineAsk = null;
function refreshOnlineSoon(user) {
  if (!onlineAsk) {
    const mine = s;
    onlineAsk = new Set();
    setTimeout(() => {
      const users = [...onlineAsk];
      onlineAsk = null;
      // The server answers for 100 at most per request.
      for (let i = 0; i < users.length && s === mine; i += 100) refreshOnline(users.slice(i, i + 100));
    }, 50);
  }
  onlineAsk.add(user);
}

// Who of `users` is online, and how many users are.
async function refreshOnline(users) {
  const mine = s;
  try {
    const r = await s.client.online(users);
    if (s !== mine) return;
    for (const u of users) s.online.set(u, r.users[u] || []);
    s.onlineTotal = r.online;
    renderSidebar();
    if (s.view) paintHeader();
  } catch {
    // the next event, or the fallback poll
  }
}

function setOnline(user, on) {
  if (!s || user === s.user || isOnline(user) === on) return;
  s.online.set(user, on ? ['?'] : []);
  renderSidebar();
  if (s.view) paintHeader();
}

function markOnline(user, paint = true) {
  if (!s || user === s.user) return;
  const cur = s.online.get(user);
  if (!cur || cur.length === 0) {
    s.online.set(user, ['?']);
    if (paint) renderSidebar();
  }
}

// ---- views ------------------------------------------------------------------------------------

function isOpen(kind, id) {
  return !!(s && s.view && s.view.kind === kind && s.view.id === id);
}

function openView(view) {
  s.view = view;
  if (view) {
    const c = view.kind === 'room' ? s.rooms.get(view.id) : dm(view.id);
    if (c) c.unread = 0;
    if (view.kind === 'dm') loadConversation(view.id);
  }
  document.body.classList.remove('sidebar-open');
  $('#scrim').hidden = true;
  paintHeader();
  renderSidebar();
  renderMessages();
  if (view) ui.input.focus({ preventScroll: true });
}

function paintHeader() {
  const v = s.view;
  ui.composer.hidden = !v;
  ui.leave.hidden = !(v && v.kind === 'room');
  if (!v) {
    ui.title.textContent = 'Welcome';
    ui.sub.textContent = '';
    document.title = 'chinwag';
    return;
  }
  if (v.kind === 'room') {
    const r = s.rooms.get(v.id);
    const n = r && r.members.length;
    ui.title.textContent = `# ${v.id}`;
    ui.sub.textContent = n ? `${n} ${n === 1 ? 'member' : 'members'} here` : '';
    ui.input.placeholder = `Message #${v.id}`;
  } else {
    const on = isOnline(v.id);
    ui.title.textContent = v.id;
    ui.sub.textContent = on ? 'online' : 'away: messages wait for them';
    ui.input.placeholder = `Message ${v.id}`;
  }
  document.title = `${v.kind === 'room' ? '#' + v.id : v.id} · chinwag`;
}

function isOnline(user) {
  const d = s.online.get(user);
  return !!(d && d.length);
}

function renderSidebar() {
  if (!s) return;
  // Rooms
  ui.roomList.replaceChildren(
    ...[...s.rooms.keys()].filter((n) => n !== '*').sort().map((name) => {
      const r = s.rooms.get(name);
      return navItem({ label: name, prefix: '#', current: isOpen('room', name), unread: r.unread, data: { room: name }, onClick: () => openView({ kind: 'room', id: name }) });
    }),
  );
  if (!ui.roomList.children.length) ui.roomList.append(emptyItem('No rooms yet: join one below.'));
  // Direct messages
  const peers = [...s.dms.keys()].sort((a, b) => lastAt(s.dms.get(b)) - lastAt(s.dms.get(a)));
  ui.dmList.replaceChildren(
    ...peers.map((peer) =>
      navItem({ label: peer, dot: isOnline(peer), current: isOpen('dm', peer), unread: s.dms.get(peer).unread, data: { peer }, onClick: () => openView({ kind: 'dm', id: peer }) }),
    ),
  );
  if (!peers.length) ui.dmList.append(emptyItem('No conversations yet.'));
  // People
  const people = knownPeople().sort((a, b) => Number(isOnline(b)) - Number(isOnline(a)) || a.localeCompare(b));
  ui.people.replaceChildren(
    ...people.map((u) => navItem({ label: u, dot: isOnline(u), meta: isOnline(u) ? 'online' : 'away', data: { person: u }, onClick: () => openView({ kind: 'dm', id: u }) })),
  );
  if (!people.length) ui.people.append(emptyItem('People in your rooms show up here.'));
  ui.onlineCount.textContent = s.onlineTotal != null ? `· ${s.onlineTotal} online` : '';
}

function renderServerRooms() {
  const rooms = s.serverRooms.filter((r) => !s.rooms.has(r.room));
  ui.serverRooms.replaceChildren(
    ...rooms.map((r) =>
      navItem({ label: r.room, prefix: r.protected ? '🔒' : '#', meta: `${r.members}`, data: { serverRoom: r.room }, onClick: () => {
        if (r.protected) {
          ui.joinForm.room.value = r.room;
          ui.joinForm.password.focus();
        } else joinRoom(r.room).catch((err) => showJoinError(err));
      } }),
    ),
  );
  if (!rooms.length) ui.serverRooms.append(emptyItem('No other rooms right now.'));
}

function lastAt(c) {
  const m = c.messages.at(-1);
  return m ? m.at : 0;
}

function navItem({ label, prefix, dot, meta, unread, current, data, onClick }) {
  const li = document.createElement('li');
  const b = document.createElement('button');
  b.type = 'button';
  for (const [k, v] of Object.entries(data || {})) b.dataset[k] = v;
  if (current) b.setAttribute('aria-current', 'true');
  if (prefix) b.append(el('span', 'hash', prefix));
  if (dot !== undefined) b.append(el('span', dot ? 'dot on' : 'dot', ''));
  b.append(el('span', 'name', label));
  if (meta) b.append(el('span', 'meta', meta));
  if (unread) b.append(el('span', 'badge', unread > 99 ? '99+' : String(unread)));
  b.addEventListener('click', onClick);
  li.append(b);
  return li;
}

function emptyItem(text) {
  const li = el('li', 'empty-item', text);
  return li;
}

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text != null) e.textContent = text;
  return e;
}

function renderMessages() {
  if (!s) return;
  const v = s.view;
  const c = v ? (v.kind === 'room' ? s.rooms.get(v.id) : s.dms.get(v.id)) : null;
  const msgs = c ? c.messages : [];
  ui.empty.hidden = !!(v && msgs.length);
  ui.messages.hidden = !ui.empty.hidden;
  if (v && !msgs.length) ui.empty.firstElementChild.textContent = v.kind === 'room' ? `This is the start of #${v.id}. Say hello!` : `This is the start of your conversation with ${v.id}.`;
  else if (!v) ui.empty.firstElementChild.textContent = 'Pick a room or a person on the left, or join a room to start.';
  const items = [];
  let prev = null;
  for (const m of msgs) {
    if (m.kind === 'divider') {
      items.push(el('li', 'divider', m.text));
      prev = null;
      continue;
    }
    if (m.kind === 'system') {
      items.push(el('li', 'msg system', m.text));
      prev = null;
      continue;
    }
    const li = el('li', 'msg');
    if (m.from === s.user) li.classList.add('mine');
    if (m.pending) li.classList.add('pending');
    if (m.failed) li.classList.add('failed');
    if (m.away) li.classList.add('away');
    if (typeof m.id === 'number') li.dataset.id = String(m.id);
    const cont = prev && prev.from === m.from && m.at - prev.at < 5 * 60 * 1000;
    if (cont) li.classList.add('cont');
    const av = el('span', 'avatar', (m.from || '?').slice(0, 1));
    paintAvatar(av, m.from);
    li.append(av);
    if (!cont) {
      const head = el('div', 'head');
      head.append(el('span', 'who', m.from === s.user ? `${m.from} (you)` : m.from), el('time', 'when', when(m.at)));
      li.append(head);
    }
    li.append(el('div', 'body', m.body));
    if (m.pending) li.append(el('div', 'note', 'sending…'));
    else if (m.note) li.append(el('div', 'note', m.note));
    items.push(li);
    prev = m;
  }
  ui.messages.replaceChildren(...items);
  ui.messages.scrollTop = ui.messages.scrollHeight;
}

function when(ms) {
  const d = new Date(ms);
  const today = new Date();
  const t = d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
  return d.toDateString() === today.toDateString() ? t : `${d.toLocaleDateString([], { month: 'short', day: 'numeric' })} ${t}`;
}

function paintAvatar(node, name) {
  let h = 0;
  for (const ch of String(name)) h = (h * 31 + ch.codePointAt(0)) >>> 0;
  node.style.setProperty('--c', `hsl(${h % 360} 55% 48%)`);
  node.textContent = String(name || '?').slice(0, 1);
}

function textOf(m) {
  if (typeof m.body === 'string') return m.body;
  if (m.bytes) return `[${m.bytes.length} bytes of binary data]`;
  if (typeof m.body_base64 === 'string') return '[binary data]';
  return '';
}

let toastTimer = null;
function toast(text) {
  ui.toast.textContent = text;
  ui.toast.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => (ui.toast.hidden = true), 4000);
}

let toastPending = null;
function toastSoon(textFn) {
  // One toast for a burst (a replay of many messages).
  if (toastPending) return;
  toastPending = setTimeout(() => {
    toastPending = null;
    if (s) toast(textFn());
  }, 150);
}

function showJoinError(err) {
  ui.joinError.textContent =
    err.code === 'wrong_password' ? 'Wrong password for that room.' : err.code === 'bad_room' ? 'Not a valid room name.' : `Could not join: ${err.message}`;
  ui.joinError.hidden = false;
}

// ---- forms ------------------------------------------------------------------------------------

ui.composer.addEventListener('submit', (ev) => {
  ev.preventDefault();
  const body = ui.input.value.trim();
  if (!body || !s || !s.view) return;
  ui.input.value = '';
  autosize();
  if (s.view.kind === 'room') publish(s.view.id, body);
  else sendDirect(s.view.id, body);
});

ui.input.addEventListener('keydown', (ev) => {
  if (ev.key === 'Enter' && !ev.shiftKey && !ev.isComposing) {
    ev.preventDefault();
    ui.composer.requestSubmit();
  }
});
ui.input.addEventListener('input', autosize);
function autosize() {
  ui.input.style.height = 'auto';
  ui.input.style.height = `${Math.min(ui.input.scrollHeight + 2, 160)}px`;
}

ui.joinForm.addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const name = ui.joinForm.room.value.trim().replace(/^#/, '');
  const password = ui.joinForm.password.value;
  if (!name || !s) return;
  ui.joinError.hidden = true;
  if (s.rooms.has(name) && s.client.joined.includes(name)) {
    openView({ kind: 'room', id: name });
    ui.joinForm.reset();
    return;
  }
  try {
    await joinRoom(name, { password });
    ui.joinForm.reset();
  } catch (err) {
    showJoinError(err);
  }
});

ui.dmForm.addEventListener('submit', (ev) => {
  ev.preventDefault();
  const peer = ui.dmForm.user.value.trim().replace(/^@/, '');
  if (!peer || !s) return;
  dm(peer);
  ui.dmForm.reset();
  openView({ kind: 'dm', id: peer });
  refreshPeople();
});

ui.leave.addEventListener('click', () => s && s.view && s.view.kind === 'room' && leaveRoom(s.view.id));
ui.browse.addEventListener('toggle', () => ui.browse.open && s && refreshServerRooms());

$('#menu').addEventListener('click', () => {
  const open = !document.body.classList.contains('sidebar-open');
  document.body.classList.toggle('sidebar-open', open);
  $('#scrim').hidden = !open;
});
$('#scrim').addEventListener('click', () => {
  document.body.classList.remove('sidebar-open');
  $('#scrim').hidden = true;
});

// ---- go ---------------------------------------------------------------------------------------

const again = sessionStorage.getItem('chinwag.v1.user');
if (again) devToken(again).then((t) => start(again, t), () => showSignin());
else showSignin();
