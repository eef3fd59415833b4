"""Every table's Arrow schema, in one place (documented column by column in docs/tables.md).

Shared join columns carry the same name and type in every table: ``host`` (string), ``rank``,
``local_rank``, ``gpu_index`` (int32), ``pci_bus_id`` (``0000:3b:00.0``, lower case), ``pid``
(int64), ``ts_ns`` (int64 UTC nanoseconds), ``source_file`` (path relative to the incident root),
``source_line`` (int64, 1-based; the record index for non-line formats).
"""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa

SCHEMA_VERSION = "1"


def col(name: str, dtype: pa.DataType, doc: str, nullable: bool = True) -> pa.Field:
    """A field with its documentation attached as metadata."""
    return pa.field(name, dtype, nullable=nullable, metadata={"doc": doc})


def _schema(source: str, *fields: pa.Field) -> pa.Schema:
    return pa.schema(
        list(fields), metadata={"tracecore.table": source, "tracecore.schema_version": SCHEMA_VERSION}
    )


# Tables of millions of rows whose strings repeat (per series, per dump) store those strings
# dictionary-encoded: a 4-byte code per row. Polars reads them as Categorical: compare them with
# string literals freely, cast to pl.String before joining them with another table's columns or
# using string functions.
DICTIONARY_STRING = pa.dictionary(pa.int32(), pa.string())


def _dictionary_strings(schema: pa.Schema) -> pa.Schema:
    """``schema`` with every plain string column dictionary-encoded."""
    return pa.schema(
        [f.with_type(DICTIONARY_STRING) if f.type == pa.string() else f for f in schema],
        metadata=schema.metadata,
    )


def coded(values: Sequence[str | None], index: pa.Array) -> pa.DictionaryArray:
    """A dictionary column whose row i is ``values[index[i]]`` (``values`` may repeat or hold None).

    For parsers that already hold each row's code into a few distinct values: no string per row
    is built, and the dictionary holds each text once (None reads as null).
    """
    codes: dict[str, int] = {}
    remap = [None if v is None else codes.setdefault(v, len(codes)) for v in values]
    return pa.DictionaryArray.from_arrays(
        pa.array(remap, type=pa.int32()).take(index), pa.array(list(codes), type=pa.string())
    )


def constant(value: str | None, length: int) -> pa.DictionaryArray:
    """A dictionary column holding ``value`` (None: null) in each of ``length`` rows."""
    if value is None:
        return pa.nulls(length, DICTIONARY_STRING)
    return pa.DictionaryArray.from_arrays(
        pa.repeat(pa.scalar(0, pa.int32()), length), pa.array([value], type=pa.string())
    )


# Shared columns, defined once so every table agrees on names, types and meaning.
HOST = col("host", pa.string(), "Host the record belongs to (content first, then path; docs/incident-dir.md)")
RANK = col("rank", pa.int32(), "Global rank, null when unknown")
LOCAL_RANK = col("local_rank", pa.int32(), "Rank within its host, null when unknown")
GPU_INDEX = col("gpu_index", pa.int32(), "GPU index on its host (NVML order), null when unknown")
PCI_BUS_ID = col(
    "pci_bus_id", pa.string(), "PCI address normalised to 0000:3b:00.0 (lower case), null when unknown"
)
PID = col("pid", pa.int64(), "Operating-system process id, null when unknown")
TS_NS = col("ts_ns", pa.int64(), "Event time, UTC nanoseconds since the epoch; null when unknown")
TS_TEXT = col("ts_text", pa.string(), "Timestamp exactly as written in the input, when parsed from text")
SOURCE_FILE = col("source_file", pa.string(), "Input file, relative to the incident root", nullable=False)
SOURCE_LINE = col(
    "source_line", pa.int64(), "1-based line (or record index for non-line formats) in source_file"
)

FRAME = pa.struct(
    [pa.field("name", pa.string()), pa.field("filename", pa.string()), pa.field("line", pa.int64())]
)
SHAPES = pa.list_(pa.list_(pa.int64()))

