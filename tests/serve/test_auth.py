"""Tokens (serve.api.auth) against a real `prelu-deploy serve` process, driven by the real tritonclient
clients (headers over HTTP, metadata over gRPC): the right token, a wrong one, none, a token in the URL;
401 with WWW-Authenticate, refusals counted in /metrics, the token in no log line or error; and the
options refused before the server listens. The management API's own cases: tests/serve/test_repository_api.py."""

import json
import re
import secrets
import socket

import numpy as np
import pytest
import tritonclient.grpc as tg
import tritonclient.http as th
from tritonclient.utils import InferenceServerException

from prelu_deploy.serve.api.auth import resolve

from ..server import Server

TOKEN = secrets.token_urlsafe(24)
WRONG = secrets.token_urlsafe(24)


@pytest.fixture(scope="module")
def server(repo, tmp_path_factory):
    token_file = tmp_path_factory.mktemp("secret") / "token"
    token_file.write_text(TOKEN + "\n")
    token_file.chmod(0o600)
    srv = Server(repo, "--api-token-file", str(token_file), "--auth", "all", "--log-level", "info", grpc=True)
    yield srv
    assert srv.stop()


def _log(srv: Server) -> str:
    srv.stop()
    return srv.proc.stdout.read()


def _refused(srv: Server, protocol: str, reason: str) -> int:
    status, _, body = srv.request("GET", "/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert status == 200
    m = re.search(rf'prelu_auth_refused_total{{protocol="{protocol}",reason="{reason}"}} (\S+)', body.decode())
    return int(float(m.group(1))) if m else 0


def _http_error(call) -> InferenceServerException:
    with pytest.raises(InferenceServerException) as err:
        call()
    return err.value


def test_http_with_tritonclient(server):
    client = th.InferenceServerClient(server.url.removeprefix("http://"))
    good, bad = {"Authorization": f"Bearer {TOKEN}"}, {"Authorization": f"Bearer {WRONG}"}
    x = th.InferInput("images", [1, 1, 8, 8], "FP32")
    x.set_data_from_numpy(np.zeros((1, 1, 8, 8), np.float32), binary_data=True)
    assert client.is_server_live() and client.is_server_ready()  # probes stay open
    before = {reason: _refused(server, "http", reason) for reason in ("missing", "wrong", "in_url")}

    assert client.get_model_metadata("digits", headers=good)["name"] == "digits"
    assert client.infer("digits", [x], headers=good).as_numpy("logits").shape == (1, 10)
    for call in (
        lambda h: client.infer("digits", [x], headers=h),
        lambda h: client.get_model_metadata("digits", headers=h),
        lambda h: client.get_server_metadata(headers=h),
    ):
        none, wrong = _http_error(lambda: call(None)), _http_error(lambda: call(bad))
        assert none.status() == wrong.status() == "401"
        assert none.message() == "this needs an API token: send the header 'Authorization: Bearer TOKEN'"
        assert wrong.message() == "the API token is not valid" and TOKEN not in str(wrong) and WRONG not in str(wrong)
    in_url = _http_error(lambda: client.infer("digits", [x], headers=good, query_params={"access_token": TOKEN}))
    assert in_url.status() == "400" and "a token in the URL is refused" in in_url.message() and TOKEN not in in_url.message()
    assert _refused(server, "http", "missing") - before["missing"] == 3
    assert _refused(server, "http", "wrong") - before["wrong"] == 3
    assert _refused(server, "http", "in_url") - before["in_url"] == 1

    status, headers, body = server.request("GET", "/v2/models/digits")  # the challenge, as RFC 6750 words it
    assert status == 401 and headers["www-authenticate"] == 'Bearer realm="prelu-deploy"'
    assert json.loads(body) == {"error": "this needs an API token: send the header 'Authorization: Bearer TOKEN'"}
    status, headers, _ = server.request("GET", "/metrics", headers={"Authorization": f"Bearer {WRONG}"})
    assert status == 401 and 'error="invalid_token"' in headers["www-authenticate"]
    for path in ("/", "/docs", "/openapi.json", "/v1/classify"):  # --auth all: everything but the probes
        assert server.request("GET" if path != "/v1/classify" else "POST", path)[0] == 401, path
    status, _, _ = server.request("GET", f"/v2/health/live?token={TOKEN}")  # never in a URL, even where open
    assert status == 400


def test_grpc_with_tritonclient(server):
    client = tg.InferenceServerClient(server.grpc_url)
    good, bad = {"authorization": f"Bearer {TOKEN}"}, {"authorization": f"Bearer {WRONG}"}
    x = tg.InferInput("images", [1, 1, 8, 8], "FP32")
    x.set_data_from_numpy(np.zeros((1, 1, 8, 8), np.float32))
    assert client.is_server_live() and client.is_server_ready()  # probes stay open
    before = {reason: _refused(server, "grpc", reason) for reason in ("missing", "wrong")}
    assert client.get_model_metadata("digits", headers=good).name == "digits"
    assert client.infer("digits", [x], headers=good).as_numpy("logits").shape == (1, 10)
    for call in (
        lambda h: client.infer("digits", [x], headers=h),
        lambda h: client.get_model_metadata("digits", headers=h),
        lambda h: client.is_model_ready("digits", headers=h),
    ):
        none, wrong = _http_error(lambda: call(None)), _http_error(lambda: call(bad))
        assert none.status() == wrong.status() == "StatusCode.UNAUTHENTICATED"
        assert none.message() == "this needs an API token: send the header 'Authorization: Bearer TOKEN'"
        assert wrong.message() == "the API token is not valid" and WRONG not in str(wrong)
    assert _refused(server, "grpc", "missing") - before["missing"] == 3
    assert _refused(server, "grpc", "wrong") - before["wrong"] == 3


def test_the_token_is_in_no_log_line(repo, tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    token_file.chmod(0o600)
    srv = Server(repo, "--api-token-file", str(token_file), "--auth", "all", "--log-level", "debug", grpc=True)
    try:
        client = th.InferenceServerClient(srv.url.removeprefix("http://"))
        for query in ({"access_token": TOKEN}, {"api_key": WRONG, "x": "1"}):
            _http_error(lambda: client.get_model_metadata("digits", query_params=query))
        for headers in ({"Authorization": f"Bearer {TOKEN}"}, {"Authorization": f"Bearer {WRONG}"}, {"Authorization": TOKEN}):
            srv.request("GET", "/v2/models/digits", headers=headers)
        grpc_client = tg.InferenceServerClient(srv.grpc_url)
        _http_error(lambda: grpc_client.get_model_metadata("digits", headers={"authorization": f"Bearer {WRONG}"}))
    finally:
        log = _log(srv)
    assert "GET /v2/models/digits?access_token=***" in log and "api_key=***&x=1" in log  # the access log, masked
    assert TOKEN not in log and WRONG not in log and "Traceback" not in log


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["--auth", "all"],
            "--auth all needs a token: --api-token-file FILE (or the environment variable PRELU_DEPLOY_API_TOKEN)",
        ),
        (["--auth", "some"], "--auth 'some': choose management"),
        (["--api-token", "short"], "the API token must be at least 16 printable characters"),
        (["--api-token", TOKEN, "--api-token-file", "/etc/hostname"], "--api-token and --api-token-file: give one"),
        (["--api-token-file", "/no/such/token"], "--api-token-file /no/such/token: cannot read it (No such file or directory)"),
    ],
)
def test_bad_token_options_exit_2_before_listening(serve_in_process, repo, args, message):
    proc = serve_in_process("serve", repo, "--port", "0", "--grpc-port", "0", *args, check_rc=2)
    assert message in proc.stderr and "Traceback" not in proc.stderr


