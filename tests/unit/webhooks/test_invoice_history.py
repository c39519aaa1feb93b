"""``invoice.*``, ``invoice_payment.paid`` and ``charge.*``: the stored invoice history.

Invoice states are derived from Stripe's dahlia invoice example
(``openapi/2026-07-29_f0758b15/invoice.json``), edited per state by :func:`state`; the
ordering property test delivers an invoice's whole history in any order with repeats.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from billingkit.domain import EventStatus, Money
from billingkit.domain.invoices import InvoiceStatus, InvoiceSummary
from billingkit.errors import WebhookPayloadError
from billingkit.services.hooks import DisputeClosed, DisputeOpened, PaymentFailed
from billingkit.services.webhooks import WebhookOutcome
from billingkit.stripe_objects import invoice_from_stripe

from .webhook_support import Harness, link, load, recorder

BASE = load("openapi/2026-07-29_f0758b15/invoice.json")
T0 = 1_767_225_600


def state(
    status: str,
    *,
    attempts: int = 0,
    paid: bool = False,
    invoice_id: str = "in_history",
    number: bool = True,
    amount: int = 2000,
) -> dict[str, Any]:
    """A derived invoice (dahlia shape) of ``cus_history`` for ``sub_history``."""
    obj: dict[str, Any] = copy.deepcopy(BASE)
    finalized = status != "draft"
    obj.update(
        id=invoice_id,
        customer="cus_history",
        status=status,
        number="HIST-0001" if finalized and number else None,
        hosted_invoice_url=f"https://invoice.stripe.com/i/{invoice_id}" if finalized else None,
        invoice_pdf=f"https://pay.stripe.com/invoice/{invoice_id}/pdf" if finalized else None,
        attempt_count=attempts,
        attempted=attempts > 0,
        amount_due=amount,
        total=amount,
        amount_paid=amount if paid else 0,
        amount_remaining=0 if paid else amount,
        created=T0,
        period_start=T0,
        period_end=T0 + 30 * 86_400,
        billing_reason="subscription_cycle",
        parent={
            "quote_details": None,
            "subscription_details": {"metadata": {}, "subscription": "sub_history"},
            "type": "subscription_details",
        },
    )
    obj["lines"]["data"][0]["description"] = "1 × Pro (at $20.00 / month)"  # noqa: RUF001
    return obj


def stored(h: Harness, invoice_id: str = "in_history") -> InvoiceSummary | None:
    with h.repository.unit_of_work() as uow:
        return uow.get_invoice(invoice_id)


def history(h: Harness, user_id: str = "user_history") -> list[InvoiceSummary]:
    with h.repository.unit_of_work() as uow:
        return uow.invoices_for_user(user_id, limit=20)


def same_state(a: InvoiceSummary, b: InvoiceSummary) -> bool:
    skip = {"watermark", "user_id", "amount_refunded"}
    return a.model_dump(exclude=skip) == b.model_dump(exclude=skip)


# --------------------------------------------------------------------------- every event type


@pytest.mark.parametrize(
    ("kind", "obj", "status"),
    [
        ("invoice.created", state("draft"), InvoiceStatus.DRAFT),
        ("invoice.finalized", state("open"), InvoiceStatus.OPEN),
        ("invoice.updated", state("open"), InvoiceStatus.OPEN),
        ("invoice.paid", state("paid", attempts=1, paid=True), InvoiceStatus.PAID),
        ("invoice.payment_succeeded", state("paid", attempts=1, paid=True), InvoiceStatus.PAID),
        ("invoice.payment_failed", state("open", attempts=1), InvoiceStatus.OPEN),
        ("invoice.payment_action_required", state("open", attempts=1), InvoiceStatus.OPEN),
        ("invoice.voided", state("void"), InvoiceStatus.VOID),
        ("invoice.marked_uncollectible", state("uncollectible"), InvoiceStatus.UNCOLLECTIBLE),
        ("invoice.deleted", state("draft"), InvoiceStatus.DELETED),
    ],
)
def test_every_invoice_event_stores_the_summary(
    kind: str, obj: dict[str, Any], status: InvoiceStatus
) -> None:
    h = Harness()
    link(h, "user_history", "cus_history")
    result = h.deliver(h.event(kind, obj))
    assert result.outcome is WebhookOutcome.PROCESSED
    invoice = stored(h)
    assert invoice is not None and invoice.status is status
    assert invoice.user_id == "user_history"
    assert invoice.subscription_id == "sub_history"
    assert invoice.watermark == h.clock.seconds - 5
    assert invoice.total == Money(amount=2000, currency="usd")
    listed = history(h)
    assert listed == ([] if status is InvoiceStatus.DELETED else [invoice])


def test_the_summary_carries_what_the_history_page_shows() -> None:
    h = Harness()
    link(h, "user_history", "cus_history")
    h.deliver(h.event("invoice.paid", state("paid", attempts=1, paid=True)))
    [invoice] = history(h)
    assert invoice.number == "HIST-0001"
    assert invoice.billing_reason == "subscription_cycle"
    assert invoice.period_start is not None and invoice.period_end is not None
    assert (
        int(invoice.period_end.timestamp()) - int(invoice.period_start.timestamp()) == 30 * 86_400
    )
    assert invoice.amount_paid == Money(amount=2000, currency="usd")
    assert invoice.amount_remaining == Money(amount=0, currency="usd")
    assert invoice.amount_refunded == Money(amount=0, currency="usd")
    assert invoice.hosted_invoice_url == "https://invoice.stripe.com/i/in_history"
    assert invoice.invoice_pdf == "https://pay.stripe.com/invoice/in_history/pdf"
    assert invoice.lines == ("1 × Pro (at $20.00 / month)",)  # noqa: RUF001


def test_an_invoice_of_an_unlinked_customer_is_stored_and_listed_once_linked() -> None:
    h = Harness()
    h.deliver(h.event("invoice.finalized", state("open")))
    assert history(h) == []
    assert stored(h) is not None
    link(h, "user_history", "cus_history")
    assert [i.id for i in history(h)] == ["in_history"]


# --------------------------------------------------------------------------- ordering rule


def test_a_paid_invoice_never_goes_back_to_open_even_from_a_newer_event() -> None:
    h = Harness()
    now = h.clock.seconds
    h.deliver(h.event("invoice.paid", state("paid", attempts=1, paid=True), created=now - 50))
    late = h.deliver(h.event("invoice.updated", state("open"), created=now - 10))
    assert late.outcome is WebhookOutcome.STALE
    invoice = stored(h)
    assert invoice is not None and invoice.status is InvoiceStatus.PAID


def test_an_older_event_is_stale_and_a_newer_one_wins() -> None:
    h = Harness()
    now = h.clock.seconds
    h.deliver(h.event("invoice.payment_failed", state("open", attempts=1), created=now - 20))
    old = h.deliver(h.event("invoice.created", state("draft"), created=now - 30))
    assert old.outcome is WebhookOutcome.STALE
    new = h.deliver(h.event("invoice.paid", state("paid", attempts=2, paid=True), created=now - 5))
    assert new.outcome is WebhookOutcome.PROCESSED
    invoice = stored(h)
    assert invoice is not None and invoice.status is InvoiceStatus.PAID
    assert invoice.attempt_count == 2


def test_uncollectible_may_still_be_paid() -> None:
    h = Harness()
    now = h.clock.seconds
    h.deliver(h.event("invoice.marked_uncollectible", state("uncollectible"), created=now - 20))
    h.deliver(h.event("invoice.paid", state("paid", attempts=3, paid=True), created=now - 10))
    invoice = stored(h)
    assert invoice is not None and invoice.status is InvoiceStatus.PAID


@pytest.mark.parametrize("first_paid", [True, False])
def test_a_same_second_tie_goes_to_the_further_state_in_either_order(first_paid: bool) -> None:
    h = Harness()
    at = h.clock.seconds - 10
    events = [
        h.event("invoice.finalized", state("open"), created=at, event_id="evt_open"),
        h.event(
            "invoice.paid", state("paid", attempts=1, paid=True), created=at, event_id="evt_paid"
        ),
    ]
    if first_paid:
        events.reverse()
    outcomes = [h.deliver(event).outcome for event in events]
    invoice = stored(h)
    assert invoice is not None and invoice.status is InvoiceStatus.PAID
    assert outcomes[-1] is (WebhookOutcome.STALE if first_paid else WebhookOutcome.PROCESSED)


def test_a_same_second_tie_of_equal_progress_loses_nothing_known() -> None:
    h = Harness()
    at = h.clock.seconds - 10
    h.deliver(h.event("invoice.finalized", state("open"), created=at, event_id="evt_a"))
    # An equally far state of the same second that lacks the number and URLs (as a trimmed
    # payload would) keeps what is already known.
    bare = state("open")
    bare.update(number=None, hosted_invoice_url=None, invoice_pdf=None)
    h.deliver(h.event("invoice.updated", bare, created=at, event_id="evt_b"))
    invoice = stored(h)
    assert invoice is not None
    assert invoice.number == "HIST-0001"
    assert invoice.hosted_invoice_url == "https://invoice.stripe.com/i/in_history"


def test_a_deleted_draft_stays_deleted_when_its_creation_arrives_late() -> None:
    h = Harness()
    link(h, "user_history", "cus_history")
    now = h.clock.seconds
    h.deliver(h.event("invoice.deleted", state("draft"), created=now - 10))
    late = h.deliver(h.event("invoice.created", state("draft"), created=now - 20))
    same_second = h.deliver(h.event("invoice.updated", state("draft"), created=now - 10))
    assert late.outcome is WebhookOutcome.STALE
    assert same_second.outcome is WebhookOutcome.STALE
    invoice = stored(h)
    assert invoice is not None and invoice.status is InvoiceStatus.DELETED
    assert history(h) == []


PAID_HISTORY: list[tuple[str, dict[str, Any]]] = [
    ("invoice.created", state("draft")),
    ("invoice.finalized", state("open")),
    ("invoice.updated", state("open")),
    ("invoice.payment_failed", state("open", attempts=1)),
    ("invoice.updated", state("open", attempts=1)),
    ("invoice.payment_action_required", state("open", attempts=2)),
    ("invoice.paid", state("paid", attempts=3, paid=True)),
    ("invoice.payment_succeeded", state("paid", attempts=3, paid=True)),
    ("invoice.updated", state("paid", attempts=3, paid=True)),
]
DELETED_HISTORY: list[tuple[str, dict[str, Any]]] = [
    ("invoice.created", state("draft")),
    ("invoice.updated", state("draft")),
    ("invoice.deleted", state("draft")),
]
VOIDED_HISTORY: list[tuple[str, dict[str, Any]]] = [
    ("invoice.created", state("draft")),
    ("invoice.finalized", state("open")),
    ("invoice.payment_failed", state("open", attempts=1)),
    ("invoice.marked_uncollectible", state("uncollectible", attempts=1)),
    ("invoice.voided", state("void", attempts=1)),
]


@st.composite
def scenarios(draw: st.DrawFn, n: int) -> tuple[list[int], list[int]]:
    gaps = draw(st.lists(st.sampled_from([0, 1, 7]), min_size=n - 1, max_size=n - 1))
    extras = draw(st.lists(st.integers(0, n - 1), max_size=n))
    order = draw(st.permutations(list(range(n)) + extras))
    return gaps, order


HISTORIES = {"paid": PAID_HISTORY, "deleted": DELETED_HISTORY, "voided": VOIDED_HISTORY}


@pytest.mark.parametrize("name", sorted(HISTORIES))
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_any_order_with_duplicates_ends_in_the_newest_state(name: str, data: st.DataObject) -> None:
    events = HISTORIES[name]
    n = len(events)
    gaps, order = data.draw(scenarios(n))
    h = Harness()  # its gateway fails the test on any call: ties never ask Stripe
    link(h, "user_history", "cus_history")
    created = [h.clock.seconds - 1000]
    for gap in gaps:
        created.append(created[-1] + gap)
    deliveries = [
        h.event(kind, obj, created=created[i], event_id=f"evt_invoice_{i}")
        for i, (kind, obj) in enumerate(events)
    ]
    seen: set[int] = set()
    for index in order:
        result = h.deliver(deliveries[index])
        if index in seen:
            assert result.outcome is WebhookOutcome.DUPLICATE
        seen.add(index)

    final = stored(h)
    assert final is not None
    kind, obj = events[-1]
    expected = invoice_from_stripe(obj, deleted=kind == "invoice.deleted")
    assert same_state(final, expected)
    assert final.watermark == created[-1]
    assert final.user_id == "user_history"
    listed = history(h)
    assert listed == ([] if kind == "invoice.deleted" else [final])


# --------------------------------------------------------------------------- hooks


def test_payment_failed_still_fires_once_per_event_and_stores_the_attempt() -> None:
    h = Harness()
    link(h, "user_history", "cus_history")
    seen = recorder(h)
    event = h.event("invoice.payment_failed", state("open", attempts=1))
    h.deliver(event)
    assert h.deliver(event).outcome is WebhookOutcome.DUPLICATE
    [hook] = seen
    assert isinstance(hook, PaymentFailed) and hook.user_id == "user_history"
    assert hook.invoice_id == "in_history" and hook.attempt_count == 1
    invoice = stored(h)
    assert invoice is not None and invoice.attempt_count == 1


# --------------------------------------------------------------------------- refunds


def charge(
    *,
    amount_refunded: int,
    invoice: str | None = None,
    intent: str | None = "pi_history",
    charge_id: str = "ch_history",
) -> dict[str, Any]:
    """A derived charge (from Pay's ``charge.refunded`` payload) on ``cus_history``."""
    obj: dict[str, Any] = copy.deepcopy(load("pay/charge.refunded.json")["object"])
    obj.update(
        id=charge_id,
        amount=2000,
        amount_captured=2000,
        amount_refunded=amount_refunded,
        refunded=amount_refunded == 2000,
        customer="cus_history",
        invoice=invoice,
        payment_intent=intent,
    )
    return obj


def invoice_payment(invoice_id: str = "in_history", intent: str = "pi_history") -> dict[str, Any]:
    """A derived ``invoice_payment`` (basil+), as ``invoice_payment.paid`` carries it."""
    return {
        "id": "inpay_history",
        "object": "invoice_payment",
        "amount_paid": 2000,
        "amount_requested": 2000,
        "created": T0,
        "currency": "usd",
        "invoice": invoice_id,
        "is_default": True,
        "livemode": False,
        "payment": {"payment_intent": intent, "type": "payment_intent"},
        "status": "paid",
    }


def refunded(h: Harness) -> int:
    invoice = stored(h)
    assert invoice is not None and invoice.amount_refunded is not None
    return invoice.amount_refunded.amount


def test_partial_then_full_refund_of_a_basil_invoice_in_any_order() -> None:
    h = Harness()
    link(h, "user_history", "cus_history")
    now = h.clock.seconds
    full = h.event("charge.refunded", charge(amount_refunded=2000), created=now - 5)
    partial = h.event("charge.refunded", charge(amount_refunded=500), created=now - 10)
    # The refunds arrive first (newest first), then the payment link, then the invoice.
    h.deliver(full)
    h.deliver(partial)
    h.deliver(h.event("invoice_payment.paid", invoice_payment(), created=now - 30))
    h.deliver(h.event("invoice.paid", state("paid", attempts=1, paid=True), created=now - 30))
    assert refunded(h) == 2000
    [listed] = history(h)
    assert listed.amount_refunded == Money(amount=2000, currency="usd")


def test_a_partial_refund_of_a_pre_basil_charge_names_its_invoice() -> None:
    h = Harness()
    h.deliver(h.event("invoice.paid", state("paid", attempts=1, paid=True)))
    assert refunded(h) == 0
    h.deliver(
        h.event("charge.refunded", charge(amount_refunded=700, invoice="in_history", intent=None))
    )
    assert refunded(h) == 700


def test_a_refund_of_another_invoice_does_not_count() -> None:
    h = Harness()
    h.deliver(h.event("invoice.paid", state("paid", attempts=1, paid=True)))
    h.deliver(h.event("invoice_payment.paid", invoice_payment("in_other", "pi_other")))
    h.deliver(h.event("charge.refunded", charge(amount_refunded=2000, intent="pi_other")))
    assert refunded(h) == 0


# --------------------------------------------------------------------------- disputes


def dispute(status: str) -> dict[str, Any]:
    """A derived dispute on ``ch_history`` (Stripe's dispute shape, hand-built)."""
    return {
        "id": "du_history",
        "object": "dispute",
        "amount": 2000,
        "charge": "ch_history",
        "created": T0,
        "currency": "usd",
        "livemode": False,
        "metadata": {},
        "payment_intent": "pi_history",
        "reason": "fraudulent",
        "status": status,
    }


def test_disputes_fire_opened_and_closed_once_with_the_user_and_invoice() -> None:
    h = Harness()
    link(h, "user_history", "cus_history")
    seen = recorder(h)
    h.deliver(h.event("invoice_payment.paid", invoice_payment()))
    h.deliver(h.event("charge.succeeded", charge(amount_refunded=0)))
    opened = h.event("charge.dispute.created", dispute("needs_response"))
    h.deliver(opened)
    h.deliver(opened)
    h.deliver(h.event("charge.dispute.closed", dispute("lost")))
    assert [type(e) for e in seen] == [DisputeOpened, DisputeClosed]
    first, last = seen
    assert isinstance(first, DisputeOpened) and isinstance(last, DisputeClosed)
    assert first.user_id == "user_history" and first.customer_id == "cus_history"
    assert first.invoice_id == "in_history" and first.charge_id == "ch_history"
    assert first.amount == Money(amount=2000, currency="usd")
    assert (first.reason, first.status, last.status) == ("fraudulent", "needs_response", "lost")


def test_a_dispute_on_an_unknown_charge_still_tells_the_app() -> None:
    h = Harness()
    seen = recorder(h)
    result = h.deliver(h.event("charge.dispute.created", dispute("needs_response")))
    assert result.outcome is WebhookOutcome.PROCESSED
    [event] = seen
    assert isinstance(event, DisputeOpened)
    assert event.user_id is None and event.invoice_id is None


def test_a_malformed_dispute_fails_the_event() -> None:
    h = Harness()
    bad = {**dispute("needs_response"), "amount": "lots"}
    event = h.event("charge.dispute.created", bad)
    with pytest.raises(WebhookPayloadError, match=r"dispute\.amount"):
        h.deliver(event)
    assert h.stored_event(event["id"]).status is EventStatus.FAILED
