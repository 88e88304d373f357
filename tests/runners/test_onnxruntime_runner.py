"""The ONNX Runtime runner on CPU: its threads stay on the cores the process was given."""

import os
import subprocess
import sys

import pytest

CHECK = """
import glob, os, sys
os.sched_setaffinity(0, {int(sys.argv[2])})  # before any thread starts (numpy's own), as taskset would
import numpy as np
from prelu_deploy.bench.baseline_server import create_app
from prelu_deploy.runners.registry import get_runner
runner = get_runner("onnxruntime", sys.argv[1])  # no thread count given: the runtime's default
runner.run(np.zeros((4, *runner.entry.input.dims), np.float32))
create_app(sys.argv[1])  # the benchmark's baseline server builds its session the same way
for status in glob.glob("/proc/self/task/*/status"):
    fields = dict(line.split(":", 1) for line in open(status))
    print(fields["Cpus_allowed_list"].strip())
"""


@pytest.mark.skipif(
    not hasattr(os, "sched_setaffinity") or len(os.sched_getaffinity(0)) < 2,
    reason="needs two cores and sched_setaffinity (Linux)",
)
def test_default_threads_stay_on_the_cores_the_process_may_use(repo):
    core = min(os.sched_getaffinity(0))
    out = subprocess.run(
        [sys.executable, "-c", CHECK, str(repo / "digits"), str(core)], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    allowed = out.stdout.split()
    # Without the fix ONNX Runtime's default pool adds a thread pinned to another core; with it the pool
    # has no thread of its own, so the main thread may be the only one (how many others exist varies).
    assert allowed and set(allowed) == {str(core)}, allowed
