// Builds the CommonJS copy of chinwag.js (chinwag.cjs) and of its types (chinwag.d.cts).
// Both are generated, kept in the repository, and checked by test/package.test.js:
//   node scripts/build-cjs.mjs          write them
//   node scripts/build-cjs.mjs --check  exit 1 if they are out of date
// The transformation is mechanical: `export` keywords go, `import.meta.url` (one line marked
// @esm-only) becomes document.currentScript, and module.exports lists every export.
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

export function buildCjs(src) {
  const names = [];
  let out = src.replace(/^export (const|let|function|class|async function) ([A-Za-z_$][\w$]*)/gm, (_, kw, name) => {
    names.push(name);
    return `${kw} ${name}`;
  });
  out = out.replace(/^export \{([^}]*)\};?\n/gm, (_, list) => {
    for (const n of list.split(',').map((x) => x.trim()).filter(Boolean)) names.push(n);
    return '';
  });
  let hasDefault = false;
  out = out.replace(/^export default /m, () => {
    hasDefault = true;
    return 'const __default = ';
  });
  const esmOnly = /^.*import\.meta\.url.*\/\/ @esm-only$/m;
  if (!esmOnly.test(out)) throw new Error('chinwag.js: the @esm-only line with import.meta.url is missing');
  out = out.replace(
    esmOnly,
    "const SCRIPT_URL = typeof document !== 'undefined' && document.currentScript ? document.currentScript.src : '';",
  );
  if (/\bimport\.meta\b|^\s*(import|export)\s/m.test(out)) throw new Error('chinwag.js: ESM syntax left after the transformation');
  const header =
    '// GENERATED from chinwag.js by scripts/build-cjs.mjs: do not edit (npm run build).\n' + "'use strict';\n";
  const footer =
    '\nmodule.exports = {\n' + names.map((n) => `  ${n},\n`).join('') + (hasDefault ? '  default: __default,\n' : '') + '};\n';
  return header + out + footer;
}

export function buildDcts(dts) {
  return '// GENERATED from chinwag.d.ts by scripts/build-cjs.mjs: do not edit (npm run build).\n' + dts;
}

const outputs = () => [
  ['chinwag.cjs', buildCjs(readFileSync(path.join(root, 'chinwag.js'), 'utf8'))],
  ['chinwag.d.cts', buildDcts(readFileSync(path.join(root, 'chinwag.d.ts'), 'utf8'))],
];

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const check = process.argv.includes('--check');
  let stale = 0;
  for (const [file, text] of outputs()) {
    const p = path.join(root, file);
    let old = null;
    try {
      old = readFileSync(p, 'utf8');
    } catch {
      // missing
    }
    if (old === text) continue;
    if (check) {
      console.error(`${file} is out of date: run npm run build (node scripts/build-cjs.mjs)`);
      stale++;
    } else writeFileSync(p, text);
  }
  process.exit(stale ? 1 : 0);
}

export { outputs };
