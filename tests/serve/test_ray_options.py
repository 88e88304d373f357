"""`serve --ray` options: bad combinations exit 2 with a clear message before anything starts, and the
plain server never imports ray (it lives in serve/ray/app.py, imported only under --ray)."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ..server import Server

# Ray Serve's own models, imported in this process by main() under --ray
pytestmark = pytest.mark.filterwarnings("ignore::pydantic.warnings.PydanticDeprecatedSince20:ray")


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    """A copy of the bundled digits model's repository (the shipped checkpoint exported with the leaky
    lowering, as conftest's `repo`; `make bundled`): this module serves it without an export (torch)."""
    from prelu_deploy.serve.repository.bundled import bundled_repository

    root = tmp_path_factory.mktemp("repo")
    shutil.copytree(bundled_repository() / "digits", root / "digits")
    return root


REFUSALS = [
    (["--replicas", "2"], "--replicas: only with --ray"),
    (["--autoscale", "1,2", "--ray-address", "auto"], "--autoscale, --ray-address: only with --ray"),
    (["--max-ongoing-requests", "4"], "only with --ray"),
    (["--ray", "--replicas", "2", "--autoscale", "1,2"], "--replicas and --autoscale: choose one"),
    (["--ray", "--autoscale", "3,1"], "1 ≤ MIN ≤ MAX"),
    (["--ray", "--autoscale", "0,2"], "1 ≤ MIN ≤ MAX"),
    (["--ray", "--autoscale", "2"], "give MIN,MAX"),
    (["--ray", "--autoscale", "a,b"], "give MIN,MAX"),
    (["--ray", "--autoscale", "¹,²"], "give MIN,MAX"),  # digits to str.isdigit(), not to int()
    (["--ray", "--workers", "2"], "--workers: not with --ray"),
    (["--ray-ingress", "direct"], "--ray-ingress: only with --ray"),
    (["--ray", "--ray-ingress", "nginx"], "--ray-ingress 'nginx': choose one of haproxy, direct, proxy"),
]


@pytest.mark.parametrize("args, message", REFUSALS)
def test_bad_ray_options_exit_2(serve_in_process, args, message):
    """The console script's main(), in this process: the same decision as the script's (one of them, below)."""
    proc = serve_in_process("serve", *args, "--port", "0", check_rc=2)
    assert message in " ".join(proc.stderr.split()), proc.stderr


def test_a_bad_ray_option_exits_2_from_the_console_script(cli):
    """One refusal by the real console script: its exit status and its message on stderr."""
    args, message = REFUSALS[0]
    proc = cli("serve", *args, "--port", "0", check_rc=2)
    assert message in " ".join(proc.stderr.split()), proc.stderr


def test_without_ray_installed_the_hint_says_how(tmp_path):
    """`sys.modules["ray"] = None` makes `import ray` fail as it does where the extra is not installed."""
    code = (
        "import sys; sys.modules['ray'] = None; sys.argv = ['prelu-deploy', 'serve', '--ray', '--port', '0']\n"
        "from prelu_deploy.cli.main import main; main()"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "pip install 'prelu-deploy[ray]'" in " ".join(proc.stderr.split())


RECORD_RAY = """
import os, sys

with open(os.environ["PRELU_TEST_RAY_IMPORTS"], "a") as f:
    f.write(f"recording {os.getpid()}\\n")


class RecordRay:  # first on the meta path: told of every module this process imports for the first time
    def find_spec(self, name, path=None, target=None):
        if name == "ray" or name.startswith("ray."):
            with open(os.environ["PRELU_TEST_RAY_IMPORTS"], "a") as f:
                f.write(name + "\\n")
        return None  # the import goes on as it would

sys.meta_path.insert(0, RecordRay())
"""


def test_the_plain_server_never_imports_ray(repo, tmp_path, monkeypatch):
    """With ray installed, a real `prelu-deploy serve` process: neither the console script, nor the served
    app (its lifespan with the parity gate), nor anything else in it imports ray (each import is recorded
    from the interpreter's start, by a sitecustomize module of this test's), and its mapped files hold no
    ray library."""
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "sitecustomize.py").write_text(RECORD_RAY)
    imports = tmp_path / "ray-imports.txt"
    imports.write_text("")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(tmp_path / "site"), os.environ.get("PYTHONPATH")])))
    monkeypatch.setenv("PRELU_TEST_RAY_IMPORTS", str(imports))
    server = Server(repo)
    try:
        status, ready = server.json("GET", "/v2/models/digits/ready")
        assert status == 200 and ready["ready"] is True  # the lifespan ran its gate
        maps = Path(f"/proc/{server.proc.pid}/maps").read_text()
        assert "_raylet" not in maps and "/site-packages/ray/" not in maps
    finally:
        assert server.stop()
    assert imports.read_text().splitlines() == [f"recording {server.proc.pid}"], imports.read_text()
