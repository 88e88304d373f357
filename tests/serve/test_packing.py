"""The repository as bytes for replicas that share no filesystem (`serve --ray`): packed and unpacked
whole, refused when its sha256 differs, and nothing unpacked outside the destination."""

import io
import tarfile

import pytest

from prelu_deploy.errors import ModelDirError
from prelu_deploy.manifest import sha256_file
from prelu_deploy.serve.ray.packing import pack_repository, sha256_bytes, unpack_repository


def test_round_trip_keeps_every_file_and_leaves_hidden_folders_out(repo, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    import shutil

    shutil.copytree(repo / "digits", src / "digits")
    (src / ".digits.staging").mkdir()  # a killed writer's leftover: never sent
    (src / ".digits.staging" / "manifest.json").write_text("{}")
    data, digest = pack_repository(src)
    assert digest == sha256_bytes(data)
    out = unpack_repository(data, digest, tmp_path / "out")
    files = sorted(p.relative_to(src) for p in src.rglob("*") if p.is_file() and ".digits.staging" not in p.parts)
    assert sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file()) == files
    assert all(sha256_file(out / f) == sha256_file(src / f) for f in files)
    assert not (out / ".digits.staging").exists()


def test_a_blob_whose_sha256_differs_is_refused(repo, tmp_path):
    data, digest = pack_repository(repo)
    tampered = bytearray(data)
    tampered[len(data) // 2] ^= 1
    with pytest.raises(ModelDirError, match="sha256 .* differs from the sender's"):
        unpack_repository(bytes(tampered), digest, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def _tar(*members: tarfile.TarInfo) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for m in members:
            tar.addfile(m, io.BytesIO(b"x" * m.size) if m.isfile() else None)
    return buf.getvalue()


def _file(name: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = 1
    return info


def _link(name: str, target: str, kind=tarfile.SYMTYPE) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info


@pytest.mark.parametrize(
    "member",
    [
        _file("../evil"),
        _file("/etc/evil"),
        _file("digits/../../evil"),
        _link("digits/link", "/etc/passwd"),
        _link("digits/hard", "/etc/passwd", tarfile.LNKTYPE),
    ],
    ids=["dotdot", "absolute", "nested-dotdot", "symlink", "hardlink"],
)
def test_nothing_lands_outside_the_destination(tmp_path, member):
    data = _tar(member)
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(ModelDirError, match="refusing member"):
        unpack_repository(data, sha256_bytes(data), dest)
    assert not any(tmp_path.rglob("evil")) and list(dest.iterdir()) == []


def test_a_folder_without_models_is_refused(tmp_path):
    with pytest.raises(ModelDirError, match="no model directories"):
        pack_repository(tmp_path)
