"""Triton's model-repository extension (serve.repository.control, serve.api.routes.repository_api, gRPC
Repository*) against real `prelu-deploy serve` processes, driven by tritonclient's HTTP and gRPC clients
unchanged: the index, load and unload; a new version live only after its parity gate, the old one
serving until then and every request answered meanwhile; a version that fails the gate never taking
traffic; unload under load; loads and unloads reaching every worker; the token on the management API."""

import json
import shutil
import threading
import time
import urllib.request
from dataclasses import replace

import numpy as np
import onnx
import pytest
import tritonclient.grpc as tg
import tritonclient.http as th
from tritonclient.utils import InferenceServerException

from prelu_deploy.atomic import staged_dir
from prelu_deploy.manifest import read_entry

from ..server import Server

LOADED = [{"name": "digits", "version": "1", "state": "READY"}]
UNLOADED = "model 'digits' was unloaded (POST /v2/repository/models/digits/unload); load it to serve it again"


@pytest.fixture(scope="module")
def versions(repo, tmp_path_factory):
    """New versions of `digits`, each a complete model directory: B (the same graph; its manifest says
    lowering native, so the metadata tells which version serves), a wrong slope (hashes consistent: only
    the parity gate can tell) and a tampered artifact (its bytes changed after export)."""
    root, out = tmp_path_factory.mktemp("versions"), {}
    for kind in ("B", "slope", "tampered"):
        out[kind] = root / kind / "digits"
        shutil.copytree(repo / "digits", out[kind])
    replace(read_entry(out["B"]), lowering="native").write(out["B"])
    graph = onnx.load(out["slope"] / "1" / "model.onnx")
    next(n for n in graph.graph.node if n.op_type == "LeakyRelu").attribute[0].f *= 8
    onnx.save(graph, out["slope"] / "1" / "model.onnx")
    read_entry(out["slope"]).write(out["slope"])
    with open(out["tampered"] / "1" / "model.onnx", "ab") as f:
        f.write(b"\0")
    return out


@pytest.fixture(scope="module")
def golden(repo):
    with np.load(repo / "digits" / "golden.npz") as z:
        return z["inputs"][:4].astype(np.float32), z["logits"][:4]


def _swap(live, source) -> None:
    """export --force's atomic swap of `source` into the live model directory."""
    with staged_dir(live) as tmp:
        shutil.copytree(source, tmp, dirs_exist_ok=True)


def _refusal(call) -> InferenceServerException:
    with pytest.raises(InferenceServerException) as err:
        call()
    return err.value


def _lowering(srv: Server) -> str:
    status, meta = srv.json("GET", "/v2/models/digits")
    assert status == 200, meta
    return meta["prelu_lowering"]


class Load:
    """`clients` threads sending golden rows to /v2/models/digits/infer (a new connection each) until
    stopped: every answer's status in order, per client, and each 200's logits checked against PyTorch's."""

    def __init__(self, srv: Server, golden, clients: int = 4):
        self.srv, (self.x, self.want) = srv, golden
        self.stop, self.answers = threading.Event(), [[] for _ in range(clients)]
        self.threads = [threading.Thread(target=self._client, args=(k,)) for k in range(clients)]

    def _client(self, k: int) -> None:
        i = k
        while not self.stop.is_set():
            row = i % len(self.x)
            status, body = self.srv.json(
                "POST",
                "/v2/models/digits/infer",
                {"inputs": [{"name": "images", "shape": [1, 1, 8, 8], "datatype": "FP32", "data": self.x[row].ravel().tolist()}]},
                timeout=30,
            )
            if status == 200:
                right = np.allclose(body["outputs"][0]["data"], self.want[row], rtol=1e-4, atol=1e-4)
                self.answers[k].append(200 if right else "wrong logits")
            else:
                self.answers[k].append((status, body.get("error")))
            i += 1

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for t in self.threads:
            t.join(60)
        assert not any(t.is_alive() for t in self.threads), "a request hung"

    def wait_for(self, n: int) -> None:  # at least n more answers: the load did run across what came before
        target, deadline = sum(map(len, self.answers)) + n, time.monotonic() + 60
        while sum(map(len, self.answers)) < target:
            assert time.monotonic() < deadline
            time.sleep(0.02)


