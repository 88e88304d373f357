"""Versions and --model-control poll against real `prelu-deploy serve` processes: a new version written
into the repository goes live only after its parity gate, under load from 64 clients with no
failed request, the switch visible in x-model-version and the body's model_version; a bad version (a
wrong slope with its hashes rewritten, a tampered artifact) never takes traffic and shows UNAVAILABLE
with its reason while the old one serves, and the next good one is picked up; a version still being
written is never read; a removed model unloads under load; `load` of a loaded model picks up its new
versions; the version routes of the v2 protocol and gRPC's model_version."""

import json
import shutil
import time
from dataclasses import replace

import numpy as np
import onnx
import pytest
import tritonclient.grpc as tg
import tritonclient.http as th

from prelu_deploy.export.entry_writer import writing_entry
from prelu_deploy.manifest import read_entry

from ..server import Server
from .test_repository_api import Load

POLL = ("--model-control", "poll", "--poll-interval", "0.2")


def add_version(model, source, kind: str = "good", number="next") -> None:
    """Write a version of `model` with export's writer (the folder swapped whole): the artifact and golden
    I/O of `source`'s newest version; `kind`: good (its manifest says lowering native, so the metadata tells
    it apart), slope (a PReLU slope ×8, hashes rewritten: only the parity gate can tell) or tampered (the
    artifact changed after its hash was taken)."""
    src = read_entry(source)
    with writing_entry(model, version=number) as stage:
        graph = onnx.load(src.artifact)
        if kind == "slope":
            next(n for n in graph.graph.node if n.op_type == "LeakyRelu").attribute[0].f *= 8
        onnx.save(graph, stage / stage.files.onnx)
        stage.golden(src.golden_path)
        stage.finish(replace(src, lowering="native"))
        if kind == "tampered":
            with open(stage / stage.files.onnx, "ab") as f:
                f.write(b"\0")


class Clients(Load):
    """test_repository_api's load, each answer recorded with the version that computed it: (200, version)
    with its logits checked against PyTorch's, or (status, error)."""

    def _client(self, k: int) -> None:
        i = k
        while not self.stop.is_set():
            row = i % len(self.x)
            status, headers, body = self.srv.request("POST", "/v2/models/digits/infer", json_body(self.x[row]), timeout=30)
            body = json.loads(body)
            if status != 200:
                self.answers[k].append((status, body.get("error")))
            elif not np.allclose(body["outputs"][0]["data"], self.want[row], rtol=1e-4, atol=1e-4):
                self.answers[k].append(("wrong logits", body["model_version"]))
            else:
                assert headers["x-model-version"] == body["model_version"]
                self.answers[k].append((200, body["model_version"]))
            i += 1

    def all(self) -> list:
        return [a for client in self.answers for a in client]

    def wait_for(self, n: int = 20, version: str | None = None, timeout: float = 60) -> None:
        """At least `n` more answers (and, with `version`, one from each client by that version)."""
        target, deadline = len(self.all()) + n, time.monotonic() + timeout
        while len(self.all()) < target or version and not all((200, version) in c for c in self.answers):
            assert time.monotonic() < deadline, self.all()[-5:]
            time.sleep(0.02)


def json_body(row) -> bytes:
    return json.dumps(
        {"inputs": [{"name": "images", "shape": [1, 1, 8, 8], "datatype": "FP32", "data": row.ravel().tolist()}]}
    ).encode()


@pytest.fixture(scope="module")
def golden(repo):
    with np.load(repo / "digits" / "golden.npz") as z:
        return z["inputs"][:4].astype(np.float32), z["logits"][:4]


@pytest.fixture
def live(repo, tmp_path):
    shutil.copytree(repo / "digits", tmp_path / "live" / "digits")
    return tmp_path / "live"


def index(srv: Server) -> list[dict]:
    status, rows = srv.json("POST", "/v2/repository/index")
    assert status == 200, rows
    return rows


def wait_index(srv: Server, check, timeout: float = 60) -> list[dict]:
    deadline = time.monotonic() + timeout
    while not check(rows := index(srv)):
        assert time.monotonic() < deadline, rows
        time.sleep(0.05)
    return rows


def in_order(client: list) -> list[str]:
    """The versions one client was answered by, each run of them once: [1, 2] for a clean switch."""
    return [v for i, (_, v) in enumerate(client) if i == 0 or client[i - 1][1] != v]


