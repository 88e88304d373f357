"""`--device cuda[:N]`: the option checks, the CUDA-absent errors and the tf32 plumbing run anywhere
(here: no GPU, the CPU onnxruntime); the GPU runners themselves are tested on a GPU only (marked gpu)."""

import dataclasses
import json

import numpy as np
import pytest

from prelu_deploy.errors import UsageError
from prelu_deploy.manifest import read_entry
from prelu_deploy.runners.device import GPU_INSTALL, check_device, ort_cuda_missing, parse_device
from prelu_deploy.precisions import run_precision, run_precisions
from prelu_deploy.runners.onnxruntime_cuda import graph_for, provider_options
from prelu_deploy.runners.registry import BACKENDS, Backend, default_backend, get_runner
from prelu_deploy.tolerances import TOLERANCES, judge

NO_ORT_CUDA = ort_cuda_missing() is not None
needs_no_ort_cuda = pytest.mark.skipif(not NO_ORT_CUDA, reason="checks the message given where onnxruntime has no CUDA provider")


@pytest.mark.parametrize(
    "device, parsed", [("cpu", ("cpu", 0)), ("cuda", ("cuda", 0)), ("cuda:0", ("cuda", 0)), ("cuda:3", ("cuda", 3))]
)
def test_device_strings(device, parsed):
    assert parse_device(device) == parsed


@pytest.mark.parametrize("device", ["gpu:0", "cuda:", "cuda:x", "cpu:0", "CUDA", "cuda:-1", "", "mps"])
def test_bad_device_strings_are_refused(device):
    with pytest.raises(UsageError, match="choose cpu, cuda or cuda:N"):
        parse_device(device)


def test_every_backend_declares_its_device_check():
    """The device check is part of each backend's record: a record without one cannot be made, and only
    a backend whose runner checks CUDA itself as it is made (tensorrt) names none."""
    field = next(f for f in dataclasses.fields(Backend) if f.name == "cuda_missing")
    assert field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING
    with pytest.raises(TypeError, match="cuda_missing"):
        Backend("new", "onnx", {"cpu": "onnxruntime_runner:OnnxRuntimeRunner"})
    assert all(b.cuda_missing is None or callable(b.cuda_missing) for b in BACKENDS.values())
    assert {name for name, b in BACKENDS.items() if b.cuda_missing is None} == {"tensorrt"}


@pytest.mark.parametrize("backend", ["auto", *BACKENDS])
def test_check_device_asks_the_backends_record(backend, monkeypatch):
    """check_device consults the record ("auto": the one an ONNX entry runs on), with the GPU's index;
    on the CPU it asks nothing; a record that names no check lets every GPU through to its runner."""
    name = default_backend() if backend == "auto" else backend
    record = BACKENDS[name]
    monkeypatch.setitem(BACKENDS, name, dataclasses.replace(record, cuda_missing=lambda i: f"no cuda:{i} for {name}"))
    with pytest.raises(UsageError, match=f"^no cuda:2 for {name}$"):
        check_device(backend, "cuda:2")
    check_device(backend, "cpu")
    monkeypatch.setitem(BACKENDS, name, dataclasses.replace(record, cuda_missing=None))
    check_device(backend, "cuda:2")
    assert default_backend() == "onnxruntime"


def test_provider_options_keep_tf32_off_unless_asked():
    assert provider_options(1, "fp32", True) == {"device_id": "1", "use_tf32": "0", "enable_cuda_graph": "1"}
    assert provider_options(0, "tf32", False) == {"device_id": "0", "use_tf32": "1", "enable_cuda_graph": "0"}
    assert provider_options(0, "fp16", True)["use_tf32"] == "0"
    assert "cudnn_conv_algo_search" not in provider_options(0, "fp32", True)  # ONNX Runtime's default: EXHAUSTIVE
    tuned = provider_options(0, "fp32", True, conv_algo="HEURISTIC", nhwc=True)
    assert tuned["cudnn_conv_algo_search"] == "HEURISTIC" and tuned["prefer_nhwc"] == "1"
    with pytest.raises(UsageError, match="EXHAUSTIVE | HEURISTIC | DEFAULT"):
        provider_options(0, "fp32", True, conv_algo="fastest")


