"""The invoice history end to end: the fake's events, the webhooks, ``CustomerDetails.invoices``.

Also the fake's invoice event order and its ``refund``/``open_dispute``/``close_dispute``
controls, and the read path's zero Stripe calls.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from billingkit import (
    Billing,
    BillingConfig,
    DisputeClosed,
    DisputeOpened,
    InMemoryRepository,
    InvoiceStatus,
    Money,
    PlanDefinition,
)
from billingkit.errors import GatewayError, InvalidInputError
from billingkit.services.hooks import HookEvent
from billingkit.testing import FakeStripeGateway

SECRET = "whsec_invoice_history"
START = datetime(2031, 3, 1, 12, 0, tzinfo=timezone.utc)
DAY = timedelta(days=1)


class World:
    def __init__(self) -> None:
        self.stripe = FakeStripeGateway(webhook_secret=SECRET, start=START)
        self.stripe.add_price(
            amount=1900, interval="month", lookup_key="pro_monthly", product_name="Pro"
        )
        config = BillingConfig(
            plans=[
                PlanDefinition(key="free", name="Free"),
                PlanDefinition(key="pro", name="Pro", prices={"month": "pro_monthly"}),
            ],
            free_plan="free",
            webhook_secrets=[SECRET],
        )
        self.billing = Billing.build(
            config, self.stripe, InMemoryRepository(), clock=self.stripe.now
        )
        self.hooks: list[HookEvent] = []
        self.billing.webhooks.on(DisputeOpened, self.hooks.append)
        self.billing.webhooks.on(DisputeClosed, self.hooks.append)

    def deliver(self) -> list[str]:
        types = []
        for delivery in self.stripe.drain_events():
            result = self.billing.webhooks.handle(delivery.payload, delivery.signature)
            assert result.outcome.value in ("processed", "ignored", "stale"), result
            types.append(delivery.type)
        return types

    def subscribe(self, user_id: str = "user-1") -> str:
        started = self.billing.checkout.start_checkout(
            user_id=user_id,
            email=f"{user_id}@example.com",
            plan_key="pro",
            interval="month",
            success_url="https://app.example/ok?session_id={CHECKOUT_SESSION_ID}",
            cancel_url="https://app.example/pricing",
        )
        session = self.stripe.complete_checkout(started.session_id)
        self.deliver()
        assert session.subscription_id is not None
        return session.subscription_id


@pytest.fixture
def world() -> World:
    return World()


def test_the_fake_sends_the_invoice_events_in_stripes_order(world: World) -> None:
    world.subscribe()
    world.stripe.advance(31 * DAY)
    types = world.deliver()
    assert types == [
        "customer.subscription.updated",
        "invoice.created",
        "invoice.finalized",
        "invoice.paid",
        "invoice.payment_succeeded",
        "invoice_payment.paid",
        "invoice.updated",
    ]


def test_the_history_lists_every_invoice_newest_first_without_a_stripe_call(
    world: World,
) -> None:
    sub_id = world.subscribe()
    world.stripe.advance(31 * DAY)
    world.stripe.fail_next_payment(sub_id)
    world.stripe.advance(31 * DAY)
    world.deliver()
    world.stripe.reset_calls()

    invoices = world.billing.customers.invoices("user-1")

    assert world.stripe.total_calls == 0
    assert [i.billing_reason for i in invoices] == [
        "subscription_cycle",
        "subscription_cycle",
        "subscription_create",
    ]
    failed, renewed, first = invoices
    assert failed.status is InvoiceStatus.OPEN and failed.attempt_count == 1
    assert failed.amount_remaining == Money(amount=1900, currency="usd")
    assert renewed.status is first.status is InvoiceStatus.PAID
    assert first.amount_paid == first.total == Money(amount=1900, currency="usd")
    assert first.amount_refunded == Money(amount=0, currency="usd")
    assert first.subscription_id == sub_id
    assert first.number is not None and first.number.startswith("FAKE-")
    assert first.hosted_invoice_url and first.invoice_pdf
    assert first.lines and "Pro" in first.lines[0]
    assert first.period_start is not None and first.created is not None
    assert first.created < renewed.created < failed.created  # type: ignore[operator]


def test_paging_with_before_and_limit(world: World) -> None:
    world.subscribe()
    for _ in range(3):
        world.stripe.advance(31 * DAY)
    world.deliver()
    details = world.billing.customers
    everything = [i.id for i in details.invoices("user-1")]
    assert len(everything) == 4
    page = details.invoices("user-1", limit=3)
    rest = details.invoices("user-1", before=page[-1].id)
    assert [i.id for i in page + rest] == everything
    created = page[1].created
    assert created is not None
    assert [i.id for i in details.invoices("user-1", before=created)] == everything[2:]
    assert details.invoices("nobody") == []


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 101}, "limit"),
        ({"limit": True}, "limit"),
        ({"before": "in_unknown"}, "no invoice"),
        ({"before": datetime(2031, 1, 1)}, "timezone-aware"),
        ({"before": 12}, "invoice id or a datetime"),
    ],
)
def test_bad_arguments_are_typed_errors(
    world: World, kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(InvalidInputError, match=message):
        world.billing.customers.invoices("user-1", **kwargs)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="user_id"):
        world.billing.customers.invoices(" ")


def test_another_users_invoices_are_not_listed(world: World) -> None:
    world.subscribe("user-1")
    world.subscribe("user-2")
    ones = world.billing.customers.invoices("user-1")
    twos = world.billing.customers.invoices("user-2")
    assert len(ones) == len(twos) == 1
    assert ones[0].id != twos[0].id
    assert ones[0].user_id == "user-1" and twos[0].user_id == "user-2"


def test_partial_then_full_refund_shows_on_the_invoice(world: World) -> None:
    world.subscribe()
    [invoice] = world.billing.customers.invoices("user-1")
    charge = world.stripe.refund(invoice.id, amount=400)
    assert charge["amount_refunded"] == 400 and charge["refunded"] is False
    assert world.deliver() == ["charge.refunded"]
    [after] = world.billing.customers.invoices("user-1")
    assert after.amount_refunded == Money(amount=400, currency="usd")

    world.stripe.refund(charge["id"])  # the rest, by charge id
    world.deliver()
    [after] = world.billing.customers.invoices("user-1")
    assert after.amount_refunded == Money(amount=1900, currency="usd")
    with pytest.raises(GatewayError, match="exceeds"):
        world.stripe.refund(invoice.id, amount=1)


def test_refund_controls_refuse_bad_amounts_and_unknown_charges(world: World) -> None:
    world.subscribe()
    [invoice] = world.billing.customers.invoices("user-1")
    for amount in (0, -5, 5000):
        with pytest.raises(GatewayError):
            world.stripe.refund(invoice.id, amount=amount)
    with pytest.raises(GatewayError):
        world.stripe.refund("ch_missing")
    assert world.stripe.drain_events() == []


def test_a_dispute_opens_and_closes_with_hooks_naming_the_user_and_invoice(world: World) -> None:
    world.subscribe()
    [invoice] = world.billing.customers.invoices("user-1")
    dispute = world.stripe.open_dispute(invoice.id, reason="product_not_received")
    world.stripe.close_dispute(dispute["id"], won=True)
    assert world.deliver() == ["charge.dispute.created", "charge.dispute.closed"]
    opened, closed = world.hooks
    assert isinstance(opened, DisputeOpened) and isinstance(closed, DisputeClosed)
    assert opened.user_id == closed.user_id == "user-1"
    assert opened.invoice_id == closed.invoice_id == invoice.id
    assert opened.reason == "product_not_received" and opened.status == "needs_response"
    assert closed.status == "won"
    assert opened.amount == Money(amount=1900, currency="usd")
    with pytest.raises(GatewayError, match="already closed"):
        world.stripe.close_dispute(dispute["id"], won=False)
