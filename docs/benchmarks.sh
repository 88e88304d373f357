#!/usr/bin/env bash
# Reproduces the tables of docs/benchmarks.md on this machine: reports (JSON, Markdown, PNG) land in
# docs/bench/. Run from the repository root after `make test` or `make serve` set up .venv:
#   bash docs/benchmarks.sh
set -euo pipefail
cd "$(dirname "$0")/.."
B=.venv/bin/prelu-deploy
OUT=docs/bench
REPO=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$REPO"' EXIT

# 1. In process: torch eager vs ONNX Runtime with each PReLU lowering (channel-shared PReLU everywhere).
$B bench cifar_prelu --backend torch,torch-compile,onnxruntime --prelu-mode native,leaky,plugin --batch 1,8,32 --duration 3 --out $OUT --plot
$B bench model_a --width 0.25 --input-size 112 --backend torch,onnxruntime --prelu-mode native,leaky --batch 1,8 --duration 5 --out $OUT --plot
# INT8 beside fp32 by lowering (quantized on demand)
$B bench cifar_prelu --backend onnxruntime --prelu-mode native,leaky --precision fp32,int8 --batch 1,8,32 --duration 3 --baseline onnxruntime:native --out $OUT
$B bench model_a --width 0.25 --input-size 112 --backend onnxruntime --prelu-mode native,leaky --precision fp32,int8 --batch 1,8 --duration 3 --baseline onnxruntime:native --out $OUT

# 2. Over HTTP: the bundled digits model, dynamic batching on (defaults) and off.
$B export models/weights/digits_prelu.safetensors --name digits --repo "$REPO" --prelu-mode leaky
for batching in "--max-batch-size 32 --max-queue-delay-ms 2" "--max-batch-size 1 --max-queue-delay-ms 0"; do
  $B serve "$REPO" --port 8123 --log-level warning --max-queue 4096 $batching &
  until curl -sf http://127.0.0.1:8123/v2/health/ready >/dev/null; do sleep 0.5; done
  $B bench http http://127.0.0.1:8123 --model digits --concurrency 1,8,64 --duration 5 \
     --data "$REPO/digits/golden.npz" --out $OUT --plot
  kill %1; wait %1 || true
done

# 3. Over HTTP beside the hand-written baseline (bench/baseline_server.py): cifar_prelu, He-initialised,
#    and the bundled digits model. `bench serving` starts both servers itself, measures the graph in
#    process first, alternates the servers 3 rounds per level and checks the goals; run with the default
#    layout (a single-threaded worker per core + a lone-request runner) and with one worker on every core,
#    with binary tensors (v2 infer) and with 32×32 PNGs (classify).
.venv/bin/python -c "import torch; from prelu_deploy.models import create_model, save_checkpoint; torch.manual_seed(0); save_checkpoint(create_model('cifar_prelu'), '$REPO/c.safetensors')"
$B export "$REPO/c.safetensors" --name cifar --repo "$REPO/cifar_repo"
.venv/bin/python -c "
import numpy as np; from PIL import Image; from pathlib import Path
d = Path('$REPO/png'); d.mkdir(); rng = np.random.default_rng(0)
for i in range(32): Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(d / f'{i:02d}.png')"
for layout in "" "--workers 1"; do
  $B bench serving "$REPO/cifar_repo" --model cifar --serve-args "$layout" --concurrency 1,8,64 --duration 3 --rounds 3 \
     --data "$REPO/cifar_repo/cifar/golden.npz" --out $OUT
  $B bench serving "$REPO" --model digits --serve-args "$layout" --concurrency 1,8,64 --duration 3 --rounds 3 \
     --data "$REPO/digits/golden.npz" --out $OUT
done
$B bench serving "$REPO/cifar_repo" --model cifar --concurrency 1,8,64 --duration 3 --rounds 3 --data "$REPO/png" --out $OUT
# the same on one core (servers, generator and the in-process reference alike): how each server grows with the cores
taskset -c 0 $B bench serving "$REPO/cifar_repo" --model cifar --concurrency 1,8,64 --duration 3 --rounds 3 \
   --data "$REPO/cifar_repo/cifar/golden.npz" --out $OUT
