"""The fake's list calls paginate like Stripe's, and its seeding helpers."""

from __future__ import annotations

from datetime import timedelta

import pytest

from billingkit.domain import SubscriptionStatus
from billingkit.errors import ConfigurationError, GatewayInvalidRequestError, GatewayNotFoundError
from billingkit.testing import PORT_OPERATIONS, FakeStripeGateway


@pytest.fixture
def stripe() -> FakeStripeGateway:
    fake = FakeStripeGateway(webhook_secret="whsec_lists_0123456789")
    fake.add_price(amount=1000, interval="month", lookup_key="basic")
    return fake


def _price(stripe: FakeStripeGateway) -> str:
    return stripe.list_prices(lookup_keys=["basic"])[0].id


def test_list_calls_are_port_operations() -> None:
    assert {"list_subscriptions", "list_customers", "list_webhook_endpoints"} <= PORT_OPERATIONS


def test_subscriptions_page_newest_first_one_call_per_page(stripe: FakeStripeGateway) -> None:
    customer = stripe.add_customer(email="a@example.com")
    ids = []
    for _ in range(205):
        ids.append(stripe.add_subscription(customer.id, _price(stripe)).id)
        stripe.advance(timedelta(seconds=1))
    stripe.reset_calls()
    pages = stripe.list_subscriptions()
    first = next(pages)
    assert stripe.calls["list_subscriptions"] == 1  # lazy
    rest = list(pages)
    assert stripe.calls["list_subscriptions"] == 3
    assert [len(p.items) for p in (first, *rest)] == [100, 100, 5]
    assert [p.has_more for p in (first, *rest)] == [True, True, False]
    assert first.next_cursor == ids[105] and rest[-1].next_cursor is None
    listed = [s.id for p in (first, *rest) for s in p.items]
    assert listed == ids[::-1]

    stripe.reset_calls()
    after = [s.id for p in stripe.list_subscriptions(starting_after=ids[5]) for s in p.items]
    assert after == ids[4::-1]
    assert stripe.calls["list_subscriptions"] == 1


def test_an_exact_last_page_ends_the_listing(stripe: FakeStripeGateway) -> None:
    customer = stripe.add_customer()
    for _ in range(4):
        stripe.add_subscription(customer.id, _price(stripe))
    pages = list(stripe.list_subscriptions(page_size=2))
    assert [p.has_more for p in pages] == [True, False]


def test_subscription_filters(stripe: FakeStripeGateway) -> None:
    one, two = stripe.add_customer(), stripe.add_customer()
    old = stripe.add_subscription(one.id, _price(stripe), status="canceled")
    stripe.advance(timedelta(days=3))
    since = stripe.now()
    new_one = stripe.add_subscription(one.id, _price(stripe), status="trialing")
    new_two = stripe.add_subscription(two.id, _price(stripe), cancel_at_period_end=True)

    def ids(**options: object) -> list[str]:
        return [s.id for p in stripe.list_subscriptions(**options) for s in p.items]  # type: ignore[arg-type]

    assert ids() == [new_two.id, new_one.id, old.id]  # every status, canceled included
    assert ids(customer_id=one.id) == [new_one.id, old.id]
    assert ids(created_gte=since) == [new_two.id, new_one.id]
    assert ids(customer_id=one.id, created_gte=since) == [new_one.id]
    assert old.status is SubscriptionStatus.CANCELED and old.ended_at is not None
    assert new_two.cancel_at_period_end and new_two.cancel_at == new_two.current_period_end


def test_customers_skip_the_deleted_and_filter(stripe: FakeStripeGateway) -> None:
    kept = stripe.add_customer(email="kept@example.com", name="Kept", metadata={"app": "7"})
    gone = stripe.add_customer(email="gone@example.com")
    stripe.delete_customer(gone.id)
    listed = [c for p in stripe.list_customers() for c in p.items]
    assert [c.id for c in listed] == [kept.id]
    assert (listed[0].name, listed[0].metadata) == ("Kept", {"app": "7"})
    assert [c.id for p in stripe.list_customers(email="nobody@x") for c in p.items] == []
    later = stripe.now() + timedelta(days=1)
    assert [c.id for p in stripe.list_customers(created_gte=later) for c in p.items] == []
    assert stripe.calls["list_customers"] == 3


