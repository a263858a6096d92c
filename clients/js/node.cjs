// The Node entry point (CommonJS) of the chinwag package: chinwag.cjs, plus the `ws` package as
// the WebSocket when Node has no global one (Node < 22).
// SPDX-License-Identifier: MIT OR Apache-2.0
'use strict';
const chinwag = require('./chinwag.cjs');

if (typeof globalThis.WebSocket !== 'function') {
  try {
    chinwag.useWebSocket(require('ws'));
  } catch {
    // No `ws` installed: pass { WebSocket } to connect()/chat(), or `npm install ws`.
  }
}

module.exports = chinwag;
