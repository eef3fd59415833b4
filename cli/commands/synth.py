"""``tracecore synth``: write a synthetic incident for benchmarks and scale tests."""

from __future__ import annotations

from pathlib import Path

import click

from ..app import error_console


@click.command("synth")
@click.argument("out", type=click.Path(file_okay=False, path_type=str))
@click.option("--ranks", type=click.IntRange(min=1), default=64, show_default=True, help="World size.")
@click.option(
    "--hosts",
    type=click.IntRange(min=1),
    default=8,
    show_default=True,
    help="Hosts (ranks must divide evenly).",
)
@click.option(
    "--entries",
    type=click.IntRange(min=1),
    default=2000,
    show_default=True,
    help="Flight-recorder entries per rank.",
)
@click.option(
    "--fr-format", "fmt", type=click.Choice(["pickle", "json"]), default="pickle", show_default=True
)
@click.option(
    "--fault",
    type=click.Choice(["none", "missing-rank", "mismatch", "xid79"]),
    default="none",
    show_default=True,
    help="Fault to inject.",
)
@click.option(
    "--culprit", type=click.IntRange(min=0), default=3, show_default=True, help="Rank the fault hits."
)
@click.option(
    "--kernel-lines",
    type=click.IntRange(min=0),
    default=2000,
    show_default=True,
    help="Kernel-log lines per host.",
)
@click.option(
    "--dcgm-scrapes", type=click.IntRange(min=0), default=4, show_default=True, help="DCGM scrapes per host."
)
@click.option("--seed", type=int, default=7, show_default=True, help="Random seed (same seed, same files).")
@click.option(
    "--p2p/--no-p2p",
    default=True,
    show_default=True,
    help="Point-to-point send/recv entries in the tensor-parallel groups.",
)
def synth_command(
    out: str,
    ranks: int,
    hosts: int,
    entries: int,
    fmt: str,
    fault: str,
    culprit: int,
    kernel_lines: int,
    dcgm_scrapes: int,
    seed: int,
    p2p: bool,
) -> None:
    """Write a synthetic incident (FR dumps, kernel logs, DCGM scrapes, manifest) to OUT.

    \b
    Example:
      tracecore synth /tmp/inc --ranks 1024 --hosts 128 --fault missing-rank --culprit 3
    """
    from tracecore.analyzers.errors import UsageError
    from tracecore.analyzers.synth import SynthSpec, write_incident

    if ranks % hosts:
        raise UsageError(f"--ranks {ranks} is not a multiple of --hosts {hosts}")
    if culprit >= ranks:
        raise UsageError(f"--culprit {culprit} is not a rank below {ranks}")
    spec = SynthSpec(ranks, hosts, entries, fmt, fault, culprit, kernel_lines, dcgm_scrapes, seed, p2p)
    counts = write_incident(spec, Path(out))
    error_console().print(
        f"wrote {counts['fr_files']} dumps ({counts['fr_entries']} entries), {counts['kernel_lines']} kernel lines, "
        f"{counts['dcgm_samples']} DCGM samples to {out}",
        markup=False,
        highlight=False,
    )
