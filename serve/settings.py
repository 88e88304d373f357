"""The server's one settings object: every knob of `prelu-deploy serve` in one place, with its default.
A field left out when Settings is made comes from the environment variable PRELU_DEPLOY_<FIELD> (e.g.
PRELU_DEPLOY_MAX_QUEUE=1024, PRELU_DEPLOY_MAX_BODY_BYTES), else its default here; `serve`'s options take
their defaults from the same place (serve.option_fields.FIELDS), and an option given on the command line wins."""

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "PRELU_DEPLOY_"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX)

    repo: Path | None = None  # None: the bundled digits model, exported into a cache on first use
    backend: str = "auto"  # auto | a backend of runners.registry (serve.cli checks it)
    device: str = "cpu"  # cpu | cuda | cuda:N: where every runner runs
    max_batch_size: int = Field(32, ge=1)  # rows gathered into one runner call
    max_queue_delay_ms: float = Field(0.0, ge=0)  # under load only: the longest a batch waits for more rows
    max_queue: int = Field(512, ge=1)  # rows waiting per model; beyond it: 503 with Retry-After
    instances: int = Field(1, ge=1)  # concurrent runner calls per model
    threads: int | None = Field(None, ge=1)  # runner threads (onnxruntime intra-op)
    lone_threads: int | None = Field(None, ge=1)  # a lone request's own runner (serve.workers.processes.plan); None: none
    max_body_bytes: int = Field(16 << 20, ge=1)  # 413 beyond it
    max_images: int = Field(64, ge=1)  # images in one classify request
    max_pixels: int = Field(4096 * 4096, ge=1)  # per decoded image: decompression bombs stop here
    max_request_pixels: int = Field(64 << 20, ge=1)  # over all images of one classify request: 413 beyond
    max_decodes: int = Field(1, ge=1)  # images decoded at once per worker process (serve.api.routes.classify)
    top_k: int = Field(5, ge=1)  # default for classify
    header_timeout_s: float = Field(10.0, gt=0)  # a request's head must arrive within this (slowloris)
    body_timeout_s: float = Field(30.0, gt=0)  # and its body within this: 408 beyond
    max_header_bytes: int = Field(16 << 10, ge=256)  # a request's head (request line + headers): 431 beyond
    max_header_line_bytes: int = Field(8 << 10, ge=64)  # one line of it: 431 beyond
    limit_concurrency: int = Field(1024, ge=1)  # per worker process: open connections or requests in flight; 503 beyond
    shutdown_timeout_s: float = Field(30.0, gt=0)  # SIGTERM: in-flight requests get this long; a worker still alive is killed
    host: str = "127.0.0.1"  # where HTTP and gRPC listen (serve.workers.processes.listen)
    workers: int = Field(1, ge=1)  # server processes sharing the ports
    grpc_port: int = Field(0, ge=0, le=65535)  # KServe v2 gRPC (serve.api.grpc_service); 0: none
    api_token_sha256: str | None = None  # sha256 of the API token (serve.api.auth); the token itself is never kept
    auth: str = "management"  # what needs the token: management (the repository API) | all (inference, metadata too)
    model_control: str = "none"  # none: what the repository holds at start | explicit: what --load-model and the API load | poll
    poll_interval_s: float = Field(15.0, gt=0)  # poll: seconds between two looks at the repository (Triton's default)
    load_models: list[str] = []  # --load-model: the models an explicit server loads at start
    control_dir: str | None = None  # several workers, explicit: where they share loads and unloads (serve.repository.relay)
