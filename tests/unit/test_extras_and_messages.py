"""A missing optional package names the extra to install; the tolerance error says how far off."""

from __future__ import annotations

import importlib
import sys

import pytest

from billingkit.errors import ConfigurationError, WebhookVerificationError
from billingkit.signature import signature_header, verify_signature


@pytest.mark.parametrize(
    ("module", "missing", "extra"),
    [
        ("billingkit.contrib.flask", "flask", "flask"),
        ("billingkit.contrib.fastapi", "fastapi", "fastapi"),
        ("billingkit.adapters.sqlalchemy", "sqlalchemy", "sqlalchemy"),
    ],
)
def test_missing_extra_is_a_configuration_error_naming_it(
    monkeypatch: pytest.MonkeyPatch, module: str, missing: str, extra: str
) -> None:
    # None in sys.modules makes "import <missing>" raise ModuleNotFoundError, as if absent.
    for name in list(sys.modules):
        if name == module or name.startswith(module + ".") or name.split(".")[0] == missing:
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, missing, None)
    with pytest.raises(ConfigurationError) as raised:
        importlib.import_module(module)
    assert f'pip install "billingkit[{extra}]"' in str(raised.value)
    assert isinstance(raised.value, ImportError)  # `except ImportError` probes keep working
    assert isinstance(raised.value.__cause__, ModuleNotFoundError)


def test_lazy_public_name_without_its_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import billingkit

    for name in list(sys.modules):
        if name.startswith("billingkit.adapters.sqlalchemy") or name.startswith("sqlalchemy"):
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "sqlalchemy", None)
    with pytest.raises(ConfigurationError, match=r"billingkit\[sqlalchemy\]"):
        billingkit.SqlAlchemyRepository  # noqa: B018


def test_other_missing_modules_are_not_disguised() -> None:
    from billingkit._optional import requires_extra

    with pytest.raises(ModuleNotFoundError) as raised, requires_extra("flask", "flask"):
        importlib.import_module("billingkit_no_such_module")
    assert not isinstance(raised.value, ConfigurationError)


@pytest.mark.parametrize(
    ("signed_at", "says"),
    [
        (1_000_000 - 3600, "signed 60 min (3600 s) old, tolerance 300 s"),
        (1_000_000 + 400, "signed 6 min (400 s) in the future, tolerance 300 s"),
        (1_000_000 - 40 * 86400, "signed 40 days (3456000 s) old"),
    ],
)
def test_tolerance_error_says_how_far_off_and_hints_at_the_clock(signed_at: int, says: str) -> None:
    header = signature_header(b"{}", ["whsec_x"], signed_at)
    with pytest.raises(WebhookVerificationError) as raised:
        verify_signature(b"{}", header, ["whsec_x"], now=1_000_000, tolerance=300)
    message = str(raised.value)
    assert "outside the tolerance" in message
    assert says in message
    assert "clock=fake.now" in message
