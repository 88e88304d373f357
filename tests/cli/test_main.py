"""The console script's error line: every install hint in the source reaches the user literally
(rich would otherwise read `[export]` as markup and swallow it)."""

import io
import json
import re
import subprocess
import sys
from pathlib import Path

from rich.console import Console

from prelu_deploy.cli.main import print_error
from prelu_deploy.errors import PreluDeployError

ROOT = Path(__file__).resolve().parents[2]
HINT = re.compile(r"pip install '[^']+'")


def _hints() -> set[str]:
    folders = ("core", "models", "plugins", "export", "runners", "serve", "bench", "cli")
    return {h for folder in folders for f in (ROOT / folder).rglob("*.py") for h in HINT.findall(f.read_text())}


def test_every_install_hint_is_printed_literally():
    hints = _hints()
    assert {"pip install 'prelu-deploy[export]'", "pip install 'prelu-deploy[trt]'", "pip install 'prelu-deploy[bench]'"} <= hints
    for hint in hints:
        out = io.StringIO()
        print_error(PreluDeployError(f"something is missing: {hint} [and] [/] [bold]"), Console(file=out, width=400))
        assert out.getvalue().strip() == f"error: something is missing: {hint} [and] [/] [bold]"


REFUSE = """
import contextlib, io, json, sys, traceback

class Refuse:  # a meta-path finder that answers for these modules as an install without them would
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {modules!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)

sys.meta_path.insert(0, Refuse())
from prelu_deploy.cli.main import main

for argv in {argvs!r}:  # each command as the console script runs it: its exit status, stdout and stderr
    sys.argv, out, err = ["prelu-deploy", *argv], io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main()
            code = 0
        except SystemExit as stop:
            code = stop.code if isinstance(stop.code, int) else 0 if stop.code is None else 1
        except BaseException:
            traceback.print_exc()  # what the interpreter prints of an exception main() lets through
            code = 1
    print(json.dumps([code, out.getvalue(), err.getvalue()]))
"""


def _without(modules: list[str], *argvs: list[str]) -> list[subprocess.CompletedProcess]:
    """The console script's commands `argvs` with `modules` not importable (as in `pip install
    'prelu-deploy[serve]'`, no torch), one after another in one interpreter (a new one imports the CLI again)."""
    code = REFUSE.format(modules=list(modules), argvs=[list(map(str, a)) for a in argvs])
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    answers = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("[")]
    assert proc.returncode == 0 and len(answers) == len(argvs), proc.stderr[-3000:]
    return [subprocess.CompletedProcess(["prelu-deploy", *a], *answer) for a, answer in zip(argvs, answers)]


def test_a_torch_free_install_names_the_extra_for_every_command_that_needs_torch(tmp_path):
    """A newcomer's torch-free install answered train/inspect/eval/parity/classify with a 35–43-line
    traceback; export/quantize/build the same without onnx. Now: one line naming the extra, exit 2."""
    ckpt = str(ROOT / "models" / "weights" / "digits_prelu.safetensors")
    sample = str(ROOT / "models" / "samples" / "digit_3.png")
    bundled = str(ROOT / "models" / "bundled" / "digits")
    cases = {  # what is not installed: [(command, the module it names, the extra that brings it)]
        ("torch",): [
            (["train", "--arch", "digits_prelu", "--out", tmp_path / "x.safetensors"], "torch", "export"),
            (["inspect", ckpt], "torch", "export"),
            (["eval", ckpt], "torch", "export"),
            (["classify", sample, "--model", ckpt], "torch", "export"),
            (["parity", bundled], "torch", "export"),
            (["bench", bundled, "--backend", "torch", "--out", tmp_path / "out"], "torch", "export"),
        ],
        ("onnx",): [(["export", ckpt, "--name", "d", "--repo", tmp_path / "repo"], "onnx", "export")],
        ("torch", "onnx"): [
            (["quantize", bundled, "--force"], "onnx", "export"),
            (["build", bundled, "--force"], "onnx", "export"),
        ],
        ("onnxruntime",): [(["classify", sample], "onnxruntime", "serve")],
    }
    # and what needs no torch runs without it (after the refusals, in the same interpreter)
    runs = [["classify", sample, "--json"], ["inspect", bundled, "--json"]]
    for blocked, refused in cases.items():
        extra_runs = runs if blocked == ("torch", "onnx") else []
        answers = _without(list(blocked), *(argv for argv, _, _ in refused), *extra_runs)
        for (argv, module, extra), proc in zip(refused, answers):
            assert proc.returncode == 2, (argv, proc.stderr)
            said = f"needs {module}, which is not installed here: pip install 'prelu-deploy[{extra}]'"
            assert said in proc.stderr, (argv, proc.stderr)
            assert "Traceback" not in proc.stderr and f"prelu-deploy {argv[0]}" in proc.stderr
        if extra_runs:
            classified, inspected = answers[len(refused) :]
            assert classified.returncode == 0 and '"label": "3"' in classified.stdout, classified.stderr
            assert inspected.returncode == 0 and '"lowering": "leaky"' in inspected.stdout, inspected.stderr


