"""Synthetic incidents for benchmarks and scale tests (``tracecore synth``).

Writes R ranks over H hosts: one flight-recorder dump per rank in the real format (protocol-2
pickle with memo-shared frames, or ``_dump_fr_trace_json`` JSON), NCCL-shaped: tensor-parallel
groups of 8, data-parallel groups across them, a default group; per step four TP all_reduce, one
DP ``_reduce_scatter_base`` and ``_all_gather_base``, a default all_reduce every 5 steps, a batched
p2p exchange every 10 steps (entries plus the ``coalesced`` end-marker). Every rank records 1.5 × E
ops, so the ring buffer has wrapped. Optional faults: a missing rank (never enters the last default
all_reduce), a size mismatch, an Xid 79 on one GPU. Also per-host kernel logs with realistic noise
and DCGM exporter scrapes, plus an ``incident.toml`` mapping every rank to its host, GPU and PCI id.
Deterministic for a given seed.
"""

from __future__ import annotations

import json
import pickle
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FAULTS = ("none", "missing-rank", "mismatch", "xid79")
TP = 8
T0_NS = 1_795_766_400_000_000_000  # 2026-11-27T08:00:00Z
STEP_NS = 350_000_000

_STACK = [
    ("all_reduce", "torch/distributed/distributed_c10d.py", 2950),
    ("wrapper", "torch/distributed/c10d_logger.py", 83),
    ("reduce_grads", "megatron/core/distributed/grad_buffer.py", 211),
    ("finish_grad_sync", "megatron/core/distributed/distributed_data_parallel.py", 402),
    ("train_step", "megatron/training/training.py", 1188),
    ("train", "megatron/training/training.py", 1471),
    ("pretrain", "megatron/training/training.py", 318),
    ("main", "pretrain_gpt.py", 262),
    ("<module>", "pretrain_gpt.py", 270),
]


@dataclass(frozen=True)
class SynthSpec:
    """What to generate."""

    ranks: int = 64
    hosts: int = 8
    entries: int = 2000
    fmt: str = "pickle"
    fault: str = "none"
    culprit: int = 3
    kernel_lines: int = 2000
    dcgm_scrapes: int = 4
    seed: int = 7
    # Point-to-point send/recv pairs in the tensor-parallel groups (PyTorch's own analyzer
    # gives up on a group whose p2p entries it cannot pair, so its benchmark runs without).
    p2p: bool = True


def _pci(local: int) -> str:
    return f"0000:{0x18 + 0x1B * local:02x}:00.0"


def _frames_pool() -> dict[str, list[dict[str, Any]]]:
    """Per op family one stack; the same dict objects are reused so pickle memo-shares them."""
    pool = {}
    for op in ("all_reduce", "_reduce_scatter_base", "_all_gather_base", "send", "recv", "coalesced"):
        frames = [{"name": name, "filename": file, "line": line} for name, file, line in _STACK]
        frames[0] = {"name": op.lstrip("_"), "filename": _STACK[0][1], "line": _STACK[0][2]}
        pool[op] = frames
    return pool


