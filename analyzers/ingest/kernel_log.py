"""Kernel-log parser (source ``kernel_log``, table ``kernel_events``): every envelope, every GPU/host fault.

The file is split into an Arrow string column and processed with Polars string expressions, never
a Python loop per line:

1. envelope: each known envelope (raw dmesg, ``dmesg -T``/``-x``/``--time-format iso``/``-H``,
   ``/dev/kmsg`` records, journalctl short/precise/iso/monotonic/json, RFC 3164, RFC 5424/3339)
   is one anchored regex; the envelope most lines of the head use is tried first on all lines,
   the others only on the lines left over. The stamp, host and message are cut with
   ``str.replace``/slicing (regex captures are an order of magnitude slower in Polars).
2. prefilter: one combined regex marks the lines that can matter (NVRM, AER, mlx5, OOM, hung
   tasks, call-trace frames, …); everything else is kind ``other`` without further work.
3. classification and field extraction run once per *distinct* interesting message (floods of
   identical lines cost one classification).
4. call-trace frames and other continuation lines are folded into the record they belong to;
   the three-line "fallen off the bus" block without an Xid becomes one ``gpu_lost`` row.
5. identical messages of one host collapse into one row with ``count``, first and last time.

Times: wall-clock stamps are converted to UTC with the host zone from the manifest (UTC assumed
otherwise); uptime stamps become wall time from the manifest boot time or from lines that carry
both stamps (syslog lines with a ``[uptime]`` prefix, journal JSON); RFC 3164 stamps get their
year from the manifest, the capture time, other stamps in the file, or the file's mtime. Every
assumption is written to ``ts_assumption``.
"""

from __future__ import annotations

import datetime as _dt
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from ..report import Problem
from ..selftel import SourceWire
from ..tables.schemas import KERNEL_EVENTS
from ..xid_catalog import lookup as xid_lookup
from .base import CLAIM, NO_CLAIM, STRONG_CLAIM, WEAK_CLAIM, FileContext, ParseOutput, SourceParser
from .manifest import Manifest, normalize_pci, tzinfo_for

MAX_LINE_CHARS = 65536
REJECT_REASONS = ("binary", "line_too_long", "json_invalid")

_LEVELS = {
    "emerg": 0,
    "alert": 1,
    "crit": 2,
    "err": 3,
    "error": 3,
    "warn": 4,
    "warning": 4,
    "notice": 5,
    "info": 6,
    "debug": 7,
}

# ---------------------------------------------------------------------------------------------
# Envelopes
# ---------------------------------------------------------------------------------------------
_MON = r"[^\W\d_]{3,5}\.?"
_ISO_ZONE = r"(?:Z|[+-]\d{2}:?\d{2})"
RE_KMSG = r"^\d{1,3},\d+,\d+,[^;]{0,16};"
RE_KMSG_CONT = r"^ [A-Z][A-Z0-9_]*="
RE_JSON = r"^\s*\{"
RE_DMESG_X = r"^(?:kern|user|mail|daemon|auth|syslog|lpr|news|uucp|cron|authpriv|ftp|local[0-7])\s*:\s*(?:emerg|alert|crit|err|warn|notice|info|debug)\s*: "
RE_GREP = r"^/[^\s:]+:"
RE_MONO_JOURNAL = r"^\[\s*\d+\.\d+\] [^\s:\[\]]+ kernel: ?"
RE_UPTIME = r"^\[\s*\d+\.\d+\] ?"
RE_CTIME = r"^\[" + _MON + r" " + _MON + r" +\d{1,2} \d{2}:\d{2}:\d{2} \d{4}\] ?"
RE_RELTIME = r"^\[(?:" + _MON + r"\d{1,2} \d{2}:\d{2}|\s*[+-]\d+\.\d+(?: <[^>]*>)?)\] ?"
RE_ISO_COMMA = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2},\d+" + _ISO_ZONE + r" ?"
RE_ISO_SYSLOG = (
    r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:\.\d+)?"
    + _ISO_ZONE
    + r" [^\s:\[\]]+ [^\s:\[]+(?:\[\d+\])?: ?"
)
RE_ISO_BARE = r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:[.,]\d+)?" + _ISO_ZONE + r"? ?"
RE_RFC5424 = r"^<\d{1,3}>\d{1,2} \S+ \S+ \S+ \S+ \S+ (?:-|(?:\[[^\]]*\])+) ?"
RE_BSD = (
    r"^(?:<\d{1,3}>)?"
    + _MON
    + r" {1,2}\d{1,2} \d{2}:\d{2}:\d{2}(?:\.\d+)? (?:[^\s:\[\]]+ )?(?:[a-z]+\.[a-z]+ )?[^\s:\[]+(?:\[\d+\])?: ?"
)
RE_INNER_UPTIME = r"^\[\s*\d+\.\d+\] ?"
RE_NONE = r"^\s*(?:kernel: ?)?"

# Envelope names in the order tried when the head does not say otherwise.
_ORDER = (
    "kmsg",
    "kmsg_cont",
    "json",
    "dmesg_x",
    "mono_journal",
    "uptime",
    "ctime",
    "reltime",
    "iso_comma",
    "iso_syslog",
    "iso_bare",
    "rfc5424",
    "bsd",
    "grep",
)
_REGEX = {
    "kmsg": RE_KMSG,
    "kmsg_cont": RE_KMSG_CONT,
    "json": RE_JSON,
    "dmesg_x": RE_DMESG_X,
    "mono_journal": RE_MONO_JOURNAL,
    "uptime": RE_UPTIME,
    "ctime": RE_CTIME,
    "reltime": RE_RELTIME,
    "iso_comma": RE_ISO_COMMA,
    "iso_syslog": RE_ISO_SYSLOG,
    "iso_bare": RE_ISO_BARE,
    "rfc5424": RE_RFC5424,
    "bsd": RE_BSD,
    "grep": RE_GREP,
}
_PY_REGEX = {name: re.compile(rx) for name, rx in _REGEX.items()}

# ---------------------------------------------------------------------------------------------
# Classification
# ---------------------------------------------------------------------------------------------
PCI_TXT = r"[0-9a-fA-F]{4,8}:[0-9a-fA-F]{2}:[0-9a-fA-F]{2}"
BDF = r"[0-9a-fA-F]{4}:[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7]"
RE_XID = (
    r"NVRM: Xid \((?:PCI:)?(" + PCI_TXT + r")(?:\.\d)?(?: GPU-I:(\d+))?\): (\d+),\s*"
    r"(?:pid=('?[^,]*'?),\s*)?(?:name=([^,]*),\s*)?(.*)$"
)
RE_SXID = r"SXid \(PCI:(" + PCI_TXT + r"(?:\.\d)?)\): (\d+),\s*(.*)$"
RE_FRAME = r"^\s*(?:\[<?[0-9a-fA-F]+>?\]\s*)?(?:\? )?([A-Za-z_.$][\w.$]*)\+0x[0-9a-fA-F]+/0x[0-9a-fA-F]+(?:\s+\[(\w+)\])?"
RE_CONT = (
    r"^\s*(?:Call Trace:|Call trace:|<TASK>|</TASK>|<IRQ>|</IRQ>|Tainted:|Hardware name:|Workqueue:|"
    r"RIP:|RSP:|RAX:|RDX:|RBP:|R10:|R13:|FS:|CS:|CR2:|Code:|Modules linked in:|"
    r"\"echo 0 > /proc/sys/kernel/hung_task_timeout_secs\" disables this message|"
    r"task:\S+\s+state:\S|Not tainted |CPU: \d+ PID: \d+ Comm: |Mem-Info:|"
    r"Tasks state \(memory values in pages\)|\[\s*pid\s*\]\s+uid\s+tgid|\[\s*\d+\]\s+\d+\s+\d+\s+\d+\s+\d+)"
)
RE_CONT_ANY = RE_CONT + "|" + RE_FRAME

# One pass over every line: anything that can matter in a GPU training incident.
RE_INTERESTING = "|".join(
    [
        r"NVRM|Xid|nvidia(?:-peermem|-nvswitch|-fabricmanager| [0-9a-f]{4}:)",
        r"NVLink|nvlink|NVSwitch|nvswitch",
        r"AER|PCIe|pcieport|pciehp|Slot\(",
        r"mlx\d|ib_core|\bib\d|ibp\d|infiniband|NIC Link|[Cc]arrier|[Mm]odule event|Port: \d+ Link",
        r"oom|Out of memory|Killed process|killed as a result of limit|memory: usage|Memory cgroup|Tasks state|Mem-Info|\[\s*pid\s*\]",
        r"[Nn]ot tainted|CPU: \d+ PID: \d+",
        r"blocked for more than|hung_task|state:\S|soft lockup|LOCKUP|detected stall|self-detected stall",
        r"segfault|general protection|traps:|Oops|BUG|panic",
        r"GSP",
        r"temperature|[Tt]hermal",
        r"Hardware Error|Machine check|mce:|EDAC|MCE|GHES|APEI|[Hh]ardware error",
        r"nfs|NFS|lockd|RPC: |Lustre|LNet|beegfs|gpfs|mmfs|ceph",
        r"EXT4-fs (?:error|warning)|EXT4-fs \(\S+\): (?:error|Remount|I/O)|XFS \(|BTRFS|I/O error|JBD2|fuse: |medium error|read-only|FAT-fs|SQUASHFS|squashfs",
        r"Call Trace|Call trace|<TASK>|Tainted:|\+0x[0-9a-fA-F]+/0x",
        r": Link (?:up|down|UP|DOWN)|[Ll]ink is (?:up|down)",
    ]
)

KINDS = (
    "xid",
    "sxid",
    "gpu_lost",
    "nvlink",
    "aer",
    "pcie_link",
    "ib_link",
    "oom_kill",
    "hung_task",
    "segfault",
    "gsp",
    "thermal",
    "mce",
    "nfs",
    "fs_error",
    "other",
)

