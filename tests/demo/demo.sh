#!/usr/bin/env bash
# `make demo`: start the mock with faults, ingest a realistic file per provider through the CLI,
# and show that the mock stored exactly what was sent. Stops the mock on any exit.
#
# Environment: BIN (venv bin dir, default .venv/bin), MOCK_PORT (8910), MOCK_TOKEN (test-token),
# DEMO_EVENTS (events per provider, 30000), DEMO_FAULTS (JSON fault settings for the mock).
set -euo pipefail

BIN=${BIN:-.venv/bin}
PORT=${MOCK_PORT:-8910}
TOKEN=${MOCK_TOKEN:-test-token}
EVENTS=${DEMO_EVENTS:-30000}
FAULTS=${DEMO_FAULTS:-'{"rate_429": 0.05, "rate_503": 0.05, "rate_drop": 0.03, "rate_lost_response": 0.03, "retry_after": 1, "seed": 2024}'}
ORIGIN="http://127.0.0.1:${PORT}"
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/billing-events-demo.XXXXXX")
MOCK_PID=""

stop_mock() {
    if [[ -n "$MOCK_PID" ]] && kill -0 "$MOCK_PID" 2>/dev/null; then
        kill "$MOCK_PID" 2>/dev/null || true
        wait "$MOCK_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap stop_mock EXIT
trap 'exit 130' INT TERM

echo "==> starting the mock on ${ORIGIN} with faults ${FAULTS}"
MOCK_PORT="$PORT" MOCK_TOKEN="$TOKEN" MOCK_FAULTS="$FAULTS" "$BIN/billing-events" mock >"$WORK/mock.log" 2>&1 &
MOCK_PID=$!

# Wait until the mock answers, giving up if it exits (port taken?) or takes over 20 s.
"$BIN/python" - "$ORIGIN" "$MOCK_PID" <<'EOF' || { echo "the mock did not start:"; cat "$WORK/mock.log"; exit 1; }
import os, sys, time
import httpx
origin, pid = sys.argv[1], int(sys.argv[2])
deadline = time.monotonic() + 20
while time.monotonic() < deadline:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        sys.exit(1)
    try:
        if httpx.get(f"{origin}/_mock/stats", timeout=1).status_code == 200:
            sys.exit(0)
    except httpx.TransportError:
        pass
    time.sleep(0.1)
sys.exit(1)
EOF

echo "==> generating ${EVENTS} Togai events (JSONL) and ${EVENTS} Lago events (CSV)"
"$BIN/python" "$HERE/generate_events.py" togai "$EVENTS" "$WORK/togai-usage.jsonl" --seed 1
"$BIN/python" "$HERE/generate_events.py" lago "$EVENTS" "$WORK/lago-usage.csv" --seed 2

status=0
echo "==> billing-events ingest togai"
TOGAI_API_TOKEN="$TOKEN" TOGAI_BASE_URL="$ORIGIN/togai" \
    "$BIN/billing-events" ingest togai "$WORK/togai-usage.jsonl" --progress --report "$WORK/togai-report.json" || status=$?
echo "==> billing-events ingest lago"
LAGO_API_KEY="$TOKEN" LAGO_API_URL="$ORIGIN/lago/api/v1" \
    "$BIN/billing-events" ingest lago "$WORK/lago-usage.csv" --progress --report "$WORK/lago-report.json" || status=$?

echo "==> what the mock stored"
"$BIN/python" "$HERE/compare.py" "$ORIGIN" "togai=$WORK/togai-report.json" "lago=$WORK/lago-report.json" || status=1
exit "$status"
