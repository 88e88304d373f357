#!/usr/bin/env bash
# The numbers of docs/scale-out.md: the bundled digits model over HTTP, the plain server beside
# `serve --ray` with 1 and 2 replicas, at concurrency 1, 8 and 64, on this machine. For each replica
# count, each concurrency level is measured on the plain server and then on Ray, back to back.
# Reports (JSON, Markdown) land in docs/bench/scale-out/; the table is printed at the end.
# Run from the repository root after `make test` or `make serve` set up .venv (with the ray extra):
#   bash docs/scale-out-bench.sh
set -euo pipefail
cd "$(dirname "$0")/.."
B=.venv/bin/prelu-deploy
OUT=docs/bench/scale-out
DATA=models/bundled/digits/golden.npz
SERVE_OPTS="--log-level warning --max-queue 4096 --max-queue-delay-ms 2"
mkdir -p $OUT
trap 'kill $(jobs -p) 2>/dev/null || true' EXIT
ready() { until curl -sf "http://127.0.0.1:$1/v2/health/ready" >/dev/null; do sleep 0.5; done; }

$B serve --port 8123 $SERVE_OPTS &
ready 8123
for replicas in 1 2; do
  $B serve --ray --replicas "$replicas" --port 8124 $SERVE_OPTS &
  RAY_PID=$!
  ready 8124
  for port in 8123 8124; do  # what one request costs with no model in it: GET /v2/health/live, 300 times
    .venv/bin/python -c "import http.client, time, statistics as st; c = http.client.HTTPConnection('127.0.0.1', $port); ts = []
for _ in range(300): t = time.perf_counter(); c.request('GET', '/v2/health/live'); c.getresponse().read(); ts.append(1e3 * (time.perf_counter() - t))
print(f'live port $port replicas $replicas: p50 {st.median(ts):.2f} ms')" >> "$OUT/live.txt"
  done
  for c in 1 8 64; do
    for port in 8123 8124; do
      $B bench http "http://127.0.0.1:$port" --model digits --concurrency "$c" --duration 5 --warmup 1 --data $DATA \
         --out "$OUT/replicas-$replicas-port-$port" >/dev/null
    done
  done
  kill -TERM "$RAY_PID"; wait "$RAY_PID" || true  # deletes the app, stops the local Ray cluster
done
kill %1; wait %1 || true

cat "$OUT/live.txt"
.venv/bin/python - "$OUT" <<'PY'
import json, sys
from pathlib import Path
print("| server | concurrency | requests/s | p50 ms | p99 ms | errors |\n|---|---:|---:|---:|---:|---|")
for replicas in (1, 2):
    for c in (1, 8, 64):
        for port, name in ((8123, "plain"), (8124, f"ray, {replicas} replica{'s' * (replicas > 1)}")):
            for f in sorted(Path(sys.argv[1], f"replicas-{replicas}-port-{port}").glob("*.json")):
                for lv in json.loads(f.read_text())["levels"]:
                    if lv["concurrency"] == c:
                        lat = lv["latency"]
                        print(f"| {name} | {c} | {lv['throughput_rps']:.0f} | {lat['median_ms']:.1f} | {lat['p99_ms']:.1f} | "
                              f"{lv['errors'] or '-'} |")
PY
