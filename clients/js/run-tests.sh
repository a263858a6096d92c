#!/usr/bin/env bash
# Runs the JavaScript client's tests that need no chinwag-server: codec, connection and chat
# client unit tests (fake WebSocket), the package test (npm pack, require/import, tsc), and the
# integration tests against the real `rpc_echo` example (build it first: cargo build --example
# rpc_echo; or point CHINWAG_RPC_ECHO at it). Missing binary = failing tests, not skipped ones.
# The tests against chinwag-server and in Chromium: run-server-tests.sh.
set -euo pipefail
cd "$(dirname "$0")"
npm ci --no-audit --no-fund
node --test test/*.test.js
