"""HTTP latency and throughput of `prelu-deploy serve` at concurrency 1, 8 and 64, with dynamic
batching on (--max-batch-size 32 --max-queue-delay-ms 2) and off (--max-batch-size 1), beside the
in-process runner latency for the same model and batch (1 image a request, binary tensors over
keep-alive connections). Prints Markdown for docs/benchmarks.md.
Reproduce: `.venv/bin/python docs/bench_http.py`."""

import http.client
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from prelu_deploy.export.model_dir import export_model_dir  # noqa: E402
from prelu_deploy.models import create_model, save_checkpoint  # noqa: E402
from prelu_deploy.models.preprocess import Preprocess  # noqa: E402
from prelu_deploy.serve.bench import interleaved, summary  # noqa: E402
from prelu_deploy.serve.runner import get_runner  # noqa: E402
from tests.serve.server import Server  # noqa: E402

DURATION = 4.0  # seconds of load per setting
SHIPPED = Path(__file__).resolve().parents[1] / "models" / "weights" / "digits_prelu.safetensors"


def _request(x: np.ndarray, name: str) -> tuple[bytes, dict]:
    head = json.dumps({"inputs": [{"name": "images", "shape": list(x.shape), "datatype": "FP32",
                                   "parameters": {"binary_data_size": x.nbytes}}],
                       "outputs": [{"name": "logits", "parameters": {"binary_data": True}}]}).encode()
    return head + x.tobytes(), {"Inference-Header-Content-Length": str(len(head)), "content-type": "application/octet-stream"}


def drive(port: int, name: str, x: np.ndarray, concurrency: int) -> dict:
    body, headers = _request(x, name)
    latencies, errors, stop = [], [], time.monotonic() + DURATION

    def client():
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        mine = []
        while time.monotonic() < stop:
            t = time.perf_counter()
            conn.request("POST", f"/v2/models/{name}/infer", body, headers)
            r = conn.getresponse()
            r.read()
            (mine if r.status == 200 else errors).append(time.perf_counter() - t if r.status == 200 else r.status)
        latencies.extend(mine)
        conn.close()

    threads = [threading.Thread(target=client) for _ in range(concurrency)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    s = summary(latencies)
    return {**s, "throughput": len(latencies) / (time.perf_counter() - start), "errors": len(errors)}


def _get_live(port: int, n: int = 500) -> list[float]:
    conn, out = http.client.HTTPConnection("127.0.0.1", port), []
    for _ in range(n):
        t = time.perf_counter()
        conn.request("GET", "/v2/health/live")
        conn.getresponse().read()
        out.append(time.perf_counter() - t)
    conn.close()
    return out


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp) / "repo"
        export_model_dir(SHIPPED, "digits", repo, mode="leaky")
        torch.manual_seed(0)
        cifar = create_model("cifar_prelu", act="prelu_shared")
        ckpt = save_checkpoint(cifar, Path(tmp) / "c.safetensors", preprocess=Preprocess((32, 32), 3, (0.5,) * 3, (0.25,) * 3))
        export_model_dir(ckpt, "cifar_prelu", repo, mode="leaky")
        inputs = {"digits": np.zeros((1, 1, 8, 8), np.float32), "cifar_prelu": np.zeros((1, 3, 32, 32), np.float32)}
        in_process = {}
        for name, x in inputs.items():
            runner = get_runner("onnxruntime", repo / name)
            in_process[name] = summary(interleaved({name: lambda r=runner, x=x: r.run(x)}, warmup=20, runs=200)[name])
        rows, floor = [], None
        for batching, args in (("on", ["--max-batch-size", "32", "--max-queue-delay-ms", "2"]),
                               ("off", ["--max-batch-size", "1", "--max-queue-delay-ms", "0"])):
            srv = Server(repo, *args, "--max-queue", "4096")
            try:
                if floor is None:  # the HTTP round trip with no model work: client + uvicorn + FastAPI
                    floor = summary(_get_live(srv.port))["median_ms"]
                for name, x in inputs.items():
                    drive(srv.port, name, x, 4)  # warm-up
                    for c in (1, 8, 64):
                        rows.append((name, batching, c, drive(srv.port, name, x, c)))
            finally:
                srv.stop()
    print("## HTTP serving (Open Inference Protocol v2, binary tensors, 1 image a request)\n")
    print(f"Machine: {os.cpu_count()} CPU cores, the load generator (Python threads, keep-alive connections) on the "
          f"same cores as the server; ONNX Runtime CPU, leaky lowering; {DURATION:.0f} s of load per row.\n")
    print("Command: `.venv/bin/python docs/bench_http.py`\n")
    print("| model | in-process runner median ms (batch 1) | HTTP p50 ms at concurrency 1, batching off | HTTP overhead ms |")
    print("|---|---|---|---|")
    for name in inputs:
        p50 = next(r["median_ms"] for n, b, c, r in rows if n == name and b == "off" and c == 1)
        print(f"| {name} | {in_process[name]['median_ms']:.3f} | {p50:.3f} | {p50 - in_process[name]['median_ms']:.3f} |")
    print(f"\nFloor: `GET /v2/health/live` round trip, same client, concurrency 1: p50 {floor:.3f} ms.")
    print("\n| model | batching | concurrency | p50 ms | p90 ms | p99 ms | throughput req/s | errors |")
    print("|---|---|---|---|---|---|---|---|")
    for name, batching, c, r in rows:
        print(f"| {name} | {batching} | {c} | {r['median_ms']:.2f} | {r['p90_ms']:.2f} | {r['p99_ms']:.2f} | "
              f"{r['throughput']:.0f} | {r['errors']} |")
    print()
    for name in inputs:
        on = next(r["throughput"] for n, b, c, r in rows if n == name and b == "on" and c == 64)
        off = next(r["throughput"] for n, b, c, r in rows if n == name and b == "off" and c == 64)
        print(f"- {name}: batching on / off throughput at concurrency 64: {on / off:.2f}×")


if __name__ == "__main__":
    main()