def test_endpoints_are_listed(stripe: FakeStripeGateway) -> None:
    endpoint = stripe.add_webhook_endpoint(
        "https://x.example/hook", enabled_events=["invoice.paid"], status="disabled"
    )
    [page] = list(stripe.list_webhook_endpoints())
    assert page.items == (endpoint,)
    assert endpoint.status == "disabled" and endpoint.enabled_events == ("invoice.paid",)
    with pytest.raises(ConfigurationError):
        stripe.add_webhook_endpoint("https://x.example/hook", status="paused")


def test_bad_cursors_and_limits_are_stripe_errors(stripe: FakeStripeGateway) -> None:
    with pytest.raises(GatewayNotFoundError):
        next(stripe.list_subscriptions(starting_after="sub_nowhere"))
    with pytest.raises(GatewayInvalidRequestError):
        next(stripe.list_customers(page_size=101))
    with pytest.raises(GatewayInvalidRequestError):
        next(stripe.list_webhook_endpoints(page_size=0))


def test_seeding_refuses_what_stripe_would(stripe: FakeStripeGateway) -> None:
    customer = stripe.add_customer()
    with pytest.raises(ConfigurationError):
        stripe.add_subscription(customer.id, _price(stripe), status="sleeping")
    with pytest.raises(ConfigurationError):
        stripe.add_subscription(customer.id, "price_nowhere")
    one_time = stripe.add_price(amount=500, interval="one_time")
    with pytest.raises(ConfigurationError):
        stripe.add_subscription(customer.id, one_time.id)
    with pytest.raises(GatewayNotFoundError):
        stripe.add_subscription("cus_nowhere", _price(stripe))
    stripe.delete_customer(customer.id)
    with pytest.raises(GatewayInvalidRequestError):
        stripe.add_subscription(customer.id, _price(stripe))


def test_a_removed_subscription_is_gone(stripe: FakeStripeGateway) -> None:
    sub = stripe.add_subscription(stripe.add_customer().id, _price(stripe), metadata={"k": "v"})
    assert sub.metadata == {"k": "v"}
    events = [e["type"] for e in stripe.emitted_events()]
    assert events[-1] == "customer.subscription.created"
    stripe.remove_subscription(sub.id)
    with pytest.raises(GatewayNotFoundError):
        stripe.retrieve_subscription(sub.id)
    with pytest.raises(GatewayNotFoundError):
        stripe.remove_subscription(sub.id)
    assert [s for p in stripe.list_subscriptions() for s in p.items] == []


def test_a_seeded_subscription_can_be_backdated(stripe: FakeStripeGateway) -> None:
    customer = stripe.add_customer()
    earlier = stripe.now() - timedelta(days=30)
    sub = stripe.add_subscription(customer.id, _price(stripe), created=earlier)
    assert sub.created == earlier
    assert sub.current_period_start == stripe.now()
    with pytest.raises(ConfigurationError):
        stripe.add_subscription(customer.id, _price(stripe), created=earlier.replace(tzinfo=None))
    with pytest.raises(ConfigurationError):
        stripe.add_subscription(
            customer.id, _price(stripe), created=stripe.now() + timedelta(seconds=1)
        )


def test_a_malformed_webhook_endpoint_is_a_payload_error() -> None:
    from billingkit.errors import WebhookPayloadError
    from billingkit.stripe_objects import webhook_endpoint_from_stripe

    endpoint = {"id": "we_1", "url": "https://x", "status": "enabled", "enabled_events": "*"}
    with pytest.raises(WebhookPayloadError, match="enabled_events"):
        webhook_endpoint_from_stripe(endpoint)
    assert webhook_endpoint_from_stripe({**endpoint, "enabled_events": None}).enabled_events == ()
