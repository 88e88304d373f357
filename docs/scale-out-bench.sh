#!/usr/bin/env bash
# The numbers of docs/scale-out.md: the bundled digits model over HTTP, the plain server (one worker
# process) beside `serve --ray` through each ingress (haproxy, the default; direct; Ray's Python proxy)
# with 1 replica, and haproxy with 2, at concurrency 1, 8 and 64. The same load generator and data for
# both; at each level the plain server and then Ray, back to back, in ROUNDS rounds; the table gives
# each figure's median over the rounds and Ray's ratio to the plain server (the median of the rounds'
# ratios). The report names the cores, Ray's version, the replicas and the proxies, and the load
# average around each round. Reports (JSON, Markdown) land in docs/bench/scale-out/; the table is
# printed at the end and written to docs/bench/scale-out/summary.md.
# Run from the repository root after `make test` or `make serve` set up .venv (with the ray extra):
#   bash docs/scale-out-bench.sh
# Knobs (environment): ROUNDS (3), RUNS ("haproxy:1 direct:1 proxy:1 haproxy:2", ingress:replicas),
# CONCURRENCY ("1 8 64"), DURATION (5 s per level, after 1 s of warm-up), PLAIN_WORKERS (1).
set -euo pipefail
cd "$(dirname "$0")/.."
B=.venv/bin/prelu-deploy
OUT=docs/bench/scale-out
DATA=models/bundled/digits/golden.npz
ROUNDS=${ROUNDS:-3}
RUNS=${RUNS:-"haproxy:1 direct:1 proxy:1 haproxy:2"}
CONCURRENCY=${CONCURRENCY:-"1 8 64"}
DURATION=${DURATION:-5}
PLAIN_WORKERS=${PLAIN_WORKERS:-1}
SERVE_OPTS="--log-level warning --max-queue 4096 --max-queue-delay-ms 2"
rm -rf "$OUT/raw" && mkdir -p "$OUT/raw"
trap 'kill $(jobs -p) 2>/dev/null || true' EXIT
load() { cut -d' ' -f1 /proc/loadavg; }
ready() { until curl -sf "http://127.0.0.1:$1/v2/health/ready" >/dev/null; do sleep 0.5; done; }
live() {  # what one request costs with no model in it: GET /v2/health/live, 300 times on one connection
  .venv/bin/python -c "import http.client, time, statistics as st; c = http.client.HTTPConnection('127.0.0.1', $2); ts = []
for _ in range(300): t = time.perf_counter(); c.request('GET', '/v2/health/live'); c.getresponse().read(); ts.append(1e3 * (time.perf_counter() - t))
print(f'$1\t{st.median(ts):.2f}')" >> "$OUT/raw/live.tsv"
}
bench() {  # name port concurrency round
  $B bench http "http://127.0.0.1:$2" --model digits --concurrency "$3" --duration "$DURATION" --warmup 1 --data $DATA \
     --out "$OUT/raw/$1/c$3-r$4" >/dev/null
}

