"""The worker processes' start method, shared by the engine and an early start from the CLI.

Workers come from a fork server that has imported the parsers once (~0.5 s with Polars and
pyarrow). Started when the command starts, it imports them while this process imports its own
modules and walks the incident, instead of after. Kept free of heavy imports for that reason.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
from multiprocessing.context import BaseContext

_PRELOAD = ["tracecore.analyzers.ingest.registry"]


def worker_context() -> BaseContext:
    """The ``forkserver`` context the engine's pools use, with the parsers preloaded."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(_PRELOAD)
    return context


def start_early(jobs: int | None) -> None:
    """Start the fork server now when ingest may run in parallel (``jobs`` None: every CPU).

    Only the server starts (no worker yet): an incident that turns out to be small, or a table
    directory already ingested, costs one idle process (~0.5 s of another core's time). Failing
    to start is not an error here; the engine reports it when it needs workers.
    """
    if jobs == 1 or (jobs is None and usable_cpus() < 2):
        return
    from multiprocessing import forkserver

    worker_context()
    with contextlib.suppress(OSError):
        forkserver.ensure_running()


def stop_server() -> None:
    """Stop the fork server once a parse is done; the next pool starts a new one.

    It holds the preloaded parsers (~90 MB with Polars and pyarrow) and would otherwise idle
    through the whole analysis that follows the parse, counted in the run's memory.
    """
    from multiprocessing import forkserver

    # The standard library stops it only at exit; ``_stop`` is its own (private) way to do so
    # sooner, so it is looked up rather than assumed.
    stop = getattr(getattr(forkserver, "_forkserver", None), "_stop", None)
    if callable(stop):
        with contextlib.suppress(OSError):
            stop()


def usable_cpus() -> int:
    """The CPUs this process may run on (the engine's default worker count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        return os.cpu_count() or 1
