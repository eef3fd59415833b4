"""Flight-recorder ingest: real gloo samples (pickle, JSON, fixed pg_config) and synthetic variants."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pyarrow as pa
import pytest

from tests.helpers.fr_dumps import Job, to_json
from tests.helpers.incident import ingest_serial, write_incident
from tests.helpers.paths import SAMPLES
from tracecore.analyzers.ingest.base import NO_CLAIM, STRONG_CLAIM
from tracecore.analyzers.ingest.flight_recorder import (
    FlightRecorderParser,
    _config_table,
    _GroupConfigs,
    _stack_facts,
    _stack_key,
    _stacks_columns,
    call_site,
    group_key,
    parse_ranks,
    rank_from_name,
    split_profiling_name,
)
from tracecore.analyzers.tables import SchemaMismatchError

FR = SAMPLES / "flight_recorder"


def _groups(result) -> dict[str, tuple[list[int], str]]:  # type: ignore[no-untyped-def]
    table = result.tables.df("fr_groups")
    return {
        k: (list(r), s) for k, r, s in table.select("group_key", "ranks", "membership_source").iter_rows()
    }


@pytest.mark.parametrize("variant", ["pickle", "json", "pickle_pgfixed"])
def test_healthy_sample_every_variant(variant: str) -> None:
    result = ingest_serial(FR / "healthy" / variant)
    entries = result.tables.df("fr_entries")
    assert entries.height == 4 * 18
    assert sorted(entries["rank"].unique().to_list()) == [0, 1, 2, 3]
    groups = _groups(result)
    source = "config" if variant == "pickle_pgfixed" else "inferred"
    assert groups == {
        "0[0-3]": ([0, 1, 2, 3], source),
        "1[0-1]": ([0, 1], source),
        "2[2-3]": ([2, 3], source),
        "3[0,2]": ([0, 2], source),
        "4[1,3]": ([1, 3], source),
    }
    assert entries["group_key"].null_count() == 0
    first = entries.filter((entries["rank"] == 0) & (entries["record_id"] == 1)).row(0, named=True)
    assert first["profiling_name"] == "gloo:all_gather"
    assert (first["backend"], first["op"]) == ("gloo", "all_gather")
    assert first["input_sizes"] == [[8]] and first["output_sizes"] == [[2, 8]]
    assert (first["input_numel"], first["output_numel"]) == (8, 16)
    assert first["time_started_ns"] is None and first["time_completed_ns"] is None  # JSON writes 0
    assert first["retired"] is True and first["state"] == "scheduled"
    assert first["dump_version"] == "2.10"
    assert first["source_line"] == 2
    stacks = result.tables.df("fr_stacks")
    # Frames are stored once per distinct stack; entries refer to them by stack_id.
    assert stacks["stack_id"].n_unique() == stacks.height
    if variant == "json":
        assert first["stack_id"] is None and first["dump_format"] == "json"
        assert stacks.height == 0
    else:
        frames = stacks.filter(stacks["stack_id"] == first["stack_id"])["frames"].to_list()[0]
        assert stacks.height < entries.filter(entries["stack_id"].is_not_null()).height
        assert frames[0] == {
            "name": "all_gather_single",
            "filename": "torch/distributed/distributed_c10d.py",
            "line": 4387,
        }
        assert first["call_site"].startswith("gen_real_fr.py:")
    status = result.tables.df("fr_status").filter(pl_rank(result, 0))
    assert status.sort("pg_id")["last_completed"].to_list()[0] == 12


def pl_rank(result, rank: int):  # type: ignore[no-untyped-def]
    """Filter expression: rows of one rank."""
    import polars as pl

    return pl.col("rank") == rank


def test_problems_of_real_samples_are_only_notes() -> None:
    result = ingest_serial(FR / "missing_rank_hang" / "pickle")
    assert [p for p in result.summary.problems if not p.problem.startswith("info")] == []


@pytest.mark.parametrize(
    ("name", "rank", "host"),
    [
        ("comm_lib_trace_rank_3", 3, None),
        ("node-1/fr/nccl_trace_rank_12", 12, None),
        ("dumps/comm_lib_trace_rank_7.json", 7, None),
        ("nccl_trace_rank_container-node02_5", 5, "container-node02"),
        ("traces/rank4/latest_dump", 4, None),
        ("fr_dump_latest", None, None),
        ("trace_9.json.gz", 9, None),
    ],
)
def test_rank_from_name(name: str, rank: int | None, host: str | None) -> None:
    assert rank_from_name(name) == (rank, host)


def test_small_helpers() -> None:
    assert parse_ranks("[0, 1, 2, 3]") == (0, 1, 2, 3)
    assert parse_ranks("[]") == ()
    assert parse_ranks("[0, __import__('os')]") is None
    assert group_key("0", [3, 0, 1, 2]) == "0[0-3]"
    assert group_key("7", range(0, 1024, 8)).startswith("7[128r#")
    assert split_profiling_name("nccl:send 1->0") == ("nccl", "send", 1, 0)
    assert split_profiling_name("nccl:recv 0<-1") == ("nccl", "recv", 0, 1)
    assert split_profiling_name("gloo:recv 1<-?") == ("gloo", "recv", 1, None)
    assert split_profiling_name("nccl2:all_reduce") == ("nccl2", "all_reduce", None, None)
    assert split_profiling_name("hccl:ALLGATHER_coalesced") == ("hccl", "ALLGATHER_coalesced", None, None)


def test_group_config_members_read_alike_from_text_and_lists() -> None:
    # Member texts are converted once per distinct text; the rows must equal a plain conversion
    # of what each config wrote, whatever mix of spellings a dump holds.
    config = {
        "0": {"name": "0", "desc": "default_pg", "ranks": "[0,  1,  2,  3]"},
        "1": {"name": "1", "desc": "dp", "ranks": [1, 3]},
        "2": {"name": "2", "desc": "tp", "ranks": "[0, __import__('os')]"},
        "3": {"name": "3", "desc": "tp", "ranks": "[]"},
        "4": {"name": "4", "desc": "tp", "ranks": None},
        "5": {"name": "5", "desc": "tp", "ranks": "[0, 1]"},
        "6": {"name": "6", "desc": "tp", "ranks": "[0,  1,  2,  3]"},
    }
    table = _config_table(config, "trace/rank_1", 1)
    expected = [[0, 1, 2, 3], [1, 3], None, [], None, [0, 1], [0, 1, 2, 3]]
    assert table.column("ranks").to_pylist() == expected
    assert table.column("ranks").type == pa.list_(pa.int32())
    sources = table.column("membership_source").to_pylist()
    assert sources == [
        "config",
        "config",
        "config-broken",
        "config-broken",
        "config-broken",
        "config",
        "config",
    ]
    # rank 2 is in neither [1, 3] nor "[0, 1]": those configs are broken for it
    sources = _config_table(config, "trace/rank_2", 2).column("membership_source").to_pylist()
    broken = "config-broken"
    assert sources == ["config", broken, broken, broken, broken, broken, "config"]
    # A member beyond int32 goes the general way: the schema check reports it, as before.
    with pytest.raises(SchemaMismatchError):
        _config_table({"0": {"name": "0", "ranks": "[0, 4294967296]"}}, "trace/rank_0", 0)


def test_group_configs_number_equal_member_lists_alike() -> None:
    # Rows are told apart by their lists' digests: however a list was written, equal lists get
    # one id (in order of first appearance) and different ones never share it.
    config = {
        "0": {"name": "0", "desc": "default_pg", "ranks": "[0,  1,  2,  3]"},
        "1": {"name": "1", "desc": "dp", "ranks": [1, 3]},
        "2": {"name": "2", "desc": "tp", "ranks": "[]"},
        "3": {"name": "3", "desc": "tp", "ranks": None},
        "4": {"name": "4", "desc": "tp", "ranks": "[1,3]"},
        "5": {"name": "5", "desc": "tp", "ranks": [0, 1, 2, 3]},
        "6": {"name": "6", "desc": "tp", "ranks": "[3, 1]"},
    }
    table = pa.concat_tables(
        [_config_table(config, "trace/rank_1", 1), _config_table(config, "trace/rank_3", 3)]
    )
    expected_ids = [0, 1, 2, None, 1, 0, 3] * 2
    expected_max = [3, 3, None, None, 3, 3, 3] * 2
    configs = _GroupConfigs(table, lambda: None)
    assert configs.members == [[0, 1, 2, 3], [1, 3], [], [3, 1]]
    assert configs.rows["ranks_id"].to_list() == expected_ids
    assert configs.rows["ranks_max"].to_list() == expected_max
    assert configs.rows["source_file"].to_list() == ["trace/rank_1"] * 7 + ["trace/rank_3"] * 7
    # Rows without digests (written by something else) are digested from their lists.
    undigested = table.set_column(
        table.schema.get_field_index("ranks_digest"), "ranks_digest", pa.nulls(table.num_rows, pa.binary())
    )
    configs = _GroupConfigs(undigested, lambda: None)
    assert configs.rows["ranks_id"].to_list() == expected_ids
    assert configs.members == [[0, 1, 2, 3], [1, 3], [], [3, 1]]


def test_hostname_bearing_names(tmp_path: Path) -> None:
    job = Job(world=2)
    job.collective("all_reduce")
    files = {
        f"nccl_trace_rank_container-node0{r}_{r}": pickle.dumps(job.dump(r), protocol=2) for r in range(2)
    }
    result = ingest_serial(write_incident(tmp_path / "inc", files))
    rows = result.tables.df("fr_entries").select("rank", "host").unique().sort("rank").rows()
    assert rows == [(0, "container-node00"), (1, "container-node01")]


def test_duplicate_rank_is_a_problem_and_one_is_kept(tmp_path: Path) -> None:
    job = Job(world=2)
    job.collective("all_reduce")
    files = {
        "pickle/comm_lib_trace_rank_1": pickle.dumps(job.dump(1), protocol=2),
        "json/comm_lib_trace_rank_1.json": to_json(job.dump(1)),
        "pickle/comm_lib_trace_rank_0": pickle.dumps(job.dump(0), protocol=2),
    }
    result = ingest_serial(write_incident(tmp_path / "inc", files))
    problems = [p for p in result.summary.problems if "two dumps claim rank 1" in p.problem]
    assert len(problems) == 1
    assert problems[0].file == "json/comm_lib_trace_rank_1.json"
    assert "kept pickle/comm_lib_trace_rank_1" in problems[0].problem
    entries = result.tables.df("fr_entries")
    assert sorted(entries["source_file"].unique().to_list()) == [
        "pickle/comm_lib_trace_rank_0",
        "pickle/comm_lib_trace_rank_1",
    ]


def test_newer_version_noted_and_parsed(tmp_path: Path) -> None:
    job = Job(world=1, version="2.11")
    job.collective("all_reduce")
    dump = job.dump(0)
    dump["entries"][0]["some_future_field"] = {"x": 1}
    dump["nccl_version"] = "2.21.5"
    del dump["comm_lib_version"]
    result = ingest_serial(
        write_incident(tmp_path / "inc", {"comm_lib_trace_rank_0": pickle.dumps(dump, protocol=2)})
    )
    assert any("2.11 is newer" in p.problem for p in result.summary.problems)
    row = result.tables.df("fr_entries").row(0, named=True)
    assert row["dump_version"] == "2.11" and row["comm_lib_version"] == "2.21.5"


def test_bare_list_pre_2024(tmp_path: Path) -> None:
    entries = [
        {
            "pg_id": 0,
            "seq_id": s,
            "profiling_name": "nccl:all_reduce",
            "sizes": [[4, 4]],
            "state": "completed",
            "frames": [],
        }
        for s in (1, 2, 3)
    ]
    result = ingest_serial(
        write_incident(tmp_path / "inc", {"nccl_trace_rank_0": pickle.dumps(entries, protocol=2)})
    )
    table = result.tables.df("fr_entries")
    assert table["collective_seq_id"].to_list() == [1, 2, 3]
    assert table["input_sizes"].to_list() == [[[4, 4]]] * 3
    assert table["pg_name"].to_list() == ["0"] * 3
    assert table["dump_version"].to_list() == [""] * 3


def test_every_entry_field_optional(tmp_path: Path) -> None:
    dump = {"version": "2.10", "entries": [{"profiling_name": "xccl:all_reduce"}, {}]}
    result = ingest_serial(
        write_incident(tmp_path / "inc", {"comm_lib_trace_rank_0": pickle.dumps(dump, protocol=2)})
    )
    table = result.tables.df("fr_entries")
    assert table.height == 2
    assert table["backend"].to_list() == ["xccl", None]
    assert table["record_id"].to_list() == [None, None]
    assert [p for p in result.summary.problems if not p.problem.startswith("info")] == []


@pytest.mark.parametrize("fmt", ["pickle", "json"])
def test_process_group_in_every_shape(tmp_path: Path, fmt: str) -> None:
    # (name, desc) as torch writes it, a bare name, a one-element group, none, a numeric name.
    groups = [("3", "tensor_parallel"), "legacy", ("7",), None, (5, "data_parallel")]
    entries = [{"record_id": i, "process_group": g} for i, g in enumerate(groups)]
    dump = {"version": "2.10", "entries": entries}
    files = (
        {"comm_lib_trace_rank_0": pickle.dumps(dump, protocol=2)}
        if fmt == "pickle"
        else {"comm_lib_trace_rank_0.json": json.dumps(dump)}
    )
    table = ingest_serial(write_incident(tmp_path / "inc", files)).tables.df("fr_entries").sort("record_id")
    assert table["pg_name"].to_list() == ["3", "legacy", None, None, "5"]
    assert table["pg_desc"].to_list() == ["tensor_parallel", None, None, None, "data_parallel"]
    # Only well-formed pairs: the fast path gives the same columns.
    pairs = [
        {"record_id": i, "process_group": g} for i, g in enumerate([("3", "tp"), None, ("0", "default_pg")])
    ]
    files = {"comm_lib_trace_rank_0": pickle.dumps({"version": "2.10", "entries": pairs}, protocol=2)}
    table = ingest_serial(write_incident(tmp_path / "pairs", files)).tables.df("fr_entries").sort("record_id")
    assert table["pg_name"].to_list() == ["3", None, "0"]
    assert table["pg_desc"].to_list() == ["tp", None, "default_pg"]
    # A bare name beside pairs is a name, not a sequence of characters.
    mixed = [{"record_id": i, "process_group": g} for i, g in enumerate([("3", "tp"), "legacy"])]
    files = {"comm_lib_trace_rank_0": pickle.dumps({"version": "2.10", "entries": mixed}, protocol=2)}
    table = ingest_serial(write_incident(tmp_path / "mixed", files)).tables.df("fr_entries").sort("record_id")
    assert table["pg_name"].to_list() == ["3", "legacy"]
    assert table["pg_desc"].to_list() == ["tp", None]


def test_wrong_types_are_counted_not_fatal(tmp_path: Path) -> None:
    job = Job(world=1)
    job.collective("all_reduce")
    job.collective("all_reduce")
    dump = job.dump(0)
    dump["entries"][0]["record_id"] = "seven"
    dump["entries"].append("not an entry")
    result = ingest_serial(
        write_incident(tmp_path / "inc", {"comm_lib_trace_rank_0": pickle.dumps(dump, protocol=2)})
    )
    table = result.tables.df("fr_entries")
    assert table["record_id"].to_list() == [None, 1]
    ledger = next(s for s in result.summary.sources if s.source == "flight_recorder")
    assert ledger.rejected_by_reason == {"entry-not-a-dict": 1, "field-type": 1}


def test_unhashable_value_in_a_list_field_is_counted_not_fatal(tmp_path: Path) -> None:
    job = Job(world=1)
    job.collective("all_reduce")
    job.collective("all_reduce")
    dump = job.dump(0)
    dump["entries"][0]["input_dtypes"] = [{"not": "a dtype"}]
    dump["entries"][1]["process_group"] = ({"not": "a name"}, "tp")
    result = ingest_serial(
        write_incident(tmp_path / "inc", {"comm_lib_trace_rank_0": pickle.dumps(dump, protocol=2)})
    )
    table = result.tables.df("fr_entries").sort("record_id")
    assert table["input_dtypes"].to_list()[0] is None
    assert table["input_dtypes"].to_list()[1] is not None
    assert table["pg_name"].to_list()[1] is None and table["pg_desc"].to_list()[1] == "tp"
    ledger = next(s for s in result.summary.sources if s.source == "flight_recorder")
    assert ledger.files_failed == 0
    assert ledger.rejected_by_reason == {"field-type": 1}


def test_stack_facts_are_cached_per_content_and_match_the_uncached_path() -> None:
    user = {"name": "train_step", "filename": "train.py", "line": 42}
    torch = {"name": "all_reduce", "filename": "torch/distributed/distributed_c10d.py", "line": 9}
    stacks = [
        [torch, user],
        [dict(torch), {**user, "line": 42.0}],  # same text once cleaned, different key
        [torch, {**user, "line": "43"}],
        [torch, {**user, "name": ["not", "hashable"]}],  # judged on its own, uncached
        [torch, "not a frame"],  # damaged: no facts, counted
        None,
    ]
    keys = [_stack_key(s) for s in stacks]
    assert keys[0] != keys[1] and None not in keys[:3] and keys[3:] == [None, None, None]
    codes = pa.array([0, 1, 2, 3, 4, 5, 0], pa.int32())
    for _ in range(2):  # the second pass reads every hashable stack from the cache
        ids, sites, site_hashes, table, bad = _stacks_columns(codes, stacks)
        assert bad == 1
        assert sites.to_pylist() == [
            "train.py:42 train_step",
            "train.py:42 train_step",
            "train.py:43 train_step",
            "train.py:42 None",
            None,
            None,
            "train.py:42 train_step",
        ]
        assert site_hashes.to_pylist()[0] == call_site([torch, user])[1] == site_hashes.to_pylist()[1]
        assert ids.to_pylist()[0] == ids.to_pylist()[1] != ids.to_pylist()[2]
        assert table.num_rows == 4  # stacks 0/1 share an id but are listed per distinct value
    assert _stack_facts.cache_info().hits >= 3


@pytest.mark.parametrize("variant", ["pickle", "json"])
@pytest.mark.parametrize("fraction", [0.1, 0.5, 0.93])
def test_truncated_dump_keeps_entries_before_the_cut(tmp_path: Path, variant: str, fraction: float) -> None:
    name = "comm_lib_trace_rank_0" + (".json" if variant == "json" else "")
    data = (FR / "healthy" / variant / name).read_bytes()
    whole = ingest_serial(write_incident(tmp_path / "whole", {name: data}))
    cut = int(len(data) * fraction)
    result = ingest_serial(write_incident(tmp_path / "cut", {name: data[:cut]}))
    problems = [p for p in result.summary.problems if p.file == name and not p.problem.startswith("info")]
    entries = result.tables.df("fr_entries")
    kept = entries.height
    # Every complete entry before the cut is kept: exactly a prefix of the whole dump's entries.
    expected = whole.tables.df("fr_entries").head(kept)
    assert entries.select("record_id", "profiling_name", "collective_seq_id").equals(
        expected.select("record_id", "profiling_name", "collective_seq_id")
    )
    assert 0 < kept < whole.tables.df("fr_entries").height or fraction == 0.1
    assert len(problems) == 1, problems
    what = "JSON" if variant == "json" else "pickle"
    assert problems[0].problem.startswith(f"flight-recorder {what} truncated at byte ")
    assert problems[0].problem.endswith(f"kept {kept} entries")
    assert problems[0].line is not None
    # The next cut point (one byte further) never keeps fewer entries: nothing is lost by position.
    longer = ingest_serial(write_incident(tmp_path / "longer", {name: data[: cut + 200]}))
    assert longer.tables.df("fr_entries").height >= kept


def test_garbage_pickle_is_unreadable_not_truncated(tmp_path: Path) -> None:
    good = (FR / "healthy" / "pickle" / "comm_lib_trace_rank_1").read_bytes()
    # An invalid opcode after the version: damaged (not cut), nothing to keep, still one problem.
    garbage = b"\x80\x02}q\x00(X\x07\x00\x00\x00versionq\x01X\x04\x00\x00\x002.10q\x02\xff\xfe" + b"\x00" * 40
    result = ingest_serial(
        write_incident(tmp_path / "inc", {"comm_lib_trace_rank_0": garbage, "comm_lib_trace_rank_1": good})
    )
    problems = [p.problem for p in result.summary.problems if p.file == "comm_lib_trace_rank_0"]
    assert len(problems) == 1, problems
    assert problems[0].startswith("flight-recorder pickle damaged at byte ") and problems[0].endswith(
        "kept 0 entries"
    )
    # Pure garbage with a pickle header (claimed by its name) stays "unreadable".
    result = ingest_serial(
        write_incident(tmp_path / "g2", {"comm_lib_trace_rank_0": b"\x80\x02\xff" + b"\x00" * 9})
    )
    problems = [p.problem for p in result.summary.problems if p.file == "comm_lib_trace_rank_0"]
    assert len(problems) == 1 and "unreadable" in problems[0], problems


def test_rank_from_content_when_name_has_none(tmp_path: Path) -> None:
    job = Job(world=4)
    job.group("1", "tp", [0, 1])
    job.group("2", "tp", [2, 3])
    job.group("3", "dp", [0, 2])
    job.group("4", "dp", [1, 3])
    for name in ("0", "1", "2", "3", "4"):
        job.collective("all_reduce", group=name)
    files = {f"comm_lib_trace_rank_{r}": pickle.dumps(job.dump(r), protocol=2) for r in (0, 1, 3)}
    files["latest/fr_dump"] = pickle.dumps(job.dump(2), protocol=2)  # TORCH_FR_DUMP_DYNAMIC_FILE_NAME
    result = ingest_serial(write_incident(tmp_path / "inc", files))
    ranks = dict(result.tables.df("fr_entries").select("source_file", "rank").unique().rows())
    assert ranks["latest/fr_dump"] == 2
    assert any("rank 2 decided from the dump's process groups" in p.problem for p in result.summary.problems)


def test_split_groups_reusing_a_name_stay_distinct(tmp_path: Path) -> None:
    # torchfrtrace E2E case 16: sub-PG "1" is [0] on rank 0 and [1] on rank 1.
    dumps = {}
    for rank in (0, 1):
        job = Job(world=2, version="2.8")
        job.group("1", "sub", [rank])
        job.collective("all_reduce")
        job.collective("all_reduce", ranks=[rank], group="1")
        dumps[f"comm_lib_trace_rank_{rank}"] = pickle.dumps(job.dump(rank), protocol=2)
    result = ingest_serial(write_incident(tmp_path / "inc", dumps))
    assert set(_groups(result)) == {"0[0-1]", "1[0]", "1[1]"}


def test_broken_gloo_config_membership_inferred_with_missing_dump() -> None:
    # Real capture: rank 2 died without a dump; the default group still spans ranks 0-3.
    from tests.helpers.paths import CAPTURES

    result = ingest_serial(CAPTURES / "fr" / "dead_rank_no_dump_ws4_r2" / "pickle")
    table = result.tables.df("fr_groups").row(0, named=True)
    assert (table["group_key"], table["ranks"], table["dumped_ranks"], table["membership_source"]) == (
        "0[0-3]",
        [0, 1, 2, 3],
        [0, 1, 3],
        "inferred",
    )


def test_sniff() -> None:
    parser = FlightRecorderParser()
    pickled = (FR / "healthy" / "pickle" / "comm_lib_trace_rank_0").read_bytes()[:4096]
    js = (FR / "healthy" / "json" / "comm_lib_trace_rank_0.json").read_bytes()[:4096]
    assert parser.sniff(pickled, "anything") == STRONG_CLAIM
    assert parser.sniff(js, "x.json") == STRONG_CLAIM
    assert parser.sniff(json.dumps({"hello": 1}).encode(), "x.json") == NO_CLAIM
    assert parser.sniff(pickle.dumps({"a": 1}, protocol=2), "model.bin") == NO_CLAIM
    assert parser.sniff(b"\x80", "x") == NO_CLAIM


def test_missing_directory_and_gc_state(tmp_path: Path) -> None:
    # torchfrtrace loader test: a missing directory is a clear error; the GC state is restored.
    import gc

    from tracecore.analyzers.errors import IncidentInputError

    with pytest.raises(IncidentInputError, match="no such file or directory"):
        ingest_serial(tmp_path / "absent")
    was = gc.isenabled()
    ingest_serial(FR / "healthy" / "json")
    assert gc.isenabled() == was
    gc.disable()
    try:
        ingest_serial(FR / "healthy" / "json")
        assert not gc.isenabled()
    finally:
        gc.enable()
