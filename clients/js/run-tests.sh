#!/usr/bin/env bash
# Runs the JavaScript client's tests: codec and connection unit tests, then the integration
# tests against the real `rpc_echo` example (build it first: cargo build --example rpc_echo;
# or point CHINWAG_RPC_ECHO at it). Missing binary = failing tests, not skipped ones.
set -euo pipefail
cd "$(dirname "$0")"
npm ci --no-audit --no-fund
node --test test/
