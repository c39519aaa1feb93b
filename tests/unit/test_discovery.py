"""billingkit._discovery: finding the app's Billing for the CLI and the queue workers."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from billingkit import Billing, BillingConfig, InMemoryRepository
from billingkit._discovery import AppNotFoundError, billing_from_env, find_billing
from billingkit.errors import ConfigurationError
from billingkit.testing import FakeStripeGateway


def _billing() -> Billing:
    gateway = FakeStripeGateway(webhook_secret="whsec_discovery")
    return Billing.build(
        BillingConfig(webhook_secrets=("whsec_discovery",)),
        gateway,
        InMemoryRepository(),
        clock=gateway.now,
    )


class _NoSignature:
    """A callable whose signature cannot be read (like some builtins)."""

    __signature__ = "not a signature"

    def __init__(self, billing: Billing) -> None:
        self.billing = billing

    def __call__(self) -> Billing:
        return self.billing


def _module(monkeypatch: pytest.MonkeyPatch, name: str, **attributes: object) -> None:
    module = type(sys)(name)
    for key, value in attributes.items():
        setattr(module, key, value)
    monkeypatch.setitem(sys.modules, name, module)


def test_a_factory_without_a_readable_signature_is_just_called(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    billing = _billing()
    _module(monkeypatch, "bk_discovery_app", factory=_NoSignature(billing))
    assert find_billing("bk_discovery_app:factory") == (billing, True)


def test_a_billing_error_of_the_apps_own_module_propagates_unchanged(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "bk_discovery_broken.py").write_text(
        "from billingkit.errors import ConfigurationError\n"
        "raise ConfigurationError('STRIPE_API_KEY is not set')\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.delitem(sys.modules, "bk_discovery_broken", raising=False)
    with pytest.raises(ConfigurationError, match="STRIPE_API_KEY is not set") as raised:
        find_billing("bk_discovery_broken:billing")
    assert not isinstance(raised.value, AppNotFoundError)


def test_billing_from_env_reads_billingkit_app(monkeypatch: pytest.MonkeyPatch) -> None:
    billing = _billing()
    _module(monkeypatch, "bk_discovery_env", billing=billing)
    assert billing_from_env({"BILLINGKIT_APP": "bk_discovery_env"}) == (billing, False)
    with pytest.raises(AppNotFoundError, match="no app given: set BILLINGKIT_APP"):
        billing_from_env({"BILLINGKIT_APP": "  "})
    monkeypatch.setenv("BILLINGKIT_APP", "bk_discovery_env:billing")
    assert billing_from_env() == (billing, False)
