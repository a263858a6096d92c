// Debian's Chromium (never a downloaded browser) driven by playwright-core, for the browser tests.
// The browser is $CHROMIUM, else /usr/bin/chromium; missing = failing tests (apt-get install chromium).
import { existsSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..', '..');

export function chromiumPath() {
  return process.env.CHROMIUM || '/usr/bin/chromium';
}

export async function launchChromium() {
  const exe = chromiumPath();
  if (!existsSync(exe)) {
    throw new Error(`Chromium is missing: ${exe}\nInstall Debian's (apt-get install chromium) or set CHROMIUM. The browser tests do not skip.`);
  }
  return chromium.launch({
    executablePath: exe,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage'],
  });
}

/** Where screenshots go: $CHINWAG_SCREENSHOTS, else <repo>/target/browser-screenshots. */
export function screenshotDir() {
  const dir = process.env.CHINWAG_SCREENSHOTS || path.join(repoRoot, 'target', 'browser-screenshots');
  mkdirSync(dir, { recursive: true });
  return dir;
}
