"""incident.toml validation and PCI normalisation."""

from __future__ import annotations

from pathlib import Path

import pytest

from tracecore.analyzers.errors import ManifestError
from tracecore.analyzers.ingest.manifest import load_manifest, normalize_pci


@pytest.mark.parametrize(
    ("raw", "normal"),
    [
        ("00000000:3B:00.0", "0000:3b:00.0"),
        ("0000:3b:00", "0000:3b:00.0"),
        ("PCI:0000:02:00", "0000:02:00.0"),
        ("3b:00.1", "0000:3b:00.1"),
        ("63000", "0000:63:00.0"),
        ("0018:01:00.0", "0018:01:00.0"),
        ("not-a-bus", None),
    ],
)
def test_normalize_pci(raw: str, normal: str | None) -> None:
    assert normalize_pci(raw) == normal


def test_full_manifest(tmp_path: Path) -> None:
    (tmp_path / "incident.toml").write_text(
        """
[job]
name = "run-17"
world_size = 8
capture_time = "2026-11-27T06:00:00Z"

[[ranks]]
rank = 6
host = "node-1"
local_rank = 2
gpu = 2
pci_bus_id = "00000000:3B:00.0"
pid = 48213

[[hosts]]
name = "node-1"
clock_offset_ms = 1500
timezone = "Europe/Berlin"
boot_time = "2026-11-20T08:00:00Z"
"""
    )
    manifest = load_manifest(tmp_path)
    assert manifest.world_size == 8
    assert manifest.ranks[0].pci_bus_id == "0000:3b:00.0"
    assert manifest.rank_for_pid("node-1", 48213) == 6
    assert manifest.host("node-1").clock_offset_ms == 1500.0  # type: ignore[union-attr]
    assert manifest.capture_time_ns == 1_795_759_200 * 1_000_000_000


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("[job]\nworld_sise = 4\n", "world_sise"),
        ("[job]\nworld_size = 'four'\n", "[job].world_size"),
        ("[[ranks]]\nhost = 'a'\n", "ranks[0]: missing required key 'rank'"),
        ("[job]\nworld_size = 2\n[[ranks]]\nrank = 5\n", "ranks[0].rank"),
        ("[[ranks]]\nrank = 1\npci_bus_id = 'zz'\n", "ranks[0].pci_bus_id"),
        ("[[hosts]]\nname = 'a'\ntimezone = 'Mars/Olympus'\n", "hosts[0].timezone"),
        ("[[hosts]]\nname = 'a'\nboot_time = 'yesterday'\n", "hosts[0].boot_time"),
        ("nonsense = = =\n", "not valid TOML"),
    ],
)
def test_bad_manifest_names_the_key(tmp_path: Path, text: str, named: str) -> None:
    (tmp_path / "incident.toml").write_text(text)
    with pytest.raises(ManifestError) as info:
        load_manifest(tmp_path)
    assert named in info.value.message
    assert "\n" not in info.value.message
