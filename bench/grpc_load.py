"""`prelu-deploy bench http ADDRESS --protocol grpc`: the load generator's gRPC mode — the same levels,
clients, bounds and report as over HTTP (bench.load_generator), over KServe v2 gRPC. Each client is one
channel with a connection of its own (channels of one process otherwise share one, and a server's
worker processes would not share the load) making its next ModelInfer call when the last one is
answered; the requests are serialized once, so a client only writes and reads bytes; all clients are
coroutines on one event loop (uvloop where installed), whose CPU use is reported per level."""

import time
from dataclasses import asdict
from urllib.parse import urlsplit

import grpc
import numpy as np
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc as pbg

from prelu_deploy.bench.http_load import DISTINCT_BODIES, HttpBench, _tensors, parse_url
from prelu_deploy.bench.load_generator import _Level, measure
from prelu_deploy.errors import BenchError, UsageError

INFER = "/inference.GRPCInferenceService/ModelInfer"
CHANNEL = [("grpc.use_local_subchannel_pool", 1), ("grpc.max_receive_message_length", -1)]


def target(url: str, allow_remote: bool) -> str:
    """host:port of a gRPC server given as host:port or grpc://host:port; loopback unless `allow_remote`."""
    parts = urlsplit(url if "://" in url else f"grpc://{url}")
    if parts.scheme != "grpc" or not parts.hostname or parts.path.strip("/"):
        raise UsageError(f"{url!r}: give the gRPC server as host:port or grpc://host:port (e.g. 127.0.0.1:8001)")
    ep = parse_url(f"http://{parts.netloc}", allow_remote)
    if parts.port is None:
        raise UsageError(f"{url!r}: give the gRPC port (Triton's and prelu-deploy's default: 8001)")
    return f"[{ep.host}]:{ep.port}" if ":" in ep.host else f"{ep.host}:{ep.port}"


def model_metadata(where: str, model: str, timeout: float) -> tuple[dict, dict]:
    """(the server's metadata, the model's — as HTTP's JSON has them), the model ready; else BenchError."""
    try:
        with grpc.insecure_channel(where) as channel:
            stub = pbg.GRPCInferenceServiceStub(channel)
            server = stub.ServerMetadata(pb.ServerMetadataRequest(), timeout=timeout)
            meta = stub.ModelMetadata(pb.ModelMetadataRequest(name=model), timeout=timeout)
            ready = stub.ModelReady(pb.ModelReadyRequest(name=model), timeout=timeout).ready
    except grpc.RpcError as err:
        raise BenchError(f"grpc://{where}: {err.code().name}: {err.details()}") from None
    if not ready:
        raise BenchError(f"model {model} is not ready (ModelReady)")
    tensors = [
        [{"name": t.name, "datatype": t.datatype, "shape": list(t.shape)} for t in ts] for ts in (meta.inputs, meta.outputs)
    ]
    if not tensors[0] or not tensors[1]:
        raise BenchError(f"the metadata of {model} names no inputs or outputs: {meta}")
    return (
        {"name": server.name, "version": server.version, "extensions": list(server.extensions)},
        {
            "name": meta.name,
            "versions": list(meta.versions),
            "platform": meta.platform,
            "inputs": tensors[0],
            "outputs": tensors[1],
        },
    )


