#!/usr/bin/env bash
# 64 clients (`bench http`) on `prelu-deploy serve --model-control explicit` (the default layout), once
# steady and once while the model is swapped three times through the repository API: a good new version
# (B), a bad one (a PReLU slope ×8, its hashes rewritten: only the parity gate can tell), then the first
# again. Prints the table of docs/swap.md. Usage: bash docs/swap.sh   (DURATION=12 ROUNDS=2)
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-12} ROUNDS=${ROUNDS:-2} OUT=${OUT:-docs/bench/swap} PORT=${PORT:-18100}
PD=${PD:-.venv/bin/prelu-deploy} PY=${PY:-.venv/bin/python}
WORK=$(mktemp -d)
rm -rf "$OUT" && mkdir -p "$OUT"
$PY - "$WORK" <<'PYEOF'
import shutil, sys
from dataclasses import replace
from pathlib import Path
import onnx
from prelu_deploy.manifest import read_entry
work, bundled = Path(sys.argv[1]), Path("models/bundled/digits")
for kind in ("A", "B", "bad", "repo"):
    shutil.copytree(bundled, work / kind / "digits")
replace(read_entry(work / "B" / "digits"), lowering="native").write(work / "B" / "digits")
graph = onnx.load(work / "bad" / "digits" / "1" / "model.onnx")
next(n for n in graph.graph.node if n.op_type == "LeakyRelu").attribute[0].f *= 8
onnx.save(graph, work / "bad" / "digits" / "1" / "model.onnx")
read_entry(work / "bad" / "digits").write(work / "bad" / "digits")
PYEOF
$PD serve "$WORK/repo" --port "$PORT" --grpc-port 0 --model-control explicit --load-model digits --log-level warning &
SERVER=$!
trap 'kill $SERVER; wait $SERVER || true; rm -rf "$WORK"' EXIT
until curl -sf "localhost:$PORT/v2/health/ready" >/dev/null; do sleep 0.5; done
swap() {  # export --force's atomic swap of version $1 into the repository, then a load; one line of JSON
  $PY -c "import shutil, sys; from prelu_deploy.atomic import staged_dir
with staged_dir(sys.argv[2]) as tmp: shutil.copytree(sys.argv[1], tmp, dirs_exist_ok=True)" "$WORK/$1/digits" "$WORK/repo/digits"
  local start=$($PY -c 'import time; print(time.time())')
  local status=$(curl -s -o "$OUT/load-$1.json" -w '%{http_code}' -X POST "localhost:$PORT/v2/repository/models/digits/load")
  local lowering=$(curl -s "localhost:$PORT/v2/models/digits" | $PY -c 'import json, sys; print(json.load(sys.stdin)["prelu_lowering"])')
  echo "{\"version\": \"$1\", \"status\": $status, \"seconds\": $($PY -c "import time; print(round(time.time() - $start, 2))"), \"serving\": \"$lowering\"}" >> "$OUT/loads.jsonl"
}
BENCH=($PD bench http "http://127.0.0.1:$PORT" --model digits --concurrency 64 --duration "$DURATION" --json)
for round in $(seq "$ROUNDS"); do  # the two alternate: a neighbour's load falls on both alike
  "${BENCH[@]}" --out "$OUT/steady" > "$OUT/steady-$round.json"
  ( sleep $((1 + DURATION / 4)); swap B; sleep $((DURATION / 5)); swap bad; sleep $((DURATION / 5)); swap A ) &
  SWAPS=$!
  "${BENCH[@]}" --out "$OUT/swaps" > "$OUT/swaps-$round.json"
  wait $SWAPS
done
$PY - "$OUT" <<'PYEOF'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
print("| round | 64 clients | requests | failed | requests/s | p50 ms | p99 ms | max ms |")
print("|---|---|---|---|---|---|---|---|")
for path in sorted(out.glob("s*-*.json"), key=lambda p: (p.stem.split("-")[1], p.stem)):
    name, round_ = path.stem.split("-")
    lv = json.loads(path.read_text())["levels"][0]
    lat = lv["latency"]
    print(f"| {round_} | {'no swap' if name == 'steady' else 'three loads meanwhile'} | {lv['requests']} | "
          f"{sum(lv['errors'].values())} | {lv['throughput_rps']:.0f} | {lat['median_ms']:.1f} | {lat['p99_ms']:.1f} | "
          f"{lat['max_ms']:.1f} |")
print()
print("| load (each round) | answer | took s | serving after |")
print("|---|---|---|---|")
for line in (out / "loads.jsonl").read_text().splitlines():
    load = json.loads(line)
    print(f"| {load['version']} | {load['status']} | {load['seconds']} | {load['serving']} |")
PYEOF
