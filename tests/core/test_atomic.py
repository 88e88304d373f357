"""Atomic writes: old or new under the real name at every instant, and a killed writer's leftovers
cleaned (or its backup restored) by the next writer."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from prelu_deploy.atomic import clean_leftovers, staged_dir, write_bytes
from prelu_deploy.manifest import load_entry, read_entry, version_numbers


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_a_folder_is_replaced_in_one_step(tmp_path):
    dest = tmp_path / "m"
    with staged_dir(dest) as tmp:
        (tmp / "v").write_text("old")
    with staged_dir(dest) as tmp:
        (tmp / "v").write_text("new")
    assert (dest / "v").read_text() == "new" and [p.name for p in tmp_path.iterdir()] == ["m"]
    with pytest.raises(RuntimeError), staged_dir(dest) as tmp:
        (tmp / "v").write_text("half")
        raise RuntimeError("the writer failed")
    assert (dest / "v").read_text() == "new" and [p.name for p in tmp_path.iterdir()] == ["m"]


def test_leftovers_of_dead_writers_are_cleaned_and_a_backup_restored(tmp_path):
    dead = _dead_pid()
    (tmp_path / f".m.{dead}.abc.tmp").mkdir()
    (tmp_path / f".m.{dead}.def.old").mkdir()  # killed between the two renames: m itself is missing
    (tmp_path / f".m.{dead}.def.old" / "v").write_text("old")
    (tmp_path / f".ckpt.safetensors.{dead}.xyz.tmp").write_bytes(b"half")
    (tmp_path / f".m.{os.getpid()}.live.tmp").mkdir()  # a writer that still runs: not touched
    done = clean_leftovers(tmp_path)
    assert (tmp_path / "m" / "v").read_text() == "old"
    assert sorted(done) == sorted(
        [
            f"restored {tmp_path / 'm'} from .m.{dead}.def.old",
            f"removed .m.{dead}.abc.tmp",
            f"removed .ckpt.safetensors.{dead}.xyz.tmp",
        ]
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == [f".m.{os.getpid()}.live.tmp", "m"]


def test_the_next_write_of_a_file_cleans_its_leftovers(tmp_path):
    (tmp_path / f".f.bin.{_dead_pid()}.q1.tmp").write_bytes(b"half")
    write_bytes(tmp_path / "f.bin", b"whole")
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"] and (tmp_path / "f.bin").read_bytes() == b"whole"


# The console script's code, stopped at a point inside its write: at the first fsync (a staged file written,
# not yet renamed: the stage being filled) or at the swap (the stage complete, about to take the real name).
# There it marks a file and waits to be killed. Each writer is a process of its own, forked by one helper
# process for the module: the helper imports the code and runs an export once (torch imported, its ONNX
# exporter set up: 9 s of CPU a fresh process pays), then forks a writer per request, single-threaded as
# it is (checked), and reaps it only when told, so that the test reads a writer that ended early as a zombie.
HELPER = """
import json, os, sys, time, traceback
from pathlib import Path

import prelu_deploy.atomic as atomic
from prelu_deploy.cli.main import main

def run(argv):
    sys.argv = ["prelu-deploy", *argv]
    try:
        main()
    except SystemExit as stop:
        return stop.code if isinstance(stop.code, int) else 1
    except BaseException:
        traceback.print_exc()
        return 1
    return 0

def paused(real, mark, only=lambda *args: True):
    def at_the_point(*args, **kwargs):
        if only(*args):
            Path(mark).touch()
            time.sleep(600)
        return real(*args, **kwargs)
    return at_the_point

out = os.dup(1)
os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
assert run(json.loads(sys.argv[1])) == 0, "the warm-up export failed"
sys.stdout.flush()
os.dup2(out, 1)
assert os.listdir("/proc/self/task") == [str(os.getpid())], "a thread runs: forking here would not be safe"
for line in sys.stdin:
    mark, point, argv, log = json.loads(line)
    pid = os.fork()
    if pid == 0:
        os.dup2(os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), 1)
        os.dup2(1, 2)
        if point == "filling":
            os.fsync = paused(os.fsync, mark)
        else:
            atomic._exchange = paused(atomic._exchange, mark)
            # a staged file or folder taking its real name (not a file written inside a staged folder)
            only = lambda src, dst: str(src).endswith(".tmp") and not Path(dst).parent.name.endswith(".tmp")
            os.replace = paused(os.replace, mark, only)
        code = run(argv)
        sys.stdout.flush()
        os._exit(code)
    print(pid, flush=True)
    sys.stdin.readline()  # "reap"
    _, status = os.waitpid(pid, 0)
    print(-os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status), flush=True)
