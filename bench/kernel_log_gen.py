"""Generate a large kernel log with one Xid 79 in the middle, and measure parse speed.

Usage: ``.venv/bin/python bench/kernel_log_gen.py [--lines 1000000] [--format raw] [--out FILE]``.
Prints the size, the parse time and the throughput in MB/s of kernel-log text (one process, one
file, best CPU time of three parses). ``--format`` picks the envelope (default raw ``dmesg``; see
``FORMATS``); every format carries the same messages and stamps.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import sys
import time
from pathlib import Path

# Ordinary kernel chatter seen on GPU hosts; numbers vary so most lines are distinct.
NOISE = (
    "usb 1-{a}: new high-speed USB device number {b} using xhci_hcd",
    "EXT4-fs (nvme0n1p{a}): mounted filesystem {b:08x}-1b2c with ordered data mode. Quota mode: none.",
    'audit: type=1400 audit({b}.{a}:42): apparmor="STATUS" operation="profile_load" profile="unconfined" name="docker-default" pid={b}',
    "IPv6: ADDRCONF(NETDEV_CHANGE): veth{b:06x}: link becomes ready",
    "docker0: port {a}(veth{b:06x}) entered forwarding state",
    "systemd-journald[{b}]: Received client request to flush runtime journal.",
    "nvidia-uvm: Loaded the UVM driver, major device number {a}.",
    "perf: interrupt took too long ({b} > {a}), lowering kernel.perf_event_max_sample_rate to {b}",
    "TCP: request_sock_TCP: Possible SYN flooding on port {b}. Sending cookies.",
    "cgroup: fork rejected by pids controller in /kubepods/burstable/pod{b:08x}",
)
XID79 = "NVRM: Xid (PCI:0000:3b:00): 79, pid='<unknown>', name=<unknown>, GPU has fallen off the bus."


# Envelopes a kernel log arrives in (docs/kernel-logs.md): name -> line formatter.
FORMATS = (
    "raw",  # dmesg
    "ctime",  # dmesg -T
    "iso",  # dmesg --time-format iso
    "dmesg_x",  # dmesg -x
    "kmsg",  # /dev/kmsg records
    "short",  # journalctl -k (short)
    "short_precise",  # journalctl -o short-precise
    "short_iso",  # journalctl -o short-iso
    "short_monotonic",  # journalctl -o short-monotonic
    "json",  # journalctl -o json
    "rfc3164",  # syslog (BSD) with the kernel's [uptime] inside
    "rfc5424",  # syslog RFC 5424 with the kernel's [uptime] inside
)
BOOT = dt.datetime(2026, 11, 27, 6, 0, 0, tzinfo=dt.UTC)


def envelope(name: str, seq: int, uptime: float, body: str) -> str:
    """One line of ``body`` in envelope ``name`` (``seq``: record number, ``uptime``: seconds)."""
    wall = BOOT + dt.timedelta(seconds=uptime)
    up = f"[{uptime:12.6f}]"
    lines = {
        "raw": lambda: f"{up} {body}",
        "ctime": lambda: f"[{wall:%a %b} {wall.day:2d} {wall:%H:%M:%S %Y}] {body}",
        "iso": lambda: f"{wall:%Y-%m-%dT%H:%M:%S},{wall.microsecond:06d}+00:00 {body}",
        "dmesg_x": lambda: f"kern  :info  : {up} {body}",
        "kmsg": lambda: f"6,{seq},{int(uptime * 1e6)},-;{body}",
        "short": lambda: f"{wall:%b %d %H:%M:%S} node-1 kernel: {body}",
        "short_precise": lambda: f"{wall:%b %d %H:%M:%S}.{wall.microsecond:06d} node-1 kernel: {body}",
        "short_iso": lambda: f"{wall:%Y-%m-%dT%H:%M:%S}+0000 node-1 kernel: {body}",
        "short_monotonic": lambda: f"{up} node-1 kernel: {body}",
        "json": lambda: json.dumps(
            {
                "__REALTIME_TIMESTAMP": str(int(wall.timestamp() * 1e6)),
                "__MONOTONIC_TIMESTAMP": str(int(uptime * 1e6)),
                "_HOSTNAME": "node-1",
                "PRIORITY": "6",
                "SYSLOG_IDENTIFIER": "kernel",
                "_TRANSPORT": "kernel",
                "MESSAGE": body,
            },
            separators=(",", ":"),
        ),
        "rfc3164": lambda: f"<6>{wall:%b %d %H:%M:%S} node-1 kernel: {up} {body}",
        "rfc5424": lambda: (
            f"<6>1 {wall:%Y-%m-%dT%H:%M:%S}.{wall.microsecond:06d}+00:00 node-1 kernel - - - {up} {body}"
        ),
    }
    return lines[name]()


def generate(lines: int, seed: int = 7, fmt: str = "raw") -> bytes:
    """A kernel log of ``lines`` lines in envelope ``fmt`` with exactly one Xid 79 line in the middle."""
    rng = random.Random(seed)
    out: list[str] = []
    middle = lines // 2
    for i in range(lines):
        uptime = 100.0 + i * 0.000731
        if i == middle:
            body = XID79
        else:
            body = rng.choice(NOISE).format(a=rng.randrange(1, 9), b=rng.randrange(1, 1 << 24))
        out.append(envelope(fmt, i, uptime, body))
    return ("\n".join(out) + "\n").encode()


def main(argv: list[str] | None = None) -> int:
    """Generate, parse, report MB/s."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--format", choices=FORMATS, default="raw", help="envelope of every line")
    parser.add_argument("--out", type=Path, default=None, help="also write the log here")
    args = parser.parse_args(argv)
    # Per-core figure: one Polars thread, CPU time of this process (the machine may be shared).
    os.environ.setdefault("POLARS_MAX_THREADS", "1")
    from tracecore.analyzers.ingest.base import FileContext
    from tracecore.analyzers.ingest.kernel_log import KernelLogParser
    from tracecore.analyzers.ingest.manifest import Manifest
    from tracecore.analyzers.tables import conform

    data = generate(args.lines, fmt=args.format)
    if args.out:
        args.out.write_bytes(data)
    # The file's mtime gives syslog stamps without a year their year (as on a real capture).
    mtime_ns = int(BOOT.timestamp() * 1e9)
    ctx = FileContext(Path("dmesg.log"), "node-1/dmesg.log", data, "node-1", Manifest(), mtime_ns)
    parser_ = KernelLogParser()
    parser_.parse(ctx)  # warm-up (imports, regex compilation)
    best_wall = best_cpu = float("inf")
    rows = 0
    xid79 = 0
    for _ in range(3):
        wall, cpu = time.perf_counter(), time.process_time()
        output = parser_.parse(ctx)
        table = conform("kernel_events", output.tables["kernel_events"])
        best_wall = min(best_wall, time.perf_counter() - wall)
        best_cpu = min(best_cpu, time.process_time() - cpu)
        rows = table.num_rows
        xid79 = sum(1 for x in table.column("xid").to_pylist() if x == 79)
    mb = len(data) / 1e6
    print(
        f"format={args.format} lines={args.lines} size={mb:.1f}MB polars_threads={os.environ['POLARS_MAX_THREADS']} "
        f"cpu={best_cpu:.3f}s ({mb / best_cpu:.1f} MB/s per core) wall={best_wall:.3f}s ({mb / best_wall:.1f} MB/s) "
        f"rows={rows} xid79_rows={xid79}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
