"""Shared test helpers: paths to the Stripe fixtures copied from shared/stripe-fixtures."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

FIXTURES = Path(__file__).parent / "fixtures" / "stripe"


def load_fixture(relative: str) -> Any:
    """Parse ``tests/fixtures/stripe/<relative>`` as JSON."""
    return json.loads((FIXTURES / relative).read_text(encoding="utf-8"))


@pytest.fixture
def fixtures_dir() -> Path:
    return FIXTURES
