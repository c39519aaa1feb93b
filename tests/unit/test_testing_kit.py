"""billingkit.testing: the fake Stripe, its events and their shapes."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Literal

import pytest
import stripe

from billingkit.domain import Interval, SubscriptionStatus
from billingkit.errors import (
    ConfigurationError,
    GatewayCardError,
    GatewayInvalidRequestError,
    GatewayNotFoundError,
    GatewayServerError,
)
from billingkit.ports import CheckoutSessionRequest, StripeGateway
from billingkit.signature import verify_signature
from billingkit.stripe_objects import (
    checkout_session_from_stripe,
    customer_from_stripe,
    invoice_subscription_id,
    price_from_stripe,
    subscription_from_stripe,
)
from billingkit.testing import (
    DEFAULT_START,
    FAKE_API_VERSION,
    PORT_OPERATIONS,
    Delivery,
    FakeStripeGateway,
    build_event,
)

SECRET = "whsec_test_kit"
DAHLIA = Path(__file__).parents[1] / "fixtures" / "stripe" / "openapi" / "2026-07-29_f0758b15"
DAY = timedelta(days=1)


def ts(moment: datetime | None) -> int | None:
    return None if moment is None else int(moment.timestamp())


@pytest.fixture
def fake() -> FakeStripeGateway:
    return FakeStripeGateway(webhook_secret=SECRET)


def request_for(
    fake: FakeStripeGateway,
    price_id: str,
    *,
    user_id: str = "user-1",
    mode: Literal["subscription", "payment"] = "subscription",
    trial_days: int | None = None,
    key: str = "checkout-1",
    customer_id: str | None = None,
) -> CheckoutSessionRequest:
    if customer_id is None:
        customer_id = fake.create_customer(
            user_id=user_id, email=f"{user_id}@example.com", idempotency_key=f"cus-{user_id}"
        ).id
    return CheckoutSessionRequest(
        mode=mode,
        customer_id=customer_id,
        price_id=price_id,
        success_url="https://app.example/ok?session_id={CHECKOUT_SESSION_ID}",
        cancel_url="https://app.example/pricing",
        client_reference_id=user_id,
        metadata={"user_id": user_id, "plan_key": "pro"},
        subscription_metadata={"user_id": user_id, "plan_key": "pro"}
        if mode == "subscription"
        else {},
        trial_days=trial_days,
        idempotency_key=key,
    )


def subscribe(fake: FakeStripeGateway, *, trial_days: int | None = None, amount: int = 2000) -> str:
    price = fake.add_price(amount=amount, interval="month", product_name="Pro")
    session = fake.create_checkout_session(request_for(fake, price.id, trial_days=trial_days))
    completed = fake.complete_checkout(session.id)
    assert completed.subscription_id is not None
    return completed.subscription_id


def types(deliveries: list[Delivery]) -> list[str]:
    return [d.type for d in deliveries]


def sub_events(deliveries: list[Delivery]) -> Iterator[tuple[Delivery, Any]]:
    for d in deliveries:
        obj = d.data_object()
        if obj["object"] == "subscription":
            yield d, subscription_from_stripe(obj)


# --------------------------------------------------------------------------- basics


def test_is_a_stripe_gateway_with_deterministic_ids(fake: FakeStripeGateway) -> None:
    assert isinstance(fake, StripeGateway)
    price = fake.add_price(amount=1000, product_name="Basic")
    first = fake.create_customer(user_id="a", email=None, idempotency_key="k-a")
    second = fake.create_customer(user_id="b", email=None, idempotency_key="k-b")
    assert (price.id, price.product_id) == ("price_fake0001", "prod_fake0001")
    assert (first.id, second.id) == ("cus_fake0001", "cus_fake0002")
    assert first.metadata["user_id"] == "a"


def test_two_fakes_running_the_same_script_emit_identical_bytes() -> None:
    def script() -> list[bytes]:
        fake = FakeStripeGateway(webhook_secret=SECRET)
        subscribe(fake, trial_days=7)
        fake.advance(40 * DAY)
        return [d.payload + d.signature.encode() for d in fake.drain_events()]

    assert script() == script()


def test_clock_starts_fixed_and_moves_only_when_told(fake: FakeStripeGateway) -> None:
    assert fake.now() == DEFAULT_START and fake.now().tzinfo is not None
    clock = fake.clock
    fake.advance(timedelta(hours=5))
    assert clock() == DEFAULT_START + timedelta(hours=5)
    with pytest.raises(ConfigurationError):
        fake.advance(timedelta(seconds=-1))
    custom = FakeStripeGateway(
        webhook_secret=SECRET, start=datetime(2030, 6, 1, tzinfo=timezone.utc)
    )
    assert custom.now().year == 2030


@pytest.mark.parametrize(
    "kwargs",
    [
        {"webhook_secret": ""},
        {"webhook_secret": SECRET, "start": datetime(2030, 1, 1)},
        {"webhook_secret": SECRET, "retry_delays": [timedelta(0)]},
    ],
)
def test_bad_construction_is_refused(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        FakeStripeGateway(**kwargs)


def test_repr_never_shows_the_secret(fake: FakeStripeGateway) -> None:
    subscribe(fake)
    assert SECRET not in repr(fake)
    assert all(SECRET not in repr(d) for d in fake.pending_events())


def test_unknown_ids_raise_not_found(fake: FakeStripeGateway) -> None:
    for call in (
        lambda: fake.retrieve_customer("cus_nope"),
        lambda: fake.retrieve_subscription("sub_nope"),
        lambda: fake.retrieve_checkout_session("cs_nope"),
        lambda: fake.stripe_object("in_nope"),
    ):
        with pytest.raises(GatewayNotFoundError) as caught:
            call()
        assert caught.value.code == "resource_missing" and caught.value.http_status == 404


# --------------------------------------------------------------------------- catalog


def test_list_prices_answers_ids_and_lookup_keys_in_one_call(fake: FakeStripeGateway) -> None:
    monthly = fake.add_price(amount=2000, lookup_key="pro_monthly", product_name="Pro")
    pro = monthly.product_id
    yearly = fake.add_price(amount=20000, interval=Interval.YEAR, product=pro)
    once = fake.add_price(
        amount=500,
        currency="JPY",
        interval=Interval.ONE_TIME,
        lookup_key="credits",
        product_name="Credits",
    )
    tiered = fake.add_price(amount=None, tiered=True, product_name="Usage")
    fake.add_price(amount=100, product_name="Unrelated")

    prices = fake.list_prices(
        price_ids=[yearly.id, tiered.id, "price_missing"],
        lookup_keys=["pro_monthly", "credits", "nope"],
    )

    assert fake.calls["list_prices"] == 1 and fake.total_calls == 1
    by_id = {p.id: p for p in prices}
    assert set(by_id) == {monthly.id, yearly.id, once.id, tiered.id}
    assert by_id[monthly.id].product_name == "Pro" and by_id[yearly.id].product_name == "Pro"
    assert by_id[yearly.id].interval is Interval.YEAR
    assert by_id[once.id].interval is Interval.ONE_TIME and by_id[once.id].currency == "jpy"
    assert by_id[tiered.id].unit_amount is None and by_id[tiered.id].billing_scheme == "tiered"


def test_seeding_is_validated_and_not_counted(fake: FakeStripeGateway) -> None:
    fake.add_price(amount=100, lookup_key="taken")
    with pytest.raises(ConfigurationError):
        fake.add_price(amount=100, lookup_key="taken")
    with pytest.raises(ConfigurationError):
        fake.add_price(amount=None)
    with pytest.raises(ConfigurationError):
        fake.add_price(amount=-1)
    assert fake.total_calls == 0


def test_update_price_emits_price_updated(fake: FakeStripeGateway) -> None:
    price = fake.add_price(amount=100, lookup_key="old")
    updated = fake.update_price(price.id, active=False, lookup_key="new")
    assert (updated.active, updated.lookup_key) == (False, "new")
    [delivery] = fake.drain_events()
    event = delivery.event()
    assert event["type"] == "price.updated"
    assert event["data"]["previous_attributes"] == {"active": True, "lookup_key": "old"}
    assert price_from_stripe(event["data"]["object"]).active is False


# --------------------------------------------------------------------------- idempotency


def test_same_key_same_params_returns_the_same_object(fake: FakeStripeGateway) -> None:
    a = fake.create_customer(user_id="u", email="u@x.io", idempotency_key="k")
    b = fake.create_customer(user_id="u", email="u@x.io", idempotency_key="k")
    assert a == b
    assert fake.calls["create_customer"] == 2
    assert types(fake.drain_events()) == ["customer.created"]  # one customer only


def test_same_key_other_params_is_an_idempotency_error(fake: FakeStripeGateway) -> None:
    fake.create_customer(user_id="u", email="u@x.io", idempotency_key="k")
    with pytest.raises(GatewayInvalidRequestError) as caught:
        fake.create_customer(user_id="u", email="other@x.io", idempotency_key="k")
    assert caught.value.code == "idempotency_error" and caught.value.http_status == 400
    price = fake.add_price(amount=100)
    with pytest.raises(GatewayInvalidRequestError, match="same parameters"):
        fake.create_checkout_session(request_for(fake, price.id, key="k"))


def test_checkout_session_idempotency_and_expiry_of_keys(fake: FakeStripeGateway) -> None:
    price = fake.add_price(amount=100)
    request = request_for(fake, price.id)
    first = fake.create_checkout_session(request)
    assert fake.create_checkout_session(request).id == first.id
    fake.advance(25 * timedelta(hours=1))  # Stripe keeps keys 24 hours
    assert fake.create_checkout_session(request).id != first.id


# --------------------------------------------------------------------------- calls, failures


def test_calls_are_counted_per_port_method(fake: FakeStripeGateway) -> None:
    sub_id = subscribe(fake)
    fake.retrieve_subscription(sub_id)
    fake.retrieve_subscription(sub_id)
    assert fake.calls == {
        "create_customer": 1,
        "create_checkout_session": 1,
        "retrieve_subscription": 2,
    }
    assert fake.total_calls == 4
    assert set(fake.calls) <= PORT_OPERATIONS
    fake.reset_calls()
    assert fake.total_calls == 0


def test_injected_failure_stores_nothing_and_retry_succeeds(fake: FakeStripeGateway) -> None:
    fake.fail_next("create_customer", GatewayServerError("boom", retryable=True, http_status=500))
    with pytest.raises(GatewayServerError) as caught:
        fake.create_customer(user_id="u", email=None, idempotency_key="k")
    assert caught.value.retryable
    assert fake.pending_events() == []
    customer = fake.create_customer(user_id="u", email=None, idempotency_key="k")
    assert customer.id == "cus_fake0001"
    assert fake.calls["create_customer"] == 2


def test_failure_after_applying_replays_the_original_on_retry(fake: FakeStripeGateway) -> None:
    price = fake.add_price(amount=100)
    request = request_for(fake, price.id)
    fake.fail_next("create_checkout_session", GatewayServerError("lost"), after_applying=True)
    with pytest.raises(GatewayServerError):
        fake.create_checkout_session(request)
    session = fake.create_checkout_session(request)
    assert session.id == "cs_test_fake0001"  # the one created before the response was lost
    assert fake.checkout_request(session.id) == request


def test_fail_next_refuses_unknown_operations(fake: FakeStripeGateway) -> None:
    with pytest.raises(ConfigurationError):
        fake.fail_next("charge_everyone", GatewayServerError("x"))


def test_concurrent_checkouts_with_one_key_make_one_session(fake: FakeStripeGateway) -> None:
    price = fake.add_price(amount=100)
    request = request_for(fake, price.id)
    barrier = threading.Barrier(2)
    results: list[str] = []

    def start() -> None:
        barrier.wait()
        results.append(fake.create_checkout_session(request).id)

    threads = [threading.Thread(target=start) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert results == ["cs_test_fake0001", "cs_test_fake0001"]
    with pytest.raises(GatewayNotFoundError):
        fake.retrieve_checkout_session("cs_test_fake0002")


# --------------------------------------------------------------------------- checkout


def test_create_checkout_session_records_the_request(fake: FakeStripeGateway) -> None:
    price = fake.add_price(amount=2500)
    request = request_for(fake, price.id, trial_days=14)
    session = fake.create_checkout_session(request)
    assert session.status == "open" and session.payment_status == "unpaid"
    assert session.url is not None and session.id in session.url
    assert session.expires_at == fake.now() + DAY
    assert session.client_reference_id == "user-1"
    assert session.metadata == {"user_id": "user-1", "plan_key": "pro"}
    assert fake.checkout_request(session.id) == request
    assert fake.pending_events()[-1].type == "customer.created"  # no event for the session


@pytest.mark.parametrize(
    ("mode", "interval", "trial_days", "error"),
    [
        ("subscription", Interval.ONE_TIME, None, "does not fit"),
        ("payment", Interval.MONTH, None, "does not fit"),
        ("payment", Interval.ONE_TIME, 7, "trial"),
    ],
)
def test_checkout_mode_must_fit_the_price(
    fake: FakeStripeGateway,
    mode: Literal["subscription", "payment"],
    interval: Interval,
    trial_days: int | None,
    error: str,
) -> None:
    price = fake.add_price(amount=100, interval=interval)
    with pytest.raises(GatewayInvalidRequestError, match=error):
        fake.create_checkout_session(request_for(fake, price.id, mode=mode, trial_days=trial_days))


def test_checkout_needs_a_known_customer_and_an_active_price(fake: FakeStripeGateway) -> None:
    price = fake.add_price(amount=100, active=False)
    with pytest.raises(GatewayNotFoundError):
        fake.create_checkout_session(request_for(fake, price.id, customer_id="cus_nope"))
    with pytest.raises(GatewayInvalidRequestError, match="not active"):
        fake.create_checkout_session(request_for(fake, price.id))
    with pytest.raises(GatewayNotFoundError):
        fake.create_checkout_session(request_for(fake, "price_nope", user_id="user-2"))


def test_complete_subscription_checkout_emits_stripe_events(fake: FakeStripeGateway) -> None:
    price = fake.add_price(amount=2000, interval="month", product_name="Pro")
    session = fake.create_checkout_session(request_for(fake, price.id))
    fake.drain_events()
    start = fake.now()

    completed = fake.complete_checkout(session.id)
    deliveries = fake.drain_events()

    assert types(deliveries) == [
        "customer.subscription.created",
        "invoice.created",
        "invoice.finalized",
        "invoice.paid",
        "invoice.payment_succeeded",
        "invoice_payment.paid",
        "invoice.updated",
        "checkout.session.completed",
    ]
    t = int(start.timestamp())
    assert [d.created for d in deliveries] == [t, t, t, t + 1, t + 1, t + 1, t + 1, t + 1]
    assert fake.now() == start + timedelta(seconds=1)

    sub = completed.subscription
    assert sub is not None and completed.subscription_id == sub.id
    assert (completed.status, completed.payment_status) == ("complete", "paid")
    assert sub.status is SubscriptionStatus.ACTIVE
    assert sub.current_period_start == start
    assert sub.current_period_end == datetime(2026, 2, 5, 9, tzinfo=timezone.utc)
    assert sub.metadata == {"user_id": "user-1", "plan_key": "pro"} and sub.user_id == "user-1"
    assert sub.price_id == price.id

    event_session = checkout_session_from_stripe(deliveries[-1].data_object())
    assert event_session.client_reference_id == "user-1"
    assert event_session.customer_id == completed.customer_id
    assert event_session.subscription_id == sub.id
    assert event_session.customer_email == "user-1@example.com"
    assert event_session.url is None

    invoice = deliveries[3].data_object()
    assert invoice_subscription_id(invoice) == sub.id
    assert (invoice["status"], invoice["amount_paid"], invoice["billing_reason"]) == (
        "paid",
        2000,
        "subscription_create",
    )
    retrieved = fake.retrieve_checkout_session(session.id)
    assert retrieved.subscription == sub and retrieved == completed


def test_completing_twice_or_an_unknown_session_is_refused(fake: FakeStripeGateway) -> None:
    price = fake.add_price(amount=100)
    session = fake.create_checkout_session(request_for(fake, price.id))
    fake.complete_checkout(session.id)
    with pytest.raises(GatewayInvalidRequestError, match="complete"):
        fake.complete_checkout(session.id)
    with pytest.raises(GatewayNotFoundError):
        fake.complete_checkout("cs_nope")


def test_declined_card_at_checkout_changes_nothing(fake: FakeStripeGateway) -> None:
    price = fake.add_price(amount=100)
    request = request_for(fake, price.id)
    session = fake.create_checkout_session(request)
    fake.set_card_declining(request.customer_id)
    fake.drain_events()
    with pytest.raises(GatewayCardError) as caught:
        fake.complete_checkout(session.id)
    assert caught.value.user_message and caught.value.code == "card_declined"
    assert fake.pending_events() == [] and fake.subscription_ids() == []
    assert fake.retrieve_checkout_session(session.id).status == "open"
    fake.set_card_declining(request.customer_id, False)
    assert fake.complete_checkout(session.id).status == "complete"


def test_payment_mode_checkout(fake: FakeStripeGateway) -> None:
    price = fake.add_price(amount=4900, interval=Interval.ONE_TIME, product_name="Lifetime")
    session = fake.create_checkout_session(request_for(fake, price.id, mode="payment"))
    fake.drain_events()
    completed = fake.complete_checkout(session.id)
    assert types(fake.drain_events()) == ["payment_intent.succeeded", "checkout.session.completed"]
    assert completed.mode == "payment" and completed.payment_status == "paid"
    assert completed.payment_intent_id == "pi_fake0001" and completed.subscription_id is None
    assert completed.amount_total == 4900
    assert fake.stripe_object("pi_fake0001")["status"] == "succeeded"


def test_open_session_expires_after_a_day(fake: FakeStripeGateway) -> None:
    price = fake.add_price(amount=100)
    session = fake.create_checkout_session(request_for(fake, price.id))
    fake.drain_events()
    fake.advance(timedelta(hours=23))
    assert fake.pending_events() == []
    fake.advance(timedelta(hours=2))
    [delivery] = fake.drain_events()
    assert delivery.type == "checkout.session.expired"
    assert delivery.created == ts(session.expires_at)
    assert fake.retrieve_checkout_session(session.id).status == "expired"


# --------------------------------------------------------------------------- lifecycle


def test_renewal_moves_the_period_and_pays(fake: FakeStripeGateway) -> None:
    sub_id = subscribe(fake)
    fake.drain_events()
    fake.advance(31 * DAY)
    deliveries = fake.drain_events()
    assert types(deliveries) == [
        "customer.subscription.updated",
        "invoice.created",
        "invoice.finalized",
        "invoice.paid",
        "invoice.payment_succeeded",
        "invoice_payment.paid",
        "invoice.updated",
    ]
    updated = deliveries[0].event()["data"]
    previous_item = updated["previous_attributes"]["items"]["data"][0]
    assert (
        previous_item["current_period_end"]
        == updated["object"]["items"]["data"][0]["current_period_start"]
    )
    sub = subscription_from_stripe(updated["object"])
    assert sub.current_period_start == datetime(2026, 2, 5, 9, tzinfo=timezone.utc)
    assert sub.current_period_end == datetime(2026, 3, 5, 9, tzinfo=timezone.utc)
    assert deliveries[0].created == ts(sub.current_period_start)
    assert fake.retrieve_subscription(sub_id) == sub
    assert fake.latest_invoice(sub_id)["billing_reason"] == "subscription_cycle"


def test_month_end_anchor_clamps_like_stripe() -> None:
    fake = FakeStripeGateway(
        webhook_secret=SECRET, start=datetime(2026, 1, 31, 12, tzinfo=timezone.utc)
    )
    sub_id = subscribe(fake)
    ends: list[str] = []
    for _ in range(3):
        end = fake.retrieve_subscription(sub_id).current_period_end
        assert end is not None
        ends.append(end.date().isoformat())
        fake.advance_to(end + timedelta(hours=1))
    assert ends == ["2026-02-28", "2026-03-31", "2026-04-30"]


def test_failed_payment_then_successful_retry(fake: FakeStripeGateway) -> None:
    sub_id = subscribe(fake)
    fake.fail_next_payment(sub_id)
    fake.drain_events()
    fake.advance(31 * DAY)
    deliveries = fake.drain_events()
    assert types(deliveries)[-3:] == [
        "invoice.payment_failed",
        "invoice.updated",
        "customer.subscription.updated",
    ]
    failed = deliveries[-3].data_object()
    assert failed["status"] == "open" and failed["attempt_count"] == 1
    past_due = deliveries[-1].event()["data"]
    assert past_due["previous_attributes"] == {"status": "active"}
    assert subscription_from_stripe(past_due["object"]).status is SubscriptionStatus.PAST_DUE
    # the renewal's "updated" and the past_due "updated" are in different seconds
    assert deliveries[-1].created == deliveries[0].created + 1

    fake.advance(3 * DAY)  # automatic retry succeeds
    assert types(fake.drain_events()) == [
        "invoice.paid",
        "invoice.payment_succeeded",
        "invoice_payment.paid",
        "invoice.updated",
        "customer.subscription.updated",
    ]
    assert fake.retrieve_subscription(sub_id).status is SubscriptionStatus.ACTIVE


def test_declining_card_exhausts_retries_and_cancels(fake: FakeStripeGateway) -> None:
    sub_id = subscribe(fake)
    customer = fake.retrieve_subscription(sub_id).customer_id
    fake.set_card_declining(customer)
    fake.drain_events()
    fake.advance(31 * DAY + 3 * DAY + 5 * DAY + 7 * DAY)
    kinds = types(fake.drain_events())
    assert kinds.count("invoice.payment_failed") == 4
    assert kinds[-1] == "customer.subscription.deleted"
    final = fake.retrieve_subscription(sub_id)
    assert final.status is SubscriptionStatus.CANCELED
    assert fake.stripe_object(sub_id)["cancellation_details"]["reason"] == "payment_failed"
    fake.advance(60 * DAY)  # a canceled subscription never renews
    assert fake.drain_events() == []


def test_customer_retry_payment_recovers(fake: FakeStripeGateway) -> None:
    sub_id = subscribe(fake)
    fake.fail_next_payment(sub_id)
    fake.advance(31 * DAY)
    assert fake.retrieve_subscription(sub_id).status is SubscriptionStatus.PAST_DUE
    recovered = fake.retry_payment(sub_id)
    assert recovered.status is SubscriptionStatus.ACTIVE
    with pytest.raises(GatewayInvalidRequestError, match="no open invoice"):
        fake.retry_payment(sub_id)


def test_trial_will_end_then_trial_ends_with_first_charge(fake: FakeStripeGateway) -> None:
    sub_id = subscribe(fake, trial_days=14)
    start_events = fake.drain_events()
    session = checkout_session_from_stripe(start_events[-1].data_object())
    assert session.payment_status == "no_payment_required"
    trialing = fake.retrieve_subscription(sub_id)
    assert trialing.status is SubscriptionStatus.TRIALING
    assert trialing.trial_end == trialing.current_period_end == DEFAULT_START + 14 * DAY
    assert fake.latest_invoice(sub_id)["amount_paid"] == 0

    fake.advance(10 * DAY)
    assert fake.drain_events() == []
    fake.advance(1 * DAY)
    [notice] = fake.drain_events()
    assert notice.type == "customer.subscription.trial_will_end"
    assert notice.created == ts(DEFAULT_START + 11 * DAY)

    fake.advance(4 * DAY)
    deliveries = fake.drain_events()
    assert types(deliveries)[0] == "customer.subscription.updated"
    assert deliveries[0].event()["data"]["previous_attributes"]["status"] == "trialing"
    active = fake.retrieve_subscription(sub_id)
    assert active.status is SubscriptionStatus.ACTIVE
    assert active.current_period_start == trialing.trial_end
    assert fake.latest_invoice(sub_id)["amount_paid"] == 2000


def test_cancel_at_period_end_then_deleted(fake: FakeStripeGateway) -> None:
    sub_id = subscribe(fake)
    fake.drain_events()
    fake.advance(10 * DAY)
    scheduled = fake.update_subscription(sub_id, cancel_at_period_end=True)
    assert scheduled.cancel_at_period_end and scheduled.status is SubscriptionStatus.ACTIVE
    assert scheduled.cancel_at == scheduled.current_period_end
    assert scheduled.canceled_at == fake.now()
    [update] = fake.drain_events()
    previous = update.event()["data"]["previous_attributes"]
    assert previous["cancel_at_period_end"] is False and previous["cancel_at"] is None

    fake.advance(30 * DAY)
    [deleted] = fake.drain_events()
    assert deleted.type == "customer.subscription.deleted"
    ended = subscription_from_stripe(deleted.data_object())
    assert ended.status is SubscriptionStatus.CANCELED
    assert ended.ended_at == scheduled.current_period_end


def test_undo_cancel_at_period_end_keeps_renewing(fake: FakeStripeGateway) -> None:
    sub_id = subscribe(fake)
    fake.update_subscription(sub_id, cancel_at_period_end=True)
    undone = fake.update_subscription(sub_id, cancel_at_period_end=False)
    assert not undone.cancel_at_period_end and undone.cancel_at is None
    fake.advance(31 * DAY)
    assert fake.retrieve_subscription(sub_id).status is SubscriptionStatus.ACTIVE


def test_change_price_and_quantity(fake: FakeStripeGateway) -> None:
    sub_id = subscribe(fake)
    bigger = fake.add_price(amount=5000, product_name="Team")
    fake.drain_events()
    changed = fake.update_subscription(sub_id, price_id=bigger.id, quantity=3)
    assert (changed.price_id, changed.quantity) == (bigger.id, 3)
    [update] = fake.drain_events()
    old_item = update.event()["data"]["previous_attributes"]["items"]["data"][0]
    assert old_item["price"]["id"] == "price_fake0001"
    assert fake.update_subscription(sub_id, quantity=3) == changed
    assert fake.drain_events() == []  # nothing changed, nothing emitted
    fake.advance(31 * DAY)
    assert fake.latest_invoice(sub_id)["amount_due"] == 15000


def test_cancel_now(fake: FakeStripeGateway) -> None:
    sub_id = subscribe(fake)
    fake.drain_events()
    canceled = fake.cancel_subscription(sub_id)
    assert canceled.status is SubscriptionStatus.CANCELED and canceled.ended_at == fake.now()
    assert types(fake.drain_events()) == ["customer.subscription.deleted"]
    with pytest.raises(GatewayInvalidRequestError):
        fake.update_subscription(sub_id, quantity=2)


def test_pause_and_resume(fake: FakeStripeGateway) -> None:
    sub_id = subscribe(fake)
    fake.drain_events()
    paused = fake.pause_subscription(sub_id)
    assert paused.status is SubscriptionStatus.PAUSED
    assert types(fake.drain_events()) == [
        "customer.subscription.paused",
        "customer.subscription.updated",
    ]
    fake.advance(60 * DAY)  # a paused subscription is not billed
    assert fake.drain_events() == []
    resumed = fake.resume_subscription(sub_id)
    assert resumed.status is SubscriptionStatus.ACTIVE
    assert resumed.current_period_start == fake.now() - timedelta(seconds=1)
    kinds = types(fake.drain_events())
    assert kinds[:2] == ["customer.subscription.resumed", "customer.subscription.updated"]
    assert "invoice.paid" in kinds
    with pytest.raises(GatewayInvalidRequestError, match="not paused"):
        fake.resume_subscription(sub_id)


def test_delete_customer_ends_its_subscriptions(fake: FakeStripeGateway) -> None:
    sub_id = subscribe(fake)
    customer_id = fake.retrieve_subscription(sub_id).customer_id
    fake.drain_events()
    fake.delete_customer(customer_id)
    assert types(fake.drain_events()) == ["customer.subscription.deleted", "customer.deleted"]
    assert fake.retrieve_customer(customer_id).deleted
    with pytest.raises(GatewayInvalidRequestError):
        fake.create_billing_portal_session(customer_id=customer_id, return_url="https://a.b/")


def test_billing_portal_session(fake: FakeStripeGateway) -> None:
    customer = fake.create_customer(user_id="u", email=None, idempotency_key="k")
    portal = fake.create_billing_portal_session(
        customer_id=customer.id, return_url="https://app.example/account"
    )
    assert portal.id == "bps_fake0001" and portal.url.startswith("https://billing.stripe.com/")
    assert (portal.customer_id, portal.return_url) == (customer.id, "https://app.example/account")


# --------------------------------------------------------------------------- events


def test_every_delivery_verifies_and_parses(fake: FakeStripeGateway) -> None:
    sub_id = subscribe(fake, trial_days=3)
    fake.update_subscription(sub_id, cancel_at_period_end=True)
    fake.advance(40 * DAY)
    deliveries = fake.drain_events()
    now = ts(fake.now())
    assert now is not None
    ids = [d.id for d in deliveries]
    assert len(set(ids)) == len(ids)
    for delivery in deliveries:
        assert verify_signature(delivery.payload, delivery.signature, [SECRET], now=now) == now
        assert stripe.WebhookSignature.verify_header(
            delivery.payload, delivery.signature, SECRET, tolerance=None
        )
        event = delivery.event()
        assert event["object"] == "event" and event["api_version"] == FAKE_API_VERSION
        assert (event["id"], event["type"], event["created"]) == (
            delivery.id,
            delivery.type,
            delivery.created,
        )
        obj = event["data"]["object"]
        if obj["object"] == "subscription":
            assert subscription_from_stripe(obj).id == sub_id
        elif obj["object"] == "checkout.session":
            assert checkout_session_from_stripe(obj).subscription_id == sub_id
        elif obj["object"] == "customer":
            assert customer_from_stripe(obj).metadata["user_id"] == "user-1"
        elif obj["object"] == "invoice":
            assert invoice_subscription_id(obj) == sub_id
    created = [d.created for d in deliveries]
    assert created == sorted(created)


def test_pending_events_are_kept_until_drained(fake: FakeStripeGateway) -> None:
    subscribe(fake)
    pending = fake.pending_events()
    assert [d.id for d in fake.pending_events()] == [d.id for d in pending]
    assert [d.id for d in fake.drain_events()] == [d.id for d in pending]
    assert fake.pending_events() == []
    assert [e["id"] for e in fake.emitted_events()] == [d.id for d in pending]


def test_deliveries_are_signed_at_the_current_fake_time(fake: FakeStripeGateway) -> None:
    subscribe(fake)
    fake.advance(2 * DAY)
    delivery = fake.drain_events()[0]
    now = ts(fake.now())
    assert now is not None and delivery.signature.startswith(f"t={now},v1=")
    assert verify_signature(delivery.payload, delivery.signature, [SECRET], now=now) == now


def _keys(path: str) -> set[str]:
    return set(json.loads((DAHLIA / path).read_text(encoding="utf-8")))


def test_objects_use_dahlia_field_names(fake: FakeStripeGateway) -> None:
    sub_id = subscribe(fake)
    sub = fake.stripe_object(sub_id)
    invoice = fake.latest_invoice(sub_id)
    session = fake.stripe_object("cs_test_fake0001")
    assert set(sub) <= _keys("subscription.json")
    assert set(sub["items"]["data"][0]) <= _keys("subscription_item.json") | {"plan"}
    assert "current_period_end" not in sub and "current_period_end" in sub["items"]["data"][0]
    assert set(invoice) <= _keys("invoice.json")
    assert "subscription" not in invoice and invoice["parent"]["type"] == "subscription_details"
    assert set(session) <= _keys("checkout.session.json")
    assert set(fake.stripe_object("cus_fake0001")) <= _keys("customer.json")
    assert set(fake.stripe_object("price_fake0001")) <= _keys("price.json")
    assert set(fake.stripe_object("prod_fake0001")) <= _keys("product.json")


def test_build_event_shape_and_deterministic_id() -> None:
    obj = {"id": "sub_1", "object": "subscription", "status": "active"}
    event = build_event(
        "customer.subscription.updated",
        obj,
        created=datetime(2026, 1, 1, tzinfo=timezone.utc),
        previous_attributes={"status": "trialing"},
    )
    again = build_event(
        "customer.subscription.updated",
        obj,
        created=1_767_225_600,
        previous_attributes={"status": "trialing"},
    )
    assert event == again and event["id"].startswith("evt_")
    assert event["created"] == 1_767_225_600 and event["livemode"] is False
    assert event["data"] == {"object": obj, "previous_attributes": {"status": "trialing"}}
    other = build_event("customer.subscription.updated", obj, created=1_767_225_601)
    assert other["id"] != event["id"] and "previous_attributes" not in other["data"]
    named = build_event("x.y", obj, created=1, event_id="evt_given", livemode=True)
    assert (named["id"], named["livemode"]) == ("evt_given", True)
