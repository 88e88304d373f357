"""The HTTP floor's model: does no work, passes the server's parity gate, serves like its original."""

import subprocess
import sys

import numpy as np

from prelu_deploy.manifest import read_entry
from ..export.test_onnx_file import assert_readable


def test_the_floor_entry_serves_and_slices(repo, tmp_path):
    from prelu_deploy.serve.repository.loader import load_repository
    from prelu_deploy.serve.settings import Settings

    out = subprocess.run(
        [sys.executable, "-m", "prelu_deploy.bench.floor", str(repo / "digits"), "--repo", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    entry = read_entry(tmp_path / "digits_floor")
    assert entry.name == "digits_floor" and not entry.verify() and entry.profile == read_entry(repo / "digits").profile
    graph = __import__("onnx").load(entry.artifact)
    assert [n.op_type for n in graph.graph.node] == ["Flatten", "Slice"]
    assert_readable(graph)  # onnx 1.23 stamped IR 14 here, which onnxruntime 1.31 refused
    served = load_repository(tmp_path, Settings(repo=tmp_path))["digits_floor"]
    assert served.ready and served.parity["max_abs"] == 0.0
    x = np.random.default_rng(0).random((3, 1, 8, 8), dtype=np.float32)
    np.testing.assert_array_equal(served.runners[0].run(x), x.reshape(3, -1)[:, :10])
    served.close()
