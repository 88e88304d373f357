"""The gRPC floor: what grpcio itself costs a call, for docs/grpc.sh to measure beside the server. A
grpcio asyncio server on uvloop (as `prelu-deploy serve` runs its own) whose ModelInfer answers at once
with zeros of the model's output shape: no checks, no model, no batcher, no metrics, the protocol's
generated servicer and nothing else. Its requests/s are the most a Python grpcio server can answer the
load generator with on this machine; where they fall below HTTP's on the real model, no code of the
server's own can bring gRPC level with HTTP there.

    python -m prelu_deploy.bench.grpc_floor MODEL_DIR --port 18002
"""

import argparse
import asyncio
import math

import grpc
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc as pbg

from prelu_deploy.bench.load_generator import _loop_factory
from prelu_deploy.manifest import read_entry


class FloorService(pbg.GRPCInferenceServiceServicer):
    """The RPCs the load generator makes: the metadata it checks first, then ModelInfer."""

    def __init__(self, entry):
        self.entry = entry
        self.answers: dict[int, bytes] = {}  # rows → the output's bytes (zeros)

    async def ServerMetadata(self, request, context):
        return pb.ServerMetadataResponse(name="grpc-floor", version="0")

    async def ModelReady(self, request, context):
        return pb.ModelReadyResponse(ready=request.name == self.entry.name)

    async def ModelMetadata(self, request, context):
        inp, out = self.entry.input, self.entry.output
        tensor = pb.ModelMetadataResponse.TensorMetadata
        return pb.ModelMetadataResponse(
            name=self.entry.name,
            versions=["1"],
            inputs=[tensor(name=inp.name, datatype=inp.datatype, shape=inp.shape)],
            outputs=[tensor(name=out.name, datatype="FP32", shape=out.shape)],
        )

    async def ModelInfer(self, request, context):
        rows = request.inputs[0].shape[0] if request.inputs and request.inputs[0].shape else 1
        shape = [rows, *self.entry.output.dims]
        if rows not in self.answers:
            self.answers[rows] = bytes(4 * math.prod(shape))
        out = pb.ModelInferResponse.InferOutputTensor(name=self.entry.output.name, datatype="FP32", shape=shape)
        return pb.ModelInferResponse(
            model_name=self.entry.name, model_version="1", id=request.id, outputs=[out], raw_output_contents=[self.answers[rows]]
        )


async def serve(model_dir: str, host: str, port: int) -> None:
    server = grpc.aio.server(options=[("grpc.max_send_message_length", -1)])
    pbg.add_GRPCInferenceServiceServicer_to_server(FloorService(read_entry(model_dir)), server)
    server.add_insecure_port(f"{host}:{port}")
    await server.start()
    print(f"grpc floor on {host}:{port}", flush=True)
    await server.wait_for_termination()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m prelu_deploy.bench.grpc_floor", description=__doc__.split("\n\n")[0])
    parser.add_argument("model_dir", help="the model whose input and output the floor answers for")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=18002)
    args = parser.parse_args(argv)
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        runner.run(serve(args.model_dir, args.host, args.port))


if __name__ == "__main__":
    main()
