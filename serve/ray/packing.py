"""A model repository as one blob of bytes and back, for replicas that share no filesystem with the
process that started them (`serve --ray`: the blob travels through Ray's object store).

The blob is an uncompressed tar (ONNX weights and plans barely compress) of every model directory of
the repository, hidden folders (a writer's staging or backup copies) left out. Its sha256 travels
beside it; `unpack_repository` refuses a blob whose digest differs, and anything in it that is not a
plain file or folder inside the destination (absolute names, `..`, links, devices)."""

import hashlib
import io
import tarfile
from pathlib import Path, PurePosixPath

from prelu_deploy.errors import ModelDirError
from prelu_deploy.versions import is_model_folder


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def pack_repository(repo: Path) -> tuple[bytes, str]:
    """(tar bytes, their sha256) of every model directory in `repo` (a folder holding manifest.json)."""
    models = sorted(p for p in repo.iterdir() if p.is_dir() and not p.name.startswith(".") and is_model_folder(p))
    if not models:
        raise ModelDirError(f"{repo}: no model directories to send to the replicas (make one with `prelu-deploy export`)")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for model in models:
            for path in sorted([model, *model.rglob("*")]):
                rel = path.relative_to(repo)
                if any(part.startswith(".") for part in rel.parts) or path.is_symlink():
                    continue  # hidden staging copies, and links that could point anywhere, are not sent
                if path.is_dir() or path.is_file():
                    tar.add(path, arcname=rel.as_posix(), recursive=False)
    data = buf.getvalue()
    return data, sha256_bytes(data)


def _check_member(member: tarfile.TarInfo) -> None:
    name = PurePosixPath(member.name)
    if name.is_absolute() or ".." in name.parts or not name.parts:
        raise ModelDirError(f"repository blob: refusing member {member.name!r} (outside the destination)")
    if not (member.isfile() or member.isdir()):
        raise ModelDirError(f"repository blob: refusing member {member.name!r} (not a plain file or folder)")


def unpack_repository(data: bytes, sha256: str, dest: Path) -> Path:
    """Unpack a blob made by `pack_repository` into `dest` (an empty folder) after checking its sha256."""
    if (actual := sha256_bytes(data)) != sha256:
        raise ModelDirError(
            f"repository blob: sha256 {actual} differs from the sender's {sha256} "
            f"({len(data)} bytes received); refusing to serve it"
        )
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
            members = tar.getmembers()
            for member in members:
                _check_member(member)
            tar.extractall(dest, members=members, filter="data")  # the standard library's own checks, too
    except tarfile.TarError as err:
        raise ModelDirError(f"repository blob: not a readable tar ({err})") from None
    return dest
