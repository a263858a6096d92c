#!/usr/bin/env bash
# Runs the tests against the real chinwag-server binary: the chat client from Node
# (test/server/) and, in headless Chromium driven by playwright-core (test/browser/), the web
# demo and plumego's Quick Start client (against the plumego profile of docs/server.md). The
# binary is $CHINWAG_SERVER (else ../../target/debug/chinwag-server: cargo build -p
# chinwag-server); the browser is Debian's /usr/bin/chromium (apt-get install chromium;
# or $CHROMIUM) — playwright never downloads one. A missing binary or browser fails the tests.
# Screenshots of the demo: $CHINWAG_SCREENSHOTS, else ../../target/browser-screenshots/.
set -euo pipefail
cd "$(dirname "$0")"
npm ci --no-audit --no-fund
# One file at a time: each starts its own server, and Chromium is heavy on a small machine.
node --test --test-concurrency=1 test/server/ test/browser/
echo "run-server-tests: screenshots in ${CHINWAG_SCREENSHOTS:-$(cd ../.. && pwd)/target/browser-screenshots}"