def test_a_pickled_model_is_refused_in_one_plain_line(cli_in_process, tmp_path):
    """torch's own refusal is paragraphs of advice with terminal colour codes; ours is one plain line that
    names what the file holds and what to save instead, whole (the script's main() in this process: the
    refusal is the same code, without importing torch again)."""
    import torch

    from prelu_deploy.models import create_model

    torch.save(create_model("digits_prelu"), tmp_path / "model.pt")
    err = cli_in_process("inspect", tmp_path / "model.pt", check_rc=3).stderr.strip()
    assert "\x1b" not in err and "\n" not in err, err
    assert "a pickled torch.nn.modules" in err and "never unpickled" in err
    assert err.endswith(
        "save the model's state dict instead (torch.save(model.state_dict(), PATH)) and name its architecture (--arch NAME)"
    ), err


def test_export_takes_the_arch_and_preprocessing_a_bare_state_dict_needs(cli_in_process, tmp_path, shipped):
    """`export sd.safetensors` advises --arch NAME; export has it, and the preprocessing and labels such a
    checkpoint does not record, written to the manifest with where they came from."""
    from safetensors.torch import save_file

    from prelu_deploy.models import load_checkpoint

    model, _ = load_checkpoint(shipped)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, tmp_path / "sd.safetensors")
    args = ("export", tmp_path / "sd.safetensors", "--name", "d", "--repo", tmp_path / "repo")
    assert "name its architecture (--arch NAME)" in cli_in_process(*args, check_rc=3).stderr
    assert "--mean 'x'" in cli_in_process(*args, "--arch", "digits_prelu", "--mean", "x", check_rc=2).stderr
    assert "fit must be one of" in cli_in_process(*args, "--arch", "digits_prelu", "--fit", "squash", check_rc=2).stderr
    names = [f"n{i}" for i in range(10)]
    cli_in_process(
        *args, "--arch", "digits_prelu", "--fit", "ink_box", "--mean", "0.2", "--std", "0.3", "--labels", ",".join(names)
    )
    m = json.loads((tmp_path / "repo" / "d" / "manifest.json").read_text())
    assert m["source"]["arch"] == "digits_prelu" and m["labels"] == names
    assert (m["preprocess"]["fit"], m["preprocess"]["mean"], m["preprocess"]["std"]) == ("ink_box", [0.2], [0.3])
    assert m["preprocess_origin"] == "architecture defaults (the checkpoint has no record), with --fit, --mean, --std given"


def test_classify_defaults_to_the_bundled_model_and_takes_its_served_name(cli, cli_in_process):
    """As `serve` does: no --model is the bundled digits model (the console script as a process), and
    --model digits names it (its main() in this process)."""
    sample = ROOT / "models" / "samples" / "digit_7.png"
    for run, args in ((cli, ()), (cli_in_process, ("--model", "digits"))):
        answer = json.loads(run("classify", sample, *args, "--json").stdout)
        assert answer["predictions"][0]["top_k"][0]["label"] == "7", args
    assert "nor a bundled model (digits)" in cli_in_process("classify", sample, "--model", "nope", check_rc=2).stderr


def test_inspect_a_model_directory(cli_in_process, shipped):
    """`inspect DIR`: the entry (platform, precision, lowering) and its provenance, as tables or JSON (by the
    console script's main() in this process; inspect as a process: tests/models/test_cli.py)."""
    from prelu_deploy.manifest import sha256_file

    bundled = ROOT / "models" / "bundled" / "digits"
    info = json.loads(cli_in_process("inspect", bundled, "--json").stdout)
    assert (info["platform"], info["precision"], info["lowering"]) == ("onnxruntime_onnx", "fp32", "leaky")
    assert info["provenance"]["arch"] == "digits_prelu" and info["provenance"]["sha256"] == sha256_file(shipped)
    text = cli_in_process("inspect", bundled).stdout
    assert all(word in text for word in ("precision", "lowering", "leaky", "provenance", "digits_prelu")), text