# (kind, regex) in priority order; the first that matches wins. "cont" is a continuation line.
_KIND_RULES: tuple[tuple[str, str], ...] = (
    ("xid", r"NVRM: Xid \("),
    ("sxid", r"SXid \(PCI:"),
    ("gpu_lost", r"fallen off the bus"),
    ("cont", RE_CONT_ANY),
    (
        "thermal",
        r"temperature above threshold|temperature/speed normal|[Tt]hermal|critical temperature|[Pp]ackage temperature|[Cc]ore temperature",
    ),
    (
        "aer",
        r"AER|PCIe Bus Error|error status/mask|error_detected|^\S+ " + BDF + r"(?::pcie\d+)?:\s+\[\s*\d+\] ",
    ),
    ("mce", r"Hardware Error|Machine check|mce: |EDAC|\bMCE\b|GHES|APEI|[Hh]ardware error"),
    (
        "oom_kill",
        r"invoked oom-killer|oom-kill:|Out of memory|Memory cgroup out of memory|oom_reaper|Killed process \d+|memory: usage \d+kB, limit|killed as a result of limit|Memory cgroup stats for",
    ),
    (
        "hung_task",
        r"blocked for more than \d+ seconds|hung_task|soft lockup|hard LOCKUP|detected stalls? on CPUs|rcu_\w+ self-detected stall",
    ),
    (
        "segfault",
        r"segfault at|traps: \S+\[\d+\]|general protection fault.*\[\d+\]|\S+\[\d+\] general protection",
    ),
    # Driver (re)load and GPU header lines: context, even when they mention NVLink.
    (
        "other",
        r"NVRM: loading NVIDIA|Nvlink Core is being initialized|nvidia-modeset: Loading|nvidia-uvm: Loaded|"
        r"NVRM: GPU at |NVRM: GPU Board Serial",
    ),
    ("gsp", r"GSP|gsp"),
    ("nvlink", r"NVLink|nvlink|NVLINK|nvswitch|NVSwitch|fabric ?manager"),
    (
        "other",
        r"^workqueue: |nvidia-peermem|NVRM: loading NVIDIA|NVRM: GPU at |NVRM: The NVIDIA GPU|installed in this system|probe routine|NVRM: GPU Board Serial",
    ),
    (
        "pcie_link",
        r"pciehp|Slot\(\S*\)|available PCIe bandwidth|PCIe [Ll]ink|[Ll]ink (?:down|up|speed|width|retrain|training).*PCIe|bwctrl|not ready \d+ms after|Card (?:not )?present",
    ),
    (
        "ib_link",
        r"mlx\d_\w+|mlx\d|ib_core|infiniband|\bib\d|ibp\w+|Port: \d+ Link|[Mm]odule event|module_event|[Ll]ost carrier|NETDEV_CHANGE|NIC Link is|: Link (?:up|down|UP|DOWN)|link becomes ready|[Ll]ink is (?:up|down)",
    ),
    (
        "nfs",
        r"nfs: server|NFS:|nfs4|NFSD|lockd:|rpc-srv|RPC: |Lustre|LNet|LNetError|beegfs|mmfs|gpfs|libceph|ceph:",
    ),
    (
        "fs_error",
        r"EXT4-fs (?:error|warning)|EXT4-fs \(\S+\): (?:error|Remounting|I/O)|XFS \(\S+\):.*(?:error|Corruption|shut|I/O)|BTRFS (?:error|critical|warning)|Buffer I/O error|I/O error, dev|blk_update_request: .*error|print_req_error|critical medium error|JBD2|Remounting filesystem read-only|fuse: |FAT-fs \(|squashfs error|SQUASHFS error",
    ),
)


def _kind_expr(msg: pl.Expr) -> pl.Expr:
    expr: pl.Expr = pl.lit("other")
    # Built from the last rule backwards so the first rule that matches wins.
    for kind, regex in reversed(_KIND_RULES):
        expr = pl.when(msg.str.contains(regex)).then(pl.lit(kind)).otherwise(expr)
    return expr


# ---------------------------------------------------------------------------------------------
# Parser
# ---------------------------------------------------------------------------------------------


class KernelLogParser(SourceParser):
    """dmesg / kmsg / journald / syslog kernel logs into ``kernel_events``."""

    source = "kernel_log"
    tables = ("kernel_events",)
    telemetry = SourceWire(component_id="kernel_log", scope=__name__, reasons=REJECT_REASONS)

    def sniff(self, head: bytes, name: str) -> int:
        """Claim files whose first lines carry kernel-log envelopes (and kernel-looking content)."""
        try:
            return _sniff(head, name)
        except Exception:  # sniff must never raise
            return NO_CLAIM

    def parse(self, ctx: FileContext) -> ParseOutput:
        """Read one kernel log into ``kernel_events``."""
        out = ParseOutput()
        try:
            table = parse_kernel_text(ctx, out)
        except Exception as exc:  # keep the file's ledger: a bug here must not lose the whole run
            out.problems.append(Problem(ctx.rel, None, f"kernel log not parsed: {type(exc).__name__}: {exc}"))
            return out
        out.tables["kernel_events"] = table
        return out


_KERNEL_WORDS = re.compile(
    rb"NVRM|Xid|kernel:|pcieport|mlx5|oom|EDAC|Linux version|Command line:|Call Trace|segfault|"
    rb"SXid|BIOS|ACPI|pci \d{4}:|usb \d|systemd\[|audit:|EXT4-fs|nvidia|_KERNEL_|SYSLOG_IDENTIFIER"
)


def _sniff(head: bytes, name: str) -> int:
    text = head.decode("utf-8", errors="replace")
    lines = [line for line in text.splitlines()[:40] if line.strip()]
    if not lines:
        return NO_CLAIM
    lower = name.lower()
    name_hint = any(
        word in lower for word in ("dmesg", "kern", "syslog", "messages", "journal", "kmsg", "klog")
    )
    enveloped = 0
    for line in lines:
        if line.lstrip().startswith("{"):
            if '"__REALTIME_TIMESTAMP"' in line and ("kernel" in line or "_TRANSPORT" in line):
                enveloped += 1
            continue
        if any(
            _PY_REGEX[n].match(line)
            for n in ("kmsg", "uptime", "ctime", "iso_comma", "dmesg_x", "mono_journal", "reltime")
        ) or (any(_PY_REGEX[n].match(line) for n in ("bsd", "iso_syslog", "rfc5424")) and " kernel" in line):
            enveloped += 1
    share = enveloped / len(lines)
    words = len(_KERNEL_WORDS.findall(head))
    if share >= 0.5 and (words or name_hint):
        return STRONG_CLAIM
    if share >= 0.5:
        return CLAIM
    if share > 0 and (words >= 2 or name_hint):
        return CLAIM
    if name_hint and words:
        return WEAK_CLAIM
    return NO_CLAIM


@dataclass
class _FileClock:
    """What the file, the manifest and the capture say about time for one file."""

    zone: _dt.tzinfo | None
    zone_name: str | None
    year: int | None
    year_source: str
    ref_ns: int | None
    boot_ns: int | None


def _file_clock(ctx: FileContext, text_head: str, host: str | None) -> _FileClock:
    manifest: Manifest = ctx.manifest
    spec = manifest.host(host) if host else None
    if spec is None and len(manifest.hosts) == 1 and host is None:
        spec = manifest.hosts[0]
    zone_name = spec.timezone if spec else None
    try:
        zone = tzinfo_for(zone_name)
    except Exception:
        zone, zone_name = None, None
    ref_ns = manifest.capture_time_ns or ctx.mtime_ns
    year: int | None = manifest.year
    year_source = "manifest job.year"
    if year is None and manifest.capture_time_ns:
        year = _dt.datetime.fromtimestamp(manifest.capture_time_ns / 1e9, _dt.UTC).year
        year_source = "capture time"
    if year is None:
        match = re.search(r"\b((?:19|20)\d\d)-\d\d-\d\d[T ]\d\d:|\d\d:\d\d:\d\d ((?:19|20)\d\d)\]", text_head)
        if match:
            year = int(match.group(1) or match.group(2))
            year_source = "other stamps in the file"
    if year is None and ctx.mtime_ns:
        year = _dt.datetime.fromtimestamp(ctx.mtime_ns / 1e9, _dt.UTC).year
        year_source = "file mtime"
    return _FileClock(zone, zone_name, year, year_source, ref_ns, spec.boot_time_ns if spec else None)


def _split_lines(data: bytes, valid_utf8: bool) -> pl.Series:
    """Physical lines as a string column (invalid UTF-8 replaced, CR/LF stripped, blank = empty or null).

    Valid UTF-8 with plain LF endings and no byte-order mark is split by Arrow in native code (one
    copy of the bytes). Otherwise Polars' CSV reader with a separator byte absent from the data
    splits, decodes and strips CR/BOM; the Python split is the fallback for files that contain
    every candidate byte.
    """
    import io

    if valid_utf8 and b"\r" not in data and not data.startswith(b"\xef\xbb\xbf"):
        string_type = pa.string() if len(data) < 2**31 else pa.large_string()  # 32-bit offsets: less to write
        offsets = pa.array([0, len(data)], pa.int32() if string_type == pa.string() else pa.int64())
        whole = pa.Array.from_buffers(string_type, 1, [None, offsets.buffers()[1], pa.py_buffer(data)])
        lines = pc.split_pattern(whole, "\n").flatten()
        if data.endswith(b"\n"):  # the terminator of the last line is not another line
            lines = lines.slice(0, len(lines) - 1)
        return pl.Series("raw", lines, dtype=pl.String)
    for sep in (b"\x1f", b"\x1e", b"\x1d", b"\x1c", b"\x07"):
        if sep not in data:
            frame = pl.read_csv(
                io.BytesIO(data),
                has_header=False,
                separator=sep.decode(),
                quote_char=None,
                new_columns=["raw"],
                schema={"raw": pl.String},
                encoding="utf8-lossy",
                truncate_ragged_lines=True,
                raise_if_empty=False,
            )
            return frame["raw"] if frame.width else pl.Series("raw", [], dtype=pl.String)
    text = data.decode("utf-8", errors="replace").replace("\r\n", "\n")
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return pl.Series("raw", lines, dtype=pl.String)


