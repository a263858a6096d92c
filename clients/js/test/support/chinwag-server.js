// Starts the real `chinwag-server` binary for the chat and browser tests.
//
// The binary is $CHINWAG_SERVER, else $CARGO_TARGET_DIR/debug/chinwag-server, else
// ../../target/debug/chinwag-server relative to clients/js (cargo build -p chinwag-server).
// It is started as
//   chinwag-server --listen 127.0.0.1:PORT --tcp-listen 127.0.0.1:0 --tok-listen 127.0.0.1:0 --data-dir DIR
// and prints, one per line: `http URL`, `chat-ws URL`, `rooms URL`, `chat-tcp ADDR`, `tok-tcp ADDR`,
// then `ready`. A missing binary fails the tests (they never skip).
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const jsRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const STARTUP_DEADLINE = 30000;

export function serverPath() {
  if (process.env.CHINWAG_SERVER) return path.resolve(process.cwd(), process.env.CHINWAG_SERVER);
  if (process.env.CARGO_TARGET_DIR) return path.resolve(jsRoot, '..', '..', process.env.CARGO_TARGET_DIR, 'debug', 'chinwag-server');
  return path.resolve(jsRoot, '..', '..', 'target', 'debug', 'chinwag-server');
}

export function requireServer() {
  const bin = serverPath();
  if (!existsSync(bin)) {
    throw new Error(
      `the chinwag server binary is missing: ${bin}\n` +
        'Build it first (cargo build -p chinwag-server) or set CHINWAG_SERVER to its path. ' +
        'These tests run against the real server and do not skip.',
    );
  }
  return bin;
}

function startOnce({ dataDir, port = 0, extraArgs = [] }) {
  const bin = requireServer();
  const args = ['--listen', `127.0.0.1:${port}`, '--tcp-listen', '127.0.0.1:0', '--tok-listen', '127.0.0.1:0', '--data-dir', dataDir, ...extraArgs];
  // The server takes CHINWAG_* variables as configuration and refuses unknown ones: the tests'
  // own (CHINWAG_SERVER, ...) and any configuration of the caller stay out of its environment.
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('CHINWAG_')));
  const proc = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...env, NO_COLOR: '1' } });
  let stderr = '';
  let stdout = '';
  const exited = new Promise((resolve) => proc.once('exit', (code, signal) => resolve({ code, signal })));
  proc.stderr.setEncoding('utf8');
  proc.stderr.on('data', (d) => {
    stderr += d;
    if (stderr.length > 40000) stderr = stderr.slice(-40000);
  });
  return new Promise((resolve, reject) => {
    const lines = {};
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      reject(new Error(`chinwag-server ${args.join(' ')} was not ready within ${STARTUP_DEADLINE} ms; stdout: ${stdout}\nstderr: ${stderr}`));
    }, STARTUP_DEADLINE);
    proc.stdout.setEncoding('utf8');
    proc.stdout.on('data', (d) => {
      stdout += d;
      for (const line of stdout.split('\n').slice(0, -1)) {
        const m = /^(\S+)(?: (\S+))?$/.exec(line.trim());
        if (m) lines[m[1]] = m[2] ?? true;
      }
      if (lines.ready && lines.http && lines['chat-ws']) {
        clearTimeout(timer);
        const http = lines.http.endsWith('/') ? lines.http : lines.http + '/';
        resolve({
          proc,
          args,
          dataDir,
          http,
          chatWs: lines['chat-ws'],
          roomsWs: lines.rooms,
          port: Number(new URL(http).port),
          exited,
          stderr: () => stderr,
          /** A dev token: `{token, user, device, expires_at}`. */
          async devToken(user, device) {
            const q = new URLSearchParams({ user });
            if (device) q.set('device', device);
            const res = await fetch(new URL(`dev/token?${q}`, http));
            if (res.status !== 200) throw new Error(`/dev/token: HTTP ${res.status}: ${await res.text()}`);
            return res.json();
          },
          /** SIGTERM; resolves with the exit status. */
          async stop() {
            if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM');
            const t = setTimeout(() => proc.kill('SIGKILL'), 10000);
            const r = await exited;
            clearTimeout(t);
            return r;
          },
          async kill() {
            if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
            await exited;
          },
        });
      }
    });
    exited.then(({ code, signal }) => {
      clearTimeout(timer);
      reject(Object.assign(new Error(`chinwag-server ${args.join(' ')} exited (code ${code}, signal ${signal}) before it was ready; stderr: ${stderr}`), { earlyExit: true }));
    });
  });
}

/**
 * Starts chinwag-server on a fresh data directory (or `dataDir`). With a fixed `port` (a restart
 * on the port of an earlier run), a start that exits early (the port not free yet) is retried.
 */
export async function startChinwagServer(opts = {}) {
  let owned = null;
  const dataDir = opts.dataDir ?? (owned = mkdtempSync(path.join(os.tmpdir(), 'chinwag-js-test-')));
  const tries = opts.port ? 50 : 1;
  let last;
  for (let i = 0; i < tries; i++) {
    try {
      const s = await startOnce({ ...opts, dataDir });
      s.removeDataDir = () => owned && rmSync(owned, { recursive: true, force: true });
      return s;
    } catch (err) {
      last = err;
      if (!err.earlyExit) throw err;
    }
  }
  throw last;
}
