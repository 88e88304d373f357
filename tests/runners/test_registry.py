"""The registry's records (runners/registry.py) against what they describe: the options a record says its
runners take, and an import light enough for the console script's --help to list the backends."""

import inspect
import subprocess
import sys
from importlib import import_module

import pytest

from prelu_deploy.runners.registry import BACKENDS


@pytest.mark.parametrize("name", BACKENDS)
def test_a_records_runner_options_are_its_runners(name):
    """What a record says its runners take beyond the common options (bench passes them by the record)
    is in their signatures: spinning on the CPU (spins), buckets on a GPU (graph_buckets)."""
    record = BACKENDS[name]
    for kind, declared, option in (("cpu", record.spins, "spinning"), ("cuda", record.graph_buckets, "buckets")):
        if declared:
            module, cls = record.runners[kind].split(":")
            runner = getattr(import_module(f"prelu_deploy.runners.{module}"), cls)
            assert option in inspect.signature(runner).parameters, (name, kind, option)


def test_the_registry_imports_without_numpy():
    """serve's --backend lists the registry's backends as the console script starts: no numpy for that."""
    code = "import sys; from prelu_deploy.runners.registry import backends; backends(); print('numpy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.split() == ["False"], out.stderr