def _lines_frame(ctx: FileContext, out: ParseOutput) -> pl.DataFrame:
    valid = _valid_utf8(ctx.data)
    lines = _split_lines(ctx.data, valid) if ctx.data else pl.Series("raw", [], dtype=pl.String)
    frame = pl.DataFrame({"raw": lines, "idx": pl.int_range(1, lines.len() + 1, dtype=pl.Int64, eager=True)})
    raw = frame["raw"]
    n_bytes = raw.str.len_bytes()
    # Blank lines are empty or null after splitting. Whitespace-only lines match no envelope, so
    # they are dropped with the lines no envelope claims (``_drop_blank``): no per-line test here.
    empty = (n_bytes == 0).fill_null(True)
    # Byte length bounds the character length: count characters only when some line is long.
    long_bytes = (n_bytes > MAX_LINE_CHARS).fill_null(False)
    if long_bytes.any():
        too_long = long_bytes & (raw.str.len_chars() > MAX_LINE_CHARS).fill_null(False)
    else:
        too_long = long_bytes
    # A NUL byte anywhere is rare: look at the bytes once before testing every line.
    if b"\x00" in ctx.data:
        binary = raw.str.contains("\x00", literal=True).fill_null(False)
    else:
        binary = pl.repeat(False, raw.len(), dtype=pl.Boolean, eager=True)
    # U+FFFD in a line comes from invalid UTF-8 (replaced while splitting) or is in the bytes
    # (EF BF BD): valid UTF-8 without any 0xEF byte needs no per-line test.
    if b"\xef" in ctx.data or not valid:
        suspicious = raw.str.contains("\ufffd", literal=True).fill_null(False)
    else:
        suspicious = pl.repeat(False, raw.len(), dtype=pl.Boolean, eager=True)
    if suspicious.any():
        # Mostly-undecodable lines are binary garbage; a stray bad byte in a real line is kept.
        share = raw.str.count_matches("\ufffd", literal=True) / raw.str.len_chars()
        binary = binary | (suspicious & (share > 0.2)).fill_null(False)
    bad = too_long | binary
    if bad.any():
        blank = empty | ~raw.str.contains(r"\S").fill_null(False)
        bad = bad & ~blank
    if bad.any():
        n_long = int((too_long & bad).sum())
        n_bin = int((binary & ~too_long & bad).sum())
        first = int(frame.filter(bad)["idx"][0])
        if n_long:
            out.reject("line_too_long", n_long)
        if n_bin:
            out.reject("binary", n_bin)
        out.problems.append(
            Problem(
                ctx.rel,
                first,
                f"{n_bin + n_long} unreadable lines (binary or longer than {MAX_LINE_CHARS} chars) skipped",
            )
        )
    drop = bad | empty
    # One filter at most: most files have nothing to drop, and filtering copies every string.
    return frame.filter(~drop) if drop.any() else frame


def _valid_utf8(data: bytes) -> bool:
    """Whether ``data`` is valid UTF-8 (Arrow's validator over the bytes, without a copy)."""
    offsets = pa.array([0, len(data)], pa.int64()).buffers()[1]
    array = pa.Array.from_buffers(pa.large_string(), 1, [None, offsets, pa.py_buffer(data)])
    try:
        array.validate(full=True)
    except pa.ArrowInvalid:
        return False
    return True


def _drop_blank(rest: pl.DataFrame) -> pl.DataFrame:
    """Lines no envelope claimed, less the whitespace-only ones (blank lines are not records)."""
    blank = ~rest["raw"].str.contains(r"\S").fill_null(False)
    return rest.filter(~blank) if blank.any() else rest


def _dominant(frame: pl.DataFrame) -> list[str]:
    """Envelope order for this file: those seen in the head first, most frequent first."""
    counts: dict[str, int] = {}
    for line in frame["raw"].head(64).to_list():
        for name in _ORDER:
            if _PY_REGEX[name].match(line):
                counts[name] = counts.get(name, 0) + 1
                break
    seen = sorted(counts, key=lambda n: (-counts[n], _ORDER.index(n)))
    return seen + [n for n in _ORDER if n not in seen]


_ENV_COLUMNS = {
    "idx": pl.Int64,
    "msg": pl.String,
    "ts_text": pl.String,
    "host": pl.String,
    "uptime_s": pl.Float64,
    "ts_ns": pl.Int64,
    "ts_assumption": pl.String,
    "level": pl.Int8,
    "device": pl.String,
    "drop": pl.Boolean,
}


def _finish(part: pl.DataFrame, **values: pl.Expr) -> pl.DataFrame:
    cols = []
    for name, dtype in _ENV_COLUMNS.items():
        if name in values:
            cols.append(values[name].cast(dtype).alias(name))
        elif name in part.columns:
            cols.append(pl.col(name).cast(dtype))
        else:
            cols.append(pl.lit(None, dtype=dtype).alias(name))
    # Lazy, so that common subexpressions are evaluated once: envelopes read the same tokens,
    # stamp and parsed time into several columns (an eager select evaluates each use again).
    return part.lazy().select(cols).collect()


def _localize(naive: pl.Expr, clock: _FileClock) -> tuple[pl.Expr, str | None]:
    """UTC ns from a naive local datetime expression, and what was assumed about the zone."""
    if clock.zone_name is None:
        return naive.dt.replace_time_zone("UTC").dt.epoch("ns"), "zone UTC assumed"
    match = re.fullmatch(r"([+-])(\d{2}):?(\d{2})", clock.zone_name)
    if clock.zone_name in ("UTC", "Z"):
        return naive.dt.replace_time_zone("UTC").dt.epoch("ns"), None
    if match:
        sign = 1 if match.group(1) == "+" else -1
        offset = sign * (int(match.group(2)) * 3600 + int(match.group(3)) * 60) * 1_000_000_000
        return naive.dt.replace_time_zone("UTC").dt.epoch("ns") - offset, None
    return (
        naive.dt.replace_time_zone(clock.zone_name, ambiguous="earliest", non_existent="null").dt.epoch("ns"),
        None,
    )


def _iso_ns(text: pl.Expr) -> pl.Expr:
    cleaned = (
        text.str.replace(",", ".", literal=True)
        .str.replace(r"Z$", "+00:00")
        .str.replace(" ", "T", literal=True)
    )
    return cleaned.str.to_datetime("%Y-%m-%dT%H:%M:%S%.f%z", strict=False, time_unit="ns").dt.epoch("ns")


def _iso_local_ns(text: pl.Expr, clock: _FileClock) -> tuple[pl.Expr, str | None]:
    cleaned = text.str.replace(",", ".", literal=True).str.replace(" ", "T", literal=True)
    naive = cleaned.str.to_datetime("%Y-%m-%dT%H:%M:%S%.f", strict=False, time_unit="ns")
    return _localize(naive, clock)


def _cut(part: pl.DataFrame, regex: str) -> pl.DataFrame:
    """Split the envelope matched by ``regex`` off ``raw``: ``msg`` and ``prefix`` columns."""
    part = part.with_columns(pl.col("raw").str.replace(regex, "").alias("msg"))
    return part.with_columns(
        pl.col("raw").str.head(pl.col("raw").str.len_chars() - pl.col("msg").str.len_chars()).alias("prefix")
    )


def _inner_uptime(part: pl.DataFrame) -> pl.DataFrame:
    """Syslog/journal lines that still start with the kernel's ``[uptime]`` stamp: take it out."""
    has = part["msg"].str.contains(RE_INNER_UPTIME)
    if not has.any():
        return part
    stripped = pl.col("msg").str.replace(RE_INNER_UPTIME, "")
    stamp = pl.col("msg").str.head(pl.col("msg").str.len_chars() - stripped.str.len_chars())
    return part.with_columns(
        pl.when(has)
        .then(stamp.str.strip_chars("[] ").cast(pl.Float64, strict=False))
        .otherwise(pl.col("uptime_s"))
        .alias("uptime_s"),
        pl.when(has).then(stripped).otherwise(pl.col("msg")).alias("msg"),
    )


