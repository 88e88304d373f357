"""GPU tests that need TensorRT skip with the reason where none runs (an H200 with no TensorRT failed
`test_bench_tensorrt_on_the_gpu_reports_gpu_times` instead): checked here by running it as on a GPU
host (the suite's PRELU_DEPLOY_TEST_ASSUME_GPU) with TensorRT made unimportable."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TEST = "tests/bench/test_runners_bench.py::test_bench_tensorrt_on_the_gpu_reports_gpu_times"


def test_a_tensorrt_gpu_test_skips_with_the_reason_where_tensorrt_is_missing():
    code = (
        "import sys; sys.modules['tensorrt'] = sys.modules['tensorrt_rtx'] = None\n"  # as if not installed
        f"import pytest; sys.exit(pytest.main(['-q', '-rs', '-p', 'no:cacheprovider', {TEST!r}]))"
    )
    env = {**os.environ, "PRELU_DEPLOY_TEST_ASSUME_GPU": "1"}
    env.pop("PYTEST_XDIST_WORKER", None)
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 0 and "1 skipped" in out.stdout, out.stdout[-2000:]
    assert "no TensorRT installed" in out.stdout
