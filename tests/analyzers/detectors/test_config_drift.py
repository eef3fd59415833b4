"""config-drift: the odd rank or host out, by majority; no verdict when the job is uniform."""

from __future__ import annotations

from pathlib import Path

from tests.helpers.incident import analyze_dir, write_incident
from tests.helpers.paths import INCIDENTS
from tracecore.analyzers.detectors.config_drift import detect
from tracecore.analyzers.ingest.dcgm import labels_id
from tracecore.analyzers.report import Confidence, Severity
from tracecore.analyzers.tables import Tables, conform


def _dcgm(host_driver: dict[str, str]) -> Tables:
    rows: dict[str, list[object]] = {
        k: []
        for k in (
            "source_file",
            "source_line",
            "host",
            "gpu_index",
            "field",
            "value",
            "labels_id",
            "model_name",
        )
    }
    label_sets: dict[int, list[tuple[str, str]]] = {}
    for host, driver in host_driver.items():
        labels = {"DCGM_FI_DRIVER_VERSION": driver}
        label_sets[labels_id(labels)] = list(labels.items())
        for gpu in range(2):
            rows["source_file"].append(f"{host}/dcgm.prom")
            rows["source_line"].append(gpu + 1)
            rows["host"].append(host)
            rows["gpu_index"].append(gpu)
            rows["field"].append("DCGM_FI_DEV_GPU_UTIL")
            rows["value"].append(90.0)
            rows["labels_id"].append(labels_id(labels))
            rows["model_name"].append("NVIDIA H100 80GB HBM3")
    return Tables(
        {
            "gpu_metrics": conform("gpu_metrics", rows),
            "gpu_labels": conform(
                "gpu_labels", {"labels_id": list(label_sets), "labels": list(label_sets.values())}
            ),
        }
    )


def test_nccl_version_of_one_rank_differs() -> None:
    report = analyze_dir(INCIDENTS / "config-drift-nccl-version")
    [verdict] = [v for v in report.verdicts if v.pattern == "config-drift"]
    assert verdict.culprit.ranks == [3]
    assert verdict.severity is Severity.WARNING and verdict.confidence is Confidence.PARTIAL
    assert (
        verdict.title == "NCCL version differs: rank 3 runs 2.18.1+cuda12.1 while 3 of 4 run 2.21.5+cuda12.4"
    )
    assert verdict.evidence[0].file == "logs/rank3.log" and verdict.evidence[0].line == 2


def test_driver_drift_names_the_host() -> None:
    [verdict] = detect(_dcgm({"node-0": "550.127.08", "node-1": "550.127.08", "node-2": "545.29.02"}))
    assert verdict.culprit.hosts == ["node-2"] and verdict.details["expected"] == "550.127.08"


def test_uniform_job_is_silent_and_a_tie_is_only_info() -> None:
    assert detect(_dcgm({"node-0": "550.127.08", "node-1": "550.127.08"})) == []
    [tie] = detect(_dcgm({"node-0": "550.127.08", "node-1": "545.29.02"}))
    assert tie.severity is Severity.INFO and tie.culprit.is_empty()


def test_one_rank_alone_is_not_drift(tmp_path: Path) -> None:
    root = write_incident(tmp_path / "i", {"logs/rank0.log": "NCCL version 2.21.5+cuda12.4\n"})
    assert [v for v in analyze_dir(root).verdicts if v.pattern == "config-drift"] == []
