"""tracecore benchmark: speed and scale, side by side with PyTorch's analyzer and the unpickle floor.

Run from a clone (after the README's install command):

    .venv/bin/pip install -e '.[bench]'            # torch 2.13.0 (for torchfrtrace) and psutil
    .venv/bin/python bench/bench.py                # full run (generates ~8 GB of dumps for 16k ranks)
    .venv/bin/python bench/bench.py --quick        # small sizes, a couple of minutes

Everything runs in one invocation on the same machine: the synthetic incidents are generated (and
cached) under bench/out/, then each measurement runs in a fresh subprocess whose wall time and peak
RSS (summed over its whole process tree) are recorded. Results are printed as tables and written to
bench/out/results.json.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import pickle
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "bench" / "out"
PYTHON = sys.executable
TRACECORE = [PYTHON, "-m", "tracecore"]


@dataclass
class Run:
    """One measured command."""

    name: str
    wall_s: float
    peak_rss_mb: float
    returncode: int
    entries: int = 0

    @property
    def entries_per_s(self) -> float:
        return self.entries / self.wall_s if self.wall_s else 0.0


def _tree_rss(pid: int) -> int:
    """RSS of ``pid`` and all its descendants, in bytes.

    On Linux read straight from /proc (the children lists and statm: ~0.1 ms per poll); psutil's
    tree walk scans every process on the machine (~3 ms per poll, a noticeable share of a core
    when polled every 20 ms during a measurement on 2 cores).
    """
    if os.path.isdir(f"/proc/{pid}/task"):
        page = os.sysconf("SC_PAGE_SIZE")
        total, pending = 0, [pid]
        while pending:
            current = pending.pop()
            try:
                with open(f"/proc/{current}/statm") as handle:
                    total += int(handle.read().split()[1]) * page
                for task in os.listdir(f"/proc/{current}/task"):
                    with open(f"/proc/{current}/task/{task}/children") as handle:
                        pending.extend(int(child) for child in handle.read().split())
            except (OSError, ValueError):
                continue  # the process ended between two reads
        return total
    try:
        import psutil
    except ImportError:
        return 0
    try:
        proc = psutil.Process(pid)
        procs = [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return 0
    total = 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            continue
    return total


def _memory_limit() -> int:
    """Bytes a measured process tree may use before it is stopped (85 % of this machine's RAM)."""
    try:
        import psutil
    except ImportError:
        return 1 << 62
    return int(psutil.virtual_memory().total * 0.85)


def _kill_tree(proc: subprocess.Popen[bytes]) -> None:
    try:
        import psutil

        for child in psutil.Process(proc.pid).children(recursive=True):
            child.kill()
    except Exception:  # best effort: the parent is killed below anyway
        pass
    proc.kill()


def measure(name: str, command: Sequence[str], entries: int = 0, timeout: float = 3600) -> Run:
    """Run ``command``, polling the RSS of its process tree every 20 ms.

    A tree that outgrows the memory limit (or the timeout) is stopped rather than left to push
    the machine into swapping or the OOM killer; its return code is then -9.
    """
    started = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak = 0
    limit = _memory_limit()
    while proc.poll() is None:
        peak = max(peak, _tree_rss(proc.pid))
        if peak > limit or time.perf_counter() - started > timeout:
            why = "memory limit" if peak > limit else "timeout"
            print(f"  ! {name}: stopped at {peak / 2**30:.1f} GB RSS ({why})", file=sys.stderr)
            _kill_tree(proc)
            proc.wait()
            break
        time.sleep(0.02)
    wall = time.perf_counter() - started
    stderr = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    if proc.returncode not in (0, 1):
        print(f"  ! {name} exited {proc.returncode}: {stderr.strip().splitlines()[-1:]}", file=sys.stderr)
    if not peak:
        import resource

        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    return Run(name, wall, peak / 2**20, proc.returncode, entries)


def _gen_one(args: tuple[int, dict, str]) -> int:
    rank, spec_fields, out = args
    from tracecore.analyzers.synth import SynthSpec, rank_entries

    spec = SynthSpec(**spec_fields)
    dump = rank_entries(spec, rank)
    per_host = spec.ranks // spec.hosts
    target = Path(out) / f"node-{rank // per_host}" / "fr"
    target.mkdir(parents=True, exist_ok=True)
    if spec.fmt == "json":
        from tracecore.analyzers.synth import _json_dump

        (target / f"comm_lib_trace_rank_{rank}.json").write_text(_json_dump(dump))
    else:
        (target / f"comm_lib_trace_rank_{rank}").write_bytes(pickle.dumps(dump, protocol=2))
    return len(dump["entries"])


def incident(
    ranks: int, entries: int, fmt: str, fault: str = "missing-rank", p2p: bool = False
) -> tuple[Path, int]:
    """Generate (or reuse) a synthetic FR incident; rank dumps are written in parallel.

    Without p2p entries by default: torchfrtrace stops at the first group whose sends and
    receives it cannot pair, so only p2p-free dumps give it a full analysis to be timed.
    """
    from tracecore.analyzers.synth import SynthSpec, write_manifest

    hosts = max(1, ranks // 8)
    path = OUT / f"fr_{ranks}x{entries}_{fmt}_{fault}{'' if p2p else '_nop2p'}"
    marker = path / ".complete"
    if marker.is_file():
        return path, int(marker.read_text())
    shutil.rmtree(path, ignore_errors=True)
    spec = SynthSpec(
        ranks=ranks,
        hosts=hosts,
        entries=entries,
        fmt=fmt,
        fault=fault,
        kernel_lines=0,
        dcgm_scrapes=0,
        p2p=p2p,
    )
    write_manifest(spec, path)
    fields = asdict(spec)
    with ProcessPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        total = sum(pool.map(_gen_one, [(r, fields, str(path)) for r in range(ranks)], chunksize=16))
    marker.write_text(str(total))
    return path, total


def flat_links(path: Path) -> Path:
    """torchfrtrace reads one flat folder of `<prefix><rank>` files: hard-link the dumps there."""
    flat = path.parent / (path.name + "_flat")
    if not flat.is_dir():
        flat.mkdir()
        for dump in path.rglob("comm_lib_trace_rank_*"):
            os.link(dump, flat / dump.name)
    return flat


def unpickle_floor(path: Path) -> float:
    """Seconds to unpickle every dump with the C unpickler on one core, GC disabled."""
    warm(path)
    files = sorted(path.rglob("comm_lib_trace_rank_*"))
    started = time.perf_counter()
    gc.disable()
    try:
        for file in files:
            with open(file, "rb") as handle:
                pickle.load(handle)  # noqa: S301 - our own synthetic files, the floor being measured
    finally:
        gc.enable()
    return time.perf_counter() - started


def torchfrtrace_available() -> bool:
    return shutil.which("torchfrtrace", path=str(Path(PYTHON).parent)) is not None


def kernel_incident(hosts: int, lines: int) -> tuple[Path, int]:
    from tracecore.analyzers.synth import SynthSpec, write_incident

    path = OUT / f"kernel_{hosts}x{lines}"
    marker = path / ".complete"
    if not marker.is_file():
        shutil.rmtree(path, ignore_errors=True)
        write_incident(
            SynthSpec(
                ranks=hosts * 8, hosts=hosts, entries=1, fault="xid79", kernel_lines=lines, dcgm_scrapes=0
            ),
            path,
        )
        for fr in path.rglob("fr"):
            shutil.rmtree(fr)
        marker.write_text(str(sum(f.stat().st_size for f in path.rglob("dmesg.log"))))
    return path, int(marker.read_text())


def dcgm_incident(samples: int) -> tuple[Path, int]:
    """A Prometheus range-query export (matrix JSON) holding ``samples`` samples."""
    path = OUT / f"dcgm_{samples}"
    marker = path / ".complete"
    if not marker.is_file():
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True)
        hosts, gpus, fields = (
            16,
            8,
            (
                "DCGM_FI_DEV_GPU_UTIL",
                "DCGM_FI_DEV_SM_CLOCK",
                "DCGM_FI_DEV_GPU_TEMP",
                "DCGM_FI_DEV_POWER_USAGE",
            ),
        )
        per_series = samples // (hosts * gpus * len(fields))
        start = 1_795_766_400
        for host in range(hosts):
            result = []
            for field in fields:
                for gpu in range(gpus):
                    values = [[start + i * 15, str(1980 - (i % 7))] for i in range(per_series)]
                    result.append(
                        {
                            "metric": {
                                "__name__": field,
                                "gpu": str(gpu),
                                "Hostname": f"node-{host}",
                                "UUID": f"GPU-{host:04x}{gpu:04x}",
                                "pci_bus_id": f"00000000:{0x18 + gpu:02X}:00.0",
                            },
                            "values": values,
                        }
                    )
            document = {"status": "success", "data": {"resultType": "matrix", "result": result}}
            (path / f"node-{host}.json").write_text(json.dumps(document, separators=(",", ":")))
        marker.write_text(str(per_series * hosts * gpus * len(fields)))
    return path, int(marker.read_text())


def warm(path: Path) -> None:
    """Read every file once so each measured run starts with the same (warm) page cache."""
    for file in path.rglob("*"):
        if file.is_file():
            with open(file, "rb") as handle:
                while handle.read(1 << 24):
                    pass


def analyze(name: str, path: Path, entries: int, jobs: int | None = None, repeat: int = 1) -> Run:
    """``tracecore analyze`` on ``path``; with ``repeat`` > 1, the run with the median wall time.

    A shared 2-core machine varies by ±10 % from one minute to the next: the head-to-head runs
    are repeated so one disturbed run does not decide the figure (every run's time is printed).
    """
    command = [*TRACECORE, "analyze", str(path), "--format", "json", "--fail-on", "never"]
    if jobs:
        command += ["--jobs", str(jobs)]
    runs = []
    for _ in range(max(1, repeat)):
        warm(path)
        runs.append(measure(name, command, entries))
        if runs[-1].returncode not in (0, 1):
            return runs[-1]
    if len(runs) > 1:
        print(f"  {name}: " + ", ".join(f"{r.wall_s:.2f} s" for r in runs) + " (median reported)")
    return sorted(runs, key=lambda r: r.wall_s)[len(runs) // 2]


def table(title: str, header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=False)]

    def line(cells: Sequence[object]) -> str:
        return "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=False)) + " |"

    out = [f"\n{title}", line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += [line(r) for r in rows]
    return "\n".join(out)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small sizes (minutes, for a smoke test)")
    parser.add_argument(
        "--ranks", type=int, default=None, help="ranks for the head-to-head (default 1024; quick 128)"
    )
    parser.add_argument("--entries", type=int, default=2000)
    parser.add_argument(
        "--scales",
        default=None,
        help="comma-separated rank counts for the growth table (default 1024,...,16384)",
    )
    parser.add_argument("--skip-torchfrtrace", action="store_true")
    parser.add_argument(
        "--repeat", type=int, default=3, help="runs of each head-to-head tracecore measurement (median)"
    )
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    ranks = args.ranks or (128 if args.quick else 1024)
    scales = [
        int(s) for s in (args.scales or ("128,256" if args.quick else "1024,2048,4096,8192,16384")).split(",")
    ]
    report: dict[str, object] = {
        "machine": {
            "cores": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
    }
    print(f"machine: {os.cpu_count()} cores, Python {platform.python_version()}, {platform.platform()}")

    # 1. Flight recorder head to head.
    pickles, total = incident(ranks, args.entries, "pickle")
    jsons, _ = incident(ranks, args.entries, "json")
    runs = [analyze(f"tracecore analyze ({ranks} ranks, pickle)", pickles, total, repeat=args.repeat)]
    runs.append(analyze(f"tracecore analyze ({ranks} ranks, json)", jsons, total, repeat=args.repeat))
    floors = sorted(unpickle_floor(pickles) for _ in range(max(1, args.repeat)))
    floor = floors[len(floors) // 2]
    if len(floors) > 1:
        print("  unpickle floor: " + ", ".join(f"{f:.2f} s" for f in floors) + " (median reported)")
    floor_run = Run("unpickle floor (C unpickler, 1 core, GC off)", floor, 0.0, 0, total)
    torch_run = None
    if not args.skip_torchfrtrace and torchfrtrace_available():
        flat = flat_links(pickles)
        torchfrtrace = str(Path(PYTHON).parent / "torchfrtrace")
        warm(flat)
        torch_run = measure(
            f"torchfrtrace ({ranks} ranks, pickle)",
            [torchfrtrace, str(flat), "-p", "comm_lib_trace_rank_"],
            total,
        )
    rows = [
        [r.name, f"{r.wall_s:.2f}", f"{r.peak_rss_mb:.0f}", f"{r.entries_per_s:,.0f}"]
        for r in [*runs, floor_run] + ([torch_run] if torch_run else [])
    ]
    print(
        table(
            f"Flight recorder: {ranks} ranks x {args.entries} entries ({total:,} entries)",
            ["run", "wall s", "peak RSS MB", "entries/s"],
            rows,
        )
    )
    pickle_run = runs[0]
    ratios = {"tracecore/floor": pickle_run.wall_s / floor if floor else None}
    if torch_run:
        ratios["torchfrtrace/tracecore (speed-up)"] = torch_run.wall_s / pickle_run.wall_s
    print("ratios: " + ", ".join(f"{k} = {v:.2f}" for k, v in ratios.items() if v is not None))
    if torch_run is None:
        print("torchfrtrace: skipped (install the bench extra: pip install -e '.[bench]')")
    report["flight_recorder"] = {
        "runs": [asdict(r) for r in runs],
        "floor_s": floor,
        "torchfrtrace": asdict(torch_run) if torch_run else None,
        "ratios": ratios,
    }

    # 2. Growth with ranks.
    growth: list[Run] = []
    for scale in scales:
        if growth and growth[-1].returncode not in (0, 1):
            break  # the previous scale failed or outgrew the machine: larger ones cannot fit
        if scale == ranks:
            run = pickle_run  # the head-to-head run above, not repeated
        else:
            path, entries = incident(scale, args.entries, "pickle")
            run = analyze(f"{scale} ranks", path, entries)
        growth.append(run)
        print(f"  growth {scale}: {run.wall_s:.1f} s, {run.peak_rss_mb:.0f} MB", flush=True)
    base = growth[0]
    growth_rows: list[list[object]] = []
    for s, r in zip(scales, growth, strict=False):
        if r.returncode == -9:
            growth_rows.append(
                [s, f"{r.entries:,}", f"stopped at {r.wall_s:.0f}", f"> {r.peak_rss_mb:.0f}", "-", "-"]
            )
            continue
        if r.returncode not in (0, 1):
            growth_rows.append(
                [
                    s,
                    f"{r.entries:,}",
                    f"failed (exit {r.returncode}) at {r.wall_s:.0f}",
                    f"{r.peak_rss_mb:.0f}",
                    "-",
                    "-",
                ]
            )
            continue
        growth_rows.append(
            [
                s,
                f"{r.entries:,}",
                f"{r.wall_s:.1f}",
                f"{r.peak_rss_mb:.0f}",
                f"{r.wall_s / s * 1024:.2f}",
                f"{(r.wall_s / base.wall_s) / (s / scales[0]):.2f}",
            ]
        )
    growth_rows += [
        [s, "-", "not run (a smaller scale failed or outgrew memory)", "-", "-", "-"]
        for s in scales[len(growth) :]
    ]
    print(
        table(
            f"Growth (pickle, {args.entries:,} entries per rank; memory limit {_memory_limit() / 2**30:.0f} GB)",
            ["ranks", "entries", "wall s", "peak RSS MB", "s per 1k ranks", "vs linear"],
            growth_rows,
        )
    )
    report["growth"] = [asdict(r) for r in growth]

    # 3. Kernel logs: per-core parse throughput (one process, one Polars thread, CPU time), then
    # end to end through `tracecore analyze`.
    per_core = subprocess.run(
        [PYTHON, str(REPO / "bench" / "kernel_log_gen.py"), "--lines", "200000" if args.quick else "1000000"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    print(f"\nKernel-log parse, per core (bench/kernel_log_gen.py): {per_core}")
    report["kernel_parse_per_core"] = per_core
    one_path, one_bytes = kernel_incident(1, 200_000 if args.quick else 1_000_000)
    single = analyze("kernel log, 1 host, --jobs 1", one_path, 0, jobs=1)
    hosts = 8 if args.quick else 64
    many_path, many_bytes = kernel_incident(hosts, 200_000)
    many = analyze(f"kernel logs, {hosts} hosts x 200k lines", many_path, 0)
    print(
        table(
            "Kernel logs",
            ["run", "MB", "wall s", "MB/s", "peak RSS MB"],
            [
                [
                    single.name,
                    f"{one_bytes / 1e6:.0f}",
                    f"{single.wall_s:.2f}",
                    f"{one_bytes / 1e6 / single.wall_s:.0f} (1 core, end to end)",
                    f"{single.peak_rss_mb:.0f}",
                ],
                [
                    many.name,
                    f"{many_bytes / 1e6:.0f}",
                    f"{many.wall_s:.2f}",
                    f"{many_bytes / 1e6 / many.wall_s:.0f}",
                    f"{many.peak_rss_mb:.0f}",
                ],
            ],
        )
    )
    report["kernel"] = {
        "single": asdict(single),
        "single_bytes": one_bytes,
        "many": asdict(many),
        "many_bytes": many_bytes,
    }

    # 4. DCGM.
    dcgm_path, samples = dcgm_incident(1_000_000 if args.quick else 10_000_000)
    dcgm = analyze(f"DCGM {samples:,} samples", dcgm_path, samples)
    print(
        table(
            "DCGM",
            ["run", "wall s", "samples/s", "peak RSS MB"],
            [[dcgm.name, f"{dcgm.wall_s:.2f}", f"{dcgm.entries_per_s:,.0f}", f"{dcgm.peak_rss_mb:.0f}"]],
        )
    )
    report["dcgm"] = asdict(dcgm)

    # 5. Start-up.
    best = min(measure("tracecore --help", [*TRACECORE, "--help"]).wall_s for _ in range(5))
    print(f"\nStart-up: `tracecore --help` best of 5: {best:.3f} s")
    report["startup_s"] = best
    (OUT / "results.json").write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
