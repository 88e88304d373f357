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