def test_versions_go_live_after_their_gate_with_both_clients(repo, versions, golden, tmp_path):
    live = tmp_path / "live"
    shutil.copytree(repo / "digits", live / "digits")
    srv = Server(live, "--model-control", "explicit", "--load-model", "digits", grpc=True)
    try:
        http, grpc = th.InferenceServerClient(srv.url.removeprefix("http://")), tg.InferenceServerClient(srv.grpc_url)
        assert http.get_model_repository_index() == LOADED == grpc.get_model_repository_index(as_json=True)["models"]
        assert _lowering(srv) == "leaky" and "model_repository" in grpc.get_server_metadata().extensions
        with Load(srv, golden) as load:
            load.wait_for(20)
            _swap(live / "digits", versions["B"])
            load.wait_for(20)
            assert _lowering(srv) == "leaky"  # on disk is not live: a load makes it so
            http.load_model("digits")
            assert _lowering(srv) == "native"
            load.wait_for(20)
            for bad, client, why in (
                (versions["slope"], grpc, "parity gate: golden outputs disagree with PyTorch"),
                (versions["tampered"], http, "sha256"),
            ):
                _swap(live / "digits", bad)
                err = _refusal(lambda: client.load_model("digits"))
                assert err.status() in ("400", "StatusCode.FAILED_PRECONDITION"), err
                assert err.message().startswith("failed to load 'digits': ") and why in err.message()
                assert err.message().endswith("; the version loaded before keeps serving")
                assert _lowering(srv) == "native"  # the version before serves on
                index = http.get_model_repository_index()
                assert index[0] == LOADED[0] and index[1]["state"] == "UNAVAILABLE" and why in index[1]["reason"]
                assert srv.json("POST", "/v2/repository/index", {"ready": True}) == (200, LOADED)
                load.wait_for(20)
            _swap(live / "digits", repo / "digits")  # a good version after the bad ones is picked up
            grpc.load_model("digits")
            assert _lowering(srv) == "leaky" and http.get_model_repository_index() == LOADED
            load.wait_for(20)
        answers = [a for client in load.answers for a in client]
        assert answers and set(answers) == {200}, [a for a in answers if a != 200][:5]  # none failed, none from a bad version
        metrics = srv.request("GET", "/metrics")[2].decode()
        assert 'prelu_model_loads_total{model="digits",result="refused"} 2.0' in metrics
        assert 'prelu_model_loads_total{model="digits",result="serving"} 2.0' in metrics

        with Load(srv, golden) as load:  # unload under load: accepted requests finish, then 404 with the reason
            load.wait_for(20)
            http.unload_model("digits")
            load.wait_for(20)
        for client in load.answers:
            first_404 = next((i for i, a in enumerate(client) if a != 200), len(client))
            assert all(a == (404, UNLOADED) for a in client[first_404:]) and set(client[:first_404]) <= {200}, client
        assert sum(a != 200 for client in load.answers for a in client) >= 20
        assert grpc.get_model_repository_index(as_json=True)["models"] == [
            {"name": "digits", "state": "UNAVAILABLE", "reason": UNLOADED}
        ]
        assert _refusal(lambda: grpc.get_model_metadata("digits")).message() == UNLOADED
        grpc.unload_model("digits")  # again: nothing to do, not an error
        http.load_model("digits")
        assert http.is_model_ready("digits") and grpc.get_model_repository_index(as_json=True)["models"] == LOADED
    finally:
        assert srv.stop()
    log = srv.proc.stdout.read()
    assert "Traceback" not in log, log[-3000:]


def test_model_control_none_refuses_load_and_unload(repo):
    srv = Server(repo, grpc=True)
    try:
        http, grpc = th.InferenceServerClient(srv.url.removeprefix("http://")), tg.InferenceServerClient(srv.grpc_url)
        assert http.get_model_repository_index() == LOADED == grpc.get_model_repository_index(as_json=True)["models"]
        for call in (
            lambda: http.load_model("digits"),
            lambda: http.unload_model("digits"),
            lambda: grpc.load_model("digits"),
            lambda: grpc.unload_model("digits"),
        ):
            err = _refusal(call)
            assert err.status() in ("400", "StatusCode.FAILED_PRECONDITION") and "--model-control none" in err.message()
        assert http.is_model_ready("digits")
        status, body = srv.json("POST", "/v2/repository/models/digits/load", {"parameters": {"config": "{}"}})
        assert status == 400 and "parameters 'config' are not supported" in body["error"]
    finally:
        assert srv.stop()