def _env_part(
    name: str,
    part: pl.DataFrame,
    clock: _FileClock,
    recurse: Callable[[pl.DataFrame, tuple[str, ...]], pl.DataFrame],
) -> pl.DataFrame:
    regex = _REGEX[name]
    if name == "json":
        return _env_json(part)
    if name == "uptime":
        # Hot path for raw dmesg: cut at the first "]" instead of running a regex replace. Each
        # intermediate is materialised once (an expression used twice is evaluated twice).
        raw = pl.col("raw")
        cut = part.select(
            raw.str.find("]", literal=True).alias("_close"),
            raw.str.find("] ", literal=True).alias("_spaced"),
        )
        close, spaced = cut["_close"], cut["_spaced"]
        column = close.max()
        if (
            isinstance(column, int)
            and spaced.null_count() == 0
            and close.min() == column == spaced.min() == spaced.max()
        ):
            # Plain `dmesg` output: every stamp has the same width, so "] " sits at the same column
            # on every line and both cuts are fixed slices (no per-line offsets to compute).
            frame = part.select(
                "idx",
                raw.str.slice(column + 2).alias("msg"),
                raw.str.slice(1, column - 1).str.strip_chars(" ").alias("ts_text"),
            )
            return _finish(frame, uptime_s=pl.col("ts_text").cast(pl.Float64, strict=False))
        # "] " is the rule: one slice past it (stripping the space would copy every message again).
        is_spaced = bool((spaced == close).fill_null(False).all())
        frame = part.select(
            "idx",
            (raw.str.slice(close + 2) if is_spaced else raw.str.slice(close + 1).str.strip_prefix(" ")).alias(
                "msg"
            ),
            raw.str.slice(1, close - 1).str.strip_chars(" ").alias("ts_text"),
        )
        return _finish(frame, uptime_s=pl.col("ts_text").cast(pl.Float64, strict=False))
    part = _cut(part, regex)
    prefix = pl.col("prefix")
    if name == "kmsg":
        fields = prefix.str.strip_chars_end(";").str.split_exact(",", 3)
        return _finish(
            part,
            ts_text=prefix.str.strip_chars_end(";"),
            uptime_s=fields.struct.field("field_2").cast(pl.Float64, strict=False) / 1e6,
            level=(fields.struct.field("field_0").cast(pl.Int32, strict=False) % 8),
        )
    if name == "kmsg_cont":
        return _finish(part, drop=pl.lit(True), msg=pl.col("raw"))
    if name in ("dmesg_x", "grep"):
        inner = part.select("idx", pl.col("msg").alias("raw"))
        allowed = tuple(n for n in _ORDER if n not in ("dmesg_x", "grep", "json", "kmsg", "kmsg_cont"))
        result = recurse(inner, allowed)
        if name == "dmesg_x":
            levels = part.select(
                "idx",
                prefix.str.split(":")
                .list.get(1, null_on_oob=True)
                .str.strip_chars()
                .replace_strict(_LEVELS, default=None, return_dtype=pl.Int8)
                .alias("_lvl"),
            )
            result = (
                result.join(levels, on="idx", how="left")
                .with_columns(pl.coalesce("level", "_lvl").alias("level"))
                .drop("_lvl")
            )
        return result
    if name in ("uptime", "mono_journal"):
        tokens = prefix.str.strip_chars().str.split(" ")
        stamp = (
            prefix.str.extract(r"\[\s*([0-9.]+)\]", 1)
            if name == "mono_journal"
            else prefix.str.strip_chars("[] ")
        )
        values: dict[str, pl.Expr] = {"ts_text": stamp, "uptime_s": stamp.cast(pl.Float64, strict=False)}
        if name == "mono_journal":
            values["host"] = tokens.list.get(-2, null_on_oob=True)
            part = _finish(part, **values)
            return part
        return _finish(part, **values)
    if name == "ctime":
        stamp = prefix.str.strip_chars("[] ")
        norm = stamp.str.replace_all(r" +", " ").str.replace(r" (\d) ", " 0$1 ")
        naive = norm.str.to_datetime("%a %b %d %H:%M:%S %Y", strict=False, time_unit="ns")
        ts, assumption = _localize(naive, clock)
        return _finish(
            part,
            ts_text=stamp,
            ts_ns=ts,
            ts_assumption=pl.when(ts.is_null())
            .then(pl.lit("unparsed month/day names"))
            .otherwise(pl.lit(assumption)),
        )
    if name == "reltime":
        return _finish(
            part,
            ts_text=prefix.str.strip_chars("[] "),
            ts_assumption=pl.lit("relative dmesg -H stamp: no absolute time"),
        )
    if name == "iso_comma":
        stamp = prefix.str.strip_chars()
        return _finish(part, ts_text=stamp, ts_ns=_iso_ns(stamp))
    if name in ("iso_syslog", "iso_bare"):
        tokens = prefix.str.strip_chars().str.split(" ")
        stamp = tokens.list.get(0)
        zoned = stamp.str.contains(r"(?:Z|[+-]\d{2}:?\d{2})$")
        local, assumption = _iso_local_ns(stamp, clock)
        ts = pl.when(zoned).then(_iso_ns(stamp)).otherwise(local)
        values = {
            "ts_text": stamp,
            "ts_ns": ts,
            "ts_assumption": pl.when(zoned).then(pl.lit(None, dtype=pl.String)).otherwise(pl.lit(assumption)),
        }
        if name == "iso_syslog":
            values["host"] = tokens.list.get(1, null_on_oob=True)
        part = _finish(part, **values)
        return _inner_uptime(part)
    if name == "rfc5424":
        tokens = prefix.str.strip_chars().str.split(" ")
        stamp = tokens.list.get(1, null_on_oob=True)
        pri = tokens.list.get(0).str.extract(r"<(\d+)>", 1).cast(pl.Int32, strict=False)
        part = _finish(
            part,
            ts_text=stamp,
            ts_ns=_iso_ns(stamp),
            host=tokens.list.get(2, null_on_oob=True),
            level=pri % 8,
        )
        return _inner_uptime(part)
    if name == "bsd":
        return _env_bsd(part, clock)
    raise AssertionError(name)


def _env_bsd(part: pl.DataFrame, clock: _FileClock) -> pl.DataFrame:
    prefix = pl.col("prefix").str.replace(r"^<\d{1,3}>", "").str.replace_all(r" +", " ").str.strip_chars()
    # Split once: every field below reads the tokens (an eager expression is evaluated per use).
    part = part.with_columns(prefix.str.split(" ").alias("_tokens"))
    tokens = pl.col("_tokens")
    n = tokens.list.len()
    month = tokens.list.get(0).str.strip_chars_end(".")
    day = tokens.list.get(1).str.zfill(2)
    clock_text = tokens.list.get(2)
    third = tokens.list.get(3, null_on_oob=True)
    level_word = tokens.list.get(-2, null_on_oob=True)
    is_level = level_word.str.contains(r"^[a-z]+\.(?:emerg|alert|crit|err|warn|warning|notice|info|debug)$")
    host = (
        pl.when(n >= 6)
        .then(third)
        .when(
            (n == 5)
            & ~third.str.contains(r"^[a-z]+\.(?:emerg|alert|crit|err|warn|warning|notice|info|debug)$")
        )
        .then(third)
        .otherwise(None)
    )
    level = pl.when(is_level).then(
        level_word.str.split(".")
        .list.get(1, null_on_oob=True)
        .replace_strict(_LEVELS, default=None, return_dtype=pl.Int8)
    )
    stamp = pl.concat_str([tokens.list.get(0), tokens.list.get(1), clock_text], separator=" ")
    year = clock.year
    part = part.with_columns(
        stamp.alias("_stamp"),
        month.alias("_mon"),
        day.alias("_day"),
        clock_text.alias("_clock"),
        host.alias("_host"),
        level.alias("_level"),
    )
    if year is None:
        return _inner_uptime(
            _finish(
                part,
                ts_text=pl.col("_stamp"),
                host=pl.col("_host"),
                level=pl.col("_level"),
                ts_assumption=pl.lit("no year known: wall time left unset"),
            )
        )

    def naive_for(y: int) -> pl.Expr:
        text = pl.concat_str(
            [pl.lit(str(y)), pl.col("_mon"), pl.col("_day"), pl.col("_clock")], separator=" "
        )
        return text.str.to_datetime("%Y %b %d %H:%M:%S%.f", strict=False, time_unit="ns")

    ts_this, zone_note = _localize(naive_for(year), clock)
    ts_prev, _ = _localize(naive_for(year - 1), clock)
    assumption = f"year {year} from {clock.year_source}" + (f"; {zone_note}" if zone_note else "")
    if clock.ref_ns is not None:
        # A December line read in January belongs to the year before the capture.
        ahead = ts_this > clock.ref_ns + 2 * 86_400 * 1_000_000_000
        ts = pl.when(ahead).then(ts_prev).otherwise(ts_this)
        note = (
            pl.when(ahead).then(pl.lit(assumption + f"; wrapped to {year - 1}")).otherwise(pl.lit(assumption))
        )
    else:
        ts, note = ts_this, pl.lit(assumption)
    part = _finish(
        part,
        ts_text=pl.col("_stamp"),
        ts_ns=ts,
        host=pl.col("_host"),
        level=pl.col("_level"),
        ts_assumption=pl.when(ts.is_null()).then(pl.lit("unparsed month name")).otherwise(note),
    )
    return _inner_uptime(part)


def _env_json(part: pl.DataFrame) -> pl.DataFrame:
    raw = pl.col("raw")
    message = raw.str.json_path_match("$.MESSAGE")
    realtime = raw.str.json_path_match("$.__REALTIME_TIMESTAMP")
    mono = raw.str.json_path_match("$.__MONOTONIC_TIMESTAMP")
    return _finish(
        part,
        msg=message,
        ts_text=realtime,
        ts_ns=realtime.cast(pl.Int64, strict=False) * 1000,
        uptime_s=mono.cast(pl.Float64, strict=False) / 1e6,
        host=raw.str.json_path_match("$._HOSTNAME"),
        level=raw.str.json_path_match("$.PRIORITY").cast(pl.Int32, strict=False),
        device=raw.str.json_path_match("$._KERNEL_DEVICE"),
        drop=message.is_null(),
    )


def _envelopes(
    frame: pl.DataFrame, order: tuple[str, ...], clock: _FileClock, top: bool = False
) -> pl.DataFrame:
    parts: list[pl.DataFrame] = []
    rest = frame

    def recurse(inner: pl.DataFrame, allowed: tuple[str, ...]) -> pl.DataFrame:
        return _envelopes(inner, allowed, clock)

    for name in order:
        if rest.height == 0:
            break
        mask = rest["raw"].str.contains(_REGEX[name])
        if not mask.any():
            continue
        if bool(mask.all()):
            part, rest = rest, rest.clear()
        else:
            part, rest = rest.filter(mask), rest.filter(~mask)
        parts.append(_env_part(name, part, clock, recurse))
    if rest.height and top:
        rest = _drop_blank(rest)
    if rest.height:
        parts.append(_finish(_cut(rest, RE_NONE)))
    if not parts:
        return pl.DataFrame(schema=_ENV_COLUMNS)
    return pl.concat(parts, how="vertical")


def _anchor_uptime(env: pl.DataFrame, clock: _FileClock, rel: str) -> pl.DataFrame:
    """Wall time for uptime-only rows, from lines carrying both stamps or the manifest boot time."""
    if env["uptime_s"].null_count() == env.height:
        return env
    # Single-envelope files are already in line order: skip the full gather a sort costs.
    env = env if env["idx"].is_sorted() else env.sort("idx")
    if clock.boot_ns is None and env["ts_ns"].null_count() == env.height:
        return env  # no line carries wall time and no boot time is known: nothing to anchor
    up = pl.col("uptime_s").forward_fill()
    env = env.with_columns(((up < up.shift(1) - 1.0).fill_null(False).cum_sum()).alias("_boot"))
    anchors = (
        env.filter(pl.col("ts_ns").is_not_null() & pl.col("uptime_s").is_not_null())
        .with_columns((pl.col("ts_ns") - (pl.col("uptime_s") * 1e9).cast(pl.Int64)).alias("_b"))
        .group_by("_boot")
        .agg(
            pl.col("_b").median().cast(pl.Int64).alias("_boot_ns"), pl.col("idx").min().alias("_anchor_line")
        )
    )
    env = env.join(anchors, on="_boot", how="left")
    last_boot = env["_boot"].max()
    need = pl.col("ts_ns").is_null() & pl.col("uptime_s").is_not_null()
    from_anchor = pl.col("_boot_ns") + (pl.col("uptime_s") * 1e9).cast(pl.Int64)
    exprs_ts: Any = pl.when(need & pl.col("_boot_ns").is_not_null()).then(from_anchor)
    note: Any = pl.when(need & pl.col("_boot_ns").is_not_null()).then(
        pl.concat_str(
            [
                pl.lit("wall = boot time anchored by line "),
                pl.col("_anchor_line").cast(pl.String),
                pl.lit(" (both stamps) + uptime"),
            ]
        )
    )
    if clock.boot_ns is not None:
        from_manifest = pl.lit(clock.boot_ns) + (pl.col("uptime_s") * 1e9).cast(pl.Int64)
        cond = need & pl.col("_boot_ns").is_null() & (pl.col("_boot") == last_boot)
        exprs_ts = exprs_ts.when(cond).then(from_manifest)
        note = note.when(cond).then(pl.lit("wall = manifest boot_time + uptime"))
    env = env.with_columns(
        exprs_ts.otherwise(pl.col("ts_ns")).alias("ts_ns"),
        note.otherwise(pl.col("ts_assumption")).alias("ts_assumption"),
    )
    return env.drop("_boot", "_boot_ns", "_anchor_line")


