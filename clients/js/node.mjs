// The Node entry point (ES module) of the chinwag package: chinwag.js, plus the `ws` package as
// the WebSocket when Node has no global one (Node < 22). Browsers get chinwag.js itself.
// SPDX-License-Identifier: MIT OR Apache-2.0
import { createRequire } from 'node:module';
import { useWebSocket } from './chinwag.js';

if (typeof globalThis.WebSocket !== 'function') {
  try {
    useWebSocket(createRequire(import.meta.url)('ws'));
  } catch {
    // No `ws` installed: pass { WebSocket } to connect()/chat(), or `npm install ws`.
  }
}

export * from './chinwag.js';
export { default } from './chinwag.js';