"""
POINTS = ("filling", "swap")


@pytest.fixture(scope="module")
def writers(shipped, tmp_path_factory):
    """The helper process that forks the writers (HELPER), warmed up; stopped after the module."""
    root = tmp_path_factory.mktemp("writers")
    warm_up = ["export", str(shipped), "--name", "warm", "--repo", str(root / "repo")]
    with open(root / "helper.log", "w") as log:
        helper = subprocess.Popen(
            [sys.executable, "-c", HELPER, json.dumps(warm_up)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            env={**os.environ, "OMP_NUM_THREADS": "1"},
        )
    yield helper
    helper.stdin.close()
    assert helper.wait(60) == 0, (root / "helper.log").read_text()


def _write(argv: list[str]) -> None:
    """The command run whole, in this process: the write after the killed ones (the same code as the
    console script's, without paying its imports again). What they replace, written before them, is a copy
    of the run's one export (conftest's `exported`) or of the shipped checkpoint."""
    from typer.testing import CliRunner

    from prelu_deploy.cli.main import app

    result = CliRunner().invoke(app, argv)
    assert result.exit_code == 0, result.output


def _kill_inside_the_write(writers, argv: list[str], tmp_path: Path, check) -> None:
    """Run the command in a writer once per point of its write and SIGKILL it there; `check()` after each."""
    for point in POINTS:
        mark, log = (tmp_path.parent / f"{tmp_path.name}-{point}.{ext}" for ext in ("mark", "log"))
        writers.stdin.write(json.dumps([str(mark), point, argv, str(log)]) + "\n")
        writers.stdin.flush()
        line = writers.stdout.readline()
        assert line, f"the helper ended: {writers.wait(60)}"
        pid = int(line)
        try:
            deadline = time.monotonic() + 240
            while not mark.exists():
                state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
                assert state != "Z", f"the writer ended before the {point} point: {log.read_text()}"
                assert time.monotonic() < deadline, f"no {point} point within 240 s"
                time.sleep(0.01)
        finally:  # killed at the point; or, where the test failed, not left behind
            os.kill(pid, signal.SIGKILL)
            writers.stdin.write("reap\n")
            writers.stdin.flush()
            ended = int(writers.stdout.readline())
        assert ended == -signal.SIGKILL  # killed there, inside the write, not after it
        check()


@pytest.mark.slow
def test_export_force_killed_inside_its_write_leaves_old_or_new(shipped, exported, writers, tmp_path):
    argv = ["export", str(shipped), "--name", "digits", "--repo", str(tmp_path), "--force"]
    exported(tmp_path, "digits")

    def check():
        assert read_entry(tmp_path / "digits").verify() == []  # complete, under its real name

    _kill_inside_the_write(writers, argv, tmp_path, check)
    _write(argv)  # the next writer cleans what the killed ones left
    assert [p.name for p in tmp_path.iterdir()] == ["digits"]


@pytest.mark.slow
def test_export_of_a_next_version_killed_inside_its_write_leaves_the_versions_before(shipped, exported, writers, tmp_path):
    argv = ["export", str(shipped), "--name", "digits", "--repo", str(tmp_path), "--version", "next"]
    exported(tmp_path, "digits")  # version 1
    model = tmp_path / "digits"
    first = {p: p.read_bytes() for p in (model / "manifest.json", model / "golden.npz", model / "1" / "model.onnx")}

    def check():
        numbers = version_numbers(model)  # each version whole, under the model's real name, and version 1 untouched
        assert numbers == list(range(1, len(numbers) + 1)) and all(load_entry(model, n).verify() == [] for n in numbers)
        assert {p: p.read_bytes() for p in first} == first

    _kill_inside_the_write(writers, argv, tmp_path, check)
    _write(argv)
    check()
    assert [p.name for p in tmp_path.iterdir()] == ["digits"] and len(version_numbers(model)) >= 2


@pytest.mark.slow
def test_train_force_killed_inside_its_write_leaves_old_or_new(shipped, writers, tmp_path):
    from prelu_deploy.models import load_checkpoint

    out = tmp_path / "c.safetensors"
    argv = ["train", "--arch", "digits_prelu", "--dataset", "digits", "--epochs", "1", "--out", str(out), "--force"]
    argv += ["--width", "0.25"]  # what is trained does not matter here: how it is written does
    shutil.copyfile(shipped, out)
    _kill_inside_the_write(writers, argv, tmp_path, lambda: load_checkpoint(out))
    _write(argv)
    assert [p.name for p in tmp_path.iterdir()] == ["c.safetensors"]