def requests(cfg: HttpBench, meta: dict) -> tuple[list[bytes], str]:
    """Each distinct ModelInferRequest serialized once (raw_input_contents), and the workload's words."""
    if cfg.data != "random" and not cfg.data.endswith((".npy", ".npz")):
        raise UsageError("--protocol grpc sends tensors: --data random or a .npy/.npz of inputs")
    if cfg.encoding != "binary":
        raise UsageError("--encoding json: HTTP only (gRPC tensors are always binary: raw_input_contents)")
    inp, out = meta["inputs"][0], meta["outputs"][0]
    if inp["datatype"] not in ("FP32", "FP16"):
        raise UsageError(f"input {inp['name']} is {inp['datatype']}; this bench sends FP32/FP16 tensors")
    data = _tensors(cfg, inp["shape"])
    bodies = []
    for i in range(DISTINCT_BODIES):
        x = np.resize(np.roll(data, -i * cfg.batch, axis=0), (cfg.batch, *data.shape[1:]))
        x = x.astype(np.float16 if inp["datatype"] == "FP16" else np.float32)
        tensor = pb.ModelInferRequest.InferInputTensor(name=inp["name"], datatype=inp["datatype"], shape=x.shape)
        bodies.append(
            pb.ModelInferRequest(
                model_name=cfg.model,
                inputs=[tensor],
                raw_input_contents=[x.tobytes()],
                outputs=[pb.ModelInferRequest.InferRequestedOutputTensor(name=out["name"])],
            ).SerializeToString()
        )
    source = "random normal" if cfg.data == "random" else f"rows of {cfg.data}"
    return bodies, f"binary (raw_input_contents) {inp['datatype']} tensors {[cfg.batch, *inp['shape'][1:]]} ({source})"


def check_response(where: str, body: bytes, meta: dict, cfg: HttpBench) -> None:
    """One call before the load: the server must answer it correctly, or measuring it is moot."""
    with grpc.insecure_channel(where) as channel:
        try:
            raw = channel.unary_unary(INFER)(body, timeout=cfg.timeout_s)
        except grpc.RpcError:
            return  # counted by status during the run, like every other failure
    outputs = pb.ModelInferResponse.FromString(raw).outputs
    want = [cfg.batch, *meta["outputs"][0]["shape"][1:]]
    if not outputs or list(outputs[0].shape) != want:
        raise BenchError(f"the server answered shape {list(outputs[0].shape) if outputs else None} for {want}")


async def _client(where: str, bodies: list[bytes], level: _Level, first: int, timeout: float) -> None:
    async with grpc.aio.insecure_channel(where, options=CHANNEL) as channel:
        call = channel.unary_unary(INFER)  # no (de)serializer: bytes in, bytes out
        i = first
        while level.take():
            body = bodies[i % len(bodies)]
            i += 1
            start = time.perf_counter()
            try:
                await call(body, timeout=timeout)
                failure = None
            except grpc.aio.AioRpcError as err:
                failure = err.code().name
            level.record(start, failure)


def drive(
    where: str, bodies: list[bytes], items: int, concurrency: int, duration_s: float, max_requests: int, timeout: float
) -> dict:
    """A level, as bench.load_generator.drive measures one over HTTP; failures by gRPC status code."""
    return measure(lambda level, k: _client(where, bodies, level, k, timeout), items, concurrency, duration_s, max_requests)


def run(url: str, cfg: HttpBench, log=print) -> tuple[dict, dict]:
    """The report (JSON-ready, as bench.http_load.run's, with "protocol": "grpc") and the raw latencies."""
    cfg.check()
    where = target(url, cfg.allow_remote)
    server, meta = model_metadata(where, cfg.model, cfg.timeout_s)
    bodies, description = requests(cfg, meta)
    check_response(where, bodies[0], meta, cfg)
    levels, raw = [], {}
    for c in cfg.concurrency:
        if cfg.warmup_s:
            drive(where, bodies, cfg.batch, c, cfg.warmup_s, cfg.max_requests, cfg.timeout_s)
        log(f"concurrency {c}: {cfg.duration_s:g} s …")
        result = drive(where, bodies, cfg.batch, c, cfg.duration_s, cfg.max_requests, cfg.timeout_s)
        raw[c] = result.pop("_samples")
        levels.append(result)
    report = {
        "kind": "http",
        "protocol": "grpc",
        "target": f"grpc://{where}",
        "model": cfg.model,
        "endpoint": f"{INFER} (gRPC)",
        "workload": description,
        "server": server,
        "model_metadata": meta,
        "settings": asdict(cfg),
        "levels": levels,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    return report, raw