# ---------------------------------------------------------------------------------------------
# Classification of distinct interesting messages
# ---------------------------------------------------------------------------------------------


def _fields(kind: str) -> dict[str, pl.Expr]:
    """Field expressions for messages of one kind (only what that kind needs is evaluated)."""
    m = pl.col("msg")

    def is_kind(name: str) -> bool:
        return name == kind

    def is_in(names: list[str]) -> bool:
        return kind in names

    def when(cond: bool, expr: pl.Expr) -> pl.Expr:
        return expr if cond else pl.lit(None, dtype=pl.String)

    xid_pci = m.str.extract(RE_XID, 1)
    xid_code = m.str.extract(RE_XID, 3).cast(pl.Int32, strict=False)
    xid_pid = m.str.extract(RE_XID, 4).str.strip_chars("'")
    xid_name = m.str.extract(RE_XID, 5).str.strip_chars()
    xid_text = m.str.extract(RE_XID, 6)
    sxid_pci = m.str.extract(RE_SXID, 1)
    sxid_code = m.str.extract(RE_SXID, 2).cast(pl.Int32, strict=False)
    any_pci = pl.coalesce(
        m.str.extract(r"PCI:(" + PCI_TXT + r"(?:\.\d)?)", 1),
        m.str.extract(r"(?:^|[\s(])(" + BDF + r")(?:[\s:,.)]|$)", 1),
    )
    aer_from = m.str.extract(r"(?:received from|error received:?) (" + BDF + r")", 1)
    dev_prefix = m.str.extract(r"^\S+ (" + BDF + r")(?::pcie\d+)?:", 1)
    ghes_dev = m.str.extract(r"device_id: (" + BDF + r")", 1)
    lost_pci = m.str.extract(r"NVRM: (?:The NVIDIA )?GPU (?:at )?(?:PCI:)?(" + PCI_TXT + r"(?:\.\d)?)", 1)

    oom_pid = pl.coalesce(
        m.str.extract(r"Killed process (\d+)", 1),
        m.str.extract(r"oom-kill:.*?,pid=(\d+)", 1),
        m.str.extract(r"reaped process (\d+)", 1),
    )
    oom_comm = pl.coalesce(
        m.str.extract(r"Killed process \d+ \(([^)]*)\)", 1),
        m.str.extract(r"oom-kill:.*?,task=([^,]*),", 1),
        m.str.extract(r"reaped process \d+ \(([^)]*)\)", 1),
        m.str.extract(r"^(.+?) invoked oom-killer", 1),
    )
    hung_comm = pl.coalesce(
        m.str.extract(r"task (.+?):(\d+) blocked for more than", 1),
        m.str.extract(r"task:(\S+)\s+state:", 1),
        m.str.extract(r"stuck for \d+s! \[(.+?):(\d+)\]", 1),
    )
    hung_pid = pl.coalesce(
        m.str.extract(r"task (.+?):(\d+) blocked for more than", 2),
        m.str.extract(r"task:\S+\s+state:.*?\bpid:\s*(\d+)", 1),
        m.str.extract(r"stuck for \d+s! \[(.+?):(\d+)\]", 2),
    )
    seg_comm = pl.coalesce(m.str.extract(r"(?:^|traps: )(\S+?)\[(\d+)\]", 1))
    seg_pid = m.str.extract(r"(?:^|traps: )(\S+?)\[(\d+)\]", 2)

    def pick(pairs: list[tuple[bool, pl.Expr]]) -> pl.Expr:
        for cond, expr in pairs:
            if cond:
                return expr
        return pl.lit(None, dtype=pl.String)

    pci_raw = pick(
        [
            (is_kind("xid"), xid_pci),
            (is_kind("sxid"), sxid_pci),
            (is_kind("gpu_lost"), pl.coalesce(lost_pci, any_pci)),
            (is_kind("aer"), pl.coalesce(aer_from, dev_prefix, any_pci)),
            (is_kind("mce"), ghes_dev),
            (
                is_in(["pcie_link", "ib_link", "nvlink", "gsp", "other"]),
                pl.coalesce(dev_prefix, lost_pci, any_pci),
            ),
        ]
    )
    xid = pick(
        [
            (is_kind("xid"), xid_code),
            (is_kind("sxid"), sxid_code),
            (is_kind("gpu_lost"), pl.lit(79, dtype=pl.Int32)),
        ]
    ).cast(pl.Int32)
    pid = pick(
        [
            (is_kind("xid"), xid_pid),
            (is_kind("oom_kill"), oom_pid),
            (is_kind("hung_task"), hung_pid),
            (is_kind("segfault"), seg_pid),
        ]
    ).cast(pl.Int64, strict=False)
    comm = pick(
        [
            (is_kind("xid"), pl.when(xid_name.str.contains("^<?unknown>?$")).then(None).otherwise(xid_name)),
            (is_kind("oom_kill"), oom_comm),
            (is_kind("hung_task"), hung_comm),
            (is_kind("segfault"), seg_comm),
        ]
    )
    fields: dict[str, pl.Expr] = {"pci_raw": pci_raw, "xid": xid, "pid": pid, "comm": comm}

    # attrs: parsed facts by name (map column); absent facts are left out.
    attrs: dict[str, pl.Expr] = {
        "gpu_instance": when(is_kind("xid"), m.str.extract(RE_XID, 2)),
        "cascade_of": when(is_kind("xid"), m.str.extract(r"caused by previous Xid (\d+)", 1)),
        "recovery_action": when(
            is_kind("xid"),
            m.str.extract(
                r"recovery action changed from \S+ \([^)]*\) to (0x[0-9a-fA-F]+ \([^)]*\)|[A-Za-z ]+)", 1
            ),
        ),
        "reset_required": when(is_kind("xid"), m.str.extract(r"\bRST: (Yes|No)", 1)),
        "drain_reset_required": when(is_kind("xid"), m.str.extract(r"D-RST: (Yes|No)", 1)),
        "containment": when(is_kind("xid"), m.str.extract(r"\b(Contained|Uncontained):", 1)),
        "nvlink_unit": when(is_kind("xid"), xid_text.str.extract(r"^(\w+) (?:Fatal|Nonfatal) XC\d+", 1)),
        "nvlink_fatal": when(
            is_in(["xid", "sxid", "nvlink"]),
            pl.when(m.str.contains(r"(?i)\bnon-?fatal\b"))
            .then(pl.lit("no"))
            .when(m.str.contains(r"(?i)\bfatal\b"))
            .then(pl.lit("yes")),
        ),
        "link": when(is_in(["xid", "sxid", "nvlink"]), m.str.extract(r"[Ll]ink (-?\d+)", 1)),
        "gpc_tpc_sm": when(is_kind("xid"), m.str.extract(r"(GPC \d+, TPC \d+(?:, SM \d+)?)", 1)),
        "gpu_uuid": m.str.extract(r"(GPU-[0-9a-fA-F]{8}-[0-9a-fA-F-]{27})", 1),
        "aer_severity": when(
            is_kind("aer"),
            pl.when(m.str.contains(r"(?i)non-fatal"))
            .then(pl.lit("nonfatal"))
            .when(m.str.contains(r"(?i)\(fatal\)|Surprise Down|\bSDES\b"))
            .then(pl.lit("fatal"))
            .when(m.str.contains(r"(?i)correct(?:ed|able)"))
            .then(pl.lit("corrected")),
        ),
        "aer_type": when(is_kind("aer"), m.str.extract(r"type=([A-Za-z ]+Layer|[A-Za-z ]+?)(?:,|$)", 1)),
        "aer_error": when(
            is_kind("aer"), m.str.extract(r"\[\s*\d+\] ([A-Za-z][\w ()-]*?)\s*(?:\(First\))?\s*$", 1)
        ),
        "aer_event": when(
            is_kind("aer"),
            pl.when(m.str.contains(r"error received|error message received"))
            .then(pl.lit("received"))
            .when(m.str.contains("PCIe Bus Error"))
            .then(pl.lit("bus_error"))
            .when(m.str.contains("error status/mask"))
            .then(pl.lit("status"))
            .when(m.str.contains(r"recovery failed|can't recover"))
            .then(pl.lit("recovery_failed"))
            .when(m.str.contains("no AER-aware driver"))
            .then(pl.lit("no_aer_driver"))
            .when(m.str.contains(r"\[\s*\d+\] "))
            .then(pl.lit("error_bit"))
            .otherwise(pl.lit("other")),
        ),
        "reporter": when(is_in(["aer", "pcie_link"]), dev_prefix),
        "driver": when(is_in(["aer", "pcie_link", "ib_link"]), m.str.extract(r"^(\S+) " + BDF, 1)),
        "link_state": when(
            is_kind("ib_link"),
            pl.coalesce(
                m.str.extract(r"Port: \d+ Link (\w+)", 1).str.to_uppercase(),
                m.str.extract(r"[Ll]ink (?:is )?(up|down|UP|DOWN)\b", 1).str.to_uppercase(),
                pl.when(m.str.contains(r"(?i)lost carrier|unplugged")).then(pl.lit("DOWN")),
                pl.when(m.str.contains(r"(?i)cable plugged|plugged and enabled|link becomes ready")).then(
                    pl.lit("UP")
                ),
            ),
        ),
        "port": when(
            is_kind("ib_link"),
            pl.coalesce(
                m.str.extract(r"(mlx\d_\d+): Port: (\d+)", 1)
                + pl.lit("/")
                + m.str.extract(r"(mlx\d_\d+): Port: (\d+)", 2),
                m.str.extract(r"(?:^|\s)([\w.-]+): (?:[Ll]ink|NIC Link|[Ll]ost carrier)", 1),
                m.str.extract(r"NETDEV_CHANGE\): ([\w.-]+):", 1),
                pl.lit("module ") + m.str.extract(r"[Mm]odule (\d+)", 1),
            ),
        ),
        "pcie_state": when(
            is_kind("pcie_link"),
            pl.when(m.str.contains(r"Link Down|Card not present|Failed to check link"))
            .then(pl.lit("down"))
            .when(m.str.contains(r"Link Up|Card present"))
            .then(pl.lit("up"))
            .when(m.str.contains(r"limited by|downgrad|reduced"))
            .then(pl.lit("degraded")),
        ),
        "oom_scope": when(
            is_kind("oom_kill"),
            pl.when(m.str.contains(r"CONSTRAINT_MEMCG|Memory cgroup out of memory"))
            .then(pl.lit("cgroup"))
            .when(m.str.contains(r"CONSTRAINT_NONE|global_oom|^Out of memory"))
            .then(pl.lit("global")),
        ),
        "constraint": when(is_kind("oom_kill"), m.str.extract(r"constraint=(\w+)", 1)),
        "task_memcg": when(is_kind("oom_kill"), m.str.extract(r"task_memcg=([^,]*)", 1)),
        "anon_rss_kb": when(is_kind("oom_kill"), m.str.extract(r"anon-rss:(\d+)kB", 1)),
        "oom_event": when(
            is_kind("oom_kill"),
            pl.when(m.str.contains("Killed process"))
            .then(pl.lit("killed"))
            .when(m.str.contains("oom-kill:"))
            .then(pl.lit("victim"))
            .when(m.str.contains("invoked oom-killer"))
            .then(pl.lit("invoked"))
            .when(m.str.contains("reaped process"))
            .then(pl.lit("reaped")),
        ),
        "blocked_s": when(is_kind("hung_task"), m.str.extract(r"blocked for more than (\d+) seconds", 1)),
        "fault_addr": when(is_kind("segfault"), m.str.extract(r"segfault at ([0-9a-fA-F]+)", 1)),
        "error_code": when(is_kind("segfault"), m.str.extract(r" error (\d+)", 1)),
        "library": when(is_kind("segfault"), m.str.extract(r" in ([^\[\s]+)\[", 1)),
        "server": when(is_kind("nfs"), m.str.extract(r"server (\S+?)[,:]? ", 1)),
        "driver_version": m.str.extract(r"NVRM: loading NVIDIA .*?(\d+\.\d+(?:\.\d+)?)", 1),
    }
    fields.update({f"a_{name}": expr.cast(pl.String) for name, expr in attrs.items()})
    return fields


