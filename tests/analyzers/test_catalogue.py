"""Meta-tests on the detector catalogue: registration, specs, fixtures, docs."""

from __future__ import annotations

import json
import pkgutil

import pytest

from tests.helpers.paths import DOCS, INCIDENTS
from tracecore.analyzers import detectors as detectors_package
from tracecore.analyzers.detectors.base import SPEC_HEADINGS
from tracecore.analyzers.detectors.registry import DETECTORS


def _is_support_module(name: str) -> bool:
    """Shared code of several detectors (``base``, ``registry``, ``common``, ``<topic>_common``)."""
    return name in ("base", "registry", "common") or name.endswith("_common")


def test_every_detector_module_is_registered() -> None:
    modules = {
        m.name for m in pkgutil.iter_modules(detectors_package.__path__) if not _is_support_module(m.name)
    }
    registered = {d.scope.rsplit(".", 1)[-1] for d in DETECTORS}
    assert modules == registered, (
        f"unregistered: {modules - registered}; missing modules: {registered - modules}"
    )


def test_ids_are_unique_slugs_matching_modules() -> None:
    ids = [d.id for d in DETECTORS]
    assert len(ids) == len(set(ids))
    for detector in DETECTORS:
        assert detector.scope.endswith("." + detector.id.replace("-", "_")), detector


@pytest.mark.parametrize("detector", DETECTORS, ids=lambda d: d.id)
def test_spec_docstring_has_every_heading(detector) -> None:  # type: ignore[no-untyped-def]
    missing = detector.missing_headings()
    assert not missing, f"{detector.id} ({detector.scope}) spec lacks {missing}"
    assert detector.summary and "being written" not in detector.summary, detector.id
    assert set(SPEC_HEADINGS) <= {h for h in SPEC_HEADINGS if h in detector.spec}


@pytest.mark.parametrize("detector", DETECTORS, ids=lambda d: d.id)
def test_every_detector_has_a_fixture_incident_where_it_fires(detector) -> None:  # type: ignore[no-untyped-def]
    firing = []
    for expected_path in INCIDENTS.rglob("expected.json"):
        expected = json.loads(expected_path.read_text())
        root = expected.get("root_cause") or {}
        if detector.id in expected.get("must_include", []) or root.get("pattern") == detector.id:
            firing.append(expected_path.parent.name)
    assert firing, f"no fixture incident under fixtures/incidents expects {detector.id}"


@pytest.mark.parametrize("detector", DETECTORS, ids=lambda d: d.id)
def test_every_detector_is_documented(detector) -> None:  # type: ignore[no-untyped-def]
    text = (DOCS / "detectors.md").read_text()
    assert f"`{detector.id}`" in text, f"{detector.id} missing from docs/detectors.md"
