"""Helpers for the ``billingkit`` command tests: an app over the fake Stripe and memory."""

from __future__ import annotations

import sys
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone

import pytest
from click.testing import Result

from billingkit import (
    Billing,
    BillingConfig,
    InMemoryRepository,
    PlanDefinition,
    SubscriptionActivated,
)
from billingkit.ports import Clock
from billingkit.testing import FakeStripeGateway

SECRET = "whsec_cli_test_0123456789abcdef"
START = datetime(2031, 3, 1, 12, 0, tzinfo=timezone.utc)
MODULE = "bk_cli_app"
WEBHOOK_URL = "https://app.example/billing/webhook"


def make_config(secret: str = SECRET) -> BillingConfig:
    return BillingConfig(
        plans=[
            PlanDefinition(key="free", name="Free"),
            PlanDefinition(
                key="pro",
                name="Pro",
                order=1,
                prices={"month": "pro_monthly", "year": "pro_yearly"},
            ),
        ],
        free_plan="free",
        webhook_secrets=[secret],
    )


@dataclass
class App:
    """The app under test: its Billing, the fake Stripe and a switch to make hooks fail."""

    billing: Billing
    stripe: FakeStripeGateway
    repository: InMemoryRepository
    activated: list[str | None] = field(default_factory=list)
    failing: list[bool] = field(default_factory=lambda: [False])

    def subscribe(self, user_id: str = "user-1") -> None:
        started = self.billing.checkout.start_checkout(
            user_id=user_id,
            email=f"{user_id}@example.com",
            plan_key="pro",
            interval="month",
            success_url="https://app.example/ok?session_id={CHECKOUT_SESSION_ID}",
            cancel_url="https://app.example/pricing",
        )
        self.stripe.complete_checkout(started.session_id)

    def deliver_all(self) -> list[str]:
        """Hand every pending fake delivery to the processor; ids of those that failed."""
        failed: list[str] = []
        for delivery in self.stripe.drain_events():
            try:
                self.billing.webhooks.handle(delivery.payload, delivery.signature)
            except RuntimeError:
                failed.append(delivery.id)
        return failed


def build_app(
    clock: Callable[[FakeStripeGateway], Clock] | None = None, *, secret: str = SECRET
) -> App:
    stripe = FakeStripeGateway(webhook_secret=SECRET, start=START)
    stripe.add_price(amount=1900, interval="month", lookup_key="pro_monthly", product_name="Pro")
    stripe.add_price(amount=19000, interval="year", lookup_key="pro_yearly", product_name="Pro")
    stripe.add_webhook_endpoint(WEBHOOK_URL)
    repository = InMemoryRepository()
    chosen = clock(stripe) if clock is not None else stripe.now
    billing = Billing.build(make_config(secret), stripe, repository, clock=chosen)
    app = App(billing, stripe, repository)

    def on_activated(event: SubscriptionActivated) -> None:
        if app.failing[0]:
            raise RuntimeError("welcome mail service down")
        app.activated.append(event.user_id)

    billing.webhooks.on(SubscriptionActivated, on_activated)
    return app


def install(monkeypatch: pytest.MonkeyPatch, billing: Billing) -> types.ModuleType:
    """Make ``bk_cli_app`` importable with ``billing`` and a few wrong attributes."""
    module = types.ModuleType(MODULE)
    module.billing = billing  # type: ignore[attr-defined]
    module.create_billing = lambda: billing  # type: ignore[attr-defined]
    module.not_billing = 42  # type: ignore[attr-defined]
    module.needs_args = lambda name: billing  # type: ignore[attr-defined]
    module.returns_other = lambda: "billing"  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, MODULE, module)
    return module


def assert_clean_error(result: Result, code: int, *fragments: str) -> None:
    """Exit ``code`` with an ``Error:`` message containing ``fragments`` and no traceback."""
    assert result.exit_code == code, result.output
    assert isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    assert "Error:" in result.stderr
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr
