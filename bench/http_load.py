"""`prelu-deploy bench http URL --model NAME`: drive a running server that speaks the Open Inference
Protocol v2 (ours, Triton, KServe) at several concurrency levels, as perf_analyzer does: each client
one keep-alive connection sending its next request when the last one is answered;
latency of the successful requests, throughput, and every failure counted by status code. Bounded in
time and in requests; loopback only unless told otherwise.

This module prepares the load (the server's metadata, the requests, one checked answer) with
http.client; bench.load_generator drives it."""

import http.client
import ipaddress
import json
import socket
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np

from prelu_deploy.bench.load_generator import drive
from prelu_deploy.errors import BenchError, UsageError
from prelu_deploy.models.data import IMAGE_SUFFIXES
from prelu_deploy.serve.api.protocol import HEADER_LENGTH

MAX_CONCURRENCY = 1024
DISTINCT_BODIES = 16  # requests cycle through this many different payloads


@dataclass
class HttpBench:
    model: str
    concurrency: tuple[int, ...] = (1, 8, 64)
    duration_s: float = 5.0  # measured, per concurrency level
    warmup_s: float = 1.0  # unreported load at each level before it is measured
    max_requests: int = 100_000  # per concurrency level, measured requests
    batch: int = 1  # rows per request (tensors)
    data: str = "random"  # random | a .npy/.npz of inputs | a folder of images (→ /v1/…/classify)
    encoding: str = "binary"  # binary (the binary tensor extension) | json
    timeout_s: float = 30.0
    allow_remote: bool = False
    seed: int = 0

    def check(self) -> None:
        if not self.concurrency or min(self.concurrency) < 1 or max(self.concurrency) > MAX_CONCURRENCY:
            raise UsageError(f"--concurrency: levels must be 1…{MAX_CONCURRENCY}, not {list(self.concurrency)}")
        if self.duration_s <= 0 or self.warmup_s < 0 or self.max_requests < 1 or self.batch < 1 or self.timeout_s <= 0:
            raise UsageError("--duration, --timeout must be > 0; --warmup ≥ 0; --max-requests, --batch ≥ 1")
        if self.encoding not in ("binary", "json"):
            raise UsageError(f"--encoding: binary or json, not {self.encoding!r}")
        if self.data != "random" and not Path(self.data).exists():  # before any server is asked, or started
            raise UsageError(f"--data {self.data}: no such file or folder (or 'random')")


@dataclass(frozen=True)
class Endpoint:
    scheme: str
    host: str
    port: int
    base: str  # path prefix, e.g. "" or "/proxy"

    def connect(self, timeout: float) -> http.client.HTTPConnection:
        cls = http.client.HTTPSConnection if self.scheme == "https" else http.client.HTTPConnection
        return cls(self.host, self.port, timeout=timeout)


def parse_url(url: str, allow_remote: bool) -> Endpoint:
    """The server's address; refuses anything but loopback unless `allow_remote` (a load test is not
    something to point at another machine by accident)."""
    parts = urlsplit(url if "://" in url else f"http://{url}")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"{url!r} is not an http(s)://host[:port] URL")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise UsageError(f"{url!r}: bad port") from None
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(parts.hostname, port, proto=socket.IPPROTO_TCP)}
    except socket.gaierror as err:
        raise UsageError(f"cannot resolve {parts.hostname!r}: {err.strerror}") from None
    remote = sorted(a for a in addresses if not ipaddress.ip_address(a.split("%")[0]).is_loopback)
    if remote and not allow_remote:
        raise UsageError(
            f"{parts.hostname} resolves to {', '.join(remote)}, not a loopback address; pass --allow-remote "
            "to load-test another machine"
        )
    return Endpoint(parts.scheme, parts.hostname, port, parts.path.rstrip("/"))


def _once(
    ep: Endpoint, method: str, path: str, timeout: float, body: bytes | None = None, headers: dict | None = None
) -> tuple[http.client.HTTPResponse, bytes]:
    """One request on its own connection, outside the load: any failure to reach the server ends the run."""
    conn = ep.connect(timeout)
    try:
        conn.request(method, ep.base + path, body, headers or {})
        r = conn.getresponse()
        return r, r.read()
    except OSError as err:
        raise BenchError(f"cannot reach {ep.scheme}://{ep.host}:{ep.port}{ep.base} ({method} {path}): {err}") from None
    finally:
        conn.close()


def _get_json(ep: Endpoint, path: str, timeout: float) -> tuple[int, dict]:
    r, body = _once(ep, "GET", path, timeout)
    try:
        return r.status, json.loads(body) if body else {}
    except ValueError:
        return r.status, {"error": body[:200].decode(errors="replace")}


def model_metadata(ep: Endpoint, model: str, timeout: float) -> dict:
    status, meta = _get_json(ep, f"/v2/models/{model}", timeout)
    if status != 200:
        raise BenchError(f"GET /v2/models/{model}: HTTP {status}: {meta.get('error', meta)}")
    status, ready = _get_json(ep, f"/v2/models/{model}/ready", timeout)
    if status != 200:
        raise BenchError(f"model {model} is not ready (HTTP {status}{': ' + ready['reason'] if ready.get('reason') else ''})")
    if not meta.get("inputs") or not meta.get("outputs"):
        raise BenchError(f"the metadata of {model} names no inputs or outputs: {meta}")
    return meta


@dataclass
class Workload:
    method_path: str
    bodies: list[tuple[bytes, dict]]  # (body, headers)
    items: int  # images per request
    description: str


def _tensors(cfg: HttpBench, shape: list[int]) -> np.ndarray:
    rows = shape[1:]
    if cfg.data == "random":
        if any(d < 0 for d in rows):
            raise UsageError(f"the model's input has dynamic dimensions {shape}: pass real tensors with --data FILE.npy")
        return np.random.default_rng(cfg.seed).standard_normal((DISTINCT_BODIES * cfg.batch, *rows), dtype=np.float32)
    path = Path(cfg.data)
    try:
        loaded = np.load(path)  # an array (.npy) or an archive (.npz: "inputs", as golden.npz, else the first)
        if isinstance(loaded, np.lib.npyio.NpzFile):
            with loaded:
                loaded = loaded["inputs"] if "inputs" in loaded.files else loaded[loaded.files[0]]
        arr = np.asarray(loaded, dtype=np.float32)
    except (OSError, ValueError, KeyError, IndexError) as err:
        raise UsageError(f"--data {path}: not a readable .npy/.npz of input tensors ({err})") from None
    if list(arr.shape[1:]) != list(rows) or len(arr) == 0:
        raise UsageError(f"--data {path}: tensors of shape {list(arr.shape)}; the model takes [N, {', '.join(map(str, rows))}]")
    return arr


def workload(cfg: HttpBench, meta: dict) -> Workload:
    """The requests to send: binary or JSON OIP v2 tensors (random, or real inputs from a file), or
    encoded images to /v1/models/NAME/classify (ours: the full decode + preprocess path)."""
    model = cfg.model
    if cfg.data != "random" and Path(cfg.data).is_dir():
        files = sorted(p for p in Path(cfg.data).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)[: DISTINCT_BODIES * 4]
        if not files:
            raise UsageError(f"--data {cfg.data}: no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        if cfg.batch != 1:
            raise UsageError("--batch applies to tensors; images go one per request")
        bodies = [(f.read_bytes(), {"content-type": "application/octet-stream"}) for f in files]
        return Workload(f"/v1/models/{model}/classify", bodies, 1, f"{len(files)} images from {cfg.data}, one per request")
    inp, out = meta["inputs"][0], meta["outputs"][0]
    if inp.get("datatype") not in ("FP32", "FP16"):
        raise UsageError(f"input {inp.get('name')} is {inp.get('datatype')}; this bench sends FP32/FP16 tensors")
    dtype = np.float16 if inp["datatype"] == "FP16" else np.float32
    data = _tensors(cfg, inp["shape"])
    bodies = []
    for i in range(DISTINCT_BODIES):
        x = np.resize(np.roll(data, -i * cfg.batch, axis=0), (cfg.batch, *data.shape[1:])).astype(dtype)
        tensor = {"name": inp["name"], "shape": list(x.shape), "datatype": inp["datatype"]}
        if cfg.encoding == "json":
            body = json.dumps({"inputs": [{**tensor, "data": x.ravel().tolist()}], "outputs": [{"name": out["name"]}]}).encode()
            bodies.append((body, {"content-type": "application/json"}))
        else:
            head = json.dumps(
                {
                    "inputs": [{**tensor, "parameters": {"binary_data_size": x.nbytes}}],
                    "outputs": [{"name": out["name"], "parameters": {"binary_data": True}}],
                }
            ).encode()
            bodies.append((head + x.tobytes(), {HEADER_LENGTH: str(len(head)), "content-type": "application/octet-stream"}))
    source = "random normal" if cfg.data == "random" else f"rows of {cfg.data}"
    return Workload(
        f"/v2/models/{model}/infer",
        bodies,
        cfg.batch,
        f"{cfg.encoding} {inp['datatype']} tensors {[cfg.batch, *inp['shape'][1:]]} ({source})",
    )


def check_response(ep: Endpoint, work: Workload, meta: dict, cfg: HttpBench) -> None:
    """One request before the load: the server must answer it correctly, or measuring it is moot."""
    r, data = _once(ep, "POST", work.method_path, cfg.timeout_s, *work.bodies[0])
    if r.status != 200:
        return  # counted by status during the run, like every other failure
    if work.method_path.endswith("/infer"):
        n = int(r.getheader(HEADER_LENGTH) or len(data))
        try:
            outputs = json.loads(data[:n])["outputs"]
        except (ValueError, KeyError) as err:
            raise BenchError(f"the server's answer is not an inference response ({err}): {data[:200]!r}") from None
        want = [cfg.batch, *meta["outputs"][0]["shape"][1:]]
        if outputs[0].get("shape") != want:
            raise BenchError(f"the server answered shape {outputs[0].get('shape')} for {want}")


def run(url: str, cfg: HttpBench, log=print) -> tuple[dict, dict]:
    """The report (JSON-ready) and the raw latencies {concurrency: seconds}."""
    cfg.check()
    ep = parse_url(url, cfg.allow_remote)
    _, server = _get_json(ep, "/v2", cfg.timeout_s)
    meta = model_metadata(ep, cfg.model, cfg.timeout_s)
    work = workload(cfg, meta)
    check_response(ep, work, meta, cfg)
    levels, raw = [], {}
    for c in cfg.concurrency:
        if cfg.warmup_s:
            drive(ep, work, c, cfg.warmup_s, cfg.max_requests, cfg.timeout_s)
        log(f"concurrency {c}: {cfg.duration_s:g} s …")
        result = drive(ep, work, c, cfg.duration_s, cfg.max_requests, cfg.timeout_s)
        raw[c] = result.pop("_samples")
        levels.append(result)
    report = {
        "kind": "http",
        "target": url,
        "model": cfg.model,
        "endpoint": work.method_path,
        "workload": work.description,
        "server": server,
        "model_metadata": meta,
        "settings": asdict(cfg),
        "levels": levels,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    return report, raw
