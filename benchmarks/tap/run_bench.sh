#!/bin/bash
# TAP speed benchmark, exactly the recipe of ../shared/bench/README.md:
#   gen_catalog (1M objects, ~5M forced sources) -> pachon catalog ingest (both tables)
#   -> pachon serve tap --anonymous -> bench_tap.py -> expected_checksums.py --check
#
# Usage: benchmarks/tap/run_bench.sh [WORKDIR]     (default: /tmp/pachon-tap-bench)
#   N_OBJ=1000000 PORT=8091 BACKEND_URL=duckdb:///WORKDIR/cat.duckdb can be overridden.
# Writes WORKDIR/ours.json, prints the comparison with the DaCHS figures of the README and
# the ingest time. Machine of record: 2 cores, 24 GiB.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
SHARED=${PACHON_SHARED_DIR:-$ROOT/../shared}
BENCH=$SHARED/bench
WORK=${1:-/tmp/pachon-tap-bench}
N_OBJ=${N_OBJ:-1000000}
PORT=${PORT:-8091}
PY=$ROOT/.venv/bin/python
PACHON=$ROOT/.venv/bin/pachon
mkdir -p "$WORK"
CAT_URL=${BACKEND_URL:-duckdb:///$WORK/cat.duckdb}
export PACHON_STATE_DB_URL=${PACHON_STATE_DB_URL:-sqlite:///$WORK/state/pachon.sqlite3}

if [ ! -f "$WORK/cat/object.parquet" ]; then
  echo "== generating $N_OBJ objects"
  "$PY" "$BENCH/gen_catalog.py" --n-obj "$N_OBJ" --formats parquet "$WORK/cat"
fi

if [ ! -f "$WORK/ingested.ok" ] || [ -n "${REINGEST:-}" ]; then
  case "$CAT_URL" in duckdb:///*) rm -f "${CAT_URL#duckdb:///}" ;; esac
  echo "== ingesting into $CAT_URL"
  t0=$(date +%s.%N)
  "$PACHON" catalog ingest "$WORK/cat/object.parquet" --table bench.object --ra ra --dec dec --catalog "$CAT_URL"
  "$PACHON" catalog ingest "$WORK/cat/forcedsource.parquet" --table bench.forcedsource --catalog "$CAT_URL"
  t1=$(date +%s.%N)
  python3 -c "print('ingest of both tables: %.1f s' % ($t1 - $t0))" | tee "$WORK/ingest.txt"
  touch "$WORK/ingested.ok"
fi

echo "== serving on port $PORT"
"$PACHON" serve tap --catalog "$CAT_URL" --port "$PORT" --anonymous > "$WORK/serve.log" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null; wait $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 1 120); do
  curl -sf "http://127.0.0.1:$PORT/tap/availability" >/dev/null && break
  sleep 0.5
done

echo "== bench_tap.py"
"$PY" "$BENCH/bench_tap.py" "http://127.0.0.1:$PORT/tap" --json "$WORK/ours.json"
echo "== checksums"
"$PY" "$BENCH/expected_checksums.py" "$WORK/cat" --check "$WORK/ours.json"
echo "== against GAVO DaCHS 2.7 (README figures)"
"$PY" "$HERE/compare_dachs.py" "$WORK/ours.json" || true
cat "$WORK/ingest.txt" 2>/dev/null || true
