"""Build incident directories and analyze them in tests."""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path

from tracecore.analyzers.ingest.engine import IngestResult, ingest
from tracecore.analyzers.pipeline import analyze_ingested
from tracecore.analyzers.report import Report


def write_incident(root: Path, files: Mapping[str, str | bytes]) -> Path:
    """Create ``root`` with ``files`` (relative path → text or bytes); returns ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    for rel, content in files.items():
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            target.write_bytes(content)
        else:
            target.write_text(content, encoding="utf-8")
    return root


def copy_into(root: Path, source: Path, rel: str) -> Path:
    """Copy a file or folder into the incident at ``rel``."""
    target = root / rel
    target.parent.mkdir(parents=True, exist_ok=True)
    if source.is_dir():
        shutil.copytree(source, target, dirs_exist_ok=True)
    else:
        shutil.copyfile(source, target)
    return target


def ingest_serial(root: Path) -> IngestResult:
    """Ingest in this process (no worker pool), as tests want."""
    return ingest(root, jobs=1)


def analyze_dir(root: Path) -> Report:
    """Full analysis of an incident directory, serially, with detector errors raised."""
    return analyze_ingested(ingest_serial(root), raise_errors=True)
