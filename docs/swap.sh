#!/usr/bin/env bash
# 64 clients (`bench http`) on `prelu-deploy serve --model-control explicit` (the default layout), once
# steady and once while the model is swapped three times through the repository API: a good new version
# (B), a bad one (a PReLU slope ×8, its hashes rewritten: only the parity gate can tell), then the first
# again. MODE=poll: `--model-control poll --poll-interval 1`, each of the three written into the repository
# as its next version (export's writer) and picked up by the poll, no load asked for. Prints the table of
# docs/swap.md. Usage: bash docs/swap.sh   (DURATION=12 ROUNDS=2 MODE=explicit|poll)
set -euo pipefail
cd "$(dirname "$0")/.."
MODE=${MODE:-explicit}
DURATION=${DURATION:-12} ROUNDS=${ROUNDS:-2} OUT=${OUT:-docs/bench/swap$([ "$MODE" = poll ] && echo -poll)} PORT=${PORT:-18100}
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
CONTROL=(--model-control explicit --load-model digits)
[ "$MODE" = poll ] && CONTROL=(--model-control poll --poll-interval 1)
$PD serve "$WORK/repo" --port "$PORT" --grpc-port 0 "${CONTROL[@]}" --log-level warning &
SERVER=$!
trap 'kill $SERVER; wait $SERVER || true; rm -rf "$WORK"' EXIT
until curl -sf "localhost:$PORT/v2/health/ready" >/dev/null; do sleep 0.5; done
swap() {  # export --force's atomic swap of version $1 into the repository, then a load; one line of JSON
  $PY -c "import shutil, sys; from prelu_deploy.atomic import staged_dir
with staged_dir(sys.argv[2]) as tmp: shutil.copytree(sys.argv[1], tmp, dirs_exist_ok=True)" "$WORK/$1/digits" "$WORK/repo/digits"
  local start=$($PY -c 'import time; print(time.time())')
  local status=$(curl -s -o "$OUT/load-$1.json" -w '%{http_code}' -X POST "localhost:$PORT/v2/repository/models/digits/load")
  serving "$1" "$start" "$status"
}
serving() {  # what serves now (its lowering and version), as one line of JSON
  local lowering=$(curl -s "localhost:$PORT/v2/models/digits" | $PY -c 'import json, sys; m = json.load(sys.stdin); print(m["prelu_lowering"], "v" + m["versions"][-1])')
  local start=$2 status=$3
  echo "{\"version\": \"$1\", \"status\": $status, \"seconds\": $($PY -c "import time; print(round(time.time() - $start, 2))"), \"serving\": \"$lowering\"}" >> "$OUT/loads.jsonl"
}
next_version() {  # (poll) version $1 written as the model's next one by export's writer; the poll's verdict on it
  local start=$($PY -c 'import time; print(time.time())')
  local number=$($PY - "$WORK/$1/digits" "$WORK/repo/digits" <<'PY'
import shutil, sys
from prelu_deploy.export.entry_writer import writing_entry
from prelu_deploy.manifest import read_entry
src = read_entry(sys.argv[1])
with writing_entry(sys.argv[2], version="next") as stage:
    shutil.copyfile(src.artifact, stage / stage.files.onnx)
    stage.golden(src.golden_path)
    print(stage.finish(src).number)
PY
)
  local state=LOADING
  until [ "$state" != LOADING ]; do
    sleep 0.05
    state=$(curl -s -X POST "localhost:$PORT/v2/repository/index" | $PY -c "import json, sys
print(next((r['state'] for r in json.load(sys.stdin) if r.get('version') == '$number'), 'LOADING'))")
  done
  serving "$1 (v$number)" "$start" "\"$state\""
}
[ "$MODE" = poll ] && swap() { next_version "$@"; }
BENCH=($PD bench http "http://127.0.0.1:$PORT" --model digits --concurrency 64 --duration "$DURATION" --json)
for round in $(seq "$ROUNDS"); do  # the two alternate: a neighbour's load falls on both alike
  "${BENCH[@]}" --out "$OUT/steady" > "$OUT/steady-$round.json"
  ( sleep $((1 + DURATION / 4)); swap B; sleep $((DURATION / 5)); swap bad; sleep $((DURATION / 5)); swap A ) &
  SWAPS=$!
  "${BENCH[@]}" --out "$OUT/swaps" > "$OUT/swaps-$round.json"
  wait $SWAPS
done
$PY - "$OUT" "$MODE" <<'PYEOF'
import json, sys
from pathlib import Path
out, meanwhile = Path(sys.argv[1]), "three versions polled meanwhile" if sys.argv[2] == "poll" else "three loads meanwhile"
print("| round | 64 clients | requests | failed | requests/s | p50 ms | p99 ms | max ms |")
print("|---|---|---|---|---|---|---|---|")
for path in sorted(out.glob("s*-*.json"), key=lambda p: (p.stem.split("-")[1], p.stem)):
    name, round_ = path.stem.split("-")
    lv = json.loads(path.read_text())["levels"][0]
    lat = lv["latency"]
    print(f"| {round_} | {'no swap' if name == 'steady' else meanwhile} | {lv['requests']} | "
          f"{sum(lv['errors'].values())} | {lv['throughput_rps']:.0f} | {lat['median_ms']:.1f} | {lat['p99_ms']:.1f} | "
          f"{lat['max_ms']:.1f} |")
print()
print("| load (each round) | answer | took s | serving after |")
print("|---|---|---|---|")
for line in (out / "loads.jsonl").read_text().splitlines():
    load = json.loads(line)
    print(f"| {load['version']} | {load['status']} | {load['seconds']} | {load['serving']} |")
PYEOF
