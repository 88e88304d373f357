"""Reports name the distribution of the module actually imported: onnxruntime-gpu and onnxruntime both
install `onnxruntime`, and an H200 report said "onnxruntime 1.30.0" (the CPU package's metadata) while
onnxruntime-gpu 1.31.1 ran."""

import subprocess
import sys
import textwrap


def _dist(root, dist: str, ver: str, module: str) -> None:
    (root / module).mkdir(parents=True)
    (root / module / "__init__.py").write_text(f"__version__ = {ver!r}\n")
    info = root / f"{dist.replace('-', '_')}-{ver}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {ver}\n")
    (info / "top_level.txt").write_text(f"{module}\n")
    (info / "RECORD").write_text(f"{module}/__init__.py,,\n{info.name}/METADATA,,\n")


def test_the_report_names_the_distribution_that_was_imported(tmp_path):
    gpu, cpu = tmp_path / "gpu", tmp_path / "site"
    _dist(gpu, "fakeort-gpu", "1.31.1", "fakeort")  # a --target install first on the path, as the GPU kit does
    _dist(cpu, "fakeort", "1.30.0", "fakeort")
    code = textwrap.dedent("""
        import importlib.metadata as md, sys
        from prelu_deploy.bench import report
        report.MODULES["fakeort"] = "fakeort"
        before = report.environment()["versions"]
        import fakeort
        print(md.version("fakeort"), before.get("fakeort"), report.environment()["versions"])
    """)
    env_path = f"{gpu}:{cpu}"
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PYTHONPATH": env_path, "PATH": "/usr/bin:/bin"},
    )
    assert out.returncode == 0, out.stderr
    metadata, unloaded, loaded = out.stdout.split(" ", 2)
    assert (metadata, unloaded) == ("1.30.0", "1.30.0")  # what metadata alone says, and said before
    assert "'fakeort-gpu': '1.31.1'" in loaded and "'fakeort':" not in loaded