def test_poll_takes_a_good_version_under_load_without_a_failed_request_then_a_removed_model_unloads(repo, live, golden):
    srv = Server(live, *POLL)
    try:
        assert index(srv) == [{"name": "digits", "version": "1", "state": "READY"}]
        with Clients(srv, golden, clients=64) as clients:  # the load: 64 clients for the whole swap
            clients.wait_for(64)
            add_version(live / "digits", repo / "digits")
            clients.wait_for(64, version="2", timeout=120)
        answers = clients.all()
        assert {a[0] for a in answers} == {200}, [a for a in answers if a[0] != 200][:5]  # none failed, none wrong
        assert all(in_order(c) == ["1", "2"] for c in clients.answers), [in_order(c) for c in clients.answers]
        assert index(srv) == [{"name": "digits", "version": "2", "state": "READY"}]  # latest 1: version 1 retired
        assert srv.json("GET", "/v2/models/digits")[1]["versions"] == ["2"]

        removed = "model 'digits' was removed from the repository"
        with Clients(srv, golden, clients=64) as clients:  # the folder removed under load: accepted ones finish, then 404
            clients.wait_for(64)
            (live / "digits").rename(live / ".digits.gone")
            clients.wait_for(20, timeout=30)
            while not all(c and c[-1] == (404, removed) for c in clients.answers):
                time.sleep(0.05)
        for client in clients.answers:
            first = next(i for i, a in enumerate(client) if a[0] != 200)
            assert set(client[:first]) == {(200, "2")} and set(client[first:]) == {(404, removed)}, client
        assert index(srv) == [{"name": "digits", "state": "UNAVAILABLE", "reason": removed}]
    finally:
        assert srv.stop()
    log = srv.proc.stdout.read()
    assert "Traceback" not in log, log[-3000:]


def test_a_bad_version_never_takes_traffic_and_the_next_good_one_is_picked_up(repo, live, golden):
    srv = Server(live, *POLL)
    try:
        with Clients(srv, golden, clients=64) as clients:
            clients.wait_for(64)
            for number, kind, why in (
                (2, "slope", "parity gate: golden outputs disagree with PyTorch"),
                (3, "tampered", "3/model.onnx sha256 differs from the manifest"),
            ):
                add_version(live / "digits", repo / "digits", kind, number)
                rows = wait_index(srv, lambda rows: any(r["version"] == str(number) and r["state"] != "LOADING" for r in rows))
                assert rows[0] == {"name": "digits", "version": "1", "state": "READY"}  # the old one serves on
                bad = rows[-1]
                assert (bad["version"], bad["state"]) == (str(number), "UNAVAILABLE") and why in bad["reason"], rows
                status, body = srv.json("POST", f"/v2/models/digits/versions/{number}/infer", {"inputs": []})
                assert status == 503 and why in body["error"]  # asked for by name, it says why it does not serve
                clients.wait_for(20)
            add_version(live / "digits", repo / "digits", "good", 4)  # after failed ones, a good one goes live
            clients.wait_for(64, version="4", timeout=120)
        answers = clients.all()
        assert {a[0] for a in answers} == {200} and {a[1] for a in answers} == {"1", "4"}, [a for a in answers if a[0] != 200][:5]
        assert index(srv) == [{"name": "digits", "version": "4", "state": "READY"}]
        metrics = srv.request("GET", "/metrics")[2].decode()
        assert 'prelu_model_loads_total{model="digits",result="refused"} 2.0' in metrics
        assert 'prelu_model_loads_total{model="digits",result="serving"} 1.0' in metrics
    finally:
        assert srv.stop()
    assert "Traceback" not in srv.proc.stdout.read()