def test_the_provider_lookup_note_is_silenced_and_session_warnings_kept(capfd):
    """onnxruntime logs "No registered plugin EP device found for 'CUDAExecutionProvider'" on its default
    logger whenever CUDA is asked for (the CPU package does too, then takes the CPU); a session's own
    warnings (here: an unused initializer) must still be shown."""
    import warnings

    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper

    from prelu_deploy.runners.onnxruntime_cuda import cuda_session

    value = helper.make_tensor_value_info
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "g",
        [value("x", TensorProto.FLOAT, [1])],
        [value("y", TensorProto.FLOAT, [1])],
        [helper.make_tensor("unused", TensorProto.FLOAT, [1], [1.0])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=10).SerializeToString()
    providers = [("CUDAExecutionProvider", {"device_id": "0"}), "CPUExecutionProvider"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the CPU package's UserWarning that CUDA is not among its providers
        capfd.readouterr()
        ort.InferenceSession(model, providers=providers)
        plain = capfd.readouterr().err
        cuda_session(ort, model, providers)
        ours = capfd.readouterr().err
    if ort.get_device() == "CPU" or "No registered plugin EP device" in plain:  # what this onnxruntime logs
        assert "No registered plugin EP device" not in ours
    assert "Removing initializer 'unused'" in ours
    assert onnx.load_from_string(model).ir_version == 10


def test_cuda_precisions_of_an_entry(repo):
    entry = read_entry(repo / "digits")
    on_gpu = [run_precision("onnxruntime", "cuda", entry.name, entry.precision, p) for p in (None, "fp32", "tf32", "fp16")]
    assert on_gpu == ["fp32", "fp32", "tf32", "fp16"]
    for bad in ("int8", "bf16"):
        with pytest.raises(UsageError, match=r"runs on onnxruntime on the GPU as fp32 \| tf32 \| fp16$"):
            run_precision("onnxruntime", "cuda", entry.name, entry.precision, bad)
    assert run_precisions("onnxruntime", "cuda", "int8") == ("int8",)  # a quantized graph runs as quantized
    assert run_precisions("torch", "cpu", "int8") == ("fp32",)  # torch runs the source checkpoint


def test_the_fp16_variant_is_the_build_converters_graph(repo):
    """The graph --precision fp16 runs: fp16 inside, fp32 inputs and outputs; on the CPU provider (not
    the GPU's kernels) it stays within the fp16 tolerance of PyTorch."""
    import onnx
    import onnxruntime as ort

    entry = read_entry(repo / "digits")
    assert graph_for(entry, "fp32") == graph_for(entry, "tf32") == entry.artifact.read_bytes()
    graph = graph_for(entry, "fp16")
    model = onnx.load_from_string(graph)
    io = [v.type.tensor_type.elem_type for v in (*model.graph.input, *model.graph.output)]
    assert io == [onnx.TensorProto.FLOAT] * 2
    assert any(t.data_type == onnx.TensorProto.FLOAT16 for t in model.graph.initializer)
    session = ort.InferenceSession(graph, providers=["CPUExecutionProvider"])
    golden = entry.golden_io()
    out = session.run(None, {entry.input.name: golden["inputs"]})[0]
    assert judge(out, golden["logits"], golden["logits_fp64"], "fp16")["passed"]


def test_the_fp16_variant_with_fp16_inputs_and_outputs(repo):
    """io_fp16: the same fp16 graph with float16 at its boundary (half the bytes to the GPU)."""
    import onnx
    import onnxruntime as ort

    entry = read_entry(repo / "digits")
    graph = graph_for(entry, "fp16", io_fp16=True)
    model = onnx.load_from_string(graph)
    assert [v.type.tensor_type.elem_type for v in (*model.graph.input, *model.graph.output)] == [onnx.TensorProto.FLOAT16] * 2
    golden = entry.golden_io()
    out = ort.InferenceSession(graph, providers=["CPUExecutionProvider"]).run(
        None, {entry.input.name: golden["inputs"].astype("float16")}
    )[0]
    assert judge(out.astype("float32"), golden["logits"], golden["logits_fp64"], "fp16")["passed"]


def test_tf32_and_fp16_on_the_cpu_are_refused(repo):
    with pytest.raises(UsageError, match=r"runs on onnxruntime on the CPU as fp32; tf32 and fp16 need --device cuda"):
        get_runner("onnxruntime", repo / "digits", precision="tf32")
    with pytest.raises(UsageError, match=r"runs on torch on the CPU as fp32; tf32 and fp16 need --device cuda"):
        get_runner("torch", repo / "digits", precision="tf32")
    with pytest.raises(UsageError, match=r"--precision 'int8': digits \(fp32\) runs on onnxruntime on the CPU as fp32$"):
        get_runner("onnxruntime", repo / "digits", precision="int8")
    assert get_runner("onnxruntime", repo / "digits", "cpu", precision="fp32").precision == "fp32"


def test_tf32_tolerance_sits_between_fp32_and_fp16():
    """An error of 1e-3 of the logit scale (TF32 on an H100) fails fp32 and passes tf32; 5e-3 fails tf32."""
    assert TOLERANCES["fp32"].max_abs_of_scale < TOLERANCES["tf32"].max_abs_of_scale < TOLERANCES["fp16"].max_abs_of_scale
    rng = np.random.default_rng(0)
    ref64 = rng.standard_normal((64, 10)) * 10
    scale = np.abs(ref64).max()
    for err, fp32, tf32 in ((1e-3, False, True), (5e-3, False, False), (1e-5, True, True)):
        out = (ref64 + err * scale * np.sign(rng.standard_normal(ref64.shape))).astype(np.float32)
        assert judge(out, ref64.astype(np.float32), ref64, "fp32")["passed"] is fp32
        report = judge(out, ref64.astype(np.float32), ref64, "tf32")
        assert report["passed"] is tf32 and report["precision"] == "tf32"
    assert "max abs ≤ 0.002 × logit scale" in TOLERANCES["tf32"].describe()


@needs_no_ort_cuda
def test_cuda_absent_is_said_with_the_way_to_install(repo):
    for backend in ("auto", "onnxruntime"):
        with pytest.raises(UsageError, match="CUDAExecutionProvider") as err:
            check_device(backend, "cuda:1")
        assert GPU_INSTALL in str(err.value) and "pip uninstall -y onnxruntime" in str(err.value)
    with pytest.raises(UsageError, match="CUDAExecutionProvider"):
        get_runner("onnxruntime", repo / "digits", "cuda")
    check_device("onnxruntime", "cpu")  # nothing to say


@needs_no_ort_cuda
@pytest.mark.parametrize(
    "command", [["serve", "{repo}"], ["parity", "{repo}/digits"], ["bench", "{repo}/digits", "--backend", "onnxruntime"]]
)
def test_the_cli_says_cuda_is_absent(cli, cli_in_process, repo, tmp_path, command):
    """serve, parity and bench: exit 2 at once, naming onnxruntime-gpu and how to install it. parity and bench
    by the console script's main() in this process (as processes: tests/runners/test_parity_cli.py,
    tests/bench); serve as a process, where a refusal that went missing would serve instead of hanging here."""
    args = [a.format(repo=repo) for a in command]
    extra = ["--out", tmp_path] if command[0] == "bench" else ["--port", "0"] if command[0] == "serve" else []
    run = cli if command[0] == "serve" else cli_in_process
    proc = run(*args, "--device", "cuda", *extra, check_rc=2)
    assert "CUDAExecutionProvider" in proc.stderr and "pip install 'prelu-deploy[gpu]'" in proc.stderr
    assert "pip uninstall -y onnxruntime" in proc.stderr and "Traceback" not in proc.stderr
    proc = run(*args, "--device", "cuda:x", *extra, check_rc=2)
    assert "--device 'cuda:x': choose cpu, cuda or cuda:N" in proc.stderr


def test_parity_precision_option(cli_in_process, repo):
    """By the console script's main() in this process (parity as a process: tests/runners/test_parity_cli.py)."""
    run, digits = cli_in_process, repo / "digits"
    refused = run("parity", digits, "--precision", "bf16", check_rc=2).stderr
    assert "--precision 'bf16': choose one of fp32, tf32, fp16, int8" in refused
    assert "need --device cuda" in run("parity", digits, "--precision", "fp16", "--n", "8", check_rc=2).stderr
    report = json.loads(run("parity", digits, "--device", "cpu", "--precision", "fp32", "--n", "8", "--json").stdout)
    assert report["passed"] and report["outputs"]["logits"]["precision"] == "fp32"


def test_the_server_takes_the_device_to_its_runners(repo):
    from prelu_deploy.serve.repository.loader import load_repository
    from prelu_deploy.serve.settings import Settings

    assert load_repository(repo, Settings(repo=repo, device="cpu"))["digits"].ready
    if NO_ORT_CUDA:  # the runner was asked for cuda: here it cannot be made, and the entry says why
        served = load_repository(repo, Settings(repo=repo, device="cuda"))["digits"]
        assert not served.ready and "CUDAExecutionProvider" in served.reason


def test_bench_candidates_on_a_gpu():
    """Which candidates `bench --device cuda` measures (no GPU needed to list them)."""
    from prelu_deploy.bench.runners import RunnerBench, candidates

    cfg = RunnerBench(
        backends=["torch", "torch-compile", "onnxruntime", "tensorrt"], precisions=("fp32", "tf32", "fp16"), device="cuda"
    )
    assert [c.label for c in candidates(cfg, "leaky")] == [
        "torch:cuda",
        "torch:cuda:tf32",
        "torch:cuda:fp16",
        "torch-compile:cuda",
        "torch-compile:cuda:tf32",
        "torch-compile:cuda:fp16",
        "onnxruntime:cuda:leaky",
        "onnxruntime:cuda:leaky:tf32",
        "onnxruntime:cuda:leaky:fp16",
        "tensorrt:leaky:fp32",
        "tensorrt:leaky:fp16",
    ]
    cpu = RunnerBench(backends=["torch", "onnxruntime"], precisions=("fp32", "tf32", "fp16", "int8"))
    assert [c.label for c in candidates(cpu, "leaky")] == ["torch", "onnxruntime:leaky", "onnxruntime:leaky:int8"]


def test_the_capture_gate_keeps_captures_alone():
    """Runs share the gate; a capture waits for the runs in flight, and runs wait for the capture (the
    CUDA-graph hazard of ONNX Runtime's global capture mode, checked with threads and no GPU)."""
    import threading
    import time

    from prelu_deploy.runners.onnxruntime_cuda import CaptureGate

    gate, log, lock = CaptureGate(), [], threading.Lock()

    def note(what):
        with lock:
            log.append(what)

    def run(i):
        with gate.shared():
            note(f"run{i}+")
            time.sleep(0.05)
            note(f"run{i}-")

    def capture():
        with gate.exclusive():
            note("cap+")
            time.sleep(0.05)
            note("cap-")

    first = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in first:
        t.start()
    time.sleep(0.01)  # both runs in flight
    cap = threading.Thread(target=capture)
    cap.start()
    time.sleep(0.01)
    late = threading.Thread(target=run, args=(2,))  # arrives while the capture waits: goes after it
    late.start()
    for t in (*first, cap, late):
        t.join()
    assert log.index("cap+") > max(log.index("run0-"), log.index("run1-"))
    assert log.index("run2+") > log.index("cap-")
    assert log.index("cap-") == log.index("cap+") + 1  # nothing ran during the capture