FR_ENTRIES = _schema(
    "fr_entries",
    SOURCE_FILE,
    SOURCE_LINE,
    HOST,
    RANK,
    TS_NS,
    col(
        "dump_version", pa.string(), "Flight-recorder format version of the dump ('' for pre-2024 bare lists)"
    ),
    col("record_id", pa.int64(), "Process-wide entry id (per reset epoch); never compared across ranks"),
    col("pg_id", pa.int64(), "Process-local index of the process group; not comparable across ranks"),
    col("pg_name", pa.string(), "Global process-group name ('0' is the default group)"),
    col("pg_desc", pa.string(), "Process-group description (default_pg, user group_desc, undefined)"),
    col("group_key", pa.string(), "Group identity: name plus member set (split groups reuse names)"),
    col("collective_seq_id", pa.int64(), "Per-group collective launch counter"),
    col("p2p_seq_id", pa.int64(), "Per-group point-to-point launch counter"),
    col("op_id", pa.int64(), "Per-group logical op counter (each op of a coalesced group counts)"),
    col("profiling_name", pa.string(), "Raw '<backend>:<op>' name as recorded"),
    col("backend", pa.string(), "Backend prefix of profiling_name (nccl, gloo, xccl, …)"),
    col("op", pa.string(), "Operation part of profiling_name without peers (all_reduce, send, coalesced, …)"),
    col("is_p2p", pa.bool_(), "Point-to-point entry (send/recv or their coalesced end-marker)"),
    col(
        "p2p_peer",
        pa.int32(),
        "Group-local peer rank named in a p2p profiling name, null for 'recv from any'",
    ),
    col("input_sizes", SHAPES, "Input tensor shapes, one list per tensor"),
    col("output_sizes", SHAPES, "Output tensor shapes, one list per tensor"),
    col("input_numel", pa.int64(), "Total elements over all input tensors"),
    col("output_numel", pa.int64(), "Total elements over all output tensors"),
    col("input_dtypes", pa.list_(pa.string()), "Input dtypes (ScalarType names)"),
    col("output_dtypes", pa.list_(pa.string()), "Output dtypes (ScalarType names)"),
    col("state", pa.string(), "scheduled, started or completed at dump time"),
    col("retired", pa.bool_(), "Watchdog removed the work (gloo: the only completion signal)"),
    col("timeout_ms", pa.int64(), "Timeout of the group for this op, milliseconds"),
    col("duration_ms", pa.float64(), "Measured duration (timing enabled only), milliseconds"),
    col("time_created_ns", pa.int64(), "Enqueue time, UTC ns (also in ts_ns)"),
    col("time_started_ns", pa.int64(), "When the CPU noticed the start, UTC ns; null when unknown"),
    col("time_completed_ns", pa.int64(), "When the CPU noticed completion, UTC ns; null when unknown"),
    col("thread_name", pa.string(), "Enqueuing thread name"),
    col("thread_id", pa.string(), "Enqueuing thread id"),
    col(
        "stack_id",
        pa.int64(),
        "The entry's whole stack (key into fr_stacks: identical stacks share one id across all dumps); "
        "null when the dump has no frames",
    ),
    col("dump_format", pa.string(), "pickle or json: how the dump was written"),
    col(
        "comm_lib_version",
        pa.string(),
        "comm_lib_version / nccl_version / xccl_version of the dump ('' on gloo)",
    ),
    col(
        "p2p_local_rank",
        pa.int32(),
        "Group-local rank of the issuing rank as a p2p profiling name spells it (send 1->0: 1)",
    ),
    col(
        "call_site",
        pa.string(),
        "Innermost caller frame outside torch/library code, 'file:line function'; null without frames",
    ),
    col("call_stack_id", pa.int64(), "Hash of the caller's frames outside library code; null without frames"),
)

# fr_entries holds millions of rows whose strings repeat per dump (file, host, group, op, state,
# call site): its string columns are dictionary-encoded too.
FR_ENTRIES = _dictionary_strings(FR_ENTRIES)

