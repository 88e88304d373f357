"""The console script's error line: every install hint in the source reaches the user literally
(rich would otherwise read `[export]` as markup and swallow it)."""

import io
import re
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
    assert {"pip install 'prelu-deploy[export]'", "pip install 'prelu-deploy[serve]'", "pip install 'prelu-deploy[trt]'",
            "pip install 'prelu-deploy[bench]'"} <= hints
    for hint in hints:
        out = io.StringIO()
        print_error(PreluDeployError(f"something is missing: {hint} [and] [/] [bold]"), Console(file=out, width=400))
        assert out.getvalue().strip() == f"error: something is missing: {hint} [and] [/] [bold]"


def _without(modules: list[str], *argv: str):
    """The console script with `modules` not importable (as in `pip install 'prelu-deploy[serve]'`, no torch)."""
    import subprocess
    import sys

    code = (f"import sys\nfor m in {modules!r}: sys.modules[m] = None\n"
            f"sys.argv = ['prelu-deploy', *{list(argv)!r}]\nfrom prelu_deploy.cli.main import main\nmain()")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)


def test_a_torch_free_install_names_the_extra_for_every_command_that_needs_torch(tmp_path):
    """A newcomer's torch-free install answered train/inspect/eval/parity/classify with a 35–43-line
    traceback; export/quantize/build the same without onnx. Now: one line naming the extra, exit 2."""
    ckpt = str(ROOT / "models" / "weights" / "digits_prelu.safetensors")
    sample = str(ROOT / "models" / "samples" / "digit_3.png")
    cases = [(["torch"], ["train", "--arch", "digits_prelu", "--out", str(tmp_path / "x.safetensors")], "torch", "export"),
             (["torch"], ["inspect", ckpt], "torch", "export"), (["torch"], ["eval", ckpt], "torch", "export"),
             (["torch"], ["classify", sample, "--model", ckpt], "torch", "export"),
             (["onnx"], ["export", ckpt, "--name", "d", "--repo", str(tmp_path / "repo")], "onnx", "export")]
    for blocked, argv, module, extra in cases:
        proc = _without(blocked, *argv)
        assert proc.returncode == 2, (argv, proc.stderr)
        said = f"needs {module}, which is not installed here: pip install 'prelu-deploy[{extra}]'"
        assert said in proc.stderr, (argv, proc.stderr)
        assert "Traceback" not in proc.stderr and f"prelu-deploy {argv[0]}" in proc.stderr
