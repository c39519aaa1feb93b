"""The documentation's runnable snippets run as written and print what they say they print.

A fenced ``python`` block preceded by ``<!-- test: run -->`` is executed; the run blocks of
one page share a namespace, in page order (a later block may use an earlier block's names).
Its expected output is written in the block itself: comment lines at column 0 that directly
follow a line calling ``print(`` (or another such comment) are what the block must print,
exactly. A block preceded by ``<!-- test: pytest -->`` is test code: the pytest blocks of a
page are joined into one test module and run with pytest, and every test must pass.

Everything runs on billingkit's fake Stripe and in-memory repository: no network, no clock.
"""

from __future__ import annotations

import contextlib
import io
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

DOCS = Path(__file__).parents[2] / "docs"
#: Pages whose snippets are checked; each must keep at least one marked block.
PAGES = (
    "index.md",
    "quickstart.md",
    "configuration.md",
    "plans-and-access.md",
    "testing.md",
    "usage.md",
)

_MARKED = re.compile(r"<!-- test: (\w+) -->\n(```[^\n]*)\n(.*?)^```", re.S | re.M)
_MARKER = re.compile(r"<!-- test: [^>]*-->")


@dataclass(frozen=True)
class Snippet:
    """One marked block: its kind (``run`` or ``pytest``), code and first line in the page."""

    page: str
    kind: str
    code: str
    line: int

    @property
    def expected_output(self) -> str:
        """The output comments of the block, as the text it must print."""
        lines: list[str] = []
        after_print = False
        for line in self.code.splitlines():
            if after_print and line.startswith("#"):
                lines.append(line[2:] if line.startswith("# ") else line[1:])
                continue
            after_print = "print(" in line
        return "".join(f"{line}\n" for line in lines)


def snippets(page: str) -> list[Snippet]:
    """The marked blocks of ``page``, in order; a marker must sit right above a python fence."""
    text = (DOCS / page).read_text(encoding="utf-8")
    found: list[Snippet] = []
    for match in _MARKED.finditer(text):
        kind, fence, code = match.groups()
        assert fence == "```python", f"{page}: a test marker must precede a ```python block"
        assert kind in ("run", "pytest"), f"{page}: unknown test marker {kind!r}"
        line = text.count("\n", 0, match.start(3)) + 1
        found.append(Snippet(page, kind, code, line))
    assert len(found) == len(_MARKER.findall(text)), f"{page}: a marker is not above a block"
    return found


def _run_page(page: str) -> None:
    namespace: dict[str, object] = {"__name__": f"docs_{Path(page).stem.replace('-', '_')}"}
    for snippet in (s for s in snippets(page) if s.kind == "run"):
        # Offset the code so tracebacks point at the page's own line numbers.
        code = "\n" * (snippet.line - 1) + snippet.code
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(code, str(DOCS / page), "exec"), namespace)
        assert out.getvalue() == snippet.expected_output, (
            f"{page}, block at line {snippet.line}: printed output differs from its comments"
        )


@pytest.mark.parametrize("page", PAGES)
def test_every_chosen_page_keeps_runnable_snippets(page: str) -> None:
    assert snippets(page), f"{page} has no <!-- test: ... --> block left"


@pytest.mark.parametrize("page", [p for p in PAGES if any(s.kind == "run" for s in snippets(p))])
def test_run_snippets_print_what_the_page_says(page: str) -> None:
    _run_page(page)


def test_expected_output_is_read_from_comments_after_print() -> None:
    snippet = Snippet(
        "x.md",
        "run",
        "# a heading comment\nx = 1\nprint(x)\n# 1\nfor i in (2, 3):\n    print(i)\n# 2\n# 3\n"
        "y = 4  # inline\n# not output\n",
        1,
    )
    assert snippet.expected_output == "1\n2\n3\n"


def test_a_page_whose_output_drifted_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "drift.md").write_text(
        "<!-- test: run -->\n```python\nprint(2 + 2)\n# 5\n```\n", encoding="utf-8"
    )
    monkeypatch.setattr(sys.modules[__name__], "DOCS", tmp_path)
    with pytest.raises(AssertionError, match="printed output differs"):
        _run_page("drift.md")


def test_testing_guide_tests_pass(pytester: pytest.Pytester) -> None:
    code = "\n\n".join(s.code for s in snippets("testing.md") if s.kind == "pytest")
    pytester.makepyfile(test_guide=code)
    result = pytester.runpytest("-q", "-p", "no:cacheprovider")
    outcomes = result.parseoutcomes()
    assert outcomes.get("passed", 0) >= 5, result.stdout.str()
    result.assert_outcomes(passed=outcomes["passed"])
