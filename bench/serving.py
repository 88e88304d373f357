"""`prelu-deploy bench serving REPO --model NAME`: `prelu-deploy serve` beside the hand-written
baseline (bench/baseline_server.py: FastAPI calling ONNX Runtime inline, no batching), both started
here on free loopback ports over the same model directory, driven by the same requests at each
concurrency level (ours, then the baseline, level by level, so drift hits both alike), with the
in-process rates of the same ONNX graph measured first (nothing else running): batch-1 latency and
batch-32 images/s, the ceilings a server is judged against (bench.serving_report)."""

import os
import shlex
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from prelu_deploy.bench import http_load, load_generator
from prelu_deploy.bench.serving_report import goals
from prelu_deploy.bench.timing import interleaved, summary
from prelu_deploy.errors import BenchError, UsageError
from prelu_deploy.manifest import read_entry
from prelu_deploy.serve.addresses import free_ports

START_TIMEOUT_S = 120.0


@dataclass
class ServingBench:
    http: http_load.HttpBench
    serve_args: list[str] = field(default_factory=list)  # extra `prelu-deploy serve` options
    baseline_threads: int | None = None  # ONNX Runtime threads of the baseline (default: its own)
    reference_s: float = 3.0  # seconds of in-process timing per batch size
    rounds: int = 1  # per level: ours, baseline, ours, baseline, … each round `duration_s` long


def _commands(repo: Path, model_dir: Path, cfg: ServingBench) -> dict[str, list[str]]:
    exe = str(Path(sys.executable).with_name("prelu-deploy"))
    baseline = [sys.executable, "-m", "prelu_deploy.bench.baseline_server", str(model_dir)]
    if cfg.baseline_threads:
        baseline += ["--threads", str(cfg.baseline_threads)]
    no_grpc = [] if "--grpc-port" in cfg.serve_args else ["--grpc-port", "0"]  # HTTP is measured: no port 8001 taken
    return {"ours": [exe, "serve", str(repo), "--log-level", "warning", *cfg.serve_args, *no_grpc], "baseline": baseline}


class _Servers:
    """Both servers as child processes, stopped (SIGTERM, then SIGKILL) whatever happens; their logs
    go to files (a pipe nobody reads would stall a server that logs much)."""

    def __init__(self, commands: dict[str, list[str]], model: str):
        self.procs, self.urls, self.logs = {}, {}, {}
        try:
            for name, cmd in commands.items():
                port = free_ports(1)[0]
                self.urls[name] = f"http://127.0.0.1:{port}"
                self.logs[name] = tempfile.TemporaryFile("w+")
                self.procs[name] = subprocess.Popen(
                    [*cmd, "--port", str(port)], stdout=subprocess.DEVNULL, stderr=self.logs[name], text=True
                )
            for name in commands:
                self._wait_ready(name, model)
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self, name: str, model: str) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.procs[name].poll() is not None:
                self.logs[name].seek(0)
                raise BenchError(f"the {name} server exited ({self.procs[name].returncode}): {self.logs[name].read()[-2000:]}")
            try:
                urllib.request.urlopen(f"{self.urls[name]}/v2/models/{model}/ready", timeout=2)
                return
            except OSError:
                time.sleep(0.2)
        raise BenchError(f"the {name} server was not ready within {START_TIMEOUT_S:g} s")

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for log in self.logs.values():
            log.close()


