"""The bundled model ships as a ready model repository inside the package: current with the shipped
weights, parity-checked, and served by a torch-free server with no export step."""

import json
import os
import subprocess
import sys
import time
import urllib.request

from prelu_deploy.manifest import read_entry, sha256_file
from prelu_deploy.serve.repository.bundled import bundled_repository, packaged_repository, shipped_checkpoint

from ..server import free_port


def test_the_packaged_entry_is_current_and_passes_parity():
    from prelu_deploy.runners.parity import run_parity

    entry = read_entry(packaged_repository() / "digits")
    assert entry.verify() == [] and entry.lowering == "leaky"
    assert entry.checkpoint == shipped_checkpoint().resolve() and entry.source.sha256 == sha256_file(shipped_checkpoint())
    assert bundled_repository() == packaged_repository()
    report = run_parity(entry.path, n=64)
    assert report["passed"] and report["accuracy"]["runner"] >= 0.98


def test_a_torch_free_server_serves_it_without_exporting(tmp_path):
    port = free_port()
    code = (
        "import sys; sys.modules['torch'] = None  # as in `pip install 'prelu-deploy[serve]'`\n"
        "from prelu_deploy.cli.main import main\n"
        f"sys.argv = ['prelu-deploy', 'serve', '--port', '{port}', '--grpc-port', '0', '--log-level', 'warning']\n"
        "main()\n"
    )
    env = {**os.environ, "PRELU_DEPLOY_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None and time.monotonic() < deadline, (
                proc.stdout.read() if proc.poll() is not None else "timeout"
            )
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/models/digits", timeout=2) as r:
                    meta = json.loads(r.read())
                break
            except OSError:
                time.sleep(0.3)
        assert meta["ready"] and meta["backend"] == "onnxruntime"
    finally:
        proc.terminate()
        out = proc.communicate(timeout=30)[0]
    assert "Traceback" not in out and "exporting" not in out
    assert not (tmp_path / "cache").exists()  # nothing was exported
