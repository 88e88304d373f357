"""KServe v2 / Open Inference Protocol over gRPC: the protocol's `GRPCInferenceService`, from the stubs
tritonclient ships (generated from the protocol's published .proto) on grpcio's asyncio server, in every
worker process on --grpc-port, on the same event loop as HTTP: the same models, batchers and parity
gate. An error is a gRPC status code carrying the message HTTP gives (CODES: an unknown model is
NOT_FOUND, a bad shape INVALID_ARGUMENT, a full queue or a model not ready UNAVAILABLE).

Several worker processes each bind the port with SO_REUSEPORT (`grpc.so_reuseport`), as their HTTP
sockets do: the kernel spreads connections — HTTP/2 channels, each carrying many calls — over them. A
single worker binds without it, so that a port something else holds is refused; the parent checked the
port free before any model loaded (serve.cli: exit 9)."""

import asyncio
import functools
import logging

import grpc
import numpy as np
from starlette.concurrency import run_in_threadpool
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc as pbg

from prelu_deploy import __version__
from prelu_deploy.errors import ListenError
from prelu_deploy.serve.api.auth import Guard
from prelu_deploy.serve.api.deps import find_model, require_ready
from prelu_deploy.serve.errors import ApiError
from prelu_deploy.serve.repository.holds import held
from prelu_deploy.serve.api.protocol import check_finite, check_tensor
from prelu_deploy.serve.repository.versions import ready_versions
from prelu_deploy.serve.api.routes.v2 import INLINE_DECODE_BYTES, metadata, submit
from prelu_deploy.serve.api.services import address

log = logging.getLogger("prelu_deploy.serve")
S = grpc.StatusCode
CODES = {
    400: S.INVALID_ARGUMENT,
    401: S.UNAUTHENTICATED,
    403: S.PERMISSION_DENIED,
    404: S.NOT_FOUND,
    408: S.DEADLINE_EXCEEDED,
    409: S.FAILED_PRECONDITION,
    413: S.RESOURCE_EXHAUSTED,
    415: S.INVALID_ARGUMENT,
    499: S.CANCELLED,
    500: S.INTERNAL,
    503: S.UNAVAILABLE,
    504: S.DEADLINE_EXCEEDED,
}
EXTENSIONS = ["binary_tensor_data", "model_repository"]


def rpc(endpoint: str, per_model: bool = True, kind: str = "api"):
    """An RPC's frame: the token checked for `kind` (serve.api.auth: "open", "management" or "api"), counted
    in /metrics (prelu_requests, endpoint `endpoint`, status the gRPC code's name) and in flight; an
    ApiError answered as its gRPC code with its message, anything else as INTERNAL (the traceback in the
    log, not in the answer)."""

    def wrap(method):
        @functools.wraps(method)
        async def call(self, request, context):
            metrics, code, error = self.app.state.metrics, "OK", None
            name = getattr(request, "model_name", None) or getattr(request, "name", "")
            model = (name if name in self.models else "unknown") if per_model else "-"
            metrics.in_flight.inc()
            try:
                if self.guard.needed(kind):
                    metadata = {k: v for k, v in context.invocation_metadata() or () if k == "authorization"}
                    self.guard.check(kind, metadata.get("authorization"), "grpc")
                return await method(self, request, context)
            except ApiError as err:
                error = err
            except asyncio.CancelledError:
                code = "CANCELLED"  # the client went away
                raise
            except Exception as err:
                log.exception("gRPC %s failed", method.__name__)
                error = ApiError(500, f"internal error ({type(err).__name__}); see the server log")
            finally:
                metrics.in_flight.dec()
                if error is not None:
                    code = _code(error).name
                metrics.requests.labels(model, endpoint, code).inc()
            await context.abort(_code(error), error.message)

        return call

    return wrap


def _code(error: ApiError) -> grpc.StatusCode:
    """The gRPC code of an error: its own (serve.repository.control.Refused: FAILED_PRECONDITION), else its HTTP status's."""
    return getattr(S, getattr(error, "grpc_code", "") or "-", None) or CODES.get(error.status, S.UNKNOWN)


