import os
import shutil
import subprocess
import sys
import traceback
from pathlib import Path

import pytest
from filelock import FileLock

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "models" / "weights" / "digits_prelu.safetensors"

if os.environ.get("PYTEST_XDIST_WORKER"):  # one worker per core: keep each to one thread
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass


def tensorrt_or_skip():
    """(module, flavour) of the installed TensorRT — NVIDIA's `tensorrt` or TensorRT-RTX — or skip the
    calling module: tests hold for either flavour."""
    try:
        from prelu_deploy.plugins.tensorrt_lib import load_tensorrt

        return load_tensorrt()
    except Exception:
        pytest.skip("no TensorRT installed (the trt extra brings TensorRT-RTX; make test installs it)", allow_module_level=True)


def _gpu_present() -> bool:
    if os.environ.get("PRELU_DEPLOY_TEST_ASSUME_GPU") == "1":  # a test of the suite's own skips (test_gpu_skips.py)
        return True
    return shutil.which("nvidia-smi") is not None and subprocess.run(["nvidia-smi", "-L"], capture_output=True).returncode == 0


def tensorrt_gpu_or_skip():
    """(module, flavour) of a TensorRT that runs engines on this machine's GPU, or skip the calling test
    with the reason: none installed, or a flavour that does not run on this GPU (TensorRT-RTX on Hopper)."""
    trt, flavour = tensorrt_or_skip()
    from prelu_deploy.plugins.tensorrt_lib import unsupported_cc

    cc = (
        subprocess.run(["nvidia-smi", "--query-gpu=compute_cap", "--format=csv,noheader"], capture_output=True, text=True)
        .stdout.split("\n")[0]
        .strip()
        if shutil.which("nvidia-smi")
        else ""
    )
    if cc and (why := unsupported_cc(flavour, cc)):
        pytest.skip(why)
    return trt, flavour


def pytest_collection_modifyitems(config, items):
    if os.environ.get("PYTEST_XDIST_WORKER"):  # the slow modules first: the longest units of work start at once
        slow = {item.path for item in items if item.get_closest_marker("slow")}
        items.sort(key=lambda item: item.path not in slow)  # stable: each module's tests in file order
    if _gpu_present():
        return
    skip = pytest.mark.skip(reason="needs an NVIDIA GPU and the gpu extra; no GPU on this machine")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def tensorrt_gpu():
    """First in a test's arguments: skips before the other fixtures are built (an H200 without TensorRT
    failed a TensorRT test with "TensorRT is not installed" instead of skipping)."""
    return tensorrt_gpu_or_skip()


@pytest.fixture(scope="session")
def shipped() -> Path:
    return SHIPPED


TORCH_COMMANDS = ("export", "parity", "train", "eval", "inspect")  # the console script's commands that import torch


@pytest.fixture
def cli():
    """Run the `prelu-deploy` console script as a process of its own, 200 columns wide; returns the
    CompletedProcess. Forked from a zygote (tests/zygote.py: the console script's main(), its argv,
    environment, stdout, stderr and exit status its own), or a new interpreter where the environment
    differs in what is read on start."""
    from .zygote import popen

    exe = Path(sys.executable).with_name("prelu-deploy")

    def run(*args, check_rc: int | None = 0):
        env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"}
        argv = [str(exe), *map(str, args)]
        # torch imported by the zygote at the first command that imports it: not again by each later one
        child = popen(argv, env, stderr=True, preload=("torch",) if args and args[0] in TORCH_COMMANDS else ())
        try:
            out, err = child.communicate(timeout=300)
        except subprocess.TimeoutExpired:  # as subprocess.run: killed, waited for, then raised
            child.kill()
            child.wait()
            raise
        proc = subprocess.CompletedProcess(argv, child.returncode, out, err)
        if check_rc is not None:
            assert proc.returncode == check_rc, f"rc {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
        return proc

    return run


