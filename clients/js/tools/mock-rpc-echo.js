#!/usr/bin/env node
// A stand-in for the Rust example `rpc_echo`, written with chinwag.js's codec and the `ws`
// package, for developing the JavaScript client while the real server is not built.
// It is NOT what the tests run by default: they run the real server. To use it:
//   CHINWAG_RPC_ECHO=tools/mock-rpc-echo.js node --test test/
// It follows the rpc_echo contract (see README.md); --engine is accepted and ignored.
import http from 'node:http';
import net from 'node:net';
import zlib from 'node:zlib';
import crypto from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { WebSocketServer } from 'ws';
import { FrameDecoder, encodeFramed, encodeVersion, encodeHeader, decodeJSON } from '../chinwag.js';

const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : dflt;
};
const [tcpHost, tcpPort] = opt('--tcp', '127.0.0.1:0').split(':');
const [wsHost, wsPort] = opt('--ws', '127.0.0.1:0').split(':');
const maxRequests = Number(opt('--max-requests', '0'));
const mount = '/gotalk/';

const js = readFileSync(path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'chinwag.js'));
const jsGz = zlib.gzipSync(js);
const etag = '"' + crypto.createHash('sha256').update(js).digest('hex').slice(0, 32) + '"';
const td = new TextDecoder();

const httpServer = http.createServer((req, res) => {
  if (req.url !== mount + 'chinwag.js') {
    res.writeHead(404).end();
    return;
  }
  if (req.headers['if-none-match'] === etag) {
    res.writeHead(304, { ETag: etag }).end();
    return;
  }
  const gz = /\bgzip\b/.test(req.headers['accept-encoding'] || '');
  res.writeHead(200, {
    'Content-Type': 'text/javascript; charset=utf-8',
    ETag: etag,
    Vary: 'Accept-Encoding',
    ...(gz ? { 'Content-Encoding': 'gzip' } : {}),
  });
  res.end(gz ? jsGz : js);
});

const wss = new WebSocketServer({ noServer: true, maxPayload: 64 * 1024 * 1024 });
httpServer.on('upgrade', (req, socket, head) => {
  if (req.url !== mount) {
    socket.destroy();
    return;
  }
  wss.handleUpgrade(req, socket, head, (ws) => serve(ws));
});

function serve(ws) {
  const dec = new FrameDecoder({ maxPayload: 64 * 1024 * 1024 });
  let inFlight = 0;
  let nextId = 0;
  const calls = new Map();
  const streams = new Map();
  const send = (msg, payload) => {
    for (const f of encodeFramed(msg, payload)) ws.send(f);
  };
  ws.send(encodeVersion());
  const hb = setInterval(() => send({ type: 'h', load: 1, time: Math.floor(Date.now() / 1000) }), 1000);
  ws.on('close', () => clearInterval(hb));
  const callClient = (op, value) =>
    new Promise((resolve, reject) => {
      // Go-style ids: a little-endian u32 counter as 4 raw bytes.
      const n = nextId++;
      const id = String.fromCharCode(n & 255, (n >> 8) & 255, (n >> 16) & 255, (n >>> 24) & 255);
      calls.set(id, { resolve, reject });
      send({ type: 'r', id, name: op }, JSON.stringify(value));
    });

  async function single(id, op, payload) {
    if (op === 'sleep' && maxRequests > 0 && inFlight >= maxRequests) {
      send({ type: 'e', id, wait: 50 }, 'request rate limit');
      return;
    }
    inFlight++;
    try {
      switch (op) {
        case 'echo':
          return send({ type: 'R', id }, payload);
        case 'echo.json':
          return send({ type: 'R', id }, JSON.stringify(decodeJSON(payload)));
        case 'fail':
          return send({ type: 'E', id }, payload);
        case 'panic':
          return send({ type: 'E', id }, 'handler panicked');
        case 'callback': {
          const { op: cop, value } = decodeJSON(payload);
          try {
            const out = await callClient(cop, value);
            return send({ type: 'R', id }, out);
          } catch (err) {
            return send({ type: 'E', id }, err.message);
          }
        }
        case 'count': {
          const n = decodeJSON(payload);
          for (let k = 1; k <= n; k++) send({ type: 'S', id }, String(k));
          return send({ type: 'S', id }, '');
        }
        case 'sleep': {
          const ms = decodeJSON(payload);
          await new Promise((r) => setTimeout(r, ms));
          return send({ type: 'R', id }, JSON.stringify(ms));
        }
        default:
          return send({ type: 'E', id }, `unknown operation "${op}"`);
      }
    } finally {
      inFlight--;
    }
  }

  ws.on('message', (data, isBinary) => {
    let msg;
    try {
      msg = dec.push(isBinary ? new Uint8Array(data) : data.toString());
    } catch (err) {
      ws.send(encodeHeader({ type: 'f', code: err.protocolCode ?? 2 }));
      ws.close(4000 + (err.protocolCode ?? 2));
      return;
    }
    if (!msg) return;
    switch (msg.type) {
      case 'r':
        single(msg.id, msg.name, msg.payload);
        break;
      case 's':
        if (msg.name !== 'stream.echo') {
          send({ type: 'E', id: msg.id }, `unknown operation "${msg.name}"`);
          break;
        }
        streams.set(msg.id, true);
        if (msg.payload.length) send({ type: 'S', id: msg.id }, msg.payload);
        break;
      case 'p':
        if (!streams.has(msg.id)) break;
        send({ type: 'S', id: msg.id }, msg.payload);
        if (msg.payload.length === 0) streams.delete(msg.id);
        break;
      case 'n':
        if (msg.name === 'note') send({ type: 'n', name: 'note.ack' }, msg.payload);
        break;
      case 'R':
      case 'E': {
        const c = calls.get(msg.id);
        calls.delete(msg.id);
        if (c) msg.type === 'R' ? c.resolve(msg.payload) : c.reject(new Error(td.decode(msg.payload)));
        break;
      }
      default:
        break;
    }
  });
}

const tcp = net.createServer((s) => s.end());
tcp.listen(Number(tcpPort), tcpHost, () => {
  httpServer.listen(Number(wsPort), wsHost, () => {
    process.stdout.write(`tcp ${tcpHost}:${tcp.address().port}\n`);
    process.stdout.write(`ws ws://${wsHost}:${httpServer.address().port}${mount}\n`);
  });
});
httpServer.on('error', (err) => {
  console.error(err.message);
  process.exit(1);
});
process.on('SIGTERM', () => process.exit(0));
