"""gpu-check's HTTP phase: `prelu-deploy serve --device cuda` on a loopback port for each worker
layout, the model and the floor model (bench/floor.py: same input, no work) served side by side, each
driven by the load generator at every concurrency with the model's golden rows as binary tensors,
and the model once more over KServe v2 gRPC (the load generator's gRPC mode) on the same server.
A model whose requests/s come close to the floor's is no longer what limits the server; gRPC is
measured here, on a host with cores to spare, where the generator does not take the server's CPU."""

import shutil
import sys
import tempfile
import time
from pathlib import Path

from prelu_deploy.bench import grpc_load, http_load, load_generator
from prelu_deploy.bench.floor import make_floor_entry
from prelu_deploy.bench.serving import _Servers
from prelu_deploy.serve.addresses import free_ports

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


def _bench(model: str, data: Path, cfg) -> http_load.HttpBench:
    return http_load.HttpBench(
        model=model, concurrency=cfg.concurrency, duration_s=cfg.http_s, warmup_s=cfg.http_warmup_s, data=str(data)
    )


def _drive(url: str, model: str, data: Path, cfg) -> list[dict]:
    bench = _bench(model, data, cfg)
    ep = http_load.parse_url(url, False)
    meta = http_load.model_metadata(ep, model, bench.timeout_s)
    work = http_load.workload(bench, meta)
    http_load.check_response(ep, work, meta, bench)
    return _levels(lambda c, s: load_generator.drive(ep, work, c, s, bench.max_requests, bench.timeout_s), bench)


def _drive_grpc(where: str, model: str, data: Path, cfg) -> list[dict]:
    """The model over gRPC, as _drive drives it over HTTP: the same rows, levels and seconds."""
    bench = _bench(model, data, cfg)
    _, meta = grpc_load.model_metadata(where, model, bench.timeout_s)
    bodies, _ = grpc_load.requests(bench, meta)
    grpc_load.check_response(where, bodies[0], meta, bench)
    return _levels(lambda c, s: grpc_load.drive(where, bodies, bench.batch, c, s, bench.max_requests, bench.timeout_s), bench)


def _levels(drive, bench: http_load.HttpBench) -> list[dict]:
    """Each concurrency level: a warm-up, then the measured run, as the report keeps it."""
    levels = []
    for c in bench.concurrency:
        drive(c, bench.warmup_s)
        result = drive(c, bench.duration_s)
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
            needed = 25 + 3 * len(cfg.concurrency) * (cfg.http_s + cfg.http_warmup_s)
            if deadline - time.monotonic() < needed:
                layouts.append({"layout": layout, "ran": False, "why": "the budget was spent"})
                continue
            args = [] if layout == "default" else ["--workers", layout]
            grpc_port = free_ports(1)[0]
            cmd = [
                _prelu_deploy(),
                "serve",
                str(repo),
                "--device",
                cfg.device,
                "--log-level",
                "warning",
                "--grpc-port",
                str(grpc_port),
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
                    "grpc": _drive_grpc(f"127.0.0.1:{grpc_port}", model, data, cfg),
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