$B serve --port 8123 --workers "$PLAIN_WORKERS" $SERVE_OPTS > "$OUT/raw/plain.log" 2>&1 &
ready 8123
for run in $RUNS; do
  ingress=${run%%:*} replicas=${run##*:} name="ray-${run/:/-}"
  $B serve --ray --ray-ingress "$ingress" --replicas "$replicas" --port 8124 $SERVE_OPTS > "$OUT/raw/$name.log" 2>&1 &
  RAY_PID=$!
  until grep -qs '^serving' "$OUT/raw/$name.log"; do kill -0 $RAY_PID; sleep 0.5; done
  # direct ingress: the first replica's own server (Ray's proxy stays on 8124; an external balancer would spread)
  port=$(sed -n 's/^serving .* at http:\/\/[^:]*:\([0-9]*\).*/\1/p' "$OUT/raw/$name.log" | head -1)
  ready "$port"
  live plain 8123; live "$name" "$port"
  for round in $(seq "$ROUNDS"); do
    echo -e "$name\t$round\t$(load)" >> "$OUT/raw/load.tsv"
    for c in $CONCURRENCY; do
      bench plain 8123 "$c" "$name-$round"
      bench "$name" "$port" "$c" "$round"
    done
    echo -e "$name\t$round\t$(load)" >> "$OUT/raw/load.tsv"
  done
  kill -TERM "$RAY_PID"; wait "$RAY_PID" || true  # deletes the app, stops the local Ray cluster
done
kill %1; wait %1 || true

.venv/bin/python - "$OUT" "$RUNS" "$PLAIN_WORKERS" <<'PY' | tee "$OUT/summary.md"
import json, os, platform, statistics as st, subprocess, sys, time
from pathlib import Path
out, runs, plain_workers = Path(sys.argv[1]), sys.argv[2].split(), sys.argv[3]
raw = out / "raw"

def levels(folder):
    """{(concurrency, round tag): level} of every report under raw/folder/c*-r*/."""
    got = {}
    for f in sorted((raw / folder).glob("c*-r*/*.json")):
        tag = f.parent.name.split("-r", 1)[1]
        for lv in json.loads(f.read_text())["levels"]:
            got[lv["concurrency"], tag] = lv
    return got

import ray
haproxy = subprocess.run(".venv/bin/python -c 'from prelu_deploy.serve.ray.options import haproxy_binary as h; print(h())'",
                         shell=True, capture_output=True, text=True).stdout.strip()
hap_version = subprocess.run([haproxy, "-v"], capture_output=True, text=True).stdout.split("\n")[0] if haproxy != "None" else "none"
loads = [float(line.split("\t")[2]) for line in (raw / "load.tsv").read_text().splitlines()]
cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), platform.machine())
print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}: {len(os.sched_getaffinity(0))} usable cores "
      f"({os.cpu_count()} on the machine, {cpu}), ray {ray.__version__}, {hap_version}; load average "
      f"{min(loads):.1f}–{max(loads):.1f} (1 min) around the rounds. Plain server: {plain_workers} worker process(es). "
      f"Proxies: haproxy = one HAProxy per node (here 1) in front of the replicas' own HTTP servers; direct = none "
      f"(clients reach replica 1's own server); proxy = Ray's Python proxy actor, one per node (here 1). Each replica "
      f"one process with 1 CPU reserved and 1 runner thread.\n")
print("live p50 ms (GET /v2/health/live, no model): " + ", ".join(
    f"{n} {v}" for n, v in (line.split("\t") for line in (raw / "live.tsv").read_text().splitlines())) + "\n")
print("| server | ingress | replicas | clients | requests/s | p50 ms | p99 ms | errors | × plain requests/s | p50 − plain, ms |")
print("|---|---|---:|---:|---:|---:|---:|---|---:|---:|")
for run in runs:
    ingress, replicas = run.split(":")
    name = f"ray-{ingress}-{replicas}"
    ray_lv, plain_lv = levels(name), levels("plain")
    for c in sorted({c for c, _ in ray_lv}):
        rounds = sorted(tag for cc, tag in ray_lv if cc == c)
        pairs = [(plain_lv[c, f"{name}-{r}"], ray_lv[c, r]) for r in rounds if (c, f"{name}-{r}") in plain_lv]
        med = lambda lvs, f: st.median(f(lv) for lv in lvs)
        for label, lvs in (("plain", [p for p, _ in pairs]), ("ray", [r for _, r in pairs])):
            errors = sum(sum(lv["errors"].values()) for lv in lvs)
            ratio = (f"{st.median(r['throughput_rps'] / p['throughput_rps'] for p, r in pairs):.2f}" if label == "ray" else "")
            over = (f"{st.median(r['latency']['median_ms'] - p['latency']['median_ms'] for p, r in pairs):+.2f}"
                    if label == "ray" else "")
            print(f"| {label} | {ingress if label == 'ray' else '-'} | {replicas if label == 'ray' else '-'} | {c} | "
                  f"{med(lvs, lambda lv: lv['throughput_rps']):.0f} | {med(lvs, lambda lv: lv['latency']['median_ms']):.2f} | "
                  f"{med(lvs, lambda lv: lv['latency']['p99_ms']):.1f} | {errors or '-'} | {ratio} | {over} |")
print(f"\n{len(pairs)} rounds a row; each figure the median over them.")
PY
