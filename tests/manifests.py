"""Tests that corrupt or rename an entry edit its manifest.json as a user (or a bug) would: as JSON."""

import json
from pathlib import Path


def edit_manifest(entry: Path, change) -> dict:
    """Apply `change(manifest_dict)` to entry/manifest.json in place; returns the new dict."""
    path = Path(entry) / "manifest.json"
    manifest = json.loads(path.read_text())
    change(manifest)
    path.write_text(json.dumps(manifest))
    return manifest
