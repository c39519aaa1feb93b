"""Billing.build: the four services over one config, gateway, repository, catalog and clock."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from billingkit import (
    Billing,
    BillingConfig,
    CheckoutService,
    CustomerDetails,
    InMemoryRepository,
    PlanCatalog,
    PlanDefinition,
    SubscriptionActivated,
    SubscriptionStatus,
    WebhookOutcome,
    WebhookProcessor,
)
from billingkit.errors import ConfigurationError
from billingkit.testing import FakeStripeGateway, build_event, signed_delivery

SECRET = "whsec_composition_test"
# Far from the real time: a service on the system clock would refuse the fake's signatures.
START = datetime(2031, 3, 1, 12, 0, tzinfo=timezone.utc)


class ClosingRepository(InMemoryRepository):
    """An in-memory repository that remembers being closed."""

    def __init__(self) -> None:
        super().__init__()
        self.closed = 0

    def close(self) -> None:
        self.closed += 1


def config() -> BillingConfig:
    return BillingConfig(
        plans=[
            PlanDefinition(key="free", name="Free"),
            PlanDefinition(key="pro", name="Pro", prices={"month": "pro_monthly"}),
        ],
        free_plan="free",
        webhook_secrets=[SECRET],
    )


def fake() -> FakeStripeGateway:
    gateway = FakeStripeGateway(webhook_secret=SECRET, start=START)
    gateway.add_price(amount=1900, interval="month", lookup_key="pro_monthly", product_name="Pro")
    return gateway


def subscribe(billing: Billing, stripe: FakeStripeGateway, user_id: str = "user-1") -> None:
    started = billing.checkout.start_checkout(
        user_id=user_id,
        email="ada@example.com",
        plan_key="pro",
        interval="month",
        success_url="https://app.example/ok?session_id={CHECKOUT_SESSION_ID}",
        cancel_url="https://app.example/pricing",
    )
    stripe.complete_checkout(started.session_id)


def test_build_holds_what_it_was_given_and_one_service_of_each_kind() -> None:
    cfg, stripe, repository = config(), fake(), InMemoryRepository()
    billing = Billing.build(cfg, stripe, repository, clock=stripe.now)
    assert billing.config is cfg
    assert billing.gateway is stripe
    assert billing.repository is repository
    assert isinstance(billing.catalog, PlanCatalog)
    assert isinstance(billing.checkout, CheckoutService)
    assert isinstance(billing.webhooks, WebhookProcessor)
    assert isinstance(billing.customers, CustomerDetails)


def test_a_full_purchase_runs_through_the_built_services_on_the_fakes_clock() -> None:
    stripe = fake()
    billing = Billing.build(config(), stripe, InMemoryRepository(), clock=stripe.now)
    welcomed: list[str | None] = []
    billing.webhooks.on(SubscriptionActivated, lambda event: welcomed.append(event.user_id))

    subscribe(billing, stripe)
    outcomes = [
        billing.webhooks.handle(d.payload, d.signature).outcome for d in stripe.drain_events()
    ]

    assert outcomes and WebhookOutcome.PROCESSED in outcomes
    assert welcomed == ["user-1"]
    details = billing.customers.for_user("user-1")
    assert (details.plan_key, details.status, details.has_access) == (
        "pro",
        SubscriptionStatus.ACTIVE,
        True,
    )
    # The customers' clock is the fake's: the period ends a month after the fake's start.
    assert details.current_period_end is not None
    assert details.current_period_end > START + timedelta(days=27)


def test_advancing_the_fakes_clock_moves_the_webhook_verifiers_time() -> None:
    stripe = fake()
    billing = Billing.build(config(), stripe, InMemoryRepository(), clock=stripe.now)
    subscribe(billing, stripe)
    for delivery in stripe.drain_events():
        billing.webhooks.handle(delivery.payload, delivery.signature)
    first_period_end = billing.customers.for_user("user-1").current_period_end

    stripe.advance(timedelta(days=40))  # a renewal, signed 40 days after START
    renewals = stripe.drain_events()

    assert renewals
    assert [billing.webhooks.handle_http(d.payload, d.signature).status for d in renewals] == [
        200
    ] * len(renewals)
    renewed = billing.customers.for_user("user-1")
    assert first_period_end is not None and renewed.current_period_end is not None
    assert renewed.current_period_end > first_period_end
    assert renewed.has_access
    # A processor on another clock (the real time, years away from START) refuses them.
    on_real_time = Billing.build(config(), stripe, InMemoryRepository())
    refused = on_real_time.webhooks.handle_http(renewals[0].payload, renewals[0].signature)
    assert refused.status == 400


def test_the_services_share_one_catalog() -> None:
    stripe = fake()
    billing = Billing.build(config(), stripe, InMemoryRepository(), clock=stripe.now)
    billing.catalog.plans()
    subscribe(billing, stripe)  # checkout resolves the price through the same cache
    billing.customers.for_user("user-1")
    assert stripe.calls["list_prices"] == 1


def test_the_default_clock_is_the_system_clock() -> None:
    stripe = FakeStripeGateway(webhook_secret=SECRET)
    billing = Billing.build(config(), stripe, InMemoryRepository())
    # Signed at the real time: only a processor on the system clock accepts it.
    now = datetime.now(timezone.utc)
    event = build_event("customer.created", {"id": "cus_1", "object": "customer"}, created=now)
    delivery = signed_delivery(event, SECRET, timestamp=int(now.timestamp()))
    assert billing.webhooks.handle_http(delivery.payload, delivery.signature).status == 200


def test_close_closes_the_repository() -> None:
    repository = ClosingRepository()
    billing = Billing.build(config(), fake(), repository)
    billing.close()
    assert repository.closed == 1


def test_build_without_a_webhook_secret_is_a_configuration_error() -> None:
    cfg = config().model_copy(update={"webhook_secrets": ()})
    with pytest.raises(ConfigurationError):
        Billing.build(cfg, fake(), InMemoryRepository())


def test_repr_names_the_adapters_and_hides_secrets() -> None:
    billing = Billing.build(config(), fake(), InMemoryRepository())
    text = repr(billing)
    assert "FakeStripeGateway" in text and "InMemoryRepository" in text
    assert SECRET not in text


def test_billing_is_frozen() -> None:
    billing = Billing.build(config(), fake(), InMemoryRepository())
    with pytest.raises(AttributeError):
        billing.catalog = billing.catalog  # type: ignore[misc]


def test_equality_and_hash_are_by_identity() -> None:
    cfg, stripe, repository = config(), fake(), InMemoryRepository()
    billing = Billing.build(cfg, stripe, repository)
    again = Billing.build(cfg, stripe, repository)
    assert billing == billing and billing != again
    assert {billing: 1, again: 2}[billing] == 1


def naive_clock() -> datetime:
    return datetime(2031, 3, 1, 12, 0)  # no tzinfo: a configuration mistake


def test_build_refuses_a_naive_clock_at_once() -> None:
    stripe = fake()
    with pytest.raises(ConfigurationError, match="timezone-aware"):
        Billing.build(config(), stripe, InMemoryRepository(), clock=naive_clock)
    assert stripe.total_calls == 0


def test_build_refuses_a_clock_that_does_not_return_a_datetime() -> None:
    with pytest.raises(ConfigurationError, match="datetime"):
        Billing.build(config(), fake(), InMemoryRepository(), clock=lambda: 1_900_000_000)  # type: ignore[arg-type,return-value]


def test_build_accepts_a_non_utc_aware_clock() -> None:
    plus_two = timezone(timedelta(hours=2))
    billing = Billing.build(
        config(), fake(), InMemoryRepository(), clock=lambda: START.astimezone(plus_two)
    )
    assert billing.customers.for_user("nobody").plan is not None


def test_webhook_processor_refuses_a_naive_clock_when_built() -> None:
    from billingkit import PlanCatalog, WebhookProcessor

    stripe = fake()
    catalog = PlanCatalog(config(), gateway=stripe, clock=stripe.now)
    with pytest.raises(ConfigurationError, match="timezone-aware"):
        WebhookProcessor(
            config(),
            gateway=stripe,
            repository=InMemoryRepository(),
            catalog=catalog,
            clock=naive_clock,
        )


def test_build_keeps_the_services_clock_for_tools() -> None:
    stripe = fake()
    billing = Billing.build(config(), stripe, InMemoryRepository(), clock=stripe.now)
    assert billing.clock == stripe.now  # the same bound method of the same fake
    assert billing.clock() == stripe.now()
