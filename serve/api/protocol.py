"""Open Inference Protocol v2 (KServe v2 / Triton REST) tensors: JSON, and Triton's binary tensor
data extension (`Inference-Header-Content-Length`, `binary_data_size`, `binary_data_output`)."""

import json
import math

import numpy as np

from prelu_deploy.manifest import TensorSpec
from prelu_deploy.serve.errors import ApiError

HEADER_LENGTH = "Inference-Header-Content-Length"
VERSION_HEADER = "x-model-version"  # on every inference answer: the version of the model that computed it
DTYPES = {"FP32": np.float32, "FP16": np.float16, "FP64": np.float64}


def parse_request(body: bytes, header_length: str | None) -> tuple[dict, bytes]:
    """The JSON part of an infer request and the binary part after it (empty without the extension)."""
    if header_length is not None:
        try:
            n = int(header_length)
        except ValueError:
            raise ApiError(400, f"{HEADER_LENGTH} must be an integer, not {header_length!r}") from None
        if not 0 < n <= len(body):
            raise ApiError(400, f"{HEADER_LENGTH} {n} does not fit a body of {len(body)} bytes")
        head, rest = body[:n], body[n:]
    else:
        head, rest = body, b""
    try:
        request = json.loads(head)
    except (ValueError, UnicodeDecodeError) as err:
        raise ApiError(400, f"request is not valid JSON ({err})") from None
    except RecursionError:
        raise ApiError(400, "request JSON is nested too deeply") from None
    if not isinstance(request, dict) or not isinstance(request.get("inputs"), list) or not request["inputs"]:
        raise ApiError(400, "request needs a non-empty 'inputs' list")
    if not isinstance(request.get("outputs") or [], list):
        raise ApiError(400, "'outputs' must be a list of objects with a name")
    _parameters(request, "request")
    return request, rest


def _parameters(obj: dict, what: str) -> dict:
    """An object's optional 'parameters', which must be an object when present."""
    params = obj.get("parameters")
    if params is None:
        return {}
    if not isinstance(params, dict):
        raise ApiError(400, f"{what} 'parameters' must be an object, not {type(params).__name__}")
    return params


def decode_request(
    body: bytes, header_length: str | None, inp: TensorSpec, outp: TensorSpec, max_rows: int
) -> tuple[dict, np.ndarray]:
    """A whole infer request (JSON or with the binary extension) → the request and its input rows;
    every way it can be wrong is a 400 that says how. CPU work: the route runs it off the event loop
    for large bodies."""
    req, binary = parse_request(body, header_length)
    if len(req["inputs"]) != 1:
        raise ApiError(400, f"this model takes exactly one input ({inp.name!r}), not {len(req['inputs'])}")
    x, _ = decode_input(req["inputs"][0], binary, 0, inp.name, inp.dims, max_rows)
    for out in req.get("outputs") or []:
        if not isinstance(out, dict) or out.get("name") != outp.name:
            raise ApiError(
                400, f"unknown output {out.get('name') if isinstance(out, dict) else out!r}; this model gives {outp.name!r}"
            )
        _parameters(out, f"output {outp.name!r}")
    return req, x


def decode_input(
    tensor: dict, binary: bytes, offset: int, expected_name: str, dims: list[int], max_rows: int
) -> tuple[np.ndarray, int]:
    """One input tensor as a float32 array of shape [N, *dims]; returns it and the new binary offset."""
    if not isinstance(tensor, dict):
        raise ApiError(400, "each input must be an object with name, shape, datatype and data")
    name, shape = tensor.get("name"), tensor.get("shape")
    count = check_tensor(name, shape, tensor.get("datatype"), expected_name, dims, max_rows)
    size = _parameters(tensor, f"input {name!r}").get("binary_data_size")
    if size is not None:
        if not isinstance(size, int) or size != count * 4 or offset + size > len(binary):
            raise ApiError(
                400,
                f"input {name!r}: binary_data_size {size!r} does not match shape {shape} "
                f"({count * 4} bytes) or the {len(binary) - offset} bytes left in the body",
            )
        x = np.frombuffer(binary, np.float32, count, offset).reshape(shape)
        offset += size
    else:
        try:
            x = np.asarray(tensor.get("data"), dtype=np.float32)
        except (TypeError, ValueError, OverflowError, RecursionError):
            raise ApiError(400, f"input {name!r} data must be a list of numbers") from None
        if x.size != count:
            raise ApiError(400, f"input {name!r} has {x.size} values; shape {shape} needs {count}")
        x = x.reshape(shape)
    check_finite(x, name)
    return x, offset


def check_tensor(name, shape, dtype, expected_name: str, dims: list[int], max_rows: int) -> int:
    """An input tensor's name, datatype and shape as this model takes them (HTTP and gRPC alike: the
    same 400 / INVALID_ARGUMENT messages); returns its number of values."""
    if name != expected_name:
        raise ApiError(400, f"unknown input {name!r}; this model takes {expected_name!r}")
    if dtype != "FP32":
        raise ApiError(400, f"input {name!r} datatype must be FP32, not {dtype!r}")
    if not (isinstance(shape, list) and all(isinstance(d, int) and not isinstance(d, bool) for d in shape)):
        raise ApiError(400, f"input {name!r} shape must be a list of integers")
    if len(shape) != len(dims) + 1 or shape[1:] != dims or shape[0] < 1:
        raise ApiError(400, f"input {name!r} shape {shape} does not fit [N, {', '.join(map(str, dims))}] with N ≥ 1")
    if shape[0] > max_rows:
        raise ApiError(400, f"input {name!r} has {shape[0]} rows; at most {max_rows} a request")
    return math.prod(shape)


def check_finite(x: np.ndarray, name: str) -> None:
    if not np.isfinite(x).all():
        raise ApiError(400, f"input {name!r} holds non-finite values (NaN or infinity)")


def wants_binary(request: dict, output_name: str) -> bool:
    if _parameters(request, "request").get("binary_data_output"):
        return True
    for out in request.get("outputs") or []:
        if isinstance(out, dict) and out.get("name") == output_name:
            return bool(_parameters(out, "output").get("binary_data"))
    return False


def encode_response(model: str, request: dict, output_name: str, y: np.ndarray, version: int = 1) -> tuple[bytes, dict]:
    """Response body and headers: JSON, or JSON followed by the raw output when binary was asked for; the
    version that answered in both (the body's model_version, the x-model-version header)."""
    out = {"name": output_name, "datatype": "FP32", "shape": list(y.shape)}
    raw = b""
    if wants_binary(request, output_name):
        raw = np.ascontiguousarray(y, np.float32).tobytes()
        out["parameters"] = {"binary_data_size": len(raw)}
    else:
        out["data"] = y.astype(np.float32).ravel().tolist()
    response = {"model_name": model, "model_version": str(version), "outputs": [out]}
    if "id" in request:
        response["id"] = request["id"]
    head = json.dumps(response).encode()
    if not raw:
        return head, {"content-type": "application/json", VERSION_HEADER: str(version)}
    return head + raw, {"content-type": "application/octet-stream", HEADER_LENGTH: str(len(head)), VERSION_HEADER: str(version)}
