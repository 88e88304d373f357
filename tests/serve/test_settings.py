"""Settings (serve/settings.py) is the one source of the server's defaults. The `serve` command cannot read
them at import time (the console script starts without the serve extra's pydantic), so this test holds
every option's default to the field it sets, in the field's units; an option left out takes the field's
environment variable (serve.option_fields.EnvironmentDefaults)."""

import inspect
import json

import pytest

from prelu_deploy.runners import registry
from prelu_deploy.serve import cli, option_fields
from prelu_deploy.serve.settings import Settings
from ..server import Server

# fields no option sets: worked out at start (the layout's lone runner, what a token or explicit control brings)
NOT_OPTIONS = {"lone_threads", "api_token_sha256", "load_models", "control_dir", "top_k"}


@pytest.mark.parametrize("option", sorted(option_fields.FIELDS))
def test_each_serve_option_defaults_to_its_setting(option):
    field, in_field_units, in_option_units = option_fields.FIELDS[option]
    default = inspect.signature(cli.serve).parameters[option].default.default  # the typer.Option's
    if default is None:  # worked out at start (the cores, gRPC's port) unless given or set in the environment
        return
    assert in_field_units(default) == Settings.model_fields[field].default, option
    assert in_option_units(in_field_units(default)) == default, option


def test_every_setting_is_an_option_or_chosen_at_start():
    assert set(Settings.model_fields) == {field for field, *_ in option_fields.FIELDS.values()} | NOT_OPTIONS


def test_serve_offers_every_backend_of_the_registry():
    """--backend's choices and its help are the registry's: a backend added there is one serve takes."""
    assert cli.BACKENDS == ("auto", *registry.backends())
    help_text = inspect.signature(cli.serve).parameters["backend"].default.help
    assert help_text.endswith(" | ".join(registry.backends())), help_text


def test_an_option_left_out_takes_its_environment_variable_and_one_given_wins(repo, monkeypatch):
    """PRELU_DEPLOY_<FIELD>, read by Settings (pydantic-settings), in a real server: the body limit it sets
    answers 413 naming the option; the same variable under an explicit --max-body-mb changes nothing."""
    monkeypatch.setenv("PRELU_DEPLOY_MAX_BODY_BYTES", str(1 << 20))
    body, headers = b"\0" * (2 << 20), {"content-type": "image/png"}
    srv = Server(repo)
    try:
        status, _, answer = srv.request("POST", "/v1/classify", body, headers)
        assert status == 413 and "the limit is 1 MB (--max-body-mb)" in json.loads(answer)["error"], answer
    finally:
        srv.stop()
    srv = Server(repo, "--max-body-mb", "4")
    try:
        assert srv.request("POST", "/v1/classify", body, headers)[0] == 415  # read whole: then found not to be a PNG
    finally:
        srv.stop()


@pytest.mark.parametrize(
    "variable, value, message",
    [
        ("PRELU_DEPLOY_MAX_QUEUE", "lots", "PRELU_DEPLOY_MAX_QUEUE='lots': Input should be a valid integer"),
        ("PRELU_DEPLOY_MAX_BATCH_SIZE", "0", "PRELU_DEPLOY_MAX_BATCH_SIZE='0': Input should be greater than or equal to 1"),
    ],
)
def test_a_bad_environment_variable_exits_2_naming_it(serve_in_process, repo, monkeypatch, variable, value, message):
    monkeypatch.setenv(variable, value)
    result = serve_in_process("serve", repo, "--port", "0", check_rc=2)
    assert message in result.stderr and "Traceback" not in result.stderr, result.stderr