def tree_cpu_s(pid: int) -> float | None:
    """CPU seconds (user + system) used so far by process `pid` and its descendants — a server's
    supervisor and its workers — from /proc; None where there is no /proc (not Linux)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total = (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")
        kids = [int(k) for task in Path(f"/proc/{pid}/task").iterdir() for k in (task / "children").read_text().split()]
    except (OSError, IndexError, ValueError):
        return None
    for kid in kids:
        total += tree_cpu_s(kid) or 0.0  # a child that just exited counts nothing
    return total


def _measured(pid: int, drive) -> dict:
    """One load_generator.drive result, with the server's CPU over it: `server_cpu` (cores kept busy)
    and `server_cpu_ms` (CPU per successful request) — what a request costs, not only how fast it is."""
    before = tree_cpu_s(pid)
    result = drive()
    after = tree_cpu_s(pid)
    result["server_cpu_s"] = after - before if before is not None and after is not None else None
    return {**result, **_server_cpu([result], result["wall_s"])}


def in_process(model_dir: Path, seconds: float) -> dict:
    """The ONNX graph in this process with ONNX Runtime's defaults: batch-1 latency and batch-32 rate.
    `run` measures it before the servers start and after they stop, and judges the goals against the
    faster of the two per batch size: on a shared machine one measurement can come out slow, and a
    slow reference would make the goals easy."""
    from prelu_deploy.runners.registry import get_runner

    runner = get_runner("onnxruntime", model_dir)
    try:
        out = {}
        for batch in (1, min(32, runner.profile.max)):
            x = np.random.default_rng(0).standard_normal((batch, *runner.entry.input.dims), dtype=np.float32)
            samples = interleaved({"run": lambda x=x: runner.run(x)}, warmup=10, duration_s=seconds)["run"]
            out[f"batch_{batch}"] = summary(samples, items=batch)
        return out
    finally:
        runner.close()


def run(repo: Path, cfg: ServingBench, log=print) -> tuple[dict, dict]:
    model_dir = repo / cfg.http.model
    if not (model_dir / "manifest.json").is_file():
        raise UsageError(f"{model_dir}: no model directory named {cfg.http.model!r} in {repo}")
    if read_entry(model_dir).is_plan:
        raise UsageError(f"{model_dir} holds a TensorRT plan; the baseline serves ONNX graphs: name the ONNX entry")
    cfg.http.check()
    log(f"in process: {cfg.reference_s:g} s per batch size …")
    before = in_process(model_dir, cfg.reference_s)
    commands = _commands(repo, model_dir, cfg)
    servers = _Servers(commands, cfg.http.model)
    levels, raw = [], {}
    try:
        eps = {name: http_load.parse_url(url, False) for name, url in servers.urls.items()}
        meta = http_load.model_metadata(eps["ours"], cfg.http.model, cfg.http.timeout_s)
        work = http_load.workload(cfg.http, meta)
        for name, ep in eps.items():
            http_load.check_response(ep, work, meta, cfg.http)
        for c in cfg.http.concurrency:
            rounds = {name: [] for name in eps}
            for k in range(cfg.rounds):
                for name, ep in eps.items():
                    log(
                        f"concurrency {c}, {name}{f', round {k + 1} of {cfg.rounds}' if cfg.rounds > 1 else ''}: "
                        f"{cfg.http.duration_s:g} s …"
                    )
                    if cfg.http.warmup_s and k == 0:
                        load_generator.drive(ep, work, c, cfg.http.warmup_s, cfg.http.max_requests, cfg.http.timeout_s)
                    rounds[name].append(
                        _measured(
                            servers.procs[name].pid,
                            lambda: load_generator.drive(
                                ep, work, c, cfg.http.duration_s, cfg.http.max_requests, cfg.http.timeout_s
                            ),
                        )
                    )
            level = {"concurrency": c, "ratio": paired_ratio(rounds["ours"], rounds["baseline"])}
            for name, done in rounds.items():
                raw[f"{name}@{c}"] = [x for r in done for x in r["_samples"]]
                level[name] = merge_rounds(done, work.items)
            levels.append(level)
    finally:
        servers.stop()
    log(f"in process again: {cfg.reference_s:g} s per batch size …")
    after = in_process(model_dir, cfg.reference_s)
    reference = {k: min(before[k], after[k], key=lambda v: v["median_ms"]) for k in before}
    report = {
        "kind": "serving",
        "model": cfg.http.model,
        "target": str(repo),
        "endpoint": work.method_path,
        "workload": work.description,
        "servers": {n: shlex.join(c) for n, c in commands.items()},
        "in_process": reference,
        "in_process_runs": [before, after],
        "settings": {**asdict(cfg.http), "serve_args": cfg.serve_args, "rounds": cfg.rounds, "reference_s": cfg.reference_s},
        "levels": levels,
        "goals": goals(levels, reference),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    return report, raw


def paired_ratio(ours: list[dict], baseline: list[dict]) -> float:
    """Ours / baseline requests/s: the median over rounds of each round's pair (the two servers ran
    back to back, so a drift of the machine between rounds cancels out of each pair's ratio)."""
    pairs = [o["throughput_rps"] / b["throughput_rps"] if b["throughput_rps"] else float("inf") for o, b in zip(ours, baseline)]
    return float(np.median(pairs))


def merge_rounds(rounds: list[dict], items: int) -> dict:
    """One server's rounds at one level as one result: requests and errors summed, latency percentiles
    over every request, requests/s the median round's (one disturbed round does not move it), and
    each round's rate kept (`rounds_rps`) so the spread is there to read."""
    if len(rounds) == 1:
        return {k: v for k, v in rounds[0].items() if k != "_samples"}
    rps = [r["throughput_rps"] for r in rounds]
    errors = {}
    for r in rounds:
        for status, n in r["errors"].items():
            errors[status] = errors.get(status, 0) + n
    wall = sum(r["wall_s"] for r in rounds)
    cvs = [r["throughput_cv"] for r in rounds if r["throughput_cv"] is not None]
    return {
        "concurrency": rounds[0]["concurrency"],
        "requests": sum(r["requests"] for r in rounds),
        "ok": sum(r["ok"] for r in rounds),
        "errors": dict(sorted(errors.items())),
        "wall_s": wall,
        "client_cpu": sum(r["client_cpu"] * r["wall_s"] for r in rounds) / wall,
        **_server_cpu(rounds, wall),
        "throughput_rps": float(np.median(rps)),
        "images_per_s": float(np.median(rps)) * items,
        "rounds_rps": rps,
        "throughput_cv": max(cvs) if cvs else None,
        "stable": all(r["stable"] for r in rounds),
        "latency": summary([x for r in rounds for x in r["_samples"]], items=items),
    }


def _server_cpu(rounds: list[dict], wall: float) -> dict:
    """A server's CPU over `rounds` (one, or a level's): seconds, cores kept busy, ms per successful request."""
    if any(r["server_cpu_s"] is None for r in rounds):
        return {"server_cpu_s": None, "server_cpu": None, "server_cpu_ms": None}
    cpu, ok = sum(r["server_cpu_s"] for r in rounds), sum(r["ok"] for r in rounds)
    return {"server_cpu_s": cpu, "server_cpu": cpu / wall, "server_cpu_ms": cpu / ok * 1e3 if ok else None}
