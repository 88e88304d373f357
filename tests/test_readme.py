"""The README's examples run as written: every `curl` line that talks to the server is run, verbatim
(from the repository root, as a newcomer would), against a live server on the port it names."""

import json
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from .server import Server

ROOT = Path(__file__).resolve().parents[1]


def _curl_lines() -> list[str]:
    blocks = re.findall(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    return [
        line.split("  #")[0].strip()
        for block in blocks
        for line in block.splitlines()
        if line.strip().startswith("curl ") and "localhost:8000" in line
    ]


def test_the_readme_has_server_examples():
    lines = _curl_lines()
    assert len(lines) >= 3 and any("classify" in line for line in lines)


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_every_readme_curl_example_works(repo):
    # the swap example loads over HTTP; a new interpreter running the console script, as the README's reader starts it
    srv = Server(repo, "--model-control", "explicit", "--load-model", "digits", fresh=True)
    try:
        for line in _curl_lines():
            if " | " in line:  # a pipeline (`| grep x-model-version`): run by the shell, it must find what it looks for
                proc = subprocess.run(
                    line.replace("localhost:8000", f"127.0.0.1:{srv.port}"),
                    shell=True,
                    cwd=ROOT,
                    capture_output=True,
                    text=True,
                    timeout=60,
                )
                assert proc.returncode == 0 and proc.stdout.strip(), f"{line}\n→ {proc.stdout} {proc.stderr}"
                continue
            args = [a.replace("localhost:8000", f"127.0.0.1:{srv.port}") for a in shlex.split(line)]
            proc = subprocess.run(
                [*args, "--fail-with-body", "-w", "\n%{http_code}"], cwd=ROOT, capture_output=True, text=True, timeout=60
            )
            body, _, status = proc.stdout.rpartition("\n")
            assert proc.returncode == 0 and status == "200", f"{line}\n→ {status} {body} {proc.stderr}"
            answer = json.loads(body)
            if "classify" in line:  # the samples are what their names say
                for p in answer["predictions"]:
                    shown = re.search(r"digit_(\d)", p["filename"]) or re.search(r"digit_(\d)", line)
                    assert p["top_k"][0]["label"] == shown.group(1), (line, p)
    finally:
        assert srv.stop()
