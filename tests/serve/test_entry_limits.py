"""The server takes its limits from the model entry: batches never exceed what the entry accepts, the
gate runs the golden rows in batches it accepts, every instance has a runner of its own, and a runner
that fails answers JSON with a status, never a traceback."""

import json
import shutil
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import onnx
import pytest
import tritonclient.http as httpclient
from onnx import helper, numpy_helper

from prelu_deploy.export.model_dir import export_model_dir
from prelu_deploy.manifest import read_entry, sha256_file
from prelu_deploy.runners.registry import get_runner
from prelu_deploy.runners.runner import run_batched

from ..manifests import edit_manifest
from ..server import Server


@pytest.fixture(scope="module")
def small(tmp_path_factory, shipped):
    """The digits model exported with --max-batch 4: fewer than its 8 golden rows."""
    root = tmp_path_factory.mktemp("small")
    export_model_dir(shipped, "digits4", root, mode="leaky", max_batch=4)
    return root


def test_a_runner_refuses_a_batch_beyond_its_entry(small):
    runner = get_runner(None, small / "digits4")
    x = runner.entry.golden_io()["inputs"]
    assert runner.profile.max == 4 and len(x) == 8
    with pytest.raises(ValueError, match=r"batch of 8 is outside 1..4"):
        runner.run(x)
    with pytest.raises(ValueError, match=r"does not fit \[N, 1, 8, 8\]"):
        runner.run(x[:, :, :4])
    np.testing.assert_array_equal(run_batched(runner, x), np.concatenate([runner.run(x[:4]), runner.run(x[4:])]))
    runner.close()


def test_limits_and_instances_come_from_the_entry(small):
    """Max batch 4 passes its gate; 12 rows in one request are answered in batches of at most 4 by two
    runner instances, each caller getting exactly its rows."""
    runner = get_runner(None, small / "digits4")
    x = np.resize(runner.entry.golden_io()["inputs"], (12, 1, 8, 8))
    srv = Server(small, "--instances", "2", "--max-batch-size", "32")
    try:
        status, meta = srv.json("GET", "/v2/models/digits4")
        assert status == 200 and meta["ready"] and meta["parity_gate"]["passed"]
        assert (meta["max_batch_size"], meta["instances"], meta["platform"]) == (4, 2, "onnxruntime_onnx")
        client = httpclient.InferenceServerClient(url=srv.url[len("http://") :])
        inp = httpclient.InferInput("images", list(x.shape), "FP32")
        inp.set_data_from_numpy(x, binary_data=True)
        y = client.infer("digits4", [inp]).as_numpy("logits")
        np.testing.assert_allclose(y, run_batched(runner, x), rtol=1e-5, atol=1e-5)

        def one(i: int) -> bool:
            rows = x[i % 12 : i % 12 + 1 + i % 5]
            body = {"inputs": [{"name": "images", "shape": list(rows.shape), "datatype": "FP32", "data": rows.ravel().tolist()}]}
            status, answer = srv.json("POST", "/v2/models/digits4/infer", body)
            got = np.asarray(answer["outputs"][0]["data"], np.float32).reshape(len(rows), 10)
            return status == 200 and np.allclose(got, run_batched(runner, rows), rtol=1e-5, atol=1e-5)

        with ThreadPoolExecutor(16) as pool:
            assert all(pool.map(one, range(96)))
        _, _, metrics = srv.request("GET", "/metrics")
        sizes = [line for line in metrics.decode().splitlines() if line.startswith('prelu_batch_size_bucket{le="4.0"')]
        total = [line for line in metrics.decode().splitlines() if line.startswith("prelu_batch_size_count")]
        assert sizes and sizes[0].split()[-1] == total[0].split()[-1]  # every runner call ≤ 4 rows
    finally:
        assert srv.stop()
    runner.close()


def _fixed_batch_graph(entry, batch: int) -> None:
    """Rewrite the entry's graph so it only runs at `batch` rows (a Reshape to a fixed shape in front):
    it passes the gate on its 8 golden rows and fails at run time on anything else."""
    path = entry / "1" / "model.onnx"
    graph = onnx.load(path)
    shape = numpy_helper.from_array(np.array([batch, 1, 8, 8], np.int64), "fixed_shape")
    graph.graph.initializer.append(shape)
    for node in graph.graph.node:
        node.input[:] = ["images_fixed" if i == "images" else i for i in node.input]
    graph.graph.node.insert(0, helper.make_node("Reshape", ["images", "fixed_shape"], ["images_fixed"]))
    onnx.save(graph, path)
    edit_manifest(entry, lambda m: m["artifacts"].update({"1/model.onnx": sha256_file(path)}))


def test_a_failing_runner_answers_json_with_a_status(repo, tmp_path):
    shutil.copytree(repo / "digits", tmp_path / "digits")
    _fixed_batch_graph(tmp_path / "digits", 8)
    golden = read_entry(tmp_path / "digits").golden_io()["inputs"]
    srv = Server(tmp_path, "--max-queue-delay-ms", "0")
    try:
        assert srv.json("GET", "/v2/models/digits/ready")[0] == 200  # the gate ran its 8 rows
        body = {"inputs": [{"name": "images", "shape": [1, 1, 8, 8], "datatype": "FP32", "data": golden[0].ravel().tolist()}]}
        status, headers, raw = srv.request(
            "POST", "/v2/models/digits/infer", json.dumps(body).encode(), {"content-type": "application/json"}
        )
        assert status == 500 and headers["content-type"] == "application/json"
        assert "the onnxruntime runner failed" in json.loads(raw)["error"]
        body["inputs"][0].update(shape=[8, 1, 8, 8], data=golden.ravel().tolist())
        assert srv.json("POST", "/v2/models/digits/infer", body)[0] == 200  # and it keeps serving
    finally:
        assert srv.stop()
    log = srv.proc.stdout.read()
    assert "Traceback" not in log and "the onnxruntime runner failed" in log


def test_a_lone_request_is_not_delayed_by_the_queue_delay(repo):
    """The queue delay bounds a wait under load; an idle server runs a lone request at once (here a
    1 s delay would show as ≥ 1 s per request)."""
    import time

    srv = Server(repo, "--max-queue-delay-ms", "1000")
    body = {"inputs": [{"name": "images", "shape": [1, 1, 8, 8], "datatype": "FP32", "data": [0.0] * 64}]}
    try:
        assert srv.json("POST", "/v2/models/digits/infer", body)[0] == 200  # warm
        start = time.monotonic()
        for _ in range(5):
            assert srv.json("POST", "/v2/models/digits/infer", body)[0] == 200
        assert (time.monotonic() - start) / 5 < 0.5
    finally:
        assert srv.stop()