class InferenceService(pbg.GRPCInferenceServiceServicer):
    """The RPCs this server answers; the others (statistics, shared memory, tracing) stay UNIMPLEMENTED."""

    def __init__(self, app):
        self.app = app
        self.guard = Guard(app.state.settings, app.state.metrics)

    @property
    def models(self) -> dict:
        return self.app.state.models

    @rpc("grpc_live", per_model=False, kind="open")
    async def ServerLive(self, request, context):
        return pb.ServerLiveResponse(live=True)

    @rpc("grpc_ready", per_model=False, kind="open")
    async def ServerReady(self, request, context):
        return pb.ServerReadyResponse(ready=bool(self.models) and all(m.ready for m in self.models.values()))

    @rpc("grpc_metadata", per_model=False)
    async def ServerMetadata(self, request, context):
        return pb.ServerMetadataResponse(name="prelu-deploy", version=__version__, extensions=EXTENSIONS)

    @rpc("grpc_ready")
    async def ModelReady(self, request, context):
        return pb.ModelReadyResponse(ready=find_model(self.models, request.name, request.version or None).ready)

    @rpc("grpc_metadata")
    async def ModelMetadata(self, request, context):
        served = find_model(self.models, request.name, request.version or None)
        meta = metadata(served, [request.version] if request.version else ready_versions(self.models, served.name))
        tensors = [
            [
                pb.ModelMetadataResponse.TensorMetadata(name=t["name"], datatype=t["datatype"], shape=t["shape"])
                for t in meta.get(kind, [])
            ]
            for kind in ("inputs", "outputs")
        ]
        return pb.ModelMetadataResponse(
            name=meta["name"], versions=meta["versions"], platform=meta.get("platform", ""), inputs=tensors[0], outputs=tensors[1]
        )

    @rpc("grpc_infer")
    async def ModelInfer(self, request, context):
        served = require_ready(find_model(self.models, request.model_name, request.model_version or None))
        with held(served):  # a version swapped out meanwhile answers this call before it is retired
            return await self._infer(served, request)

    async def _infer(self, served, request):
        args = (request, served.entry.input, served.entry.output, self.app.state.settings.max_queue)
        x = decode(*args) if request.ByteSize() <= INLINE_DECODE_BYTES else await run_in_threadpool(decode, *args)
        # not inline when alone, as a lone HTTP request may be (a call that runs without an await is over
        # before grpc hands the next one in: "one call in flight" is true under any load); inline only when
        # the run is briefer than the batch's hand-offs, whatever the load
        y = await submit(served, x, brief=True)
        out = pb.ModelInferResponse.InferOutputTensor(name=served.entry.output.name, datatype="FP32", shape=y.shape)
        return pb.ModelInferResponse(
            model_name=served.name,
            model_version=str(served.number),
            id=request.id,
            outputs=[out],
            raw_output_contents=[np.ascontiguousarray(y, np.float32).tobytes()],
        )

    @rpc("grpc_repository", per_model=False, kind="management")
    async def RepositoryIndex(self, request, context):
        _one_repository(request.repository_name)
        rows = self.app.state.control.index(request.ready)
        return pb.RepositoryIndexResponse(models=[pb.RepositoryIndexResponse.ModelIndex(**row) for row in rows])

    @rpc("grpc_repository", kind="management")
    async def RepositoryModelLoad(self, request, context):
        _one_repository(request.repository_name, request.parameters)
        await self.app.state.control.load(request.model_name)
        return pb.RepositoryModelLoadResponse()

    @rpc("grpc_repository", kind="management")
    async def RepositoryModelUnload(self, request, context):
        _one_repository(request.repository_name, request.parameters, allowed=("unload_dependents",))
        await self.app.state.control.unload(request.model_name)
        return pb.RepositoryModelUnloadResponse()


def _one_repository(name: str, parameters=(), allowed: tuple[str, ...] = ()) -> None:
    """This server has one repository (the name is empty), and a model loads from its directory as it is."""
    if name:
        raise ApiError(400, f"repository {name!r}: this server has one model repository; leave repository_name empty")
    if unknown := sorted(set(parameters) - set(allowed)):
        raise ApiError(
            400,
            f"parameters {', '.join(map(repr, unknown))} are not supported: a model loads from its "
            "directory in the repository as it is on disk",
        )


def decode(request, inp, outp, max_rows: int) -> np.ndarray:
    """A ModelInferRequest's input rows (raw_input_contents, or typed fp32_contents), checked as HTTP
    checks a request, with the same messages."""
    if len(request.inputs) != 1:
        raise ApiError(400, f"this model takes exactly one input ({inp.name!r}), not {len(request.inputs)}")
    tensor = request.inputs[0]
    shape = list(tensor.shape)
    count = check_tensor(tensor.name, shape, tensor.datatype, inp.name, inp.dims, max_rows)
    if request.raw_input_contents:
        raw = request.raw_input_contents[0]
        if len(request.raw_input_contents) != 1 or len(raw) != count * 4:
            raise ApiError(
                400,
                f"input {tensor.name!r}: raw_input_contents holds {len(raw)} bytes in "
                f"{len(request.raw_input_contents)} entries; shape {shape} needs one of {count * 4} (FP32)",
            )
        x = np.frombuffer(raw, np.float32).reshape(shape)
    else:
        values = tensor.contents.fp32_contents
        if len(values) != count:
            raise ApiError(400, f"input {tensor.name!r} has {len(values)} values; shape {shape} needs {count}")
        x = np.array(values, np.float32).reshape(shape)
    check_finite(x, tensor.name)
    for out in request.outputs:
        if out.name != outp.name:
            raise ApiError(400, f"unknown output {out.name!r}; this model gives {outp.name!r}")
    return x


async def start(app) -> grpc.aio.Server:
    """The gRPC server of this worker process, serving `app`'s models on --grpc-port."""
    settings = app.state.settings
    server = grpc.aio.server(
        options=[
            ("grpc.so_reuseport", int(settings.workers > 1)),
            ("grpc.max_receive_message_length", settings.max_body_bytes),
            ("grpc.max_send_message_length", -1),
        ],
        maximum_concurrent_rpcs=settings.limit_concurrency,
    )
    pbg.add_GRPCInferenceServiceServicer_to_server(InferenceService(app), server)
    where = address(settings.host, settings.grpc_port)
    try:
        server.add_insecure_port(where)
    except RuntimeError as err:
        raise ListenError(f"cannot listen for gRPC on {where}: {err}; choose another --grpc-port (0: no gRPC)") from None
    await server.start()
    log.debug("grpc://%s: KServe v2 gRPC (GRPCInferenceService)", where)
    return server
