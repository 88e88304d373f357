"""The OpenAPI document, told truthfully: the request bodies the routes read themselves (v2 JSON
tensors, Triton's binary extension, multipart and raw-image classify bodies), every error status a
route can answer with its {"error"} schema — and Swagger UI served from an installed package, so
`/docs` works on a machine with no internet."""

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse

from prelu_deploy.serve.api.paths import ROUTES

ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {"type": "string"}},
    "example": {"error": "unknown model 'x'; served: digits"},
}
_REASONS = {
    400: "Malformed request: JSON, tensor shape or datatype, broken image",
    401: "The API token is missing or wrong (WWW-Authenticate: Bearer)",
    403: "The management API without an API token, on a server that listens beyond loopback",
    404: "Unknown model or version",
    408: "The request body did not arrive in time (--body-timeout)",
    413: "Body over --max-body-mb, an image over --max-pixels, or a request's images over --max-request-pixels",
    415: "Not an image, or a content type this route does not take",
    500: "The runner failed (the error names the backend)",
    503: "Model not ready (the reason is given), or its queue is full (Retry-After)",
    504: "A load or unload did not reach every worker process in time",
}


def errors(*statuses: int) -> dict:
    """`responses=` entries for these statuses, each with the {"error"} body."""
    return {s: {"description": _REASONS[s], "content": {"application/json": {"schema": ERROR}}} for s in statuses}


_TENSOR = {
    "type": "object",
    "required": ["name", "shape", "datatype"],
    "properties": {
        "name": {"type": "string", "example": "images"},
        "shape": {"type": "array", "items": {"type": "integer"}, "example": [1, 1, 8, 8]},
        "datatype": {"type": "string", "enum": ["FP32"]},
        "data": {
            "type": "array",
            "items": {},
            "description": "Row-major values (nested or flat); absent when "
            "`parameters.binary_data_size` says they follow the JSON",
        },
        "parameters": {"type": "object", "properties": {"binary_data_size": {"type": "integer"}}},
    },
}
_OUTPUT_REQUEST = {
    "type": "object",
    "required": ["name"],
    "properties": {
        "name": {"type": "string", "example": "logits"},
        "parameters": {"type": "object", "properties": {"binary_data": {"type": "boolean"}}},
    },
}
INFER_REQUEST = {
    "type": "object",
    "required": ["inputs"],
    "properties": {
        "id": {"type": "string"},
        "inputs": {"type": "array", "minItems": 1, "maxItems": 1, "items": _TENSOR},
        "outputs": {"type": "array", "items": _OUTPUT_REQUEST},
        "parameters": {"type": "object", "properties": {"binary_data_output": {"type": "boolean"}}},
    },
}
_BINARY = {"type": "string", "format": "binary"}

INFER = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": INFER_REQUEST},
            "application/octet-stream": {
                "schema": _BINARY,
                "description": "Triton's binary tensor data extension: the "
                "JSON request (its length in Inference-Header-Content-Length), then raw "
                "little-endian FP32 tensors",
            },
        },
    },
    "parameters": [
        {
            "name": "Inference-Header-Content-Length",
            "in": "header",
            "required": False,
            "schema": {"type": "integer", "minimum": 1},
            "description": "Length of the JSON part of a binary-extension request",
        }
    ],
}


_VERSION = {"x-model-version": {"description": "The version of the model that computed the answer", "schema": {"type": "string"}}}
INFER_RESPONSE = {
    "description": "The output tensor, as JSON or (when binary data was asked for) JSON followed by raw FP32",
    "headers": _VERSION,
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "properties": {
                    "model_name": {"type": "string"},
                    "model_version": {"type": "string"},
                    "id": {"type": "string"},
                    "outputs": {"type": "array", "items": _TENSOR},
                },
            }
        },
        "application/octet-stream": {"schema": _BINARY},
    },
}

