"""The package map in pyproject.toml covers every package folder, so installs ship all modules."""

from __future__ import annotations

import tomllib

from tests.helpers.paths import REPO

MAPPED_ROOTS = {"cli": "tracecore.cli", "analyzers": "tracecore.analyzers", "entry": "tracecore"}


def test_every_package_folder_is_listed() -> None:
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    found = set()
    for folder, dotted in MAPPED_ROOTS.items():
        for init in (REPO / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(REPO / folder).parts
            found.add(".".join((dotted, *rel)))
    assert found == listed, f"not listed: {found - listed}; listed but absent: {listed - found}"


def test_no_generic_top_level_module_is_installed() -> None:
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert all(name == "tracecore" or name.startswith("tracecore.") for name in config["packages"])
