"""`serve --ray` with no --ray-address, really run: the console script starts a local Ray cluster of its
own, serves, and stops it all on SIGTERM. A module of its own (tests/serve/test_ray.py shares one cluster
among its tests): under `--dist loadscope` it runs on the other xdist worker meanwhile."""

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

pytest.importorskip("ray", reason="the ray extra is not installed (pip install 'prelu-deploy[ray]')")

from ..server import Endpoint, free_port, wait_for  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    """A copy of the bundled digits model's repository (the shipped checkpoint exported with the leaky
    lowering, as conftest's `repo`; `make bundled`): this module serves it without an export (torch)."""
    from prelu_deploy.serve.repository.bundled import bundled_repository

    root = tmp_path_factory.mktemp("repo")
    shutil.copytree(bundled_repository() / "digits", root / "digits")
    return root


def test_the_cli_with_a_cluster_of_its_own_and_direct_ingress(repo):
    """`serve --ray --ray-ingress direct` with no --ray-address: its own local cluster (beside any other on this machine),
    the replica's own HTTP server named in the "serving" line and answering there; SIGTERM stops it all."""
    exe = Path(sys.executable).with_name("prelu-deploy")
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}  # not another test's cluster
    proc = subprocess.Popen(
        [
            str(exe),
            "serve",
            str(repo),
            "--ray",
            "--ray-ingress",
            "direct",
            "--ray-cpus-per-replica",
            "0.5",
            "--port",
            str(free_port()),
            "--log-level",
            "warning",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
    reader.start()
    try:
        wait_for(lambda: proc.poll() is not None or any(line.startswith("serving") for line in lines), 180)
        assert proc.poll() is None, "".join(lines)
        serving = next(line for line in lines if line.startswith("serving"))
        assert serving.rstrip().endswith("through direct (Ctrl-C to stop)"), serving
        replica = Endpoint(serving.split(" at ", 1)[1].split(" ", 1)[0])  # http://127.0.0.1:PORT of the replica itself
        status, headers, body = replica.request("GET", "/v2/models/digits/ready")
        assert status == 200 and json.loads(body)["ready"] is True and headers["x-replica"], body
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(90)
        reader.join(10)
    assert proc.returncode == 0, "".join(lines)
