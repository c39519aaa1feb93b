"""``invoice.*`` handlers: hooks only, no subscription state."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import pytest

from billingkit.domain import EventStatus, Money
from billingkit.errors import WebhookPayloadError
from billingkit.services.hooks import PaymentActionRequired, PaymentFailed
from billingkit.services.webhooks import WebhookOutcome
from billingkit.stripe_objects import invoice_from_stripe, invoice_subscription_id

from .webhook_support import ERAS, Harness, link, load, recorder


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


# --------------------------------------------------------------------------- invoice_from_stripe


@pytest.mark.parametrize("era", ERAS)
def test_invoice_from_stripe_reads_every_era(era: str) -> None:
    obj = load(f"openapi/{era}/invoice.json")
    invoice = invoice_from_stripe(obj)
    assert invoice.id == obj["id"]
    assert invoice.subscription_id == invoice_subscription_id(obj)
    customer = obj["customer"]
    assert invoice.customer_id == (customer if isinstance(customer, str) else customer["id"])
    assert invoice.amount_due == Money(amount=obj["amount_due"], currency=obj["currency"])
    assert invoice.attempt_count == obj.get("attempt_count")
    assert invoice.hosted_invoice_url == obj.get("hosted_invoice_url")


def test_invoice_from_stripe_reads_expanded_refs_times_and_a_missing_currency() -> None:
    obj = load("pay/invoice.payment_failed.json")["object"]
    invoice = invoice_from_stripe(
        {
            **obj,
            "customer": {"id": "cus_expanded", "object": "customer"},
            "next_payment_attempt": 1767225600,
            "currency": None,
        }
    )
    assert invoice.customer_id == "cus_expanded"
    assert invoice.next_payment_attempt == datetime(2026, 1, 1, tzinfo=timezone.utc)
    assert invoice.amount_due is None  # an amount without a currency is no Money


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"id": None}, "invoice.id: missing"),
        ({"id": ""}, "invoice.id: missing"),
        ({"attempt_count": "2"}, "invoice.attempt_count"),
        ({"amount_due": 12.5}, "invoice.amount_due"),
        ({"currency": "dollars"}, "invoice.currency: bad value 'dollars'"),
        ({"next_payment_attempt": "soon"}, "invoice.next_payment_attempt"),
        ({"hosted_invoice_url": 7}, "invoice.hosted_invoice_url"),
        ({"customer": {"object": "customer"}}, "invoice.customer.id"),
    ],
)
def test_invoice_from_stripe_names_the_bad_field(changes: dict[str, Any], message: str) -> None:
    obj = load("pay/invoice.payment_failed.json")["object"]
    with pytest.raises(WebhookPayloadError, match=message):
        invoice_from_stripe({**obj, **changes})


def test_a_bad_invoice_fails_the_hook_event_and_is_recorded_failed() -> None:
    h = Harness()
    seen = recorder(h)
    invoice = {**load("pay/invoice.payment_failed.json")["object"], "attempt_count": "two"}
    event = h.event("invoice.payment_failed", invoice)
    with pytest.raises(WebhookPayloadError, match="attempt_count"):
        h.deliver(event)
    assert seen == []
    assert h.stored_event(event["id"]).status is EventStatus.FAILED
