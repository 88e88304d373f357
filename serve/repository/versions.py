"""A served model's versions (prelu_deploy.versions on disk): which of them its version_policy names,
the table that routes requests to them, and what of each one a poll compares.

Unversioned requests reach the newest version that passed its parity gate; a version that failed it is
shown (its reason in the index, its metadata and a 503 to a request naming it) and never takes traffic."""

import hashlib
import os
from pathlib import Path

from prelu_deploy.errors import ModelDirError
from prelu_deploy.serve.errors import ApiError
from prelu_deploy.versions import read_policy, version_layout


class ModelTable(dict):
    """name → the version unversioned requests reach: the newest ready one (else the newest, whose reason
    a request is told); `versions`: name → {number: each version loaded, ready or not}; `gone`: name → why
    a model that was served is not any more (a 404 says it)."""

    def __init__(self, *args):
        super().__init__(*args)
        self.gone: dict[str, str] = {}
        self.versions: dict[str, dict] = {name: {served.number: served} for name, served in self.items()}

    def put(self, name: str, versions: dict) -> None:
        self.versions[name] = dict(sorted(versions.items()))
        ready = [served for served in self.versions[name].values() if served.ready]
        self[name] = (ready or list(self.versions[name].values()))[-1]
        self.gone.pop(name, None)

    def drop(self, name: str, why: str) -> dict:
        """`name` no longer served (a 404 says `why`); returns its versions, for retiring."""
        self.pop(name, None)
        self.gone[name] = why
        return self.versions.pop(name, {})


def every_version(models: dict) -> list:
    """Every version of every model loaded (a plain dict of models: its values)."""
    if hasattr(models, "versions"):
        return [served for versions in models.versions.values() for served in versions.values()]
    return list(models.values())


def versions_of(models: dict, name: str) -> dict:
    """{number: ServedModel} of the served model `name` (of a plain dict of models: its one version)."""
    return getattr(models, "versions", {}).get(name) or {models[name].number: models[name]}


def find_version(models: dict, name: str, version: str):
    """The version `version` of the served model `name` (find_model found it); 404 naming those there are."""
    versions = versions_of(models, name)
    if version.isdecimal() and int(version) in versions:  # not isdigit(): '¹' is a digit that int() refuses
        return versions[int(version)]
    raise ApiError(404, f"model {name!r} has no version {version!r}; it has {', '.join(map(repr, map(str, versions)))}")


def ready_versions(models: dict, name: str) -> list[str]:
    """The versions of `name` that take traffic (a model's metadata lists them, as Triton's does)."""
    return [str(n) for n, served in versions_of(models, name).items() if served.ready] or [str(models[name].number)]


def selected(path: Path, versions: dict | None = None) -> list[int]:
    """The versions of the model folder that its config.pbtxt's version_policy serves (ModelDirError why not);
    `versions`: its version_layout, where the caller has read it already."""
    numbers = list(version_layout(path) if versions is None else versions)
    policy = read_policy(path)
    if not (chosen := policy.select(numbers)):
        raise ModelDirError(
            f"{path.name}: its version_policy ({policy}) names none of the versions it holds "
            f"({', '.join(map(str, numbers)) or 'none'})"
        )
    return chosen


def pin_key(name: str, number: int) -> str:
    """A version's key in the supervisor's pins: the folder's name for version 1 (as before versions), name/N."""
    return name if number == 1 else f"{name}/{number}"


def pins_of(pins: dict[str, str] | None, name: str) -> dict[int, str] | None:
    """The pinned versions of model `name` ({number: manifest sha256}); None where nothing is pinned."""
    if pins is None:
        return None
    return {
        1 if key == name else int(key.rpartition("/")[2]): sha
        for key, sha in pins.items()
        if key == name or key.rpartition("/")[0] == name
    }


def manifest_shas(path: Path) -> dict[str, str]:
    """{pin_key: sha256 of the manifest} of every version of the model folder (the supervisor's pin)."""
    out = {}
    try:
        versions = version_layout(path)
    except ModelDirError:
        return out
    for number, files in versions.items():
        try:
            out[pin_key(path.name, number)] = hashlib.sha256((path / files.manifest).read_bytes()).hexdigest()
        except OSError:
            continue
    return out


def fingerprint(path: Path) -> tuple:
    """What a poll compares of a model folder: its policy's choice and, of each chosen version, every file's
    size, mtime and inode — a version rewritten, even by a copier that is not atomic, reads differently."""
    try:
        versions = version_layout(path)
        numbers = selected(path, versions)
    except ModelDirError as err:
        return (str(err),)
    out = []
    for number in numbers:
        for rel in versions[number].all():
            try:
                st = os.stat(path / rel, follow_symlinks=False)
                out.append((rel, st.st_size, st.st_mtime_ns, st.st_ino))
            except OSError:
                out.append((rel, None))
    return (tuple(numbers), tuple(out))
