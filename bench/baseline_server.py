"""The benchmark's baseline: the server a user would write by hand — FastAPI calling ONNX Runtime
inline on each request, no batching, no queue, no parity gate — speaking just enough of the Open
Inference Protocol v2 (metadata, readiness, binary-tensor infer) and of our classify route (one image
as the body → top-5) for `bench http` to drive it beside `prelu-deploy serve` in one run. Not for
serving: it checks nothing.

    python -m prelu_deploy.bench.baseline_server MODEL_DIR [--port 8124] [--threads N]
"""

import argparse
import io
import json

import numpy as np
import onnxruntime as ort
import uvicorn
from fastapi import FastAPI, Request, Response
from PIL import Image

from prelu_deploy import confined_threads
from prelu_deploy.manifest import read_entry
from prelu_deploy.models.preprocess import Preprocess
from prelu_deploy.runners.answers import predictions
from prelu_deploy.serve.api.protocol import HEADER_LENGTH


def create_app(model_dir: str, threads: int | None = None) -> FastAPI:
    entry = read_entry(model_dir)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads or confined_threads() or 0  # 0: ONNX Runtime's default
    session = ort.InferenceSession(str(entry.artifact), opts, providers=["CPUExecutionProvider"])
    meta = {
        "name": entry.name,
        "versions": ["1"],
        "platform": entry.platform,
        "inputs": [{"name": entry.input.name, "datatype": "FP32", "shape": list(entry.input.shape)}],
        "outputs": [{"name": entry.output.name, "datatype": "FP32", "shape": list(entry.output.shape)}],
    }
    app = FastAPI()

    @app.get("/v2")
    def server() -> dict:
        return {"name": "hand-written baseline", "extensions": ["binary_tensor_data"]}

    @app.get(f"/v2/models/{entry.name}")
    def metadata() -> dict:
        return meta

    @app.get(f"/v2/models/{entry.name}/ready")
    def ready() -> dict:
        return {"name": entry.name, "ready": True}

    @app.post(f"/v2/models/{entry.name}/infer")
    async def infer(request: Request) -> Response:
        body = await request.body()
        n = int(request.headers.get(HEADER_LENGTH, len(body)))
        tensor = json.loads(body[:n])["inputs"][0]
        x = np.frombuffer(body, np.float32, offset=n) if n < len(body) else np.asarray(tensor["data"], np.float32)
        y = session.run(None, {entry.input.name: x.reshape(tensor["shape"])})[0]
        raw = y.astype(np.float32).tobytes()
        head = json.dumps(
            {
                "model_name": entry.name,
                "outputs": [
                    {
                        "name": entry.output.name,
                        "datatype": "FP32",
                        "shape": list(y.shape),
                        "parameters": {"binary_data_size": len(raw)},
                    }
                ],
            }
        ).encode()
        return Response(head + raw, media_type="application/octet-stream", headers={HEADER_LENGTH: str(len(head))})

    pre = Preprocess.from_dict(entry.preprocess) if entry.preprocess else None

    @app.post(f"/v1/models/{entry.name}/classify")
    async def classify(request: Request) -> dict:
        x = pre.to_tensor(pre.load_image(Image.open(io.BytesIO(await request.body())))[None])
        logits = session.run(None, {entry.input.name: x})[0]
        return {"model": entry.name, "predictions": predictions(["body"], logits, entry.labels, 5)}

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_dir")
    parser.add_argument("--port", type=int, default=8124)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    uvicorn.run(create_app(args.model_dir, args.threads), host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
