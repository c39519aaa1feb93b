"""The API reference (docs/reference/) covers every public name, by the path users import.

Each ``::: dotted.path`` line of a reference page is a mkdocstrings directive rendering that
object's docstring. Pages name objects by their public path (``billingkit.WebhookProcessor``),
never by the private module that defines them, so moving code does not break the reference.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import billingkit
import billingkit.adapters.sqlalchemy
import billingkit.testing

REFERENCE = Path(__file__).parents[2] / "docs" / "reference"
#: The public modules, each with its ``__all__``.
PUBLIC_MODULES = ("billingkit", "billingkit.testing", "billingkit.adapters.sqlalchemy")
#: Public names that are not API to document.
UNDOCUMENTED = {"__version__"}

_DIRECTIVE = re.compile(r"^::: *(\S+) *$", re.M)


def directives(root: Path = REFERENCE) -> list[str]:
    """The dotted paths of every ``:::`` directive under ``root``, page by page."""
    return [
        path
        for page in sorted(root.glob("*.md"))
        for path in _DIRECTIVE.findall(page.read_text(encoding="utf-8"))
    ]


def public_path(dotted: str) -> tuple[str, str] | None:
    """``(module, name)`` if ``dotted`` is a name in a public module's ``__all__``."""
    module, _, name = dotted.rpartition(".")
    if module in PUBLIC_MODULES and name in importlib.import_module(module).__all__:
        return module, name
    return None


def undocumented_names(documented: list[str]) -> list[str]:
    """Public names with no directive, neither by their own path nor by ``billingkit.<name>``.

    A name re-exported by ``billingkit`` (``SqlAlchemyRepository``) may be documented at the
    top level only, as long as both paths are the same object.
    """
    missing = []
    for module_name in PUBLIC_MODULES:
        module = importlib.import_module(module_name)
        for name in sorted(set(module.__all__) - UNDOCUMENTED):
            if f"{module_name}.{name}" in documented:
                continue
            top = f"billingkit.{name}"
            if top in documented and getattr(billingkit, name) is getattr(module, name):
                continue
            missing.append(f"{module_name}.{name}")
    return missing


def test_the_reference_has_pages_with_directives() -> None:
    assert len(directives()) > len(billingkit.__all__)


def test_every_public_name_is_in_the_reference() -> None:
    assert undocumented_names(directives()) == []


def test_the_reference_names_objects_by_their_public_path_only() -> None:
    found = directives()
    private = [path for path in found if public_path(path) is None]
    assert private == [], "use the path users import (e.g. billingkit.X), not a module path"
    assert len(found) == len(set(found)), "an object is documented twice"


def test_a_missing_or_private_entry_is_reported(tmp_path: Path) -> None:
    (tmp_path / "page.md").write_text(
        "# Page\n\n::: billingkit.Money\n\n::: billingkit.domain.money.Money\n",
        encoding="utf-8",
    )
    found = directives(tmp_path)
    assert found == ["billingkit.Money", "billingkit.domain.money.Money"]
    assert public_path("billingkit.domain.money.Money") is None
    assert public_path("billingkit.testing.FakeStripeGateway") == (
        "billingkit.testing",
        "FakeStripeGateway",
    )
    missing = undocumented_names(found)
    assert "billingkit.Money" not in missing
    assert "billingkit.WebhookProcessor" in missing
    assert "billingkit.testing.FakeStripeGateway" in missing


def test_a_top_level_reexport_covers_its_module_path() -> None:
    missing = undocumented_names(["billingkit.SqlAlchemyRepository"])
    assert "billingkit.adapters.sqlalchemy.SqlAlchemyRepository" not in missing
    assert "billingkit.SqlAlchemyRepository" not in missing