FR_CALLS = _dictionary_strings(
    _schema(
        "fr_calls",
        SOURCE_FILE,
        col("source_line", pa.int64(), "Position in source_file of the call's first entry"),
        RANK,
        col("pg_name", pa.string(), "Global process-group name"),
        col("pg_desc", pa.string(), "Process-group description"),
        col(
            "group_key", pa.string(), "Group identity (as in fr_entries); set across files, null when unknown"
        ),
        col("collective_seq_id", pa.int64(), "Per-group collective launch counter"),
        col("ops", pa.string(), "The call's ops in record order, joined with '+' (coalesced members)"),
        col("profiling_name", pa.string(), "profiling_name of the first entry"),
        col("backend", pa.string(), "Backend of the first entry"),
        col("record_id", pa.int64(), "record_id of the first entry"),
        col(
            "sig", pa.uint64(), "Hash of ops, compared sizes and dtypes: equal on every rank of a sound call"
        ),
        col("op_sig", pa.uint64(), "Hash of the ops alone"),
        col("in_sig", pa.uint64(), "Hash of the compared input sizes (null where the op lets them differ)"),
        col("out_sig", pa.uint64(), "Hash of the compared output sizes (null where the op lets them differ)"),
        col("dtype_sig", pa.uint64(), "Hash of the non-empty input and output dtypes"),
        col(
            "shape_bad",
            pa.bool_(),
            "An entry's sizes contradict its op whatever the group size (all_reduce in != out, "
            "all_gather/reduce_scatter numel not a whole multiple)",
        ),
        col(
            "numel_ratio_min",
            pa.int64(),
            "Smallest whole/part numel ratio of the call's all_gather (out/in) or reduce_scatter "
            "(in/out) entries: the group size the sizes imply",
        ),
        col("numel_ratio_max", pa.int64(), "Largest such ratio"),
        col("done", pa.bool_(), "Some entry completed (gloo: retired)"),
        col("retired_not_completed", pa.bool_(), "Some entry was retired without completing"),
        col("state", pa.string(), "State of the last entry"),
        col("created_ns", pa.int64(), "Earliest enqueue time, UTC ns"),
        col("started_ns", pa.int64(), "Earliest start time, UTC ns"),
        col("completed_ns", pa.int64(), "Latest completion time, UTC ns"),
        col("duration_ms", pa.float64(), "Longest measured duration, ms"),
        col("timeout_ms", pa.int64(), "Largest timeout, ms"),
        col("input_numel", pa.int64(), "Input elements over the call's entries"),
        col("output_numel", pa.int64(), "Output elements over the call's entries"),
        col("call_stack_id", pa.int64(), "First caller-stack hash among the entries"),
        col("call_site", pa.string(), "First call site among the entries"),
        col("wrapped", pa.bool_(), "The dump's ring buffer wrapped (its oldest record id is not 0)"),
        col(
            "partial",
            pa.bool_(),
            "The oldest call of its group in a wrapped dump: possibly cut, used for progress only",
        ),
    )
)

FR_STACKS = _schema(
    "fr_stacks",
    col("stack_id", pa.int64(), "Hash of the whole stack's frames (fr_entries.stack_id refers to it)"),
    col("frames", pa.list_(FRAME), "Python (and C++) frames, innermost first; one row per distinct stack"),
)

FR_GROUPS = _schema(
    "fr_groups",
    col("group_key", pa.string(), "Group identity: name plus member set"),
    col("pg_name", pa.string(), "Global process-group name"),
    col("pg_desc", pa.string(), "Process-group description"),
    col("ranks", pa.list_(pa.int32()), "Member global ranks, sorted"),
    col("size", pa.int32(), "Number of members"),
    col("membership_source", pa.string(), "config (pg_config was sane) or inferred (from entries)"),
    col("dumped_ranks", pa.list_(pa.int32()), "Members that left a dump"),
    col(
        "source_file",
        pa.string(),
        "Dump whose pg_config described the group (per-file rows before cross-file merging; null after)",
    ),
    col(
        "ranks_digest",
        pa.binary(),
        "Digest of the member list, equal for equal lists (per-file rows before cross-file merging; null after)",
    ),
)

FR_STATUS = _schema(
    "fr_status",
    SOURCE_FILE,
    HOST,
    RANK,
    col("pg_id", pa.int64(), "Process-local group index (key of pg_status)"),
    col("pg_name", pa.string(), "Global process-group name, when the rank's entries tie pg_id to a name"),
    col("group_key", pa.string(), "Group identity, when known"),
    col("last_enqueued", pa.int64(), "Last enqueued collective sequence number (-1: none)"),
    col("last_started", pa.int64(), "Last started collective sequence number (-1: none or timing off)"),
    col("last_completed", pa.int64(), "Last completed collective sequence number (-1: none)"),
)

