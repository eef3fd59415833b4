"""Building blocks of the kernel-log detector tests: a 4-rank manifest and a one-call analysis."""

from __future__ import annotations

from pathlib import Path

from tests.helpers.incident import analyze_dir, write_incident
from tracecore.analyzers.report import Report, Verdict

MANIFEST = """
[job]
name = "kernel-test"
world_size = 4
year = 2026

[[hosts]]
name = "node-1"
timezone = "UTC"

[[ranks]]
rank = 0
host = "node-1"
gpu = 0
pci_bus_id = "0000:3b:00.0"
pid = 41000

[[ranks]]
rank = 1
host = "node-1"
gpu = 1
pci_bus_id = "0000:5e:00.0"
pid = 41001

[[ranks]]
rank = 2
host = "node-1"
gpu = 2
pci_bus_id = "0000:b1:00.0"
pid = 41002

[[ranks]]
rank = 3
host = "node-1"
gpu = 3
pci_bus_id = "0000:dc:00.0"
pid = 41003
"""


def analyze(
    tmp_path: Path, log: str, *, manifest: bool = True, extra: dict[str, str] | None = None
) -> Report:
    """Analyze an incident holding ``log`` as node-1's kernel log (plus ``extra`` files)."""
    files: dict[str, str] = {"node-1/kern.log": log, **(extra or {})}
    if manifest:
        files["incident.toml"] = MANIFEST
    return analyze_dir(write_incident(tmp_path / "incident", files))


def of(report: Report, pattern: str) -> list[Verdict]:
    """Verdicts of one pattern."""
    return [v for v in report.verdicts if v.pattern == pattern]


def dcgm_two_scrapes(field: str, values: dict[str, tuple[float, float]]) -> str:
    """A dcgm-exporter text file with two scrapes; ``values`` maps PCI (DCGM spelling) to (first, last)."""
    lines: list[str] = []
    for index, stamp in enumerate(("2026-11-27T05:40:00Z", "2026-11-27T05:41:00Z")):
        lines += [f"# scraped at {stamp}", f"# TYPE {field} counter"]
        for gpu, (pci, pair) in enumerate(sorted(values.items())):
            lines.append(
                f'{field}{{gpu="{gpu}",UUID="GPU-{gpu:08d}",pci_bus_id="{pci}",Hostname="node-1"}} {pair[index]:g}'
            )
    return "\n".join(lines) + "\n"