def _classify(unique: pl.DataFrame) -> pl.DataFrame:
    """Kind, codes and fields for each distinct message (column ``msg``), one kind at a time."""
    m = pl.col("msg")
    df = unique.with_columns(_kind_expr(m).alias("kind"))
    parts = []
    for key, sub in df.partition_by("kind", as_dict=True, maintain_order=True).items():
        fields = _fields(str(key[0]))
        parts.append(sub.with_columns([expr.alias(name) for name, expr in fields.items()]))
    df = pl.concat(parts, how="vertical_relaxed") if parts else df
    k = pl.col("kind")

    def is_kind(name: str) -> pl.Expr:
        return k == name

    severity = (
        pl.when(is_kind("gpu_lost"))
        .then(pl.lit("critical"))
        .when(is_kind("sxid"))
        .then(
            pl.when(pl.col("a_nvlink_fatal") == "yes").then(pl.lit("critical")).otherwise(pl.lit("warning"))
        )
        .when(is_kind("aer"))
        .then(
            pl.when(pl.col("a_aer_severity") == "fatal")
            .then(pl.lit("critical"))
            .when(pl.col("a_aer_event") == "recovery_failed")
            .then(pl.lit("critical"))
            .when(pl.col("a_aer_severity") == "nonfatal")
            .then(pl.lit("error"))
            .otherwise(pl.lit("info"))
        )
        .when(is_kind("pcie_link"))
        .then(
            pl.when(pl.col("a_pcie_state") == "down")
            .then(pl.lit("error"))
            .when(pl.col("a_pcie_state") == "degraded")
            .then(pl.lit("warning"))
            .otherwise(pl.lit("info"))
        )
        .when(is_kind("ib_link"))
        .then(
            pl.when(pl.col("a_link_state") == "DOWN")
            .then(pl.lit("error"))
            .when(m.str.contains(r"(?i)high temperature|insufficient power|error|fail"))
            .then(pl.lit("warning"))
            .otherwise(pl.lit("info"))
        )
        .when(is_kind("oom_kill"))
        .then(
            pl.when(pl.col("a_oom_event").is_in(["killed", "victim"]))
            .then(pl.lit("error"))
            .when(pl.col("a_oom_event") == "invoked")
            .then(pl.lit("warning"))
            .otherwise(pl.lit("info"))
        )
        .when(k.is_in(["hung_task", "segfault", "gsp", "fs_error"]))
        .then(pl.lit("error"))
        .when(is_kind("thermal"))
        .then(
            pl.when(m.str.contains(r"(?i)critical"))
            .then(pl.lit("critical"))
            .when(m.str.contains(r"(?i)normal"))
            .then(pl.lit("info"))
            .otherwise(pl.lit("warning"))
        )
        .when(is_kind("mce"))
        .then(
            pl.when(m.str.contains(r"\bUE\b|(?i)uncorrect|fatal"))
            .then(pl.lit("critical"))
            .when(m.str.contains(r"\bCE\b|(?i)\bcorrected|no action required"))
            .then(pl.lit("warning"))
            .otherwise(pl.lit("warning"))
        )
        .when(is_kind("nfs"))
        .then(
            pl.when(m.str.contains(r"(?i)\bOK\b|restored|recovered"))
            .then(pl.lit("info"))
            .otherwise(pl.lit("error"))
        )
        .when(is_kind("nvlink"))
        .then(
            pl.when(pl.col("a_nvlink_fatal") == "yes").then(pl.lit("critical")).otherwise(pl.lit("warning"))
        )
        .when(is_kind("other"))
        .then(
            pl.when(m.str.contains(r"Oops|BUG: |Kernel panic|kernel BUG"))
            .then(pl.lit("critical"))
            .when(m.str.contains(r"nvidia-peermem.*ERROR"))
            .then(pl.lit("warning"))
        )
        .otherwise(None)
    )
    df = df.with_columns(severity.alias("severity"))
    # Xid severity from the catalogue; NVLink5 decode says fatal or not.
    codes = [c for c in df["xid"].unique().to_list() if c is not None]
    xid_sev = {c: (xid_lookup(c).severity if xid_lookup(c) else "error") for c in codes}  # type: ignore[union-attr]
    if xid_sev:
        df = df.with_columns(
            pl.when(is_kind("xid"))
            .then(
                pl.when(pl.col("xid").is_between(144, 150) & (pl.col("a_nvlink_fatal") == "no"))
                .then(pl.lit("warning"))
                .when(pl.col("xid").is_between(144, 150) & (pl.col("a_nvlink_fatal") == "yes"))
                .then(pl.lit("critical"))
                .otherwise(pl.col("xid").replace_strict(xid_sev, default="error", return_dtype=pl.String))
            )
            .otherwise(pl.col("severity"))
            .alias("severity")
        )
    subject = (
        pl.when(is_kind("ib_link"))
        .then(pl.col("a_port"))
        .when(k.is_in(["oom_kill", "hung_task", "segfault"]))
        .then(pl.col("comm"))
        .when(is_kind("nfs"))
        .then(pl.col("a_server"))
        .when(is_kind("other"))
        .then(pl.col("a_gpu_uuid"))
        .otherwise(None)
    )
    return df.with_columns(subject.alias("subject"))


def _trace_symbol(msg: pl.Expr) -> pl.Expr:
    symbol = msg.str.extract(RE_FRAME, 1)
    module = msg.str.extract(RE_FRAME, 2)
    return (
        pl.when(module.is_not_null())
        .then(pl.concat_str([symbol, pl.lit(" ["), module, pl.lit("]")]))
        .otherwise(symbol)
    )


def _orphan_kind(msg: pl.Expr) -> pl.Expr:
    """Kind of a continuation line that has no record to join: guessed from what it shows."""
    return (
        pl.when(
            msg.str.contains(
                r"oom|out_of_memory|mem_cgroup|Tasks state|Mem-Info|\[\s*pid\s*\]|^\s*\[\s*\d+\]\s+\d+\s+\d+"
            )
        )
        .then(pl.lit("oom_kill"))
        .when(
            msg.str.contains(
                r"nfs|rpc_|lustre|ll_|ptlrpc|fuse|xfs_|ext4_|jbd2|io_schedule|blk_|nvidia|uvm|schedule|[Tt]ainted|hung_task|state:|Call Trace|<TASK>"
            )
        )
        .then(pl.lit("hung_task"))
        .otherwise(pl.lit("other"))
    )


# ---------------------------------------------------------------------------------------------
# Main entry
# ---------------------------------------------------------------------------------------------


