// Compiled by test/package.test.js with tsc --noEmit --strict: the declarations describe the API.
import { chat, connect, ChatClient, ChatError, closeAdvice, CLOSE_CODES, type DirectMessage, type RoomMessage, type GapEvent } from 'chinwag';
import chinwag from 'chinwag';

async function main(): Promise<void> {
  const client: ChatClient = chat('ws://127.0.0.1:8080/gotalk/', {
    token: async ({ reason }) => {
      const r = await fetch('http://127.0.0.1:8080/dev/token?user=ann&reason=' + reason);
      return ((await r.json()) as { token: string }).token;
    },
    reconnectMax: 10000,
    fillGaps: true,
    maxGapFill: 500,
    maxGapHold: 2000,
  });
  client.on('message', (m: DirectMessage) => {
    const text: string | undefined = m.body;
    const from: string | undefined = m.from?.user;
    console.log(m.id, from, text, m.sent_at);
  });
  client.on('room', (m: RoomMessage) => console.log(m.room, m.seq, m.body));
  client.on('presence', (p) => console.log(p.user, p.event));
  client.on('gap', (g: GapEvent) => {
    if (!g.filled) console.log(`missed ${g.room} ${g.from}..${g.to} (epoch ${g.epoch}): ${g.reason}`, g.error?.code);
  });
  client.on('disconnected', (d) => console.log(d.code, d.name, d.willReconnect, d.delay));
  client.on('replaced', (c) => console.log(c.reason));
  client.on('state', ({ state, previous }) => console.log(previous, '->', state));
  const me = await client.signedIn();
  console.log(me.user, me.device, me.conn, me.seq);
  const sent = await client.send('bob', 'hi', { ttlMs: 60000 });
  const n: number = sent.id;
  const kept: number | undefined = sent.seq;
  const conv = await client.conversation('bob', { before: kept ?? 10, limit: 5 });
  const firstBody: string | undefined = conv.messages[0]?.body;
  const fromUser: string | undefined = conv.messages[0]?.from.user;
  console.log(conv.with, conv.epoch, conv.first, conv.last, firstBody, fromUser);
  await client.send('bob', new Uint8Array([1, 2]));
  const room = await client.join('lobby', { password: 'x', timeout: 1000 });
  const seq: number = (await client.publish(room.room, 'hello')).seq;
  const rooms = await client.rooms();
  const page = await client.members('lobby', { limit: 10 });
  const online = await client.online(['bob']);
  const devices: string[] = online.users['bob'] ?? [];
  try {
    await client.leave('lobby');
  } catch (e) {
    if (e instanceof ChatError && e.code === 'wrong_password') console.log(e.message);
  }
  console.log(n, seq, rooms.length, page.next, devices, client.joined, client.lastMessageId, closeAdvice(4003).reconnect, CLOSE_CODES[1001]?.name);
  const c = connect('ws://127.0.0.1:9301/gotalk/');
  await c.request('echo.json', {});
  console.log(chinwag.chat === chat);
  await client.close();
}
void main;
