"""The parts behind FakeStripeGateway: billing periods, payment outcomes, schedule ties."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from billingkit.ports import CheckoutSessionRequest
from billingkit.testing import FakeStripeGateway
from billingkit.testing._catalog import Catalog
from billingkit.testing._checkout import Checkout
from billingkit.testing._customers import Customers
from billingkit.testing._invoices import Invoices, Payment
from billingkit.testing._state import FakeState
from billingkit.testing._subscriptions import Subscriptions, add_interval

START = datetime(2026, 1, 5, 9, tzinfo=timezone.utc)


def at(day: str) -> datetime:
    return datetime.fromisoformat(f"{day}T09:00:00+00:00")


@pytest.mark.parametrize(
    ("anchor", "interval", "count", "periods", "expected"),
    [
        ("2026-01-05", "day", 1, 3, "2026-01-08"),
        ("2026-01-05", "week", 2, 1, "2026-01-19"),
        ("2026-01-31", "month", 1, 1, "2026-02-28"),
        ("2026-01-31", "month", 1, 2, "2026-03-31"),
        ("2026-11-30", "month", 3, 1, "2027-02-28"),
        ("2028-02-29", "year", 1, 1, "2029-02-28"),
        ("2028-02-29", "year", 1, 4, "2032-02-29"),
    ],
)
def test_add_interval_counts_from_the_anchor_and_clamps_month_ends(
    anchor: str, interval: str, count: int, periods: int, expected: str
) -> None:
    assert add_interval(at(anchor), interval, count, periods) == at(expected)


def test_payment_outcomes_drive_the_subscription_status() -> None:
    """The parts compose without the facade; Payment is the invoices/subscriptions contract."""
    state = FakeState(
        secret="whsec_parts",
        start=START,
        livemode=False,
        api_version="2026-07-29.dahlia",
        retry_delays=(timedelta(days=2),),
    )
    invoices = Invoices(state)
    subscriptions = Subscriptions(state, invoices)
    customers = Customers(state, subscriptions)
    checkout = Checkout(state, customers, subscriptions, invoices)
    price = Catalog(state).add_price(
        amount=900, currency="usd", interval="month", interval_count=1, lookup_key=None,
        product=None, product_name="Pro", tiered=False, active=True, price_id=None,
    )  # fmt: skip
    customer = customers.create(user_id="u1", email=None, metadata=None)
    session = checkout.create(
        CheckoutSessionRequest(
            mode="subscription", customer_id=customer["id"], price_id=price["id"],
            success_url="https://app.example/ok", cancel_url="https://app.example/no",
            client_reference_id="u1", idempotency_key="k",
        )
    )  # fmt: skip
    checkout.complete(session["id"])
    sub = state.sub(state.sessions[session["id"]].json["subscription"])
    assert state.invoices[sub.json["latest_invoice"]]["status"] == "paid"

    customers.set_declining(customer["id"], True)
    subscriptions.renew(sub)
    invoice = state.invoices[sub.json["latest_invoice"]]
    assert invoice["attempt_count"] == 1
    assert invoice["next_payment_attempt"] == invoice["created"] + 1 + 2 * 86_400
    assert sub.json["status"] == "past_due"

    subscriptions.collect(sub, invoice, invoice["created"] + 10)  # the last retry fails
    assert invoice["next_payment_attempt"] is None and invoice["status"] == "open"
    assert sub.json["status"] == "canceled"
    assert sub.json["cancellation_details"]["reason"] == "payment_failed"

    customers.set_declining(customer["id"], False)
    assert invoices.attempt(sub, invoice, invoice["created"] + 20, may_fail=True) is Payment.PAID
    assert invoice["status"] == "paid" and invoice["attempt_count"] == 3


def test_steps_due_in_the_same_second_run_sessions_then_subscriptions_then_retries() -> None:
    fake = FakeStripeGateway(webhook_secret="whsec_parts", start=START)
    price = fake.add_price(amount=500, interval="day", product_name="Daily")
    customer = fake.create_customer(user_id="u1", email=None, idempotency_key="cus")

    def request(key: str) -> CheckoutSessionRequest:
        return CheckoutSessionRequest(
            mode="subscription", customer_id=customer.id, price_id=price.id,
            success_url="https://app.example/ok", cancel_url="https://app.example/no",
            client_reference_id="u1", idempotency_key=key,
        )  # fmt: skip

    left_open = fake.create_checkout_session(request("open"))  # expires at START + 1 day
    paid = fake.create_checkout_session(request("paid"))
    fake.complete_checkout(paid.id)  # its subscription's period ends at START + 1 day
    fake.drain_events()
    fake.advance(timedelta(days=1))
    deliveries = fake.drain_events()
    assert [d.type for d in deliveries[:2]] == [
        "checkout.session.expired",
        "customer.subscription.updated",
    ]
    assert deliveries[0].created == deliveries[1].created
    assert fake.stripe_object(left_open.id)["status"] == "expired"
