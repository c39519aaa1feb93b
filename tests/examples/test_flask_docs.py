"""docs/flask.md: its marked snippets run as written and print what the page says.

The page's ``<!-- test: run -->`` blocks run in order in one namespace (the app module, then
the check on the fake Stripe); the comment lines after a ``print(`` are the exact output.
The app from the page is also built once the way production builds it: from ``app.config``.
"""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[2] / "docs"
_BLOCK = re.compile(r"<!-- test: run -->\n```python\n(.*?)^```", re.S | re.M)


def expected_output(code: str) -> str:
    lines: list[str] = []
    after_print = False
    for line in code.splitlines():
        if after_print and line.startswith("#"):
            lines.append(line[2:] if line.startswith("# ") else line[1:])
            continue
        after_print = "print(" in line
    return "".join(f"{line}\n" for line in lines)


def run_page(page: str, namespace: dict[str, object]) -> None:
    """Run the page's marked blocks in ``namespace``; each must print its comments."""
    text = (DOCS / page).read_text(encoding="utf-8")
    blocks = [(m.group(1), text.count("\n", 0, m.start(1))) for m in _BLOCK.finditer(text)]
    assert len(blocks) >= 2, f"{page} lost its runnable snippets"
    for code, offset in blocks:
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile("\n" * offset + code, str(DOCS / page), "exec"), namespace)
        assert out.getvalue() == expected_output(code), f"{page}, block at line {offset + 1}"


def test_flask_page_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # the page's default SQLite file lands here
    namespace: dict[str, object] = {"__name__": "docs_flask"}
    run_page("flask.md", namespace)

    # Production wiring from the page's create_app(): keys from the environment.
    monkeypatch.setenv("STRIPE_API_KEY", "sk_test_docs")
    monkeypatch.setenv("STRIPE_WEBHOOK_SECRET", "whsec_docs")
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'prod.sqlite3'}")
    from billingkit.contrib.flask import BillingKit

    app = namespace["create_app"]()  # type: ignore[operator]
    billing = BillingKit.billing_for(app)
    try:
        assert type(billing.gateway).__name__ == "StripeSdkGateway"
        assert billing.config.secret_values() == ["whsec_docs"]
        answer = app.test_client().post("/webhooks/stripe", data=b"{}")
        assert (answer.status_code, answer.json) == (
            400,
            {"error": "missing Stripe-Signature header"},
        )
    finally:
        billing.close()
