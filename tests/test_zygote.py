"""The test servers' zygote (tests/zygote.py) answers as a new interpreter running the console script
does: the same output and exit status for the same command, in the start's own environment; and a start
whose environment differs in what is read on start is not forked from it."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from .zygote import BASE_ENV, Zygote, zygote_can_start

REPO = Path(__file__).resolve().parents[1] / "models" / "bundled"

EXE = str(Path(sys.executable).with_name("prelu-deploy"))


@pytest.mark.parametrize(
    "args, env, rc",
    [
        (["--version"], {}, 0),
        (["serve", "no/such/repository"], {}, 2),
        (["serve"], {"PRELU_DEPLOY_MAX_BODY_BYTES": "lots"}, 2),  # the start's environment, read by main()
    ],
    ids=["version", "missing-repository", "bad-environment"],
)
def test_a_forked_start_answers_as_a_new_interpreter(args, env, rc):
    env = {**BASE_ENV, **env}
    assert zygote_can_start(env)
    new = subprocess.run([EXE, *args], env=env, capture_output=True, text=True, timeout=60)
    forked = Zygote.get(env).start([EXE, *args], env, stderr=True)
    assert forked.communicate(60) == (new.stdout, new.stderr) and new.stdout + new.stderr
    assert forked.returncode == new.returncode == rc and forked.poll() == rc and forked.pid != os.getpid()
    merged = Zygote.get(env).start([EXE, *args], env)  # stderr into stdout, as a test server's
    assert merged.wait(60) == rc and merged.stdout.read() == new.stdout + new.stderr and merged.stderr is None


def test_what_is_read_on_start_gets_a_new_interpreter():
    assert zygote_can_start({**BASE_ENV, "COLUMNS": "200"})  # a zygote of that width
    assert not zygote_can_start({**BASE_ENV, "PYTHONPATH": "/elsewhere"})  # a sitecustomize, say
    assert not zygote_can_start({**BASE_ENV, "OMP_NUM_THREADS": "4"})
    assert not zygote_can_start({k: v for k, v in BASE_ENV.items() if k != "PATH"})
    assert zygote_can_start({**BASE_ENV, "PRELU_DEPLOY_API_TOKEN": "t", "RAY_CLIENT_MODE": "0", "PYTHONBREAKPOINT": "0"})


def test_a_preloaded_module_is_the_zygotes_own_from_then_on():
    """The cli fixture's torch: imported by the zygote before the fork, once, and the start answers as a
    new interpreter does."""
    env = {**BASE_ENV, "COLUMNS": "200"}  # the cli fixture's zygote: torch is imported there in any case
    new = subprocess.run([EXE, "--version"], env=env, capture_output=True, text=True, timeout=60)
    zygote = Zygote.get(env)
    forked = zygote.start([EXE, "--version"], env, stderr=True, preload=("torch",))
    assert forked.communicate(60) == (new.stdout, new.stderr) and forked.returncode == new.returncode == 0
    assert "libtorch_cpu" in Path(f"/proc/{zygote.proc.pid}/maps").read_text()


def test_a_zygote_that_dies_leaves_no_wait_hanging(monkeypatch, capfd):
    """Its children live on (as a server started by Popen outlives the test process); their exit status
    is lost with it: poll() and wait() say so at once. Here it dies as it refuses a fork that would not be
    safe: a start asked it to import a module first whose import starts a thread (tests/thread_on_import.py,
    found through the zygote's working directory, which `python -c` puts on its path)."""
    monkeypatch.chdir(Path(__file__).parent)
    assert Path("thread_on_import.py").is_file()
    zygote = Zygote()  # one of this test's own
    child = zygote.start([EXE, "serve", str(REPO), "--port", "0", "--workers", "1"], dict(BASE_ENV))
    try:
        with pytest.raises(RuntimeError, match="did not fork"):
            zygote.start([EXE, "--version"], dict(BASE_ENV), preload=("thread_on_import",))
        assert zygote.proc.wait(30) != 0
        # it died of the thread, not of a failed import (its stderr is this test's, captured)
        assert "2 threads: forking here would not be safe" in capfd.readouterr().err
        with pytest.raises(RuntimeError, match="zygote died"):
            child.wait(30)
        with pytest.raises(RuntimeError, match="zygote died"):
            child.poll()
        os.kill(child.pid, 0)  # still running
    finally:
        os.kill(child.pid, signal.SIGKILL)
