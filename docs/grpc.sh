#!/usr/bin/env bash
# gRPC beside HTTP binary on one `prelu-deploy serve` (the bundled digits model, the default layout),
# and grpcio's own floor (bench/grpc_floor.py: a servicer that answers zeros, one process per core as the
# server's default layout has workers): ROUNDS rounds, the three alternating within each, every level of
# `bench http` each time; then the table of docs/grpc.md (the median round per level).
# Usage: bash docs/grpc.sh  (ROUNDS=3 DURATION=5)
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3} DURATION=${DURATION:-5} OUT=${OUT:-docs/bench/grpc}
PD=${PD:-.venv/bin/prelu-deploy} PY=${PY:-.venv/bin/python}
HTTP_PORT=${HTTP_PORT:-18000} GRPC_PORT=${GRPC_PORT:-18001} FLOOR_PORT=${FLOOR_PORT:-18002}
rm -rf "$OUT" && mkdir -p "$OUT"
$PD serve --port "$HTTP_PORT" --grpc-port "$GRPC_PORT" --log-level warning &
SERVERS=$!
for _ in $(seq "$(nproc)"); do  # grpcio binds with SO_REUSEPORT: the kernel spreads connections over them
  $PY -m prelu_deploy.bench.grpc_floor models/bundled/digits --port "$FLOOR_PORT" >/dev/null &
  SERVERS="$SERVERS $!"
done
trap 'kill $SERVERS; wait $SERVERS || true' EXIT
until curl -sf "localhost:$HTTP_PORT/v2/health/ready" >/dev/null; do sleep 0.5; done
for round in $(seq "$ROUNDS"); do
  $PD bench http "http://127.0.0.1:$HTTP_PORT" --model digits --duration "$DURATION" --out "$OUT/http" >/dev/null
  $PD bench http "127.0.0.1:$GRPC_PORT" --protocol grpc --model digits --duration "$DURATION" --out "$OUT/grpc" >/dev/null
  $PD bench http "127.0.0.1:$FLOOR_PORT" --protocol grpc --model digits --duration "$DURATION" --out "$OUT/floor" >/dev/null
done
$PY - "$OUT" <<'PYEOF'
import json, statistics, sys
from pathlib import Path
out = Path(sys.argv[1])
NAMES = {"http": "HTTP binary", "grpc": "gRPC", "floor": "gRPC floor (grpcio alone, no work)"}
runs = {p: [json.loads(f.read_text()) for f in sorted((out / p).glob("*.json"))] for p in NAMES}
print("| clients | protocol | requests/s (median round) | rounds | p50 ms | p99 ms | generator CPU | / HTTP |")
print("|---|---|---|---|---|---|---|---|")
for i, c in enumerate(lv["concurrency"] for lv in runs["http"][0]["levels"]):
    med = {}
    for p in NAMES:
        levels = sorted((r["levels"][i] for r in runs[p]), key=lambda lv: lv["throughput_rps"])
        mid = levels[len(levels) // 2]
        med[p] = mid["throughput_rps"]
        ratio = f"{med[p] / med['http']:.2f}×" if p != "http" else ""
        each = ", ".join(f"{lv['throughput_rps']:.0f}" for lv in levels)
        print(f"| {c} | {NAMES[p]} | {mid['throughput_rps']:.0f} | {each} | "
              f"{mid['latency']['median_ms']:.2f} | "
              f"{mid['latency']['p99_ms']:.2f} | {mid['client_cpu']:.2f} | {ratio} |")
PYEOF
