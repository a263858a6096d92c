// Starts the real chinwag example server `rpc_echo` for the integration tests.
//
// The binary is $CHINWAG_RPC_ECHO, else $CARGO_TARGET_DIR/debug/examples/rpc_echo, else
// ../../target/debug/examples/rpc_echo relative to clients/js. It is started as
//   rpc_echo --tcp 127.0.0.1:0 --ws 127.0.0.1:PORT [--engine E] [--max-requests N]
// and prints, once listening, exactly two lines on stdout:
//   tcp 127.0.0.1:PORT
//   ws ws://127.0.0.1:PORT/gotalk/

import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const jsRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

export function rpcEchoPath() {
  if (process.env.CHINWAG_RPC_ECHO) return path.resolve(jsRoot, process.env.CHINWAG_RPC_ECHO);
  if (process.env.CARGO_TARGET_DIR) return path.resolve(jsRoot, '..', '..', process.env.CARGO_TARGET_DIR, 'debug', 'examples', 'rpc_echo');
  return path.resolve(jsRoot, '..', '..', 'target', 'debug', 'examples', 'rpc_echo');
}

/** Throws, loudly, when the server binary is missing. */
export function requireRpcEcho() {
  const bin = rpcEchoPath();
  if (!existsSync(bin)) {
    throw new Error(
      `the chinwag example server is missing: ${bin}\n` +
        'Build it first (cargo build --example rpc_echo) or set CHINWAG_RPC_ECHO to its path. ' +
        'The integration tests of the JavaScript client run against the real server and do not skip.',
    );
  }
  return bin;
}

const STARTUP_DEADLINE = 30000;

function startOnce({ engine, maxRequests, wsPort = 0, extraArgs = [] }) {
  const bin = requireRpcEcho();
  const args = ['--tcp', '127.0.0.1:0', '--ws', `127.0.0.1:${wsPort}`];
  if (engine) args.push('--engine', engine);
  if (maxRequests != null) args.push('--max-requests', String(maxRequests));
  args.push(...extraArgs);
  const proc = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  let stdout = '';
  const exited = new Promise((resolve) => proc.once('exit', (code, signal) => resolve({ code, signal })));
  proc.stderr.setEncoding('utf8');
  proc.stderr.on('data', (d) => {
    stderr += d;
    if (stderr.length > 20000) stderr = stderr.slice(-20000);
  });
  return new Promise((resolve, reject) => {
    let tcp = null;
    let ws = null;
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      reject(new Error(`rpc_echo ${args.join(' ')} did not print its addresses within ${STARTUP_DEADLINE} ms; stdout: ${stdout}\nstderr: ${stderr}`));
    }, STARTUP_DEADLINE);
    proc.stdout.setEncoding('utf8');
    proc.stdout.on('data', (d) => {
      stdout += d;
      for (const line of stdout.split('\n').slice(0, -1)) {
        const mt = /^tcp (\S+)$/.exec(line.trim());
        const mw = /^ws (ws:\/\/\S+)$/.exec(line.trim());
        if (mt) tcp = mt[1];
        if (mw) ws = mw[1];
      }
      if (tcp && ws) {
        clearTimeout(timer);
        const url = new URL(ws);
        resolve({
          proc,
          args,
          tcp,
          wsUrl: ws,
          wsPort: Number(url.port),
          httpBase: `http://${url.host}${url.pathname}`,
          exited,
          stderr: () => stderr,
          /** SIGKILL, resolved once the process is gone. */
          async kill() {
            if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
            await exited;
          },
          async stop() {
            if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM');
            const t = setTimeout(() => proc.kill('SIGKILL'), 5000);
            await exited;
            clearTimeout(t);
          },
        });
      }
    });
    exited.then(({ code, signal }) => {
      clearTimeout(timer);
      reject(Object.assign(new Error(`rpc_echo ${args.join(' ')} exited (code ${code}, signal ${signal}) before listening; stderr: ${stderr}`), { earlyExit: true }));
    });
  });
}

/**
 * Starts rpc_echo. With a fixed `wsPort` (a restart on the port a previous run printed), a start
 * that exits early (the port not yet free) is tried again, a bounded number of times.
 */
export async function startServer(opts = {}) {
  const tries = opts.wsPort ? 50 : 1;
  let last;
  for (let i = 0; i < tries; i++) {
    try {
      return await startOnce(opts);
    } catch (err) {
      last = err;
      if (!err.earlyExit) throw err;
    }
  }
  throw last;
}
