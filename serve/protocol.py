"""Open Inference Protocol v2 (KServe v2 / Triton REST) tensors: JSON, and Triton's binary tensor
data extension (`Inference-Header-Content-Length`, `binary_data_size`, `binary_data_output`)."""

import json

import numpy as np

from prelu_deploy.serve.errors import ApiError

HEADER_LENGTH = "Inference-Header-Content-Length"
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
    if not isinstance(request, dict) or not isinstance(request.get("inputs"), list) or not request["inputs"]:
        raise ApiError(400, "request needs a non-empty 'inputs' list")
    return request, rest


def decode_input(tensor: dict, binary: bytes, offset: int, expected_name: str, dims: list[int],
                 max_rows: int) -> tuple[np.ndarray, int]:
    """One input tensor as a float32 array of shape [N, *dims]; returns it and the new binary offset."""
    if not isinstance(tensor, dict):
        raise ApiError(400, "each input must be an object with name, shape, datatype and data")
    name, shape, dtype = tensor.get("name"), tensor.get("shape"), tensor.get("datatype")
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
    count = int(np.prod(shape))
    size = (tensor.get("parameters") or {}).get("binary_data_size")
    if size is not None:
        if not isinstance(size, int) or size != count * 4 or offset + size > len(binary):
            raise ApiError(400, f"input {name!r}: binary_data_size {size!r} does not match shape {shape} "
                                f"({count * 4} bytes) or the {len(binary) - offset} bytes left in the body")
        x = np.frombuffer(binary, np.float32, count, offset).reshape(shape)
        offset += size
    else:
        try:
            x = np.asarray(tensor.get("data"), dtype=np.float32)
        except (TypeError, ValueError):
            raise ApiError(400, f"input {name!r} data must be a list of numbers") from None
        if x.size != count:
            raise ApiError(400, f"input {name!r} has {x.size} values; shape {shape} needs {count}")
        x = x.reshape(shape)
    if not np.isfinite(x).all():
        raise ApiError(400, f"input {name!r} holds non-finite values (NaN or infinity)")
    return x, offset


def wants_binary(request: dict, output_name: str) -> bool:
    if (request.get("parameters") or {}).get("binary_data_output"):
        return True
    for out in request.get("outputs") or []:
        if isinstance(out, dict) and out.get("name") == output_name:
            return bool((out.get("parameters") or {}).get("binary_data"))
    return False


def encode_response(model: str, request: dict, output_name: str, y: np.ndarray) -> tuple[bytes, dict]:
    """Response body and headers: JSON, or JSON followed by the raw output when binary was asked for."""
    out = {"name": output_name, "datatype": "FP32", "shape": list(y.shape)}
    raw = b""
    if wants_binary(request, output_name):
        raw = np.ascontiguousarray(y, np.float32).tobytes()
        out["parameters"] = {"binary_data_size": len(raw)}
    else:
        out["data"] = y.astype(np.float32).ravel().tolist()
    response = {"model_name": model, "model_version": "1", "outputs": [out]}
    if "id" in request:
        response["id"] = request["id"]
    head = json.dumps(response).encode()
    if not raw:
        return head, {"content-type": "application/json"}
    return head + raw, {"content-type": "application/octet-stream", HEADER_LENGTH: str(len(head))}
