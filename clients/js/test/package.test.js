// The npm package: the CommonJS build is up to date, ES module and CommonJS export the same API,
// the TypeScript declarations compile against a typed usage, and `npm pack` gives a tarball that
// a default `npm init -y` project installs offline and can both `require` and `import`.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, cpSync, writeFileSync, existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(import.meta.url);
const run = (cmd, args, opts = {}) => execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 120000, ...opts });
const nodeMajor = Number(process.versions.node.split('.')[0]);

test('chinwag.cjs and chinwag.d.cts are generated from the current sources', () => {
  try {
    run(process.execPath, [path.join(root, 'scripts', 'build-cjs.mjs'), '--check']);
  } catch (err) {
    assert.fail(`out of date: run npm run build in clients/js\n${err.stderr}`);
  }
});

test('the ES module and the CommonJS build export the same names', async () => {
  const esm = await import('../chinwag.js');
  const cjs = require('../chinwag.cjs');
  assert.deepEqual(Object.keys(cjs).sort(), Object.keys(esm).sort());
  assert.equal(typeof cjs.chat, 'function');
  assert.deepEqual(Object.keys(cjs.default).sort(), Object.keys(esm.default).sort());
  const nodeEsm = await import('../node.mjs');
  assert.deepEqual(Object.keys(nodeEsm).sort(), Object.keys(esm).sort());
});

test('the TypeScript declarations compile (tsc --strict) for ES module and CommonJS users', () => {
  try {
    run(process.execPath, [path.join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', path.join(root, 'test', 'types', 'tsconfig.json')]);
  } catch (err) {
    assert.fail(`tsc failed:\n${err.stdout}${err.stderr}`);
  }
});

test('npm pack: a default npm init -y project installs the tarball offline, then require and import work', () => {
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'chinwag-pack-'));
  try {
    const packed = JSON.parse(run('npm', ['pack', '--json', '--pack-destination', tmp], { cwd: root }));
    const files = packed[0].files.map((f) => f.path).sort();
    assert.deepEqual(files, ['README.md', 'chinwag.cjs', 'chinwag.d.cts', 'chinwag.d.ts', 'chinwag.js', 'node.cjs', 'node.mjs', 'package.json']);
    const tarball = path.join(tmp, packed[0].filename);
    const proj = path.join(tmp, 'proj');
    run('mkdir', ['-p', proj]);
    run('npm', ['init', '-y'], { cwd: proj });
    // --offline: nothing may come from a registry (the package has no dependencies to fetch).
    run('npm', ['install', '--offline', '--no-audit', '--no-fund', tarball], { cwd: proj });
    const pkg = JSON.parse(readFileSync(path.join(proj, 'package.json'), 'utf8'));
    assert.ok(pkg.dependencies.chinwag, 'installed as a dependency');
    assert.equal(existsSync(path.join(proj, 'node_modules', 'ws')), false, 'ws is not pulled in (an optional peer)');

    const check = `
      const c = CHINWAG;
      if (typeof c.chat !== 'function' || typeof c.connect !== 'function' || typeof c.ChatError !== 'function') throw new Error('API missing');
      if (c.closeAdvice(4003).reconnect !== 'never') throw new Error('closeAdvice');
      let made = null;
      try { made = c.chat('ws://127.0.0.1:9/gotalk/', { token: 't', reconnect: false }); } catch (e) { made = e; }
      console.log(JSON.stringify({ ok: true, websocket: made instanceof Error ? made.message : 'constructed' }));
      if (!(made instanceof Error)) made.close();
    `;
    const cjsOut = (code) => JSON.parse(run(process.execPath, ['-e', code.replace('CHINWAG', "require('chinwag')")], { cwd: proj }).trim());
    const esmOut = (code) =>
      JSON.parse(run(process.execPath, ['--input-type=module', '-e', `import * as m from 'chinwag';\n` + code.replace('CHINWAG', 'm')], { cwd: proj }).trim());
    // A chat client is constructed lazily (it connects on the next tick), so it always constructs.
    assert.equal(cjsOut(check).ok, true);
    assert.equal(esmOut(check).ok, true);

    // WebSocket: Node 22+ has a global one; on older Node the package takes `ws` when installed.
    const wsCheck = `
      const c = CHINWAG;
      let r;
      try { const conn = c.connect('ws://127.0.0.1:9/', { keepAlive: false }); r = 'ok'; conn.close(); } catch (e) { r = e.message; }
      console.log(JSON.stringify({ ok: true, r }));
    `;
    if (nodeMajor < 22) {
      assert.match(cjsOut(wsCheck).r, /no WebSocket available/);
      assert.match(esmOut(wsCheck).r, /no WebSocket available/);
      cpSync(path.join(root, 'node_modules', 'ws'), path.join(proj, 'node_modules', 'ws'), { recursive: true });
    }
    assert.equal(cjsOut(wsCheck).r, 'ok');
    assert.equal(esmOut(wsCheck).r, 'ok');
    // Types resolve from the installed package too.
    writeFileSync(path.join(proj, 'use.mts'), "import { chat, type ChatClient } from 'chinwag';\nconst c: ChatClient = chat('ws://x/', { token: 't' });\nvoid c;\n");
    writeFileSync(path.join(proj, 'use.cts'), "import chinwag = require('chinwag');\nconst c: chinwag.ChatClient = chinwag.chat('ws://x/', { token: 't' });\nvoid c;\n");
    const tsconfig = { compilerOptions: { strict: true, noEmit: true, module: 'nodenext', moduleResolution: 'nodenext', target: 'es2022', lib: ['es2022', 'dom'], types: [] }, files: ['use.mts', 'use.cts'] };
    writeFileSync(path.join(proj, 'tsconfig.json'), JSON.stringify(tsconfig));
    try {
      run(process.execPath, [path.join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', proj], { cwd: proj });
    } catch (err) {
      assert.fail(`tsc in the installed project failed:\n${err.stdout}${err.stderr}`);
    }
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
});