def parse_kernel_text(ctx: FileContext, out: ParseOutput) -> pa.Table:
    """Parse ``ctx.data`` into a ``kernel_events`` Arrow table (conformed by the engine)."""
    frame = _lines_frame(ctx, out)
    head_text = ctx.data[:65536].decode("utf-8", errors="replace")
    clock = _file_clock(ctx, head_text, ctx.host_hint)
    order = tuple(_dominant(frame))
    env = _envelopes(frame, order, clock, top=True)
    drop = env["drop"].fill_null(False)
    if drop.any():  # filtering copies every column: only when something is dropped
        n_json_bad = int(env.filter(pl.col("drop") & pl.col("msg").is_null()).height)
        if n_json_bad:
            out.reject("json_invalid", n_json_bad)
            first = int(env.filter(pl.col("drop") & pl.col("msg").is_null())["idx"].min())  # type: ignore[arg-type]
            out.problems.append(Problem(ctx.rel, first, f"{n_json_bad} journal JSON lines without a MESSAGE"))
        env = env.filter(~drop)
    env = env.drop("drop")
    out.records = env.height

    # Host: content first ("localhost" names nothing), then the path.
    content_hosts = env["host"].drop_nulls()
    content_hosts = content_hosts.filter(~content_hosts.is_in(["localhost", "-", "(none)"]))
    file_host = content_hosts.mode().sort()[0] if content_hosts.len() else ctx.host_hint
    if file_host != ctx.host_hint:
        clock = _file_clock(ctx, head_text, file_host)
    if env["host"].null_count() == env.height:  # no envelope names a host: one value for all
        host = pl.lit(file_host, dtype=pl.String)
    else:
        host = (
            pl.when(pl.col("host").is_null() | pl.col("host").is_in(["localhost", "-", "(none)"]))
            .then(pl.lit(file_host, dtype=pl.String))
            .otherwise(pl.col("host"))
        )
    env = env.with_columns(host.alias("host"))
    env = _anchor_uptime(env, clock, ctx.rel)
    msg = original = env["msg"]
    if msg.null_count():
        msg = msg.fill_null("")
    # One pass over the messages answers two questions: can the line matter (the prefilter), and
    # does it end in whitespace. Messages are compared without trailing whitespace, but stripping
    # copies every message and most logs have none; the few flagged lines tell which it was.
    flagged = msg.str.contains(RE_INTERESTING + r"|\s\z")
    if msg.filter(flagged).str.contains(r"\s\z").any():
        msg = msg.str.strip_chars_end()
        stripped_hits = msg.filter(flagged).str.contains(RE_INTERESTING)
        interesting = flagged.clone().scatter(flagged.arg_true(), stripped_hits)  # scatter writes in place
    else:
        interesting = flagged
    if msg is not original:
        env = env.with_columns(msg)
    # Classified rows come first, then the other lines, each part in line order. A message is
    # either interesting or not (the fallen-off-the-bus merge keeps its NVRM head), so floods
    # never span the two parts and each part is collapsed on its own.
    tables: list[pa.Table] = []
    if interesting.any():
        hot = env.filter(interesting)
        unique = hot.select("msg").unique()
        classes = _classify(unique)
        # attrs depend on the message only: built once per distinct message, not per line.
        attr_cols = [c for c in classes.columns if c.startswith(_ATTR_PREFIX)]
        if attr_cols:
            classes = classes.with_columns(_attr_lists(classes, attr_cols)).drop(attr_cols)
        hot = hot.join(classes, on="msg", how="left").sort("idx")
        hot = _fold_continuations(hot)
        hot = _fold_fallen_off_block(hot)
        tables.append(_to_arrow(_collapse(_prepare_hot(hot)), ctx))
    if env.height == 0 or not interesting.all():
        tables.append(_other_table(env, ~interesting, ctx))
    return tables[0] if len(tables) == 1 else pa.concat_tables(tables)


def _fold_continuations(hot: pl.DataFrame) -> pl.DataFrame:
    """Attach call-trace frames and report lines to the record before them; orphans stand alone."""
    is_cont = pl.col("kind") == "cont"
    if not hot["kind"].eq("cont").any():
        return hot.with_columns(pl.lit(None, dtype=pl.List(pl.String)).alias("trace"))
    hot = hot.with_columns(
        pl.when(~is_cont).then(pl.col("idx")).otherwise(None).forward_fill().alias("_owner"),
    )
    # A continuation more than 400 lines after its owner is not part of it.
    hot = hot.with_columns(
        pl.when(is_cont & ((pl.col("idx") - pl.col("_owner")) > 400))
        .then(None)
        .otherwise(pl.col("_owner"))
        .alias("_owner")
    )
    frames = (
        hot.filter(is_cont & pl.col("_owner").is_not_null())
        .with_columns(_trace_symbol(pl.col("msg")).alias("_sym"))
        .group_by("_owner")
        .agg(
            pl.col("_sym").drop_nulls().alias("trace"),
            pl.col("pid").drop_nulls().first().alias("_cpid"),
            pl.col("comm").drop_nulls().first().alias("_ccomm"),
            pl.col("msg")
            .str.extract(r"task:(\S+)\s+state:.*?\bpid:\s*(\d+)", 2)
            .drop_nulls()
            .first()
            .cast(pl.Int64, strict=False)
            .alias("_tpid"),
        )
    )
    owners = hot.filter(~is_cont).join(frames, left_on="idx", right_on="_owner", how="left")
    owners = owners.with_columns(
        pl.when(pl.col("trace").list.len() > 0).then(pl.col("trace")).otherwise(None).alias("trace"),
        pl.coalesce("pid", "_tpid").alias("pid"),
    ).drop("_cpid", "_ccomm", "_tpid", "_owner")
    orphans = hot.filter(is_cont & pl.col("_owner").is_null()).drop("_owner")
    if orphans.height:
        sym = _trace_symbol(pl.col("msg"))
        tpid = (
            pl.col("msg").str.extract(r"task:(\S+)\s+state:.*?\bpid:\s*(\d+)", 2).cast(pl.Int64, strict=False)
        )
        tcomm = pl.col("msg").str.extract(r"task:(\S+)\s+state:", 1)
        orphans = orphans.with_columns(
            _orphan_kind(pl.col("msg")).alias("kind"),
            pl.when(sym.is_not_null()).then(pl.concat_list([sym])).otherwise(None).alias("trace"),
            tpid.alias("pid"),
            tcomm.alias("comm"),
        ).with_columns(
            pl.when(pl.col("kind") == "other").then(None).otherwise(pl.lit("warning")).alias("severity"),
            pl.when(pl.col("kind") == "other").then(None).otherwise(pl.col("comm")).alias("subject"),
        )
        owners = pl.concat([owners, orphans.select(owners.columns)], how="vertical")
    return owners.sort("idx")


def _fold_fallen_off_block(hot: pl.DataFrame) -> pl.DataFrame:
    """``NVRM: The NVIDIA GPU <bdf>`` + ``(PCI ID: …) installed …`` + ``fallen off the bus …``: one row."""
    tail_mask = (hot["kind"] == "gpu_lost") & hot["pci_raw"].is_null()
    if not tail_mask.any():
        return hot
    heads = hot.filter(pl.col("msg").str.contains(r"^NVRM: The NVIDIA GPU " + PCI_TXT))
    if heads.height == 0:
        return hot
    tails = hot.filter(tail_mask)
    # Few rows (one per block): match each tail to the closest head at most three lines above it.
    head_idx = heads["idx"].to_list()
    head_pci = heads["pci_raw"].to_list()
    head_msg = heads["msg"].to_list()
    drop: list[int] = []
    update: dict[int, tuple[str | None, str]] = {}
    middle = set(hot.filter(pl.col("msg").str.contains(r"installed in this system"))["idx"].to_list())
    for tail_idx, tail_msg in zip(tails["idx"].to_list(), tails["msg"].to_list(), strict=True):
        best = None
        for position, idx in enumerate(head_idx):
            if 0 < tail_idx - idx <= 3:
                best = position
        if best is None:
            continue
        idx = head_idx[best]
        between = [i for i in middle if idx < i < tail_idx]
        texts = (
            [head_msg[best]]
            + [hot.filter(pl.col("idx") == i)["msg"][0] for i in sorted(between)]
            + [tail_msg]
        )
        update[idx] = (
            head_pci[best],
            " ".join(t.replace("NVRM: ", "", 1) if n else t for n, t in enumerate(texts)),
        )
        drop.extend([*between, tail_idx])
    if not update:
        return hot
    keys = list(update)
    patch = pl.DataFrame(
        {"idx": keys, "_pci": [update[i][0] for i in keys], "_msg": [update[i][1] for i in keys]},
        schema={"idx": pl.Int64, "_pci": pl.String, "_msg": pl.String},
    )
    hot = hot.filter(~pl.col("idx").is_in(drop)).join(patch, on="idx", how="left")
    hit = pl.col("_msg").is_not_null()
    return hot.with_columns(
        pl.when(hit).then(pl.lit("gpu_lost")).otherwise(pl.col("kind")).alias("kind"),
        pl.when(hit).then(pl.lit(79, dtype=pl.Int32)).otherwise(pl.col("xid")).alias("xid"),
        pl.when(hit).then(pl.lit("critical")).otherwise(pl.col("severity")).alias("severity"),
        pl.when(hit).then(pl.col("_pci")).otherwise(pl.col("pci_raw")).alias("pci_raw"),
        pl.when(hit).then(pl.col("_msg")).otherwise(pl.col("msg")).alias("msg"),
    ).drop("_pci", "_msg")


_ATTR_PREFIX = "a_"


_BASE = ["idx", "msg", "ts_text", "host", "uptime_s", "ts_ns", "ts_assumption", "level", "device"]


def _level_severity() -> pl.Expr:
    return (
        pl.when(pl.col("level") <= 2)
        .then(pl.lit("critical"))
        .when(pl.col("level") == 3)
        .then(pl.lit("error"))
        .when(pl.col("level") == 4)
        .then(pl.lit("warning"))
        .otherwise(pl.lit("info"))
    )


def _prepare_hot(hot: pl.DataFrame) -> pl.DataFrame:
    """Classified rows with their attrs as one list-of-struct column (small frame)."""
    if "trace" not in hot.columns:
        hot = hot.with_columns(pl.lit(None, dtype=pl.List(pl.String)).alias("trace"))
    keep = [*_BASE, "kind", "xid", "severity", "subject", "pci_raw", "pid", "comm", "trace"]
    if "attrs" in hot.columns:
        hot = hot.select(*keep, "attrs")
    else:
        hot = hot.select(keep).with_columns(pl.repeat(None, hot.height, eager=True).alias("attrs"))
    return hot.with_columns(
        pl.coalesce("severity", _level_severity()).alias("severity"),
        # JSON journal records name their device: use it when the message did not.
        pl.coalesce("pci_raw", pl.col("device").str.extract(r"\+pci:(" + BDF + r")", 1)).alias("pci_raw"),
    )


def _attr_lists(rows: pl.DataFrame, attr_cols: list[str]) -> pl.Series:
    """Per row, the non-null ``a_*`` columns as a list of {key, value} (in column order).

    Built from the long form (row, key, value) and the per-row counts as Arrow list offsets:
    one pass over the few set values, where concatenating a struct per column and filtering
    each row's list costs ~30 us per row.
    """
    set_values = (
        rows.select(attr_cols)
        .with_row_index("_row")
        .unpivot(on=attr_cols, index="_row", variable_name="key", value_name="value")
        .filter(pl.col("value").is_not_null())
        .sort("_row", maintain_order=True)
        .select(pl.struct(pl.col("key").str.strip_prefix(_ATTR_PREFIX), "value").alias("attrs"))
    )["attrs"]
    counts = rows.select(pl.sum_horizontal(pl.col(c).is_not_null().cast(pl.Int32) for c in attr_cols))
    offsets = pl.concat([pl.Series([0], dtype=pl.Int32), counts.to_series().cum_sum()]).to_arrow()
    values = set_values.to_arrow()
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    return pl.Series("attrs", pa.ListArray.from_arrays(offsets.cast(pa.int32()), values))


