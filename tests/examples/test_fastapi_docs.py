"""docs/fastapi.md: its marked snippets run as written and print what the page says."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.examples.test_flask_docs import run_page


def test_fastapi_page_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": "docs_fastapi"}
    run_page("fastapi.md", namespace)

    # The page's production wiring, with keys from the environment (no network at build).
    monkeypatch.setenv("STRIPE_API_KEY", "sk_test_docs")
    monkeypatch.setenv("STRIPE_WEBHOOK_SECRET", "whsec_docs")
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'prod.sqlite3'}")
    billing = namespace["production_billing"]()  # type: ignore[operator]
    try:
        assert type(billing.gateway).__name__ == "StripeSdkGateway"
        assert billing.customers.for_user("u1").plan_key == "free"  # tables exist
    finally:
        billing.close()