STACKS = _schema(
    "stacks",
    SOURCE_FILE,
    SOURCE_LINE,
    col("snapshot_id", pa.string(), "One capture of one process (file plus block index)"),
    HOST,
    PID,
    col("ppid", pa.int64(), "Parent process id when the dump names it"),
    RANK,
    LOCAL_RANK,
    TS_NS,
    col(
        "ts_origin", pa.string(), "How ts_ns was known: file (a time written in the capture), manifest, null"
    ),
    col("capture_format", pa.string(), "dump-text, dump-json, record-raw, speedscope, chrometrace"),
    col("process_role", pa.string(), "trainer, dataloader-worker, launcher-agent or unknown"),
    col("command_line", pa.string(), "Process command line from the dump header"),
    col("python_version", pa.string(), "Python version from the dump header (3.11.7), null when absent"),
    col(
        "rank_source",
        pa.string(),
        "Where rank came from: file-name, command-line, locals, process-elsewhere, manifest",
    ),
    col("thread_id", pa.int64(), "OS thread id (TID) when known"),
    col("thread_name", pa.string(), "Thread name"),
    col("is_main_thread", pa.bool_(), "Main thread of the process"),
    col("owns_gil", pa.bool_(), "Thread held the GIL at capture; null when unknown"),
    col("active", pa.bool_(), "Thread was running (not idle); null when unknown"),
    col(
        "stack_id",
        pa.int32(),
        "Distinct stack within the snapshot (one per thread in dumps; one per collapsed stack in records)",
    ),
    col("depth", pa.int32(), "Frame depth, 0 = innermost; null for a thread without frames"),
    col("function", pa.string(), "Function name"),
    col("file", pa.string(), "File name as printed"),
    col("line", pa.int64(), "Line number, null for native frames without one"),
    col("module", pa.string(), "Shared object for native frames, null for Python frames"),
    col("frame_key", pa.string(), "Normalised identity: function + file basename"),
    col("locals", pa.map_(pa.string(), pa.string()), "Arguments and locals (name → repr) when captured"),
    col("samples", pa.int64(), "Sample count (record formats); 1 for dumps"),
)

GPU_METRICS = _schema(
    "gpu_metrics",
    SOURCE_FILE,
    SOURCE_LINE,
    HOST,
    TS_NS,
    col("ts_origin", pa.string(), "How ts_ns was known: sample, file-name, comment, manifest, mtime"),
    GPU_INDEX,
    PCI_BUS_ID,
    col("gpu_uuid", pa.string(), "GPU UUID"),
    col("device", pa.string(), "Device node name (nvidia0)"),
    col("model_name", pa.string(), "GPU model"),
    col("mig_instance", pa.string(), "MIG GPU instance id, null when not MIG"),
    col("pod", pa.string(), "Kubernetes pod label"),
    col("namespace", pa.string(), "Kubernetes namespace label"),
    col("container", pa.string(), "Kubernetes container label"),
    col("hpc_job", pa.string(), "HPC job label"),
    col("field", pa.string(), "Canonical DCGM field name (pre-4.6 spelling)"),
    col("field_id", pa.int32(), "DCGM numeric field id, null when unknown"),
    col("value", pa.float64(), "Reading (sentinel/blank values are dropped, never stored)"),
    col(
        "labels_id",
        pa.int64(),
        "The row's label set (key into gpu_labels: a hash of the labels as read, so identical label "
        "sets share one id across all files)",
    ),
    col(
        "metric",
        pa.string(),
        "Metric or column name exactly as written (4.6 or 1.x spelling, dmon short name)",
    ),
    col("metric_type", pa.string(), "Prometheus TYPE of the metric (gauge, counter), null when not declared"),
    col(
        "mig_profile", pa.string(), "MIG GPU instance profile (GPU_I_PROFILE, e.g. 1g.6gb), null when not MIG"
    ),
    col("scrape", pa.int32(), "Scrape (exposition) or round (dmon) number within the file, 0-based"),
)

GPU_METRICS = _dictionary_strings(GPU_METRICS)

# Labels are per series, not per sample: stored once per distinct label set.
GPU_LABELS = _schema(
    "gpu_labels",
    col("labels_id", pa.int64(), "Hash of the label set (gpu_metrics.labels_id refers to it)"),
    col("labels", pa.map_(pa.string(), pa.string()), "All labels as read; one row per distinct label set"),
)