def _message_keys(rows: pl.DataFrame) -> pl.Series:
    """Flood key per row: the message hash, combined with the host's when the hosts differ."""
    key = pl.col("msg").hash()
    host = rows["host"]
    if host.len() and (host.null_count() or not bool((host == host[0]).all())):
        key = key ^ pl.col("host").fill_null("").hash()
    return rows.select(key).to_series()


@dataclass
class _Floods:
    """Repeated messages of one part: rows to keep (first occurrences) and their collapsed values."""

    keep: pl.Series
    count: pl.Series
    first_ts: pl.Series
    last_ts: pl.Series


def _floods(keys: pl.Series, ts: pl.Series) -> _Floods | None:
    """Group rows with equal ``keys``; the first row of a group (in table order) stands for it.

    None when no key repeats.
    """
    # Repeated keys from one sort (adjacent equal values): much cheaper than a hash-set pass
    # over every row; the first-occurrence test then runs on the repeated rows only.
    ordered = keys.sort()
    repeated = ordered.filter(ordered == ordered.shift(1)).unique()
    if repeated.len() == 0:
        return None
    # Only the repeated messages are grouped; the (usually many) unique lines pass straight through.
    dup = keys.is_in(repeated.implode())
    groups = (
        pl.DataFrame({"_pos": dup.arg_true(), "_h": keys.filter(dup), "_ts": ts.filter(dup)})
        .group_by("_h")
        .agg(
            pl.col("_pos").first(),  # rows keep their order inside a group: the first occurrence
            pl.len().cast(pl.Int64).alias("_n"),
            pl.col("_ts").drop_nulls().first().alias("_first"),
            pl.col("_ts").drop_nulls().last().alias("_last"),
        )
    )
    # Written into place at the first occurrences (a null first/last means the group has no
    # time at all, so the row's own null stays); the caller then keeps the first occurrences.
    pos = groups["_pos"]
    timed = ts.null_count() < ts.len()  # without any time, first and last stay null
    return _Floods(
        keep=(~dup).scatter(pos, True),
        count=pl.repeat(1, keys.len(), dtype=pl.Int64, eager=True).scatter(pos, groups["_n"]),
        first_ts=ts.clone().scatter(pos, groups["_first"]) if timed else ts,
        last_ts=ts.clone().scatter(pos, groups["_last"]) if timed else ts,
    )


def _collapse(rows: pl.DataFrame) -> pl.DataFrame:
    """Identical messages of one host become one row: count, first and last time (file order kept)."""
    floods = _floods(_message_keys(rows), rows["ts_ns"])
    if floods is None:
        return rows.with_columns(
            pl.lit(1, dtype=pl.Int64).alias("count"), pl.col("ts_ns").alias("last_ts_ns")
        )
    return rows.with_columns(
        floods.count.alias("count"), floods.first_ts.alias("ts_ns"), floods.last_ts.alias("last_ts_ns")
    ).filter(floods.keep)


def _other_table(env: pl.DataFrame, mask: pl.Series, ctx: FileContext) -> pa.Table:
    """The lines the prefilter passed over (``mask``): kind ``other``, flood-collapsed, as Arrow.

    Most lines of a log end up here. Their columns go from the envelope frame straight to Arrow
    with one filter (other lines and first occurrences together); the columns these lines never
    fill, and those that are one value for the whole file, are built as constants.
    """
    # Floods are looked for over every row: a message is interesting or not, so the groups of the
    # other lines are the same with or without the interesting rows (no filter of every key).
    floods = _floods(_message_keys(env), env["ts_ns"])
    keep = mask if floods is None else mask & floods.keep
    host = env["host"]
    one_host = env.height > 0 and host.null_count() == 0 and bool((host == host[0]).all())
    # Only columns that vary go through the filter; a column no line fills is a null constant.
    columns: list[str | pl.Series] = ["idx", "msg", "ts_text"]
    columns += [
        name for name in ("uptime_s", "level", "ts_assumption") if env[name].null_count() < env.height
    ]
    columns += [] if one_host else ["host"]
    if floods is not None:
        columns.append(floods.count.alias("count"))
    if env["ts_ns"].null_count() < env.height:
        if floods is None:
            columns += [env["ts_ns"], env["ts_ns"].alias("last_ts_ns")]
        else:
            columns += [floods.first_ts.alias("ts_ns"), floods.last_ts.alias("last_ts_ns")]
    rows = env.select(columns)
    if not keep.all():
        rows = rows.filter(keep)
    n = rows.height

    def column(name: str, constant: Any, arrow_type: pa.DataType) -> pa.Array:
        if name not in rows.columns:
            return pa.repeat(pa.scalar(constant, arrow_type), n)
        return _strings(rows[name]) if arrow_type == pa.string() else rows[name].to_arrow()

    if "level" in rows.columns:
        severity = _strings(rows.select(_level_severity()).to_series())
    else:  # no envelope gave a level: every line is "info"
        severity = pa.repeat(pa.scalar("info", pa.string()), n)
    arrays: dict[str, pa.Array] = {
        "source_line": rows["idx"].to_arrow(),
        "host": column("host", host[0] if one_host else None, pa.string()),
        "ts_ns": column("ts_ns", None, pa.int64()),
        "ts_text": _strings(rows["ts_text"]),
        "uptime_s": column("uptime_s", None, pa.float64()),
        "ts_assumption": column("ts_assumption", None, pa.string()),
        "kind": pa.repeat(pa.scalar("other", pa.string()), n),
        "xid": pa.nulls(n, pa.int32()),
        "severity": severity,
        "subject": pa.nulls(n, pa.string()),
        "pci_bus_id": pa.nulls(n, pa.string()),
        "pid": pa.nulls(n, pa.int64()),
        "comm": pa.nulls(n, pa.string()),
        "message": _strings(rows["msg"]),
        "trace": pa.nulls(n, pa.list_(pa.string())),
        "count": column("count", 1, pa.int64()),
        "last_ts_ns": column("last_ts_ns", None, pa.int64()),
        "attrs": _attrs_array(None, n),
    }
    return _arrow_table(arrays, ctx, n)


def _to_arrow(rows: pl.DataFrame, ctx: FileContext) -> pa.Table:
    for name, dtype in (
        ("xid", pl.Int32),
        ("subject", pl.String),
        ("pid", pl.Int64),
        ("comm", pl.String),
        ("pci_raw", pl.String),
    ):
        if name not in rows.columns:
            rows = rows.with_columns(pl.lit(None, dtype=dtype).alias(name))
    if "trace" not in rows.columns:
        rows = rows.with_columns(pl.lit(None, dtype=pl.List(pl.String)).alias("trace"))
    pci_values = [v for v in rows["pci_raw"].drop_nulls().unique().to_list()]
    pci_map = {v: normalize_pci(v) for v in pci_values}
    pci = (
        pl.col("pci_raw").replace_strict(pci_map, default=None, return_dtype=pl.String)
        if pci_map
        else pl.lit(None, dtype=pl.String)
    )
    rows = rows.with_columns(pci.alias("pci_bus_id")).with_columns(
        pl.coalesce("subject", "pci_bus_id").alias("subject")
    )
    frame = rows.select(
        pl.col("idx").alias("source_line"),
        "host",
        "ts_ns",
        "ts_text",
        "uptime_s",
        "ts_assumption",
        "kind",
        pl.col("xid").cast(pl.Int32),
        "severity",
        "subject",
        "pci_bus_id",
        pl.col("pid").cast(pl.Int64),
        "comm",
        pl.col("msg").alias("message"),
        pl.col("trace").cast(pl.List(pl.String)),
        "count",
        "last_ts_ns",
    )
    # Newest Arrow layout (string views) leaves Polars without a copy; each column is then cast
    # once to the table's own type, so ``conform`` has nothing left to cast.
    table = frame.to_arrow(compat_level=pl.CompatLevel.newest())
    arrays: dict[str, pa.Array | pa.ChunkedArray] = {}
    for name in table.column_names:
        column = table.column(name)
        wanted = KERNEL_EVENTS.field(name).type
        arrays[name] = column if column.type == wanted else column.cast(wanted)
    attrs = rows["attrs"] if "attrs" in rows.columns else None
    arrays["attrs"] = _attrs_array(attrs, rows.height)
    return _arrow_table(arrays, ctx, rows.height)


def _arrow_table(arrays: dict[str, pa.Array | pa.ChunkedArray], ctx: FileContext, n: int) -> pa.Table:
    """The part's table: ``source_file`` (one repeated value) first, then ``arrays`` in order."""
    return pa.table({"source_file": pa.repeat(pa.scalar(ctx.rel, pa.string()), n), **arrays})


def _strings(series: pl.Series) -> pa.Array:
    """A Polars string column as an Arrow ``string`` array (views out of Polars, one cast)."""
    return series.to_arrow(compat_level=pl.CompatLevel.newest()).cast(pa.string())


def _attrs_array(attrs: pl.Series | None, n: int) -> pa.Array:
    """Map column from a list-of-{key, value} column; rows without facts get an empty map."""
    map_type = pa.map_(pa.string(), pa.string())
    if attrs is None or attrs.dtype == pl.Null or n == 0:
        return pa.MapArray.from_arrays(
            pa.repeat(pa.scalar(0, pa.int32()), n + 1),
            pa.array([], pa.string()),
            pa.array([], pa.string()),
            type=map_type,
        )
    lengths = attrs.list.len().fill_null(0).cast(pl.Int32)
    offsets = pl.concat([pl.Series([0], dtype=pl.Int32), lengths.cum_sum()]).to_arrow().cast(pa.int32())
    flat = attrs.filter(lengths > 0).explode()
    keys = flat.struct.field("key").to_arrow().cast(pa.string())
    items = flat.struct.field("value").to_arrow().cast(pa.string())
    return pa.MapArray.from_arrays(offsets, keys, items, type=map_type)
