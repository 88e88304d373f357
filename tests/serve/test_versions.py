"""One version served whole: a load that races export's atomic swap reads the manifest and the
artifacts of one version (manifest.load_entry), and the workers of one server serve the version they
were started on until a deliberate reload (SIGHUP), a replacement worker included."""

import os
import shutil
import signal
import subprocess
import sys
from dataclasses import replace

import onnx
import pytest

from prelu_deploy.atomic import staged_dir
from prelu_deploy.manifest import read_entry
from prelu_deploy.serve.repository.loader import PINS_ENV, load_model, load_repository, pin_versions
from prelu_deploy.serve.settings import Settings

from ..server import Server, wait_for
from .test_workers import _children

# Export --force in a loop: versions A and B in turn, each swapped in by the same atomic exchange.
SWAPPER = """
import shutil, sys, time
from pathlib import Path
from prelu_deploy.atomic import staged_dir
a, b, dest, stop = map(Path, sys.argv[1:])
swaps, end = 0, time.monotonic() + 120
while not stop.exists() and time.monotonic() < end:
    with staged_dir(dest) as tmp:
        shutil.copytree((a, b)[swaps % 2], tmp, dirs_exist_ok=True)
    swaps += 1
    time.sleep(0.001)
print(swaps)
"""
MARKS = {"leaky": "A", "native": "B"}  # a version's manifest says its lowering; its graph carries its mark


@pytest.fixture
def versions(repo, tmp_path):
    """Two versions of `digits`: A (manifest lowering leaky, graph marked A) and B (native, marked B),
    each a complete, consistent model directory whose files all differ from the other's."""
    out = {}
    for lowering, mark in MARKS.items():
        d = out[mark] = tmp_path / mark / "digits"
        shutil.copytree(repo / "digits", d)
        graph = onnx.load(d / "1" / "model.onnx")
        graph.metadata_props.add(key="test_version", value=mark)
        onnx.save(graph, d / "1" / "model.onnx")
        replace(read_entry(d), lowering=lowering).write(d)
    return out


def _mark(served) -> str:
    return served.runners[0].session.get_modelmeta().custom_metadata_map["test_version"]


def test_loads_racing_swaps_serve_one_version_whole(versions, tmp_path):
    live = tmp_path / "live" / "digits"
    shutil.copytree(versions["A"], live)
    stop = tmp_path / "stop"
    swapper = subprocess.Popen(
        [sys.executable, "-c", SWAPPER, versions["A"], versions["B"], live, stop], stdout=subprocess.PIPE, text=True
    )
    seen, torn = {"A": 0, "B": 0}, []
    try:
        for _ in range(60):
            served = load_model(live, Settings())
            if not served.ready or MARKS[served.entry.lowering] != _mark(served):
                torn.append(served.reason or f"manifest {served.entry.lowering}, graph {_mark(served)}")
            else:
                seen[_mark(served)] += 1
            served.close()
    finally:
        stop.touch()
        swaps = int(swapper.communicate(timeout=60)[0])
    assert torn == [], f"{len(torn)} of 60 loads torn, e.g. {torn[:3]}"
    assert seen["A"] and seen["B"] and swaps > 60, (seen, swaps)  # the race did run


def test_a_worker_loading_after_a_swap_refuses_a_version_other_than_the_pinned_one(versions, tmp_path, monkeypatch, caplog):
    monkeypatch.setenv(PINS_ENV, "")  # so that the pin made below is removed after the test (servers the
    monkeypatch.delenv(PINS_ENV)  # rest of this process starts would inherit it)
    live = tmp_path / "live" / "digits"
    shutil.copytree(versions["A"], live)
    pins = pin_versions(live.parent)  # what the supervisor does before it starts the workers
    assert os.environ[PINS_ENV] and list(pins) == ["digits"]
    assert load_repository(live.parent, Settings())["digits"].ready  # the first workers: version A
    with staged_dir(live) as tmp:
        shutil.copytree(versions["B"], tmp, dirs_exist_ok=True)  # export --force of version B
    served = load_repository(live.parent, Settings())["digits"]  # a replacement worker
    assert not served.ready and served.entry is None and "digits changed on disk after the server started" in served.reason
    assert "reload the workers (SIGHUP)" in served.reason
    pin_versions()  # SIGHUP: the supervisor pins what is on disk now, and every new worker serves it
    served = load_repository(live.parent, Settings())["digits"]
    assert served.ready and served.entry.lowering == "native"


def _answers(srv: Server, n: int) -> list[tuple]:
    """(ready, lowering or reason) of /v2/models/digits, a new connection each: both workers answer."""
    out = []
    for _ in range(n):
        status, meta = srv.json("GET", "/v2/models/digits")
        assert status == 200, meta
        out.append((meta["ready"], meta.get("prelu_lowering") if meta["ready"] else meta["reason"]))
    return out


@pytest.mark.slow
def test_a_replacement_worker_serves_the_version_the_others_do(versions, tmp_path):
    live = tmp_path / "live" / "digits"
    shutil.copytree(versions["A"], live)
    srv = Server(live.parent, "--workers", "2", "--log-level", "info")
    try:
        first = _children(srv.proc.pid)
        assert len(first) == 2 and set(_answers(srv, 8)) == {(True, "leaky")}
        with staged_dir(live) as tmp:  # export --force of version B while the server runs
            shutil.copytree(versions["B"], tmp, dirs_exist_ok=True)
        os.kill(min(first), signal.SIGKILL)  # a worker dies; the supervisor starts another
        wait_for(lambda: len(_children(srv.proc.pid) - first) == 1, 60)
        answers = _answers(srv, 40)
        assert (True, "native") not in answers and (True, "leaky") in answers, answers  # never two versions served
        refused = [a for a in answers if not a[0]]
        assert refused and all("digits changed on disk after the server started" in r for _, r in refused), answers
        before = _children(srv.proc.pid)
        srv.proc.send_signal(signal.SIGHUP)  # a deliberate reload: every worker replaced, serving what is on disk
        wait_for(lambda: len(now := _children(srv.proc.pid)) == 2 and now.isdisjoint(before), 240)
        assert set(_answers(srv, 12)) == {(True, "native")}
    finally:
        assert srv.stop()
    log = srv.proc.stdout.read()
    assert "model digits: NOT ready: digits changed on disk after the server started" in log, log


def test_a_pin_inherited_for_another_repository_is_ignored(versions, tmp_path, monkeypatch):
    """A server started from an environment that holds another server's pin (a supervisor's child, a test
    process) serves its own repository: a stale pin once made every later test server refuse `digits`."""
    other = tmp_path / "other" / "digits"
    shutil.copytree(versions["B"], other)
    monkeypatch.setenv(PINS_ENV, "")
    pin_versions(other.parent)
    live = tmp_path / "live" / "digits"
    shutil.copytree(versions["A"], live)
    assert load_repository(live.parent, Settings())["digits"].ready
