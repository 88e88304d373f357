"""Settings (serve/settings.py) is the one source of the server's defaults. The `serve` command cannot read
them at import time (the console script starts without the serve extra's pydantic), so this test holds
every option's default to the field it sets, in the field's units."""

import inspect

import pytest

from prelu_deploy.serve import cli
from prelu_deploy.serve.settings import Settings

MB, KB = 1 << 20, 1 << 10
# option → (the Settings field it sets, its value in that field's units)
OPTIONS = {
    **{name: (name, lambda v: v) for name in (
        "host", "auth", "model_control", "backend", "device", "max_batch_size", "max_queue_delay_ms", "max_queue",
        "instances", "max_images", "max_pixels", "max_request_pixels", "limit_concurrency")},
    "max_body_mb": ("max_body_bytes", lambda v: int(v * MB)),
    "max_header_kb": ("max_header_bytes", lambda v: int(v * KB)),
    "max_header_line_kb": ("max_header_line_bytes", lambda v: int(v * KB)),
    "header_timeout": ("header_timeout_s", lambda v: v),
    "body_timeout": ("body_timeout_s", lambda v: v),
    "shutdown_timeout": ("shutdown_timeout_s", lambda v: v),
}
# options without a fixed default: Settings' default applies when they are left out, or `serve` works the
# value out at start (the layout from the cores, gRPC's port, what a token or explicit control brings)
CHOSEN_AT_START = {"repo", "threads", "lone_threads", "workers", "grpc_port", "max_decodes", "api_token_sha256",
                   "load_models", "control_dir", "poll_interval_s"}
NOT_OPTIONS = {"top_k"}  # classify's default number of labels: a request's ?top_k= sets it


@pytest.mark.parametrize("option", sorted(OPTIONS))
def test_each_serve_option_defaults_to_its_setting(option):
    field, in_field_units = OPTIONS[option]
    default = inspect.signature(cli.serve).parameters[option].default.default  # the typer.Option's
    assert in_field_units(default) == Settings.model_fields[field].default, option


def test_every_setting_is_an_option_or_chosen_at_start():
    assert set(Settings.model_fields) == {field for field, _ in OPTIONS.values()} | CHOSEN_AT_START | NOT_OPTIONS