def _groups(ranks: int) -> tuple[dict[int, list[int]], dict[int, list[int]]]:
    tp = min(TP, ranks)
    tp_groups = {g: list(range(g * tp, (g + 1) * tp)) for g in range(ranks // tp)}
    dp_groups = {i: [g * tp + i for g in range(ranks // tp)] for i in range(tp)}
    return tp_groups, dp_groups


def rank_entries(spec: SynthSpec, rank: int) -> dict[str, Any]:
    """The dump dict of one rank (the shape torch pickles)."""
    rng = random.Random(spec.seed * 100_003 + rank)
    tp = min(TP, spec.ranks)
    tp_groups, dp_groups = _groups(spec.ranks)
    tp_index, dp_index = rank // tp, rank % tp
    n_tp = len(tp_groups)
    names = {"default": "0", "tp": str(1 + tp_index), "dp": str(1 + n_tp + dp_index)}
    members = {"default": list(range(spec.ranks)), "tp": tp_groups[tp_index], "dp": dp_groups[dp_index]}
    pg_ids = {"default": 0, "tp": 1, "dp": 2}
    descs = {"default": "default_pg", "tp": "tensor_parallel", "dp": "data_parallel"}
    frames = _frames_pool()
    counters = {g: {"coll": 0, "p2p": 0, "op": 0} for g in names}
    entries: list[dict[str, Any]] = []
    total = spec.entries * 3 // 2
    record_id = 0
    step = 0
    hidden = 4096
    mismatch_at = total - spec.entries // 2

    def add(
        group: str,
        op: str,
        sizes_in: list[list[int]],
        sizes_out: list[list[int]],
        p2p: bool = False,
        peer: str = "",
    ) -> None:
        nonlocal record_id
        c = counters[group]
        c["op"] += 1
        if not p2p:
            c["coll"] += 1
        created = T0_NS + step * STEP_NS + len(entries) * 1_000 + rng.randrange(50_000)
        duration = 1.5 + rng.random()
        entries.append(
            {
                "record_id": record_id,
                "pg_id": pg_ids[group],
                "process_group": (names[group], descs[group]),
                "collective_seq_id": c["coll"],
                "p2p_seq_id": c["p2p"],
                "op_id": c["op"],
                "profiling_name": f"nccl:{op}{peer}",
                "time_created_ns": created,
                "duration_ms": duration,
                # Fresh lists per entry and shared frame dicts, as torch's pickles have them
                # (its memo shares the frame dicts, never an entry's lists).
                "input_sizes": [list(shape) for shape in sizes_in],
                "output_sizes": [list(shape) for shape in sizes_out],
                "input_dtypes": ["BFloat16"] * len(sizes_in),
                "output_dtypes": ["BFloat16"] * len(sizes_out),
                "state": "completed",
                "time_discovered_started_ns": created + 20_000,
                "time_discovered_completed_ns": created + int(duration * 1e6),
                "retired": True,
                "timeout_ms": 600_000,
                "is_p2p": p2p,
                "thread_name": "pt_main_thread",
                "thread_id": str(140_000_000 + rank),
                "frames": list(frames["coalesced" if op == "coalesced" else op.split(" ")[0]]),
            }
        )
        record_id += 1

    while len(entries) < total:
        for _ in range(4):
            add("tp", "all_reduce", [[hidden, hidden // tp]], [[hidden, hidden // tp]])
        dp_size = len(members["dp"])
        shard = [[1024 * 1024]]
        rows = 1024 * 1024 * dp_size
        if (
            spec.fault == "mismatch"
            and rank == spec.culprit
            and len(entries) >= mismatch_at
            and len(entries) < mismatch_at + 10
        ):
            rows += 8
        add("dp", "_reduce_scatter_base", [[rows]], shard)
        add("dp", "_all_gather_base", shard, [[1024 * 1024 * dp_size]])
        if step % 5 == 0:
            add("default", "all_reduce", [[1]], [[1]])
        if spec.p2p and step % 10 == 0 and tp > 1:
            local = members["tp"].index(rank)
            nxt, prv = (local + 1) % tp, (local - 1) % tp
            counters["tp"]["p2p"] += 1
            add("tp", "send", [[hidden]], [[hidden]], p2p=True, peer=f" {local}->{nxt}")
            add("tp", "recv", [[hidden]], [[hidden]], p2p=True, peer=f" {local}<-{prv}")
            add("tp", "coalesced", [], [], p2p=True)
        step += 1
    entries = entries[-spec.entries :]
    if spec.fault in ("missing-rank", "xid79") and rank != spec.culprit:
        add("default", "all_reduce", [[1]], [[1]])
        last = entries[-1]
        last.update(state="started", time_discovered_completed_ns=None, retired=False)
        del last["duration_ms"]
        entries = entries[-spec.entries :]
    status = {}
    for pg_id in pg_ids.values():
        seqs = [e["collective_seq_id"] for e in entries if e["pg_id"] == pg_id and not e["is_p2p"]]
        done = [
            e["collective_seq_id"]
            for e in entries
            if e["pg_id"] == pg_id and not e["is_p2p"] and e["state"] == "completed"
        ]
        status[str(pg_id)] = {
            "last_enqueued_collective": max(seqs, default=-1),
            "last_started_collective": max(seqs, default=-1),
            "last_completed_collective": max(done, default=-1),
        }
    return {
        "version": "2.10",
        "comm_lib_version": "2.27.5",
        "pg_config": {
            names[g]: {"name": names[g], "desc": descs[g], "ranks": json.dumps(members[g]).replace(",", ", ")}
            for g in names
        },
        "pg_status": status,
        "entries": entries,
    }


def _json_dump(dump: dict[str, Any]) -> str:
    """The ``_dump_fr_trace_json`` shape: no frames, lists, 0 for null, string pg_status, sorted keys."""
    entries = []
    for entry in dump["entries"]:
        converted = {k: v for k, v in entry.items() if k != "frames"}
        converted["process_group"] = list(entry["process_group"])
        for key in ("time_discovered_started_ns", "time_discovered_completed_ns"):
            converted[key] = converted.get(key) or 0
        entries.append(converted)
    document: dict[str, Any] = {
        "version": dump["version"],
        "comm_lib_version": dump["comm_lib_version"],
        "pg_config": dump["pg_config"],
        "pg_status": {k: {kk: str(vv) for kk, vv in v.items()} for k, v in dump["pg_status"].items()},
        "nccl_comm_state": {},
    }
    if entries:
        document["entries"] = entries
    return json.dumps(document, sort_keys=True, separators=(",", ":"))


_NOISE = [
    "systemd-journald[812]: Received client request to flush runtime journal.",
    "EXT4-fs (nvme0n1p2): mounted filesystem with ordered data mode. Quota mode: none.",
    "mlx5_core 0000:{bus}:00.0: mlx5_pcie_event:301:(pid 1045): PCIe slot advertised sufficient power (27W).",
    "IPv6: ADDRCONF(NETDEV_CHANGE): ib{n}: link becomes ready",
    "nvidia-nvlink: Nvlink Core is being initialized, major device number 511",
    "NVRM: loading NVIDIA UNIX Open Kernel Module for x86_64  570.195.03  Release Build",
    'audit: type=1400 audit({t}:{n}): apparmor="STATUS" operation="profile_replace" name="nvidia_modprobe" pid=1822',
    "perf: interrupt took too long (2508 > 2500), lowering kernel.perf_event_max_sample_rate to 79750",
    "nfs: server storage-01 OK",
    "IPMI message handler: version 39.2",
    "TCP: request_sock_TCP: Possible SYN flooding on port 29500. Sending cookies.",
    "docker0: port 1(veth{n}) entered forwarding state",
]


def kernel_log(spec: SynthSpec, host: int, rng: random.Random) -> str:
    """A raw-dmesg log with realistic noise (and the Xid 79 for the xid79 fault)."""
    lines = []
    xid_at = spec.kernel_lines // 2
    culprit_host = spec.culprit // max(1, spec.ranks // spec.hosts)
    for i in range(spec.kernel_lines):
        uptime = 3600.0 + i * 0.75 + rng.random() * 0.5
        if spec.fault == "xid79" and host == culprit_host and i == xid_at:
            local = spec.culprit % max(1, spec.ranks // spec.hosts)
            bus = _pci(local)[5:7]
            lines.append(
                f"[{uptime:12.6f}] NVRM: Xid (PCI:0000:{bus}:00): 79, pid=48213, name=python3, GPU has fallen off the bus."
            )
            continue
        template = _NOISE[rng.randrange(len(_NOISE))]
        lines.append(
            f"[{uptime:12.6f}] "
            + template.format(bus=f"{0x30 + rng.randrange(8):02x}", n=rng.randrange(100), t=i)
        )
    return "\n".join(lines) + "\n"


def dcgm_scrapes(spec: SynthSpec, host: int, gpus: int, rng: random.Random) -> str:
    """dcgm-exporter scrapes, one block per scrape behind a ``# scraped at`` comment."""
    fields = [
        ("DCGM_FI_DEV_SM_CLOCK", "gauge", lambda: 1980),
        ("DCGM_FI_DEV_GPU_TEMP", "gauge", lambda: 55 + rng.randrange(10)),
        ("DCGM_FI_DEV_POWER_USAGE", "gauge", lambda: f"{400 + rng.random() * 200:.6f}"),
        ("DCGM_FI_DEV_GPU_UTIL", "gauge", lambda: 95 + rng.randrange(5)),
        ("DCGM_FI_DEV_FB_USED", "gauge", lambda: 61234),
        ("DCGM_FI_DEV_PCIE_REPLAY_COUNTER", "counter", lambda: 0),
        ("DCGM_FI_DEV_XID_ERRORS", "gauge", lambda: 0),
    ]
    out = []
    for scrape in range(spec.dcgm_scrapes):
        ts = (T0_NS + scrape * 15_000_000_000) // 1_000_000_000
        out.append(f"# scraped at {ts}")
        for name, kind, value in fields:
            out.append(f"# HELP {name} {name}.")
            out.append(f"# TYPE {name} {kind}")
            for gpu in range(gpus):
                labels = (
                    f'gpu="{gpu}",UUID="GPU-{host:04x}{gpu:04x}-0000-0000-0000-000000000000",pci_bus_id="0000{_pci(gpu)[4:].upper()}",'
                    f'device="nvidia{gpu}",modelName="NVIDIA H100 80GB HBM3",Hostname="node-{host}"'
                )
                out.append(f"{name}{{{labels}}} {value()}")
    return "\n".join(out) + "\n"


def write_manifest(spec: SynthSpec, out: Path) -> None:
    """``incident.toml`` mapping every rank to its host, local rank, GPU index and PCI id."""
    per_host = spec.ranks // spec.hosts
    manifest = ["[job]", 'name = "synthetic"', f"world_size = {spec.ranks}", ""]
    for rank in range(spec.ranks):
        local = rank % per_host
        manifest += [
            "[[ranks]]",
            f"rank = {rank}",
            f'host = "node-{rank // per_host}"',
            f"local_rank = {local}",
            f"gpu = {local}",
            f'pci_bus_id = "{_pci(local)}"',
            "",
        ]
    for host in range(spec.hosts):
        manifest += ["[[hosts]]", f'name = "node-{host}"', 'boot_time = "2026-11-27T07:00:00Z"', ""]
    out.mkdir(parents=True, exist_ok=True)
    (out / "incident.toml").write_text("\n".join(manifest))


def write_incident(spec: SynthSpec, out: Path) -> dict[str, int]:
    """Write the synthetic incident under ``out``; returns counts of what was written."""
    if spec.fault not in FAULTS:
        raise ValueError(f"unknown fault {spec.fault!r} (known: {', '.join(FAULTS)})")
    if spec.ranks % spec.hosts:
        raise ValueError("ranks must be a multiple of hosts")
    out.mkdir(parents=True, exist_ok=True)
    per_host = spec.ranks // spec.hosts
    write_manifest(spec, out)
    written = {"fr_files": 0, "fr_entries": 0, "kernel_lines": 0, "dcgm_samples": 0}
    for rank in range(spec.ranks):
        dump = rank_entries(spec, rank)
        host_dir = out / f"node-{rank // per_host}" / "fr"
        host_dir.mkdir(parents=True, exist_ok=True)
        if spec.fmt == "json":
            (host_dir / f"comm_lib_trace_rank_{rank}.json").write_text(_json_dump(dump))
        else:
            (host_dir / f"comm_lib_trace_rank_{rank}").write_bytes(pickle.dumps(dump, protocol=2))
        written["fr_files"] += 1
        written["fr_entries"] += len(dump["entries"])
    rng = random.Random(spec.seed)
    for host in range(spec.hosts):
        host_dir = out / f"node-{host}"
        host_dir.mkdir(parents=True, exist_ok=True)
        if spec.kernel_lines:
            (host_dir / "dmesg.log").write_text(kernel_log(spec, host, rng))
            written["kernel_lines"] += spec.kernel_lines
        if spec.dcgm_scrapes:
            (host_dir / "dcgm.prom").write_text(dcgm_scrapes(spec, host, per_host, rng))
            written["dcgm_samples"] += spec.dcgm_scrapes * per_host * 7
    return written
