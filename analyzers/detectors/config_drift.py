"""Detector ``config-drift``: software or hardware configuration that differs across ranks or hosts."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import polars as pl

from ..dcgm_signals import composite_key, with_label
from ..ingest.fr_calls import run_start
from ..report import Affected, Confidence, Culprit, Evidence, Severity, Verdict, excerpt
from ..tables import Tables
from .base import Detector
from .common import map_value

DRIVER_LABELS = ("DCGM_FI_DRIVER_VERSION", "DCGM_FI_SYSTEM_DRIVER_VERSION", "driver_version")


@dataclass(frozen=True)
class _Fact:
    """One stated value of one configuration item for one subject (a rank or a host)."""

    item: str
    subject: str
    value: str
    source: str
    file: str
    line: int | None
    rank: int | None
    host: str | None


def _nccl_versions(tables: Tables) -> list[_Fact]:
    facts: list[_Fact] = []
    if tables.has("app_events"):
        frame = (
            tables.df("app_events")
            .with_columns(map_value("attrs", "nccl_version").alias("_v"))
            .filter(pl.col("_v").is_not_null())
            .unique(subset=["host", "pid", "rank", "_v"], keep="first", maintain_order=True)
        )
        for row in frame.select("rank", "host", "pid", "_v", "source_file", "source_line").iter_rows(
            named=True
        ):
            subject = f"rank {row['rank']}" if row["rank"] is not None else f"{row['host']}:{row['pid']}"
            facts.append(
                _Fact(
                    "NCCL version",
                    subject,
                    str(row["_v"]),
                    "app_log",
                    row["source_file"],
                    row["source_line"],
                    row["rank"],
                    row["host"],
                )
            )
    if tables.has("fr_entries") and "comm_lib_version" in tables["fr_entries"].column_names:
        frame = (
            tables.df("fr_entries", ["rank", "host", "comm_lib_version", "source_file"])
            .filter(run_start("rank", "host", "comm_lib_version", "source_file"))
            .filter(
                pl.col("comm_lib_version").is_not_null()
                & (pl.col("comm_lib_version") != "")
                & pl.col("rank").is_not_null()
            )
            .unique(subset=["rank"], keep="first", maintain_order=True)
        )
        for row in frame.select("rank", "host", "comm_lib_version", "source_file").iter_rows(named=True):
            facts.append(
                _Fact(
                    "NCCL version",
                    f"rank {row['rank']}",
                    str(row["comm_lib_version"]),
                    "flight_recorder",
                    row["source_file"],
                    None,
                    row["rank"],
                    row["host"],
                )
            )
    return facts


def _host_facts(tables: Tables) -> list[_Fact]:
    if not tables.has("gpu_metrics"):
        return []
    metrics = tables.df(
        "gpu_metrics",
        ["host", "model_name", "gpu_index", "mig_instance", "source_file", "source_line", "labels_id"],
    )
    if metrics.get_column("host").null_count():  # a filter copies millions of rows: only if needed
        metrics = metrics.filter(pl.col("host").is_not_null())
    facts: list[_Fact] = []
    # The driver version is read from the labels of each host's first row.
    first = metrics.unique(subset=["host"], keep="first", maintain_order=True)
    first = with_label(tables, first, "_driver", DRIVER_LABELS)
    for row in first.select("host", "_driver", "source_file", "source_line").iter_rows(named=True):
        if row["_driver"]:
            facts.append(
                _Fact(
                    "GPU driver version",
                    row["host"],
                    row["_driver"],
                    "dcgm",
                    row["source_file"],
                    row["source_line"],
                    None,
                    row["host"],
                )
            )
    named = metrics.select("host", "model_name", "source_file", "source_line").filter(
        pl.col("model_name").is_not_null()
    )
    # One integer key for host and model: unique over two categorical columns is far slower.
    models = named.with_columns(composite_key(named, ["host", "model_name"]).alias("_key")).unique(
        subset=["_key"], keep="first", maintain_order=True
    )
    for row in models.select("host", "model_name", "source_file", "source_line").iter_rows(named=True):
        facts.append(
            _Fact(
                "GPU model",
                row["host"],
                row["model_name"],
                "dcgm",
                row["source_file"],
                row["source_line"],
                None,
                row["host"],
            )
        )
    counts = (
        metrics.filter(pl.col("gpu_index").is_not_null() & pl.col("mig_instance").is_null())
        .group_by("host")
        .agg(pl.col("gpu_index").n_unique().alias("n"), pl.col("source_file").first())
        .sort("host")
    )
    if counts.height >= 3:
        for host, n, source_file in counts.iter_rows():
            facts.append(_Fact("GPU count", host, str(n), "dcgm", source_file, None, None, host))
    return facts


def detect(tables: Tables) -> list[Verdict]:
    """Configuration that should be uniform across the job but is not.

    What it detects:
        Ranks or hosts whose software or hardware configuration differs from the rest of the job:
        NCCL version (job logs' ``NCCL version`` lines, the flight recorder's ``comm_lib_version``),
        GPU driver version and GPU model (DCGM labels), and the number of GPUs per host (DCGM, with
        at least three hosts, so that "the majority" means something).

    Signals:
        ``app_events.attrs["nccl_version"]``, ``fr_entries.comm_lib_version``,
        ``gpu_labels`` driver-version labels (of each host's first row), ``gpu_metrics.model_name``,
        ``gpu_metrics.gpu_index`` per host.

    Rule:
        For each item with at least two subjects and more than one distinct value, the value most
        subjects share is expected; subjects with another value are the culprits (warning). When no
        value has a strict majority there is no "odd one out" and the verdict is informational. A
        drift stated by two sources (job log and flight recorder agreeing) has full confidence.
        Correlation promotes a drifted rank or host to the root cause only when it is also the
        culprit of a hang or straggler verdict.

    Known false positives:
        Heterogeneous clusters on purpose (mixed GPU generations in separate pipeline stages);
        rolling driver upgrades captured half-way; log lines from an unrelated process that ran on
        the same host.
    """
    facts = _nccl_versions(tables) + _host_facts(tables)
    verdicts: list[Verdict] = []
    for item in sorted({f.item for f in facts}):
        by_subject: dict[str, set[str]] = {}
        for fact in facts:
            if fact.item == item:
                by_subject.setdefault(fact.subject, set()).add(fact.value)
        values = Counter(value for subject_values in by_subject.values() for value in subject_values)
        if len(by_subject) < 2 or len(values) < 2:
            continue
        (expected, top), *rest = values.most_common()
        majority = top * 2 > len(by_subject) and (not rest or rest[0][1] < top)
        odd = sorted(s for s, vals in by_subject.items() if expected not in vals or len(vals) > 1)
        odd_facts = [f for f in facts if f.item == item and f.subject in odd and f.value != expected]
        ranks = sorted({f.rank for f in odd_facts if f.rank is not None})
        hosts = sorted({f.host for f in odd_facts if f.host is not None and f.rank is None})
        distinct = ", ".join(f"{v} ({n})" for v, n in values.most_common())
        sources = {f.source for f in odd_facts}
        title = (
            f"{item} differs: {', '.join(odd)} run{'s' if len(odd) == 1 else ''} "
            f"{', '.join(sorted({f.value for f in odd_facts}))} while {top} of {len(by_subject)} run {expected}"
            if majority
            else f"{item} is not uniform across the job: {distinct}"
        )
        verdicts.append(
            Verdict(
                pattern="config-drift",
                title=title,
                severity=Severity.WARNING if majority else Severity.INFO,
                key=f"item={item}",
                confidence=_confidence(sources),
                culprit=Culprit(ranks=ranks, hosts=hosts) if majority else Culprit(),
                affected=Affected(),
                evidence=[
                    Evidence(f.source, f.file, f.line, excerpt(f"{f.subject}: {item} {f.value}"))
                    for f in sorted(odd_facts, key=lambda f: (f.subject, f.source))[:12]
                ],
                actions=[f"align {item} across the job (expected {expected}) and re-run"] if majority else [],
                details={
                    "item": item,
                    "expected": expected if majority else None,
                    "values": dict(values),
                    "subjects": odd,
                },
            )
        )
    return verdicts


def _confidence(sources: set[str]) -> Confidence:
    return Confidence.FULL if len(sources) >= 2 else Confidence.PARTIAL


DETECTOR = Detector(
    id="config-drift",
    summary="NCCL version, GPU driver, GPU model or GPU count that differs across ranks or hosts",
    sources=("app_log", "dcgm", "flight_recorder"),
    tables=("app_events", "gpu_metrics", "fr_entries", "identity"),
    detect=detect,
    scope=__name__,
)
