"""The house's rules, checked: the import direction (import-linter's contracts in pyproject.toml) and
small modules. import-linter reads the package from disk, folder by folder: the dev install is strict
editable (Makefile), a tree of links laid out as the wheel is, so `lint-imports` runs straight from the
checkout, as here."""

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import prelu_deploy

ROOT = Path(__file__).resolve().parents[1]
MAX_LINES = 300


def _package_dirs() -> dict[str, Path]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return {pkg: ROOT / folder for pkg, folder in config["tool"]["setuptools"]["package-dir"].items()}


@pytest.fixture(scope="module")
def installed_layout() -> Path:
    """The folder holding `prelu_deploy/` as the dev install lays it out: the strict editable install's
    tree of links, every mapped folder in its place (as in the wheel)."""
    site = Path(prelu_deploy.__file__).parent.parent
    if not (site / "prelu_deploy" / "models").is_dir():
        pytest.fail(f"the dev install is not strict editable ({prelu_deploy.__file__}): run `make reinstall`")
    return site


def _copy(site: Path, tmp_path: Path) -> Path:
    """A copy of the layout, files and not links, to break on purpose."""
    shutil.copytree(site / "prelu_deploy", tmp_path / "site" / "prelu_deploy", ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path / "site"


def _lint(site: Path | None = None) -> subprocess.CompletedProcess:
    """`lint-imports` from the checkout, on the dev install (or on the copy at `site`)."""
    exe = Path(sys.executable).with_name("lint-imports")
    env = {**os.environ, "PYTHONPATH": str(site)} if site else dict(os.environ)
    return subprocess.run([str(exe), "--no-cache"], cwd=ROOT, capture_output=True, text=True, env=env, timeout=120)


def test_import_contracts_are_kept(installed_layout):
    proc = _lint()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Contracts: 4 kept, 0 broken" in proc.stdout


def test_an_upward_import_breaks_the_contract(installed_layout, tmp_path):
    """The check can fail: models importing serve (upwards) is reported."""
    site = _copy(installed_layout, tmp_path)
    (site / "prelu_deploy" / "models" / "upward.py").write_text("from prelu_deploy.serve import settings  # noqa\n")
    proc = _lint(site)
    assert proc.returncode != 0
    assert "prelu_deploy.models.upward -> prelu_deploy.serve.settings" in proc.stdout


def test_ray_outside_serve_ray_app_breaks_the_contract(installed_layout, tmp_path):
    """Only serve/ray/app.py and serve/ray/driver.py may import ray: the plain server must start without it."""
    site = _copy(installed_layout, tmp_path)
    (site / "prelu_deploy" / "serve" / "api" / "app.py").write_text("import ray  # noqa\n", encoding="utf-8")
    proc = _lint(site)
    assert proc.returncode != 0
    assert "prelu_deploy.serve.api.app -> ray" in proc.stdout


def test_a_room_of_serve_importing_upwards_breaks_the_contract(installed_layout, tmp_path):
    """The engine (batcher, lone runner) knows nothing of the HTTP surface that feeds it."""
    site = _copy(installed_layout, tmp_path)
    (site / "prelu_deploy" / "serve" / "engine" / "upward.py").write_text("from prelu_deploy.serve.api import app  # noqa\n")
    proc = _lint(site)
    assert proc.returncode != 0
    assert "prelu_deploy.serve.engine.upward -> prelu_deploy.serve.api.app" in proc.stdout


def test_every_folder_is_a_package_of_the_house():
    """Every folder of Python code under the top-level folders is mapped in pyproject.toml (else a
    wheel would lack it, and the contracts would not see it)."""
    mapped = set(_package_dirs().values())
    for folder in mapped:
        for sub in folder.iterdir():
            if sub.is_dir() and any(sub.glob("*.py")):
                assert sub in mapped, f"{sub.relative_to(ROOT)} holds Python code but is not in package-dir"


def test_no_module_exceeds_300_lines():
    long = {
        str(f.relative_to(ROOT)): n
        for folder in set(_package_dirs().values())
        for f in folder.glob("*.py")
        if (n := len(f.read_text().splitlines())) > MAX_LINES
    }
    assert not long, f"modules over {MAX_LINES} lines: {long}"