def test_the_management_api_needs_the_token(repo, tmp_path):
    token = "t0ken-" + "x" * 20
    (tmp_path / "token").write_text(token)
    (tmp_path / "token").chmod(0o600)
    srv = Server(repo, "--model-control", "explicit", "--api-token-file", str(tmp_path / "token"), grpc=True)
    try:
        http, grpc = th.InferenceServerClient(srv.url.removeprefix("http://")), tg.InferenceServerClient(srv.grpc_url)
        for headers, want in ((None, "this needs an API token"), ({"Authorization": "Bearer " + "y" * 26}, "not valid")):
            for call in (
                lambda: http.load_model("digits", headers=headers),
                lambda: http.get_model_repository_index(headers=headers),
            ):
                err = _refusal(call)
                assert err.status() == "401" and want in err.message()
            grpc_headers = headers and {"authorization": headers["Authorization"]}
            for call in (
                lambda: grpc.unload_model("digits", headers=grpc_headers),
                lambda: grpc.get_model_repository_index(headers=grpc_headers),
            ):
                err = _refusal(call)
                assert err.status() == "StatusCode.UNAUTHENTICATED" and want in err.message()
        err = _refusal(lambda: http.load_model("digits", query_params={"token": token}))
        assert err.status() == "400" and "a token in the URL is refused" in err.message()
        http.load_model("digits", headers={"Authorization": f"Bearer {token}"})
        assert http.is_model_ready("digits")  # inference and metadata stay open (--auth management)
        grpc.unload_model("digits", headers={"authorization": f"Bearer {token}"})
        assert not http.is_model_ready("digits")
    finally:
        assert srv.stop()
    assert token not in srv.proc.stdout.read()


def test_without_a_token_the_management_api_answers_on_loopback_only(repo):
    srv = Server(repo, "--host", "0.0.0.0", grpc=True)  # reached through 127.0.0.1, but it listens beyond
    try:
        status, headers, body = srv.request("POST", "/v2/repository/index")
        assert status == 403 and "listens beyond loopback and has no API token" in json.loads(body)["error"]
        err = _refusal(lambda: tg.InferenceServerClient(srv.grpc_url).get_model_repository_index())
        assert err.status() == "StatusCode.PERMISSION_DENIED"
        assert srv.json("GET", "/v2/models/digits")[0] == 200  # inference and metadata are not management
    finally:
        assert srv.stop()


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["--model-control", "explicit", "--host", "0.0.0.0"],
            "--model-control explicit on --host 0.0.0.0 (beyond loopback) "
            "would let anyone who reaches it load and unload models: --api-token-file FILE",
        ),
        (["--poll-interval", "1"], "--poll-interval: only with --model-control poll"),
        (["--model-control", "poll", "--poll-interval", "0"], "--poll-interval 0: seconds between two looks at the repository"),
        (["--model-control", "poll", "--ray"], "--model-control poll: not with --ray"),
        (["--load-model", "digits"], "--load-model: only with --model-control explicit"),
        (["--model-control", "explicit", "--load-model", "nope"], "--load-model 'nope': no model directory of that name"),
        (["--model-control", "explicit", "--ray"], "--model-control explicit: not with --ray"),
    ],
)
def test_bad_model_control_options_exit_2(serve_in_process, repo, args, message):
    proc = serve_in_process("serve", repo, "--port", "0", "--grpc-port", "0", *args, check_rc=2)
    assert message in proc.stderr and "Traceback" not in proc.stderr


def test_loads_and_unloads_reach_every_worker(repo, versions, tmp_path):
    live = tmp_path / "live"
    shutil.copytree(repo / "digits", live / "digits")
    srv = Server(live, "--model-control", "explicit", "--workers", "2", grpc=True)

    def everywhere() -> set:  # 24 new connections: the kernel spreads them over both workers
        out = set()
        for _ in range(24):
            with urllib.request.urlopen(urllib.request.Request(f"{srv.url}/v2/repository/index", method="POST")) as r:
                out.add(json.dumps(json.loads(r.read())))
        return {json.loads(s)[0].get("reason") or json.loads(s)[0]["state"] for s in out}

    try:
        deadline = time.monotonic() + 60
        while everywhere() != {"not loaded"}:  # both workers up
            assert time.monotonic() < deadline
        grpc = tg.InferenceServerClient(srv.grpc_url)
        grpc.load_model("digits")  # one connection: one worker answers, once both serve it
        assert everywhere() == {"READY"} and {_lowering(srv) for _ in range(12)} == {"leaky"}
        _swap(live / "digits", versions["slope"])
        assert "parity gate" in _refusal(lambda: grpc.load_model("digits")).message()
        assert everywhere() == {"READY"} and {_lowering(srv) for _ in range(12)} == {"leaky"}  # nothing was shared
        _swap(live / "digits", versions["B"])
        th.InferenceServerClient(srv.url.removeprefix("http://")).load_model("digits")
        assert {_lowering(srv) for _ in range(24)} == {"native"}
        grpc.unload_model("digits")
        assert everywhere() == {UNLOADED}
    finally:
        assert srv.stop()
    assert "Traceback" not in srv.proc.stdout.read()