def test_the_token_from_the_environment(monkeypatch):
    monkeypatch.setenv("PRELU_DEPLOY_API_TOKEN", f"  {TOKEN}\n")
    settings = resolve(None, None, "all")
    assert settings["auth"] == "all" and len(settings["api_token_sha256"]) == 64 and TOKEN not in json.dumps(settings)
    monkeypatch.delenv("PRELU_DEPLOY_API_TOKEN")
    assert resolve(None, None, "management") == {"api_token_sha256": None, "auth": "management"}


@pytest.mark.parametrize(
    "auth, says",
    [
        ("all", "every route but /v2/health/* needs the API token"),
        (
            "management",
            "the API token guards the management API; anyone who can reach this address can run inference and read metadata",
        ),
    ],
)
def test_the_warning_beyond_loopback_says_what_the_token_guards(cli, repo, monkeypatch, auth, says):
    monkeypatch.setenv("PRELU_DEPLOY_API_TOKEN", TOKEN)
    with socket.socket() as busy:  # the warning comes before the port is taken: a busy one ends it there (exit 9)
        busy.bind(("0.0.0.0", 0))
        busy.listen()
        proc = cli(
            "serve", repo, "--host", "0.0.0.0", "--port", busy.getsockname()[1], "--grpc-port", "0", "--auth", auth, check_rc=9
        )
    assert f"listening on 0.0.0.0 (beyond loopback): {says}" in proc.stderr and "the token travels in clear" in proc.stderr
