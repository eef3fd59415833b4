"""gpu-throttle: reason bits, violation counters, exporter event counts, low clocks, host scope, no fields."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from tests.helpers.incident import analyze_dir
from tests.helpers.paths import INCIDENTS, SAMPLES
from tracecore.analyzers.detectors.gpu_throttle import DETECTOR, detect
from tracecore.analyzers.ingest.base import FileContext
from tracecore.analyzers.ingest.dcgm import DcgmParser
from tracecore.analyzers.ingest.manifest import Manifest
from tracecore.analyzers.report import Confidence, Severity
from tracecore.analyzers.tables import Tables, conform

T0 = 1_795_758_000  # 2026-11-27T05:40:00Z
PCI = ["18", "2A", "3B", "5D"]
REASONS = "DCGM_FI_DEV_CLOCK_THROTTLE_REASONS"
CLOCK = "DCGM_FI_DEV_SM_CLOCK"
UTIL = "DCGM_FI_DEV_GPU_UTIL"


def scrapes(*blocks: dict[str, dict[int, object]], host: str = "node-1") -> str:
    lines: list[str] = []
    for i, block in enumerate(blocks):
        lines.append(f"# scraped at {T0 + 30 * i}")
        for name, per_gpu in block.items():
            for gpu, value in per_gpu.items():
                lines.append(
                    f'{name}{{gpu="{gpu}",UUID="GPU-{gpu}",pci_bus_id="00000000:{PCI[gpu]}:00.0",'
                    f'Hostname="{host}"}} {value}'
                )
    return "\n".join(lines) + "\n"


def tables_of(
    text: str, rel: str = "node-1/dcgm.prom", identity: dict[str, list[object]] | None = None
) -> Tables:
    out = DcgmParser().parse(FileContext(Path(rel), rel, text.encode(), None, Manifest()))
    tables: dict[str, pa.Table] = {
        name: conform(name, out.tables[name]) for name in ("gpu_metrics", "gpu_labels")
    }
    if identity is not None:
        tables["identity"] = conform("identity", identity)
    return Tables(tables)


RANKS = {
    "rank": [0, 1, 2, 3],
    "host": ["node-1"] * 4,
    "gpu_index": [0, 1, 2, 3],
    "pci_bus_id": [f"0000:{p.lower()}:00.0" for p in PCI],
}


def test_spec_has_every_heading() -> None:
    assert DETECTOR.missing_headings() == []
    assert DETECTOR.id == "gpu-throttle"


def test_hardware_slowdown_incident() -> None:
    report = analyze_dir(INCIDENTS / "dcgm-throttle-hw-slowdown")
    verdicts = [v for v in report.verdicts if v.pattern == "gpu-throttle"]
    assert len(verdicts) == 1
    verdict = verdicts[0]
    assert (
        verdict.title
        == "rank 6's GPU 2 (0000:3b:00.0) on node-1 throttled (HW_SLOWDOWN, HW_THERMAL, SW_THERMAL)"
    )
    assert verdict.severity is Severity.ERROR
    assert verdict.confidence is Confidence.PARTIAL
    assert verdict.key == "host=node-1 gpu=2 pci=0000:3b:00.0"
    assert (verdict.culprit.ranks, verdict.culprit.hosts) == ([6], ["node-1"])
    assert verdict.missing_evidence == []
    assert [(e.file, e.line, e.excerpt) for e in verdict.evidence] == [
        (
            "node-1/dcgm/dcgm-exporter.prom",
            73,
            "DCGM_FI_DEV_CLOCK_THROTTLE_REASONS = 104 (0x68: HW_SLOWDOWN|SW_THERMAL|HW_THERMAL)",
        ),
        (
            "node-1/dcgm/dcgm-exporter.prom",
            49,
            "SM clock 1140 MHz vs host median 1980 MHz (83% of busy readings ≥10% below)",
        ),
    ]
    details = verdict.details
    assert details["reasons"] == ["HW_SLOWDOWN", "HW_THERMAL", "SW_THERMAL"]
    assert (details["reason_share"], details["reason_samples"]) == (5 / 6, 6)
    assert details["rank_mapped_by"] == "pci_bus_id" and details["rank_assumed"] is False
    assert (verdict.window_start_ns, verdict.window_end_ns) == ((T0 + 30) * 10**9, (T0 + 150) * 10**9)


def test_near_miss_incident_stays_silent() -> None:
    report = analyze_dir(INCIDENTS / "dcgm-throttle-near-miss")
    assert [v for v in report.verdicts if v.pattern == "gpu-throttle"] == []


def test_power_violation_without_rank_mapping() -> None:
    report = analyze_dir(INCIDENTS / "dcgm-throttle-power-violation-k8s")
    (verdict,) = [v for v in report.verdicts if v.pattern == "gpu-throttle"]
    assert verdict.title == "GPU 1 (0000:2a:00.0) on node-7 throttled (POWER_VIOLATION rising)"
    assert verdict.severity is Severity.WARNING
    assert (verdict.culprit.ranks, verdict.culprit.hosts) == ([], ["node-7"])
    assert verdict.missing_evidence == [
        "no rank mapping for GPU 1 (0000:2a:00.0) on node-7: the identity table (manifest, NCCL init lines) does not name this GPU"
    ]
    assert verdict.details["violation_delta_us"] == {"DCGM_FI_DEV_POWER_VIOLATION": 63_000_000.0}
    assert (
        verdict.evidence[0].excerpt
        == "DCGM_FI_DEV_POWER_VIOLATION rose by 63000000 us (60% of 105 s): 1250000 -> 64250000"
    )
    assert any("power limit" in a for a in verdict.actions)


def test_exporter_clock_event_counts_sample() -> None:
    text = (SAMPLES / "dcgm" / "pr261_clock_events_count.prom").read_text()
    (verdict,) = detect(tables_of(text, rel="pr261.prom"))
    assert verdict.details["reasons"] == ["HW_THERMAL", "SW_THERMAL"]  # gpu_idle is not a slowdown
    assert verdict.details["clock_event_counts"] == {"HW_THERMAL": 1.0, "SW_THERMAL": 1.0}
    assert verdict.severity is Severity.ERROR
    assert (verdict.culprit.hosts, verdict.culprit.ranks) == (["home"], [])
    assert [e.line for e in verdict.evidence] == [3, 4]


def test_every_slowdown_bit_counts_and_benign_bits_do_not() -> None:
    for bit, name in (
        (0x4, "SW_POWER_CAP"),
        (0x8, "HW_SLOWDOWN"),
        (0x20, "SW_THERMAL"),
        (0x40, "HW_THERMAL"),
        (0x80, "HW_POWER_BRAKE"),
    ):
        (verdict,) = detect(tables_of(scrapes({REASONS: {0: 0, 1: bit, 2: 0}})))
        assert verdict.details["reasons"] == [name]
        expected = Severity.ERROR if name.startswith("HW_") else Severity.WARNING
        assert verdict.severity is expected
    benign = 0x1 | 0x2 | 0x10 | 0x100
    assert detect(tables_of(scrapes({REASONS: {0: benign, 1: benign, 2: 0}}))) == []


def test_reasons_below_a_fifth_of_samples_are_ignored() -> None:
    blocks = [{REASONS: {0: 0, 1: (0x8 if i == 0 else 0), 2: 0}} for i in range(6)]
    assert detect(tables_of(scrapes(*blocks))) == []


def test_low_clock_while_busy_and_idle_gpus_excluded() -> None:
    busy = {CLOCK: {0: 1980, 1: 1700, 2: 1980, 3: 1965}, UTIL: {0: 99, 1: 99, 2: 98, 3: 97}}
    (verdict,) = detect(tables_of(scrapes(busy, busy), identity=RANKS))
    assert verdict.title == "rank 1's GPU 1 (0000:2a:00.0) on node-1 throttled (low SM clock)"
    assert verdict.details["clock_below_median_share"] == 1.0
    assert verdict.details["sm_clock_mhz"] == 1700.0
    assert verdict.details["host_median_sm_clock_mhz"] == 1972.5
    idle = {CLOCK: {0: 1980, 1: 345, 2: 1980, 3: 1965}, UTIL: {0: 99, 1: 0, 2: 98, 3: 97}}
    assert detect(tables_of(scrapes(idle, idle))) == []


def test_most_gpus_of_a_host_throttled_is_one_host_verdict() -> None:
    hot = {REASONS: {0: 0x20, 1: 0x20, 2: 0x20, 3: 0}}
    (verdict,) = detect(tables_of(scrapes(hot), identity=RANKS))
    assert verdict.title == "3 of 4 GPUs on node-1 throttled (SW_THERMAL)"
    assert verdict.key == "host=node-1 scope=host"
    assert (verdict.culprit.hosts, verdict.culprit.ranks) == (["node-1"], [0, 1, 2])
    assert [g.index for g in verdict.culprit.gpus] == [0, 1, 2]
    assert verdict.details["gpus_throttled"] == 3


def test_rank_mapped_by_gpu_index_is_an_assumption() -> None:
    ranks = {"rank": [7], "host": ["node-1"], "gpu_index": [1]}
    (verdict,) = detect(tables_of(scrapes({REASONS: {0: 0, 1: 0x80}}), identity=ranks))
    assert verdict.culprit.ranks == [7]
    assert verdict.details["rank_mapped_by"] == "gpu_index"
    assert (
        verdict.details["rank_assumption"]
        == "DCGM gpu 1 on node-1 taken as the rank's GPU index (NVML order assumed)"
    )


def test_default_counters_give_no_verdict() -> None:
    # The exporter's default list has no reasons, no violation counters: no evidence either way.
    text = (SAMPLES / "dcgm" / "issue250_v100_Hostname_label.prom").read_text()
    assert detect(tables_of(text, rel="v100.prom")) == []
    assert detect(Tables({})) == []
