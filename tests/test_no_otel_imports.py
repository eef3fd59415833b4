"""Only ``analyzers/selftel.py`` imports OpenTelemetry; components get handles from it.

Tests use the shared helpers in ``tests/helpers/selftel.py`` (and the OTLP receiver test decodes
with ``opentelemetry-proto``) instead of building their own providers.
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.helpers.paths import REPO

ALLOWED = {
    "analyzers/selftel.py",
    "tests/helpers/selftel.py",
    "tests/cli/test_otlp_endpoint.py",
}
SKIP_DIRS = {".venv", ".git", "node_modules", "build", "dist", "__pycache__"}


def _python_files() -> list[Path]:
    files = []
    for path in REPO.rglob("*.py"):
        parts = path.relative_to(REPO).parts
        if any(part in SKIP_DIRS or part.startswith(".") for part in parts[:-1]):
            continue
        files.append(path)
    return files


def otel_imports(source: str) -> list[str]:
    """Modules named ``opentelemetry*`` that ``source`` imports (statically or via import_module)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names if alias.name.split(".")[0] == "opentelemetry"]
        elif (
            isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "opentelemetry"
        ):
            found.append(node.module)
        elif isinstance(node, ast.Call) and node.args:
            first = node.args[0]
            name = getattr(node.func, "attr", getattr(node.func, "id", ""))
            if (
                name in ("import_module", "__import__")
                and isinstance(first, ast.Constant)
                and isinstance(first.value, str)
                and first.value.startswith("opentelemetry")
            ):
                found.append(first.value)
    return found


def test_only_the_selftel_module_imports_opentelemetry() -> None:
    offenders = {}
    files = _python_files()
    assert any(p.relative_to(REPO).as_posix() == "analyzers/selftel.py" for p in files)
    for path in files:
        rel = path.relative_to(REPO).as_posix()
        if rel in ALLOWED:
            continue
        try:
            imports = otel_imports(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError):
            continue  # not ours to judge here; other tests catch broken files
        if imports:
            offenders[rel] = imports
    assert offenders == {}, f"OpenTelemetry imported outside analyzers/selftel.py: {offenders}"


def test_the_guard_sees_every_import_form() -> None:
    source = (
        "import opentelemetry\n"
        "import opentelemetry.sdk.metrics as m\n"
        "from opentelemetry.metrics import get_meter\n"
        "import importlib\n"
        "importlib.import_module('opentelemetry.sdk')\n"
        "def f():\n"
        "    from opentelemetry import trace\n"
        "import opentelemetry_like_but_not\n"
    )
    assert sorted(otel_imports(source)) == sorted(
        [
            "opentelemetry",
            "opentelemetry.sdk.metrics",
            "opentelemetry.metrics",
            "opentelemetry.sdk",
            "opentelemetry",
        ]
    )
