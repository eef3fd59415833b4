"""Measure DCGM ingest + detectors on a synthetic Prometheus range-query export.

Usage: ``.venv/bin/python bench/dcgm_gen.py [--samples 10000000] [--jobs N] [--analyze]``.

The input is ``bench.bench.dcgm_incident`` (16 hosts x 8 GPUs x 4 fields, one matrix JSON per
host, cached under bench/out/). Prints, for one process: parse time of every file (wall and CPU),
the Polars conversion and every detector reading ``gpu_metrics`` (wall and CPU). With
``--analyze`` it also runs ``tracecore analyze`` end to end and prints its wall and CPU time
(children's user+sys, so worker processes count).
"""

from __future__ import annotations

import argparse
import gc
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

# Detectors that read gpu_metrics through dcgm_signals without listing the table.
DCGM_READERS = {
    "gpu-fell-off-bus",
    "gpu-firmware-hang",
    "gpu-memory-ecc",
    "gpu-row-remap",
    "nvlink-fault",
    "pcie-aer",
    "config-drift",
    "cuda-oom",
    "gpu-throttle",
}


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Clock:
    """Wall and CPU time of one step."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __enter__(self) -> Clock:
        self.wall, self.cpu = time.perf_counter(), _cpu()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self.wall
        self.cpu = _cpu() - self.cpu
        print(f"  {self.name:<34} wall {self.wall:6.2f} s   cpu {self.cpu:6.2f} s", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--samples", type=int, default=10_000_000)
    parser.add_argument("--analyze", action="store_true", help="also time `tracecore analyze`")
    parser.add_argument("--jobs", type=int, default=0, help="--jobs for tracecore analyze")
    args = parser.parse_args()

    from bench import dcgm_incident  # bench/bench.py

    path, samples = dcgm_incident(args.samples)
    size = sum(f.stat().st_size for f in path.glob("*.json"))
    print(f"{samples:,} samples, {size / 1e6:.0f} MB of matrix JSON in {path}")

    import pyarrow as pa

    from tracecore.analyzers.detectors.registry import DETECTORS
    from tracecore.analyzers.identity import build_identity
    from tracecore.analyzers.ingest.base import FileContext
    from tracecore.analyzers.ingest.dcgm import DcgmParser
    from tracecore.analyzers.ingest.manifest import Manifest
    from tracecore.analyzers.tables import Tables, concat, conform

    dcgm = DcgmParser()
    parts: dict[str, list[pa.Table]] = {name: [] for name in dcgm.tables}
    total = Clock("parse (all files, one process)")
    with total:
        gc.disable()
        for file in sorted(path.glob("*.json")):
            ctx = FileContext(
                path=file,
                rel=file.name,
                data=file.read_bytes(),
                host_hint=None,
                manifest=Manifest(),
                mtime_ns=None,
            )
            out = dcgm.parse(ctx)
            for name, part in out.tables.items():
                parts[name].append(conform(name, part))
        gc.enable()
    with Clock("concat + finalize + to Polars"):
        joined = {name: concat(name, tables) for name, tables in parts.items()}
        tables = Tables(dcgm.finalize(joined, Manifest()).tables)
        tables.df("gpu_metrics")
        table = tables["gpu_metrics"]
    assert table.num_rows == samples, table.num_rows
    with Clock("identity"):
        tables = tables.with_table("identity", build_identity(tables, Manifest())[0])
    for detector in DETECTORS:
        if "gpu_metrics" in detector.tables or detector.id in DCGM_READERS:
            with Clock(f"detect {detector.id}"):
                detector.detect(tables)
    labels = tables["gpu_labels"]
    print(
        f"  rows {table.num_rows:,}  arrow {table.nbytes / 1e6:.0f} MB  "
        f"gpu_labels {labels.num_rows:,} rows  {pa.__version__=}"
    )

    if args.analyze:
        command = [
            sys.executable,
            "-m",
            "tracecore",
            "analyze",
            str(path),
            "--format",
            "json",
            "--fail-on",
            "never",
        ]
        if args.jobs:
            command += ["--jobs", str(args.jobs)]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        subprocess.run(command, stdout=subprocess.DEVNULL, check=False)
        wall = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        print(f"  {'tracecore analyze (end to end)':<34} wall {wall:6.2f} s   cpu {cpu:6.2f} s")
        print(f"  command: {' '.join(command)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
