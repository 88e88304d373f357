"""prelu-deploy: PReLU classifiers from a PyTorch checkpoint to ONNX, TensorRT and HTTP.

This folder (core/) is the root of the `prelu_deploy` namespace: the console entry point (`main.py`) and the
one error type every part raises (`errors.py`); here, the version and the usable core count. The work itself lives in models/, export/, plugins/
and serve/.
"""

import os

__version__ = "0.1.0"


def usable_cores() -> int:
    """Cores this process may run on (taskset and cgroup cpusets respected), not the machine's count:
    what serve lays its workers out over and what bench reports."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
