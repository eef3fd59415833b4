"""Fixtures for the hostile-input tests: the corpus generator and a guard on the temp folder."""

from __future__ import annotations

import importlib.util
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from tests.helpers.paths import HOSTILE


def _load_make_hostile() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_hostile", HOSTILE / "make_hostile.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


MAKE_HOSTILE = _load_make_hostile()


@pytest.fixture
def hostile() -> ModuleType:
    """fixtures/hostile/make_hostile.py, loaded as a module."""
    return MAKE_HOSTILE


@pytest.fixture
def private_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Redirect Python's temporary folder so a test can see what extraction leaves behind."""
    folder = tmp_path / "tmpdir"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    yield folder
