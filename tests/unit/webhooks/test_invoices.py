"""``invoice.*`` handlers: hooks only, no subscription state."""

from __future__ import annotations

import pytest

from billingkit.domain import (
    EventStatus,
    Money,
)
from billingkit.services.hooks import (
    PaymentActionRequired,
    PaymentFailed,
)
from billingkit.services.webhooks import WebhookOutcome

from .webhook_support import ERAS, Harness, link, load, recorder

# --------------------------------------------------------------------------- invoices


@pytest.mark.parametrize("era", ERAS)
@pytest.mark.parametrize("kind", ["invoice.paid", "invoice.payment_succeeded"])
def test_paid_invoices_are_recorded_and_change_no_state(era: str, kind: str) -> None:
    h = Harness()
    before = h.snapshot()
    event = h.event(kind, load(f"openapi/{era}/invoice.json"))
    assert h.deliver(event).outcome is WebhookOutcome.PROCESSED
    after = h.snapshot()
    assert after["subscriptions"] == before["subscriptions"]
    assert h.stored_event(event["id"]).status is EventStatus.PROCESSED


def test_payment_failed_hook_carries_the_invoice() -> None:
    h = Harness()
    seen = recorder(h)
    invoice = load("pay/invoice.payment_failed.json")["object"]
    link(h, "user_3", invoice["customer"])
    event = h.event("invoice.payment_failed", invoice)
    h.deliver(event)
    assert len(seen) == 1 and isinstance(seen[0], PaymentFailed)
    failed = seen[0]
    assert failed.user_id == "user_3"
    assert failed.invoice_id == invoice["id"]
    assert failed.amount_due == Money(amount=invoice["amount_due"], currency="usd")
    assert failed.subscription_id is not None
    assert failed.hosted_invoice_url == invoice["hosted_invoice_url"]
    assert h.stored_subscription(failed.subscription_id) is None  # no state inferred


def test_payment_action_required_hook() -> None:
    h = Harness()
    seen = recorder(h)
    invoice = load("pay/invoice.payment_action_required.json")["object"]
    h.deliver(h.event("invoice.payment_action_required", invoice))
    assert len(seen) == 1 and isinstance(seen[0], PaymentActionRequired)
    assert seen[0].subscription_id == "sub_1234"
    assert seen[0].user_id is None  # customer not linked