@pytest.fixture
def cli_in_process(monkeypatch, capsys):
    """The console script's own entry point, main(), called in this process with the same arguments,
    environment and answer (exit status, stdout, stderr) as `cli`; an exception main() lets through is a
    traceback on stderr and status 1, as the script's. For tests of argument handling and refusals:
    the decision is the same code, without a new interpreter importing torch again (3 s of CPU each)."""
    from rich.console import Console

    from prelu_deploy.cli.main import main

    # 200 columns, as `cli` gives its subprocess: the consoles made since (COLUMNS), and those the CLI's modules
    # made on import, whose width is fixed where COLUMNS was set then (80 in an xdist worker)
    monkeypatch.setenv("COLUMNS", "200")
    for name, module in list(sys.modules.items()):
        if name.startswith("prelu_deploy."):
            for console in [v for v in vars(module).values() if isinstance(v, Console)]:
                monkeypatch.setattr(console, "_width", 200)

    def run(*args, check_rc: int | None = 0):
        argv = ["prelu-deploy", *map(str, args)]
        monkeypatch.setattr(sys, "argv", argv)
        capsys.readouterr()
        try:
            main()
            rc = 0
        except SystemExit as stop:
            rc = stop.code if isinstance(stop.code, int) else 0 if stop.code is None else 1
            if isinstance(stop.code, str):
                print(stop.code, file=sys.stderr)
        except Exception:
            traceback.print_exc()
            rc = 1
        out, err = capsys.readouterr()
        proc = subprocess.CompletedProcess(argv, rc, out, err)
        if check_rc is not None:
            assert proc.returncode == check_rc, f"rc {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
        return proc

    return run


@pytest.fixture
def serve_in_process(cli_in_process, monkeypatch):
    """`cli_in_process` for `serve` refusals: should an option not be refused, the test fails at the point
    where the server would start serving (instead of serving in this process); and this process's
    environment is left as it was (`serve --ray` with no --ray-address sets Ray's local-cluster switch
    before it refuses the options)."""
    import types

    from prelu_deploy.serve.workers import processes

    def not_refused(*args, **kwargs):
        raise AssertionError("the options were not refused: the server would start serving here")

    monkeypatch.setattr(processes, "run", not_refused)
    driver = types.ModuleType("prelu_deploy.serve.ray.driver")  # a stand-in: the real one imports ray
    driver.serve_on_ray = not_refused
    monkeypatch.setitem(sys.modules, driver.__name__, driver)
    before = dict(os.environ)
    yield cli_in_process
    for name in set(os.environ) - set(before):
        del os.environ[name]
    os.environ.update(before)


@pytest.fixture(scope="session")
def exported(tmp_path_factory, shipped):
    """`exported(dest, name, mode="leaky", max_batch=32)`: the shipped checkpoint exported as `dest/name`,
    a copy of one export made once for the whole run: under xdist the first worker to ask exports it (under
    a file lock) into the run's shared temporary folder, and every caller gets a copy of its own."""
    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = shared.parent  # the run's folder, above each worker's own
    cache = shared / "exports"
    cache.mkdir(exist_ok=True)

    def copy(dest: Path, name: str, mode: str = "leaky", max_batch: int = 32) -> Path:
        from prelu_deploy.export.model_dir import export_model_dir  # here: a pytest that exports nothing imports no torch

        key = cache / f"{name}-{mode}-{max_batch}"
        with FileLock(str(key) + ".lock"):
            if not (key / name).is_dir():
                export_model_dir(shipped, name, key, mode=mode, max_batch=max_batch)
        return Path(shutil.copytree(key / name, Path(dest) / name))

    return copy


@pytest.fixture(scope="session")
def repo(tmp_path_factory, exported):
    """A model repository holding the bundled digits model (leaky lowering) as `digits`; read-only for
    the tests that share it (a module that needs another defines its own `repo`)."""
    root = tmp_path_factory.mktemp("repo")
    exported(root, "digits")
    return root
