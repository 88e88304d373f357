"""gpu-check's HTTP phase: `prelu-deploy serve --device cuda` on a loopback port for each worker
layout, the model and the floor model (bench/floor.py: same input, no work) served side by side, each
driven by the load generator at every concurrency with the model's golden rows as binary tensors.
A model whose requests/s come close to the floor's is no longer what limits the server."""

import shutil
import sys
import tempfile
import time
from pathlib import Path

from prelu_deploy.bench import http_load, load_generator
from prelu_deploy.bench.floor import make_floor_entry
from prelu_deploy.bench.serving import _Servers

NOISE = "No registered plugin EP device found"  # ONNX Runtime's provider-lookup note (runners/onnxruntime_cuda.py)


def _prelu_deploy() -> str:
    beside = Path(sys.executable).with_name("prelu-deploy")
    return str(beside) if beside.exists() else shutil.which("prelu-deploy") or "prelu-deploy"


def _repository(cfg, root: Path) -> tuple[Path, str, str]:
    """A He-initialised `cfg.arch` exported (max batch 64) and its floor model, in one repository."""
    from prelu_deploy.export.model_dir import export_model_dir
    from prelu_deploy.models import create_model, save_checkpoint

    ckpt = save_checkpoint(create_model(cfg.arch), root / f"{cfg.arch}.safetensors")
    model = export_model_dir(ckpt, cfg.arch, root / "repo", mode=cfg.lowering, max_batch=64)
    floor = make_floor_entry(model)
    return root / "repo", model.name, floor.name


def _drive(url: str, model: str, data: Path, cfg) -> list[dict]:
    bench = http_load.HttpBench(model=model, concurrency=cfg.concurrency, duration_s=cfg.http_s, warmup_s=0.5, data=str(data))
    ep = http_load.parse_url(url, False)
    meta = http_load.model_metadata(ep, model, bench.timeout_s)
    work = http_load.workload(bench, meta)
    http_load.check_response(ep, work, meta, bench)
    levels = []
    for c in cfg.concurrency:
        load_generator.drive(ep, work, c, bench.warmup_s, bench.max_requests, bench.timeout_s)
        result = load_generator.drive(ep, work, c, bench.duration_s, bench.max_requests, bench.timeout_s)
        result.pop("_samples", None)
        levels.append(
            {
                "concurrency": c,
                "throughput_rps": result["throughput_rps"],
                "p50_ms": result["latency"].get("median_ms"),
                "p99_ms": result["latency"].get("p99_ms"),
                "errors": result["errors"],
                "ok": result["ok"],
            }
        )
    return levels


def phase_http(cfg, log, deadline: float) -> dict:
    """Every layout in `cfg.layouts` while the budget lasts; every server stopped (SIGTERM, then SIGKILL)."""
    with tempfile.TemporaryDirectory(prefix="gpu-check-http-") as tmp:
        repo, model, floor = _repository(cfg, Path(tmp))
        data = repo / model / "golden.npz"
        layouts = []
        for layout in cfg.layouts:
            needed = 25 + 2 * len(cfg.concurrency) * (cfg.http_s + 0.5)
            if deadline - time.monotonic() < needed:
                layouts.append({"layout": layout, "ran": False, "why": "the budget was spent"})
                continue
            args = [] if layout == "default" else ["--workers", layout]
            cmd = [
                _prelu_deploy(),
                "serve",
                str(repo),
                "--device",
                cfg.device,
                "--log-level",
                "warning",
                "--grpc-port",
                "0",
                *args,
            ]
            log(f"http: serve {' '.join(args) or '(default layout)'} …")
            start = time.monotonic()
            servers = _Servers({"ours": cmd}, model)
            try:
                started_s = time.monotonic() - start
                url = servers.urls["ours"]
                result = {
                    "layout": layout,
                    "ran": True,
                    "start_s": started_s,
                    "model": _drive(url, model, data, cfg),
                    "floor": _drive(url, floor, data, cfg),
                }
            except Exception as err:
                result = {"layout": layout, "ran": False, "why": f"{type(err).__name__}: {str(err)[:300]}"}
            finally:
                servers.logs["ours"].seek(0)
                text = servers.logs["ours"].read()
                servers.stop()
            result["log_noise"] = text.count(NOISE)
            result["log_warnings"] = [line[:300] for line in text.splitlines() if "WARN" in line.upper()][:10]
            layouts.append(result)
    return {"model": model, "floor": floor, "layouts": layouts}
