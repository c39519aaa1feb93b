"""Only ``billingkit/cli/`` imports click and rich; the command's modules import cheaply."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import billingkit

SRC = Path(billingkit.__file__).parent


def _roots(path: Path) -> set[str]:
    roots: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


def test_only_the_cli_package_imports_click_and_rich() -> None:
    seen = set()
    for path in SRC.rglob("*.py"):
        relative = path.relative_to(SRC).as_posix()
        if _roots(path) & {"click", "rich"}:
            seen.add(relative)
            assert relative.startswith("cli/"), relative
    assert "cli/__init__.py" in seen


def test_importing_the_cli_loads_no_adapter_stripe_or_database() -> None:
    code = (
        "import sys, billingkit.cli;"
        "print(sorted(m for m in ('stripe', 'sqlalchemy', 'alembic', 'billingkit.testing')"
        " if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"
