// A TCP relay in front of a server that reads the WebSocket frames the server sends, to see
// whether they are compressed (RSV1, RFC 7692) — something neither the page nor the DevTools
// protocol shows (both see inflated payloads). Bytes pass through unchanged both ways.
//
// A connection is read as WebSocket when the server's first answer on it is `101`; its frames
// are then parsed (server frames are unmasked). Other connections (the page, /dev/token) are only
// relayed.
import net from 'node:net';

/**
 * Starts a relay on 127.0.0.1 (a port the system chooses) to `target` (`{ host, port }`).
 * Resolves with `{ port, url(path), connections, close() }`; `connections` lists, per WebSocket
 * connection, `{ frames: [{ opcode, rsv1, fin, length }] }` as they arrive.
 */
export function startTap(target) {
  const connections = [];
  const sockets = new Set();
  const server = net.createServer((client) => {
    const upstream = net.connect(target.port, target.host);
    sockets.add(client);
    sockets.add(upstream);
    const done = () => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on('error', done).on('close', done);
    upstream.on('error', done).on('close', done);
    client.pipe(upstream);
    upstream.pipe(client);
    let pending = Buffer.alloc(0);
    let ws = null; // null: not known yet; false: not WebSocket; else the connection's record
    upstream.on('data', (chunk) => {
      if (ws === false) return;
      pending = Buffer.concat([pending, chunk]);
      if (ws === null) {
        const end = pending.indexOf('\r\n\r\n');
        if (end < 0) return;
        if (!/^HTTP\/1\.1 101/.test(pending.subarray(0, end).toString('latin1'))) {
          ws = false;
          pending = Buffer.alloc(0);
          return;
        }
        ws = { frames: [] };
        connections.push(ws);
        pending = pending.subarray(end + 4);
      }
      pending = readFrames(pending, ws.frames);
    });
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      resolve({
        port,
        connections,
        url: (p = '/') => `http://127.0.0.1:${port}${p}`,
        close: () =>
          new Promise((res) => {
            for (const s of sockets) s.destroy();
            server.close(() => res());
          }),
      });
    });
  });
}

/** Parses the whole frames at the start of `buf` into `out`; returns what is left. */
function readFrames(buf, out) {
  for (;;) {
    if (buf.length < 2) return buf;
    const b0 = buf[0];
    const b1 = buf[1];
    let length = b1 & 0x7f;
    let at = 2;
    if (length === 126) {
      if (buf.length < 4) return buf;
      length = buf.readUInt16BE(2);
      at = 4;
    } else if (length === 127) {
      if (buf.length < 10) return buf;
      length = Number(buf.readBigUInt64BE(2));
      at = 10;
    }
    if (b1 & 0x80) at += 4; // a mask (never from a server)
    if (buf.length < at + length) return buf;
    out.push({ opcode: b0 & 0x0f, rsv1: (b0 & 0x40) !== 0, fin: (b0 & 0x80) !== 0, length });
    buf = buf.subarray(at + length);
  }
}
