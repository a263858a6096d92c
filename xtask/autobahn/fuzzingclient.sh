#!/usr/bin/env bash
# Runs the Autobahn|Testsuite fuzzing client against one WebSocket server and summarises the
# results. Called by `cargo xtask autobahn` (xtask/src/autobahn.rs); usable on its own:
#
#   xtask/autobahn/fuzzingclient.sh WS_URL CASES EXCLUDE OUTDIR AGENT
#     WS_URL   ws://127.0.0.1:PORT (loopback)
#     CASES    comma-separated case globs, e.g. '*' or '1.*,2.*'
#     EXCLUDE  comma-separated case globs to skip ('' for none)
#     OUTDIR   where the HTML/JSON report goes
#     AGENT    the name of the server in the report
#
# wstest (PyPI autobahntestsuite 25.10.1) needs CPython 2.7. It is installed once into a
# virtualenv under ${AUTOBAHN_HOME:-~/.cache/chinwag-autobahn}; the interpreter comes from
# $AUTOBAHN_PY2, pyenv (~/.pyenv/versions/2.7.*) or PATH.
#
# The last line of output is the summary the xtask parses:
#   autobahn: N cases, OK=a, NON-STRICT=b, INFORMATIONAL=c, UNIMPLEMENTED=d, FAILED=e
# A case is FAILED when its behaviour or its close behaviour is FAILED.
# Exit: 0 no failures, 1 failures, 2 no results, 3 cannot install wstest.
set -euo pipefail

URL="$1"; CASES="${2:-*}"; EXCLUDE="${3:-}"; OUTDIR="$4"; AGENT="${5:-server}"
HOME_DIR="${AUTOBAHN_HOME:-$HOME/.cache/chinwag-autobahn}"
TMO="${AUTOBAHN_TIMEOUT:-3600}"
mkdir -p "$HOME_DIR" "$OUTDIR"
log() { echo "[autobahn] $*" >&2; }

find_py2() {
  local c
  for c in "${AUTOBAHN_PY2:-}" "$HOME"/.pyenv/versions/2.7*/bin/python2.7 /usr/local/bin/python2.7 \
           /usr/bin/python2.7 "$(command -v python2.7 2>/dev/null || true)"; do
    [[ -n "$c" && -x "$c" ]] || continue
    "$c" -c 'import sys; assert sys.version_info[:2] == (2, 7)' 2>/dev/null && { echo "$c"; return 0; }
  done
  return 1
}

PY2="$(find_py2)" || { log "no Python 2.7 found (set AUTOBAHN_PY2)"; exit 3; }
VENV="$HOME_DIR/wstest-venv"
if ! { [[ -x "$VENV/bin/wstest" ]] && "$VENV/bin/wstest" -a >/dev/null 2>&1; }; then
  log "installing autobahntestsuite==25.10.1 into $VENV (python: $PY2)"
  rm -rf "$VENV" "$HOME_DIR/py2-bootstrap"
  "$PY2" -m pip install -q --disable-pip-version-check --target "$HOME_DIR/py2-bootstrap" \
    "virtualenv<20.22" 2>&1 | grep -v DEPRECATION >&2 || true
  PYTHONPATH="$HOME_DIR/py2-bootstrap" "$PY2" -m virtualenv -q "$VENV" >&2
  "$VENV/bin/pip" install -q --disable-pip-version-check --no-python-version-warning \
    "autobahntestsuite==25.10.1" >&2
  "$VENV/bin/wstest" -a >/dev/null 2>&1 || { log "wstest install failed"; exit 3; }
fi

SPEC="$OUTDIR/spec.json"
python3 - "$URL" "$CASES" "$EXCLUDE" "$OUTDIR" "$AGENT" > "$SPEC" <<'PY'
import json, sys
url, cases, excl, out, agent = sys.argv[1:6]
split = lambda s: [c.strip() for c in s.split(',') if c.strip()]
print(json.dumps({"outdir": out, "servers": [{"agent": agent, "url": url}],
                  "cases": split(cases) or ["*"], "exclude-cases": split(excl),
                  "exclude-agent-cases": {}}, indent=1))
PY

log "wstest fuzzingclient -> $URL cases=[$CASES] exclude=[$EXCLUDE] report=$OUTDIR/index.html"
( cd "$OUTDIR" && timeout "$TMO" "$VENV/bin/wstest" -m fuzzingclient -s "$SPEC" ) \
  > "$OUTDIR/wstest.log" 2>&1 || log "wstest exited $? (see $OUTDIR/wstest.log)"

python3 - "$OUTDIR/index.json" <<'PY'
import json, sys, collections
try:
    idx = json.load(open(sys.argv[1]))
except Exception as e:
    print("autobahn: no results (%s)" % e); sys.exit(2)
cases = {}
for agent, cs in idx.items():
    cases.update(cs)
if not cases:
    print("autobahn: no results (0 cases)"); sys.exit(2)
key = lambda c: [int(x) if x.isdigit() else x for x in c.split('.')]
cnt = collections.Counter()
for cid in sorted(cases, key=key):
    r = cases[cid]
    b, bc = r.get("behavior", "?"), r.get("behaviorClose", "?")
    res = "FAILED" if "FAILED" in (b, bc) else b
    cnt[res] += 1
    if res not in ("OK", "INFORMATIONAL", "UNIMPLEMENTED"):
        print("  %-8s %s (close: %s, code %s)" % (cid, b, bc, r.get("remoteCloseCode")))
other = sum(v for k, v in cnt.items()
            if k not in ("OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED", "FAILED"))
print("autobahn: %d cases, OK=%d, NON-STRICT=%d, INFORMATIONAL=%d, UNIMPLEMENTED=%d, FAILED=%d%s" % (
    len(cases), cnt["OK"], cnt["NON-STRICT"], cnt["INFORMATIONAL"], cnt["UNIMPLEMENTED"],
    cnt["FAILED"], (", OTHER=%d" % other) if other else ""))
sys.exit(1 if cnt["FAILED"] else 0)
PY