def test_a_version_still_being_written_is_never_read(repo, live, golden):
    """A copier that is not atomic (cp -r): what a poll sees half-written fails the manifest's hashes and
    takes no traffic; once the copy is complete the files read differently, and the version goes live."""
    srv = Server(live, *POLL)
    try:
        staging = live.parent / "elsewhere" / "digits"
        shutil.copytree(live / "digits", staging)
        add_version(staging, repo / "digits")
        with Clients(srv, golden) as clients:
            clients.wait_for(20)
            (live / "digits" / "2").mkdir()
            for name in ("manifest.json", "golden.npz"):
                shutil.copyfile(staging / "2" / name, live / "digits" / "2" / name)
            artifact = (staging / "2" / "model.onnx").read_bytes()
            (live / "digits" / "2" / "model.onnx").write_bytes(artifact[: len(artifact) // 2])
            rows = wait_index(srv, lambda rows: any(r["version"] == "2" and r["state"] != "LOADING" for r in rows))
            assert rows[0]["state"] == "READY" and rows[-1]["state"] == "UNAVAILABLE" and "sha256" in rows[-1]["reason"]
            clients.wait_for(20)
            with open(live / "digits" / "2" / "model.onnx", "ab") as f:
                f.write(artifact[len(artifact) // 2 :])
            clients.wait_for(20, version="2")
        answers = clients.all()
        assert {a[0] for a in answers} == {200} and all(in_order(c) == ["1", "2"] for c in clients.answers)
    finally:
        assert srv.stop()


def test_load_of_a_loaded_model_picks_up_its_new_versions_and_each_version_answers_by_name(repo, live, golden):
    srv = Server(live, "--model-control", "explicit", "--load-model", "digits", grpc=True)
    try:
        http, grpc = th.InferenceServerClient(srv.url.removeprefix("http://")), tg.InferenceServerClient(srv.grpc_url)
        with open(live / "digits" / "config.pbtxt", "a") as f:
            f.write("version_policy { latest { num_versions: 2 } }\n")  # Triton's, edited as its users do
        add_version(live / "digits", repo / "digits")
        assert http.get_model_repository_index()[0]["version"] == "1"  # on disk is not live: a load makes it so
        http.load_model("digits")  # a loaded model: its new version loads beside the one that serves
        assert http.get_model_repository_index() == [{"name": "digits", "version": v, "state": "READY"} for v in "12"]
        assert http.get_model_metadata("digits")["versions"] == ["1", "2"]
        x = golden[0][:1]
        for version, lowering in (("", "native"), ("1", "leaky"), ("2", "native")):
            status, headers, body = srv.request(
                "POST", f"/v2/models/digits{'/versions/' + version if version else ''}/infer", json_body(x[0])
            )
            assert status == 200 and headers["x-model-version"] == (version or "2"), body
            assert srv.json("GET", f"/v2/models/digits/versions/{version or '2'}")[1]["prelu_lowering"] == lowering
        inp = tg.InferInput("images", list(x.shape), "FP32")
        inp.set_data_from_numpy(x)
        assert grpc.infer("digits", [inp]).get_response().model_version == "2"
        assert grpc.infer("digits", [inp], model_version="1").get_response().model_version == "1"
        assert grpc.is_model_ready("digits", "1") and grpc.get_model_metadata("digits").versions == ["1", "2"]
        status, body = srv.json("GET", "/v2/models/digits/versions/3")
        assert status == 404 and body["error"] == "model 'digits' has no version '3'; it has '1', '2'"
        http.load_model("digits")  # nothing changed on disk: both stay as they are
        assert http.get_model_repository_index()[1] == {"name": "digits", "version": "2", "state": "READY"}
    finally:
        assert srv.stop()
    assert "Traceback" not in srv.proc.stdout.read()


def test_every_worker_polls_for_itself(repo, live, golden):
    srv = Server(live, *POLL, "--workers", "2")

    def versions() -> set:  # 24 new connections: the kernel spreads them over both workers
        return {srv.request("POST", "/v2/models/digits/infer", json_body(golden[0][0]))[1]["x-model-version"] for _ in range(24)}

    try:
        assert versions() == {"1"}
        add_version(live / "digits", repo / "digits")
        deadline = time.monotonic() + 30
        while versions() != {"2"}:
            assert time.monotonic() < deadline
    finally:
        assert srv.stop()
    assert "Traceback" not in srv.proc.stdout.read()


def test_the_policy_chooses_the_versions_served_and_a_malformed_one_says_why(repo, live):
    from prelu_deploy.serve.repository.loader import load_repository
    from prelu_deploy.serve.repository.versions import every_version
    from prelu_deploy.serve.settings import Settings

    for number in (2, 3):
        add_version(live / "digits", repo / "digits", number=number)
    config = (live / "digits" / "config.pbtxt").read_text()
    for policy, served in (
        ("", [3]),
        ("version_policy { specific { versions: [1, 3] } }", [1, 3]),
        ("version_policy { all { } }", [1, 2, 3]),
    ):
        (live / "digits" / "config.pbtxt").write_text(config + policy)
        table = load_repository(live, Settings(repo=live))
        assert list(table.versions["digits"]) == served and table["digits"].number == 3 and table["digits"].ready
        for version in every_version(table):
            version.close()
    (live / "digits" / "config.pbtxt").write_text(config + "version_policy { newest { } }")
    table = load_repository(live, Settings(repo=live))
    assert not table["digits"].ready and table["digits"].reason == (
        "cannot load: digits/config.pbtxt: not Triton's model configuration (12:18 : Message type "
        '"inference.ModelVersionPolicy" has no field named "newest".)'
    )