_IMAGE = {"schema": _BINARY}
CLASSIFY_RESPONSE = {
    "description": "Top-k labels with probabilities, per image",
    "headers": _VERSION,
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "properties": {
                    "model": {"type": "string"},
                    "predictions": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {
                                "filename": {"type": "string"},
                                "top_k": {
                                    "type": "array",
                                    "items": {
                                        "type": "object",
                                        "properties": {
                                            "label": {"type": "string"},
                                            "index": {"type": "integer"},
                                            "probability": {"type": "number"},
                                        },
                                    },
                                },
                            },
                        },
                    },
                },
            }
        }
    },
}
CLASSIFY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "files": {
                            "type": "array",
                            "items": _BINARY,
                            "description": "One or more images (PNG, JPEG, BMP, WebP, GIF, TIFF)",
                        }
                    },
                }
            },
            "image/png": _IMAGE,
            "image/jpeg": _IMAGE,
            "image/webp": _IMAGE,
            "image/bmp": _IMAGE,
            "image/gif": _IMAGE,
            "image/tiff": _IMAGE,
            "application/octet-stream": _IMAGE,
        },
    }
}


def _path_params(*names: str) -> list[dict]:
    return [{"name": n, "in": "path", "required": True, "schema": {"type": "string"}} for n in names]


MAX_TOP_K = 1000  # the most labels per image classify answers
_TOP_K = {
    "name": "top_k",
    "in": "query",
    "required": False,
    "description": "Labels per image (default: --top-k)",
    "schema": {"type": "integer", "minimum": 1, "maximum": MAX_TOP_K},
}


def _operation(tag: str, summary: str, op_id: str, doc: dict, params: list[dict], ok: dict) -> dict:
    return {
        "post": {
            "tags": [tag],
            "summary": summary,
            "operationId": op_id,
            **doc,
            "parameters": [*params, *doc.get("parameters", [])],
            "responses": {"200": ok, **{str(k): v for k, v in errors(400, 404, 408, 413, 415, 500, 503).items()}},
        }
    }


_V2, _V1 = "Open Inference Protocol v2", "classification"
# per hot endpoint: its tag, request body, answer and query parameters
_HOT_DOCS = {"infer": (_V2, INFER, INFER_RESPONSE, []), "classify": (_V1, CLASSIFY, CLASSIFY_RESPONSE, [_TOP_K])}
# the routes serve.api.hot_path answers outside FastAPI's router (serve.api.paths), as the document tells them
HOT_ROUTES = {
    r.template: _operation(tag, r.summary, r.operation_id, doc, [*_path_params(*r.params), *query], ok)
    for r in ROUTES
    if r.hot
    for tag, doc, ok, query in [_HOT_DOCS[r.endpoint]]
}


def install_docs(app: FastAPI) -> None:
    """/docs from the swagger-ui-bundle package's files (no CDN), the hot routes in the document, and
    no 422 in it: this server answers invalid parameters with 400 {"error"}."""
    from fastapi.staticfiles import StaticFiles
    from swagger_ui_bundle import swagger_ui_path

    app.mount("/docs-static", StaticFiles(directory=swagger_ui_path), name="docs-static")

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url,
            title=f"{app.title} — API",
            swagger_js_url="/docs-static/swagger-ui-bundle.js",
            swagger_css_url="/docs-static/swagger-ui.css",
            swagger_favicon_url="/docs-static/favicon-32x32.png",
        )

    default = app.openapi

    def openapi() -> dict:
        if app.openapi_schema is None:
            schema = default()
            schema.setdefault("paths", {}).update(HOT_ROUTES)
            for path in schema.get("paths", {}).values():
                for op in path.values():
                    if op.get("responses", {}).pop("422", None) is not None:
                        op["responses"].update({str(k): v for k, v in errors(400).items()})
            for name in ("HTTPValidationError", "ValidationError"):
                schema.get("components", {}).get("schemas", {}).pop(name, None)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi
