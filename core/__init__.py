"""prelu-deploy: PReLU classifiers from a PyTorch checkpoint to ONNX, TensorRT and HTTP.

This folder (core/) is the root of the `prelu_deploy` namespace and the bottom of the house: the error
types and exit codes (`errors`), atomic writes (`atomic`), the model entry (`manifest`, `manifest_fields`,
`specs`, `snapshot`, `versions`), the precision table (`precisions`) and the tolerances with their one judge
(`tolerances`); here, the version, the usable core count and the thread count that keeps a runtime
within it. The work itself lives in models/, plugins/, export/, runners/, serve/ and bench/; the console
script in cli/.
"""

import os

__version__ = "0.1.0"


def usable_cores() -> int:
    """Cores this process may run on (taskset and cgroup cpusets respected), not the machine's count:
    what serve lays its workers out over and what bench reports."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def confined_threads() -> int | None:
    """The thread count to give a runtime whose own default would leave the cores this process may
    use — ONNX Runtime's counts the machine's cores and pins a thread to each, escaping taskset and
    cpusets, while an explicit count keeps its threads on the allowed cores. None when every core of the
    machine is usable."""
    cores = usable_cores()
    return cores if cores < (os.cpu_count() or 1) else None