KERNEL_EVENTS = _schema(
    "kernel_events",
    SOURCE_FILE,
    SOURCE_LINE,
    HOST,
    TS_NS,
    TS_TEXT,
    col("uptime_s", pa.float64(), "Seconds since boot when the envelope gives it"),
    col(
        "ts_assumption",
        pa.string(),
        "What was assumed to make ts_ns (year, zone, boot time), null if nothing",
    ),
    col(
        "kind",
        pa.string(),
        "xid, sxid, gpu_lost, nvlink, aer, pcie_link, ib_link, oom_kill, hung_task, segfault, gsp, thermal, mce, nfs, fs_error, other",
    ),
    col("xid", pa.int32(), "NVIDIA Xid code, null if none"),
    col("severity", pa.string(), "critical, error, warning or info"),
    col("subject", pa.string(), "What the event is about: device, port or process"),
    PCI_BUS_ID,
    GPU_INDEX,
    RANK,
    PID,
    col("comm", pa.string(), "Process name the kernel names"),
    col("message", pa.string(), "Message text without the envelope"),
    col(
        "trace",
        pa.list_(pa.string()),
        "Call-trace symbols of a multi-line record (hung task, oops), innermost first",
    ),
    col("count", pa.int64(), "Identical lines collapsed into this row (floods)"),
    col("last_ts_ns", pa.int64(), "Time of the last collapsed line, UTC ns"),
    col(
        "attrs",
        pa.map_(pa.string(), pa.string()),
        "Further parsed facts by name (aer_severity, link_state, port, oom_scope, cascade_of, recovery_action, gpu_uuid, …; docs/kernel-logs.md)",
    ),
)

APP_EVENTS = _schema(
    "app_events",
    SOURCE_FILE,
    SOURCE_LINE,
    HOST,
    TS_NS,
    TS_TEXT,
    col(
        "ts_assumption",
        pa.string(),
        "What was assumed to make ts_ns (year of a glog stamp, zone), null if nothing",
    ),
    PID,
    col("tid", pa.int64(), "Thread id from an NCCL prefix"),
    RANK,
    LOCAL_RANK,
    GPU_INDEX,
    PCI_BUS_ID,
    col(
        "kind",
        pa.string(),
        "nccl_init, nccl_info, nccl_warn, nccl_errprop, nccl_error, watchdog_timeout, watchdog_failure, heartbeat, dump_signal, teardown, desync, cuda_oom, cuda_error, elastic_failure, elastic_summary, rendezvous_failure, fatal_signal, exception, c10d (docs/app-logs.md), other",
    ),
    col("severity", pa.string(), "critical, error, warning or info"),
    col("seq", pa.int64(), "Collective sequence number named by the line"),
    col("op_type", pa.string(), "Collective type named by the line"),
    col("timeout_ms", pa.int64(), "Timeout named by the line, ms"),
    col("peer", pa.string(), "Peer host or address the line names"),
    col("exit_code", pa.int32(), "Exit code from a launcher summary"),
    col("signal", pa.string(), "Signal name from a launcher summary"),
    col("message", pa.string(), "Line text (escaped on output)"),
    col("attrs", pa.map_(pa.string(), pa.string()), "Further parsed fields by name"),
)

IDENTITY = _schema(
    "identity",
    RANK,
    HOST,
    LOCAL_RANK,
    GPU_INDEX,
    PCI_BUS_ID,
    col("gpu_uuid", pa.string(), "GPU UUID"),
    PID,
    col("nic", pa.string(), "Network device the rank's NCCL communicator used"),
    col("sources", pa.list_(pa.string()), "Where the facts of this row come from (source:file:line)"),
    col("assumptions", pa.list_(pa.string()), "Links taken by convention rather than stated by a source"),
)

SCHEMAS: dict[str, pa.Schema] = {
    "fr_entries": FR_ENTRIES,
    "fr_groups": FR_GROUPS,
    "fr_status": FR_STATUS,
    "fr_stacks": FR_STACKS,
    "fr_calls": FR_CALLS,
    "stacks": STACKS,
    "gpu_metrics": GPU_METRICS,
    "gpu_labels": GPU_LABELS,
    "kernel_events": KERNEL_EVENTS,
    "app_events": APP_EVENTS,
    "identity": IDENTITY,
}
