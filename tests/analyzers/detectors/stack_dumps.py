"""Small py-spy text dumps for the stack detector tests (layout of py-spy 0.4 ``dump``)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from tests.helpers.incident import ingest_serial, write_incident
from tracecore.analyzers.identity import apply_manifest_and_identity
from tracecore.analyzers.tables import Tables

WAIT = [
    ("all_reduce", "torch/distributed/distributed_c10d.py", 3252),
    ("_exception_logger.<locals>.wrapper", "torch/distributed/c10d_logger.py", 83),
    ("allreduce_grads", "train.py", 65),
    ("train_step", "train.py", 114),
    ("main", "train.py", 134),
    ("<module>", "train.py", 143),
]


def dump(
    pid: int,
    frames: Sequence[tuple[str, str, int]],
    status: str = "idle",
    others: Sequence[tuple[int, str, str, Sequence[tuple[str, str, int]]]] = (),
) -> str:
    """One process block: main thread ``frames`` (innermost first) plus other threads."""
    lines = [f"Process {pid}: /usr/bin/python -u train.py", "Python v3.11.7 (/usr/bin/python3.11)", ""]
    lines.append(f'Thread {pid} ({status}): "MainThread"')
    lines.extend(f"    {fn} ({fl}:{ln})" for fn, fl, ln in frames)
    for tid, tstatus, name, tframes in others:
        lines.append(f'Thread {tid} ({tstatus}): "{name}"')
        lines.extend(f"    {fn} ({fl}:{ln})" for fn, fl, ln in tframes)
    return "\n".join(lines) + "\n"


def job(root: Path, stacks: dict[int, str], manifest: str = "") -> Tables:
    """Write ``rank<R>.dump.txt`` files (plus an optional incident.toml) and return the analysed tables."""
    files = {f"rank{rank}.dump.txt": text for rank, text in stacks.items()}
    if manifest:
        files["incident.toml"] = manifest
    write_incident(root, files)
    return apply_manifest_and_identity(ingest_serial(root)).tables
