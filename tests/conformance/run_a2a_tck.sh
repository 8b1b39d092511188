#!/usr/bin/env bash
# Run the A2A TCK (a2aproject/a2a-tck, branch 1.0-dev) against the node's A2A service with the TCK agent.
#   A2A_TCK_DIR=/path/to/a2a-tck  [TCK_PYTHON=/path/to/venv/bin/python]  [A2A_TCK_DB=sqlite+aiosqlite:///x.db] \
#     tests/conformance/run_a2a_tck.sh [run_tck.py args]
# The TCK checkout is not part of this repository: fetch it yourself and install it in its own venv
# (pip install -e "$A2A_TCK_DIR"). Extra arguments go to run_tck.py (e.g. --level must, --transport jsonrpc).
# The server serves every binding (JSON-RPC and HTTP+JSON on one port, gRPC on another) with push notifications
# (the TCK's webhook receiver on localhost is allowed) and the extended card: results in docs/a2a-bindings.md.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
: "${A2A_TCK_DIR:?set A2A_TCK_DIR to a checkout of a2aproject/a2a-tck (branch 1.0-dev)}"
node_python="${NODE_PYTHON:-$repo/.venv/bin/python}"
tck_python="${TCK_PYTHON:-python3}"
port="$("$node_python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
log="$(mktemp)"
"$node_python" "$here/a2a_tck_server.py" "$port" ${A2A_TCK_DB:+--db "$A2A_TCK_DB"} >"$log" 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; rm -f "$log"' EXIT
for _ in $(seq 1 100); do
  grep -q READY "$log" && break
  kill -0 "$server" 2>/dev/null || { cat "$log"; exit 1; }
  sleep 0.1
done
grep -q READY "$log" || { echo "server did not start"; cat "$log"; exit 1; }
cd "$A2A_TCK_DIR"
"$tck_python" run_tck.py --sut-host "http://127.0.0.1:$port" "$@"
