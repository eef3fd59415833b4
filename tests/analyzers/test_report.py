"""Report model: deterministic ids and ordering, JSON-safe details."""

from __future__ import annotations

import random

from tracecore.analyzers.report import (
    Culprit,
    Role,
    Severity,
    Verdict,
    assign_ids,
    identity_ref,
    iso_utc,
    ranks_text,
)


def _verdicts() -> list[Verdict]:
    return [
        Verdict("watchdog-timeout", "t1", Severity.ERROR, key="a", role=Role.SYMPTOM, window_start_ns=5),
        Verdict("gpu-fell-off-bus", "t2", Severity.CRITICAL, key="b", role=Role.ROOT, window_start_ns=9),
        Verdict(
            "collective-hang",
            "t3",
            Severity.CRITICAL,
            key="c",
            role=Role.CONTRIBUTING,
            culprit=Culprit(ranks=[6]),
        ),
        Verdict("gpu-memory-ecc", "t4", Severity.INFO, key="d", role=Role.FINDING),
    ]


def test_ids_do_not_depend_on_input_order() -> None:
    reference = [(v.id, v.pattern) for v in assign_ids(_verdicts())]
    for seed in range(5):
        shuffled = _verdicts()
        random.Random(seed).shuffle(shuffled)
        assert [(v.id, v.pattern) for v in assign_ids(shuffled)] == reference
    assert reference[0] == ("v1", "gpu-fell-off-bus")


def test_explains_refs_become_ids() -> None:
    verdicts = _verdicts()
    verdicts[1].explains = [identity_ref(verdicts[2]), identity_ref(verdicts[0])]
    ordered = assign_ids(verdicts)
    root = next(v for v in ordered if v.pattern == "gpu-fell-off-bus")
    assert sorted(root.explains) == ["v2", "v3"]


def test_helpers() -> None:
    assert ranks_text([0, 1, 2, 3, 4, 5, 7]) == "0–5, 7"
    assert ranks_text([2, 3]) == "2, 3"
    assert iso_utc(1_700_000_000_123_456_789) == "2023-11-14T22:13:20.123456Z"
    assert iso_utc(None) is None
