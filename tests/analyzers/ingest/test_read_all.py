"""Whole-file reads: the decompressed-size bound holds whatever the file's size."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from tracecore.analyzers.ingest.discovery import read_all

BOUND = 1_000


@pytest.mark.parametrize("size", [0, 1, BOUND - 1, BOUND, BOUND + 1, 3 * BOUND])
@pytest.mark.parametrize("compression", [None, "gz"])
def test_at_most_one_byte_past_the_bound_is_read(tmp_path: Path, size: int, compression: str | None) -> None:
    content = bytes(i % 251 for i in range(size))
    path = tmp_path / "dump"
    path.write_bytes(gzip.compress(content) if compression else content)
    data = read_all(path, compression, BOUND)
    # The caller sees the bound crossed (BOUND + 1 bytes) without ever holding more.
    assert data == content[: BOUND + 1]
    assert read_all(path, compression) == content


def test_a_file_whose_size_says_nothing_is_still_read_whole() -> None:
    # Kernel-generated files report size 0 yet have content.
    data = read_all(Path("/proc/self/status"), None, BOUND * 100)
    assert b"Name:" in data and len(data) > 0
