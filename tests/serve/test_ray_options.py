"""`serve --ray` options: bad combinations exit 2 with a clear message before anything starts, and the
plain server never imports ray (it lives in serve/ray/app.py, imported only under --ray)."""

import subprocess
import sys
from pathlib import Path

import pytest

from ..server import Server


@pytest.mark.parametrize(
    "args, message",
    [
        (["--replicas", "2"], "--replicas: only with --ray"),
        (["--autoscale", "1,2", "--ray-address", "auto"], "--autoscale, --ray-address: only with --ray"),
        (["--max-ongoing-requests", "4"], "only with --ray"),
        (["--ray", "--replicas", "2", "--autoscale", "1,2"], "--replicas and --autoscale: choose one"),
        (["--ray", "--autoscale", "3,1"], "1 ≤ MIN ≤ MAX"),
        (["--ray", "--autoscale", "0,2"], "1 ≤ MIN ≤ MAX"),
        (["--ray", "--autoscale", "2"], "give MIN,MAX"),
        (["--ray", "--autoscale", "a,b"], "give MIN,MAX"),
        (["--ray", "--workers", "2"], "--workers: not with --ray"),
        (["--ray-ingress", "direct"], "--ray-ingress: only with --ray"),
        (["--ray", "--ray-ingress", "nginx"], "--ray-ingress 'nginx': choose one of haproxy, direct, proxy"),
    ],
)
def test_bad_ray_options_exit_2(cli, args, message):
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


def test_the_plain_server_never_imports_ray(repo):
    """With ray installed: neither the console script, nor a served app (its lifespan with the parity
    gate), nor a real `prelu-deploy serve` process (its mapped files hold no ray library) imports it."""
    code = f"""
import asyncio, sys
from prelu_deploy.cli.main import app
from prelu_deploy.serve.api.app import create_app
from prelu_deploy.serve.settings import Settings
served = create_app(Settings(repo={str(repo)!r}, threads=1))
async def run():
    async with served.router.lifespan_context(served):
        assert served.state.models["digits"].ready
asyncio.run(run())
print(sorted(m for m in sys.modules if m == "ray" or m.startswith("ray.")))
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]", proc.stdout
    server = Server(repo)
    try:
        assert server.json("GET", "/v2/health/ready")[0] == 200
        maps = Path(f"/proc/{server.proc.pid}/maps").read_text()
        assert "_raylet" not in maps and "/site-packages/ray/" not in maps
    finally:
        assert server.stop()
