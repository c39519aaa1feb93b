"""Fixtures for the ``billingkit`` command tests."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from click.testing import CliRunner, Result

from billingkit.cli import cli

from .cli_support import MODULE, App, build_app, install


@pytest.fixture
def app(monkeypatch: pytest.MonkeyPatch) -> App:
    built = build_app()
    install(monkeypatch, built.billing)
    return built


@pytest.fixture
def run(monkeypatch: pytest.MonkeyPatch) -> Callable[..., Result]:
    """Invoke ``billingkit --app bk_cli_app:billing ARGS`` (or with ``app=`` given)."""
    monkeypatch.delenv("BILLINGKIT_APP", raising=False)

    def invoke(*args: str, app: str | None = f"{MODULE}:billing") -> Result:
        prefix = ["--app", app] if app is not None else []
        return CliRunner().invoke(cli, [*prefix, *args])

    return invoke
