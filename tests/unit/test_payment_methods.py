"""Payment methods, the card-update Checkout, the expiring-card banner, the next invoice and
Stripe Entitlements, end to end over the fake Stripe and the in-memory repository."""

from __future__ import annotations

import json
import random
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from billingkit import Billing, BillingConfig, InMemoryRepository, PlanDefinition
from billingkit.domain.payment_methods import PaymentMethodSummary
from billingkit.errors import (
    ConfigurationError,
    GatewayServerError,
    InvalidInputError,
    NoCustomerError,
)
from billingkit.services.webhooks import WebhookOutcome
from billingkit.services.webhooks.handlers.payment_methods import (
    default_payment_method_idempotency_key,
)
from billingkit.testing import FakeStripeGateway, build_event, signed_delivery

SECRET = "whsec_payment_methods"
START = datetime(2031, 3, 1, 12, 0, tzinfo=timezone.utc)
FIXTURES = Path(__file__).parents[1] / "fixtures"


def make_config(**fields: Any) -> BillingConfig:
    return BillingConfig(
        plans=[
            PlanDefinition(key="free", name="Free", features=("basic",)),
            PlanDefinition(
                key="pro",
                name="Pro",
                prices={"month": "pro_monthly"},
                features=("basic", "reports"),
                limits={"projects": 10},
            ),
        ],
        free_plan="free",
        webhook_secrets=[SECRET],
        **fields,
    )


class World:
    """A Billing over a fake Stripe; ``deliver`` hands every pending event to the webhooks."""

    def __init__(self, **config: Any) -> None:
        self.stripe = FakeStripeGateway(webhook_secret=SECRET, start=START)
        self.stripe.add_price(
            amount=1900, interval="month", lookup_key="pro_monthly", product_name="Pro"
        )
        self.repository = InMemoryRepository()
        self.billing = Billing.build(
            make_config(**config), self.stripe, self.repository, clock=self.stripe.now
        )

    def deliver(self) -> list[tuple[str, WebhookOutcome]]:
        return [
            (result.event_type, result.outcome)
            for delivery in self.stripe.drain_events()
            for result in [self.billing.webhooks.handle(delivery.payload, delivery.signature)]
        ]

    def subscribe(self, user_id: str = "user-1") -> str:
        started = self.billing.checkout.start_checkout(
            user_id=user_id,
            email="ada@example.com",
            plan_key="pro",
            interval="month",
            success_url="https://app.example/ok",
            cancel_url="https://app.example/pricing",
        )
        self.stripe.complete_checkout(started.session_id)
        self.deliver()
        return self.customer(user_id)

    def customer(self, user_id: str = "user-1") -> str:
        with self.repository.unit_of_work() as uow:
            link = uow.customer_for_user(user_id)
        assert link is not None
        return link.customer_id

    def send(self, type: str, obj: dict[str, Any], created: int) -> WebhookOutcome:
        event = build_event(type, obj, created=created)
        delivery = signed_delivery(event, SECRET, timestamp=int(self.stripe.now().timestamp()))
        return self.billing.webhooks.handle(delivery.payload, delivery.signature).outcome


# ------------------------------------------------------------------ card-update Checkout


def test_card_update_checkout_makes_the_new_card_the_default_everywhere() -> None:
    world = World()
    customer = world.subscribe()
    (subscription,) = world.stripe.subscription_ids(customer)
    world.stripe.reset_calls()

    start = world.billing.checkout.start_payment_method_update(
        "user-1", "https://app.example/card/ok", "https://app.example/account"
    )
    assert world.stripe.calls["create_setup_checkout_session"] == 1
    assert world.stripe.total_calls == 1
    assert start.url and start.session_id.startswith("cs_test")
    session = world.stripe.stripe_object(start.session_id)
    assert session["mode"] == "setup"
    assert session["metadata"] == {
        "billingkit_purpose": "payment_method_update",
        "user_id": "user-1",
    }

    method_id = world.stripe.complete_setup_checkout(
        start.session_id, brand="mastercard", last4="4444", exp_month=6, exp_year=2033
    )
    outcomes = world.deliver()
    assert [t for t, _ in outcomes] == [
        "payment_method.attached",
        "setup_intent.created",
        "setup_intent.succeeded",
        "checkout.session.completed",
    ]
    assert dict(outcomes)["setup_intent.succeeded"] is WebhookOutcome.PROCESSED
    assert dict(outcomes)["setup_intent.created"] is WebhookOutcome.IGNORED
    # the one place a webhook calls Stripe: customer and its live subscription, once
    assert world.stripe.calls["set_default_payment_method"] == 1
    assert (
        world.stripe.stripe_object(customer)["invoice_settings"]["default_payment_method"]
        == method_id
    )
    assert world.stripe.stripe_object(subscription)["default_payment_method"] == method_id
    # ... and what Stripe then emits is applied too
    assert [t for t, _ in world.deliver()] == [
        "customer.updated",
        "customer.subscription.updated",
    ]
    world.stripe.reset_calls()
    details = world.billing.customers.for_user("user-1")
    assert details.payment_method is not None
    assert (details.payment_method.id, details.payment_method.card_brand) == (
        method_id,
        "mastercard",
    )
    assert (details.payment_method.last4, details.payment_method.exp_year) == ("4444", 2033)
    assert world.stripe.total_calls == 0  # read paths make no Stripe call


def test_a_redelivered_setup_intent_repeats_the_same_idempotent_request() -> None:
    world = World()
    customer = world.subscribe()
    start = world.billing.checkout.start_payment_method_update(
        "user-1", "https://app.example/ok", "https://app.example/no"
    )
    world.stripe.complete_setup_checkout(start.session_id)
    deliveries = world.stripe.drain_events()
    succeeded = next(d for d in deliveries if b'"setup_intent.succeeded"' in d.payload)
    # the first attempt fails at Stripe: the event fails (500) and nothing is stored
    world.stripe.fail_next("set_default_payment_method", GatewayServerError("down", retryable=True))
    with pytest.raises(GatewayServerError):
        world.billing.webhooks.handle(succeeded.payload, succeeded.signature)
    with world.repository.unit_of_work() as uow:
        assert uow.default_payment_method(customer) is None
    # Stripe retries: same event id, same key
    for _ in range(2):
        world.billing.webhooks.handle(succeeded.payload, succeeded.signature)
    assert world.stripe.calls["set_default_payment_method"] == 2  # the duplicate makes none
    event_id = json.loads(succeeded.payload)["id"]
    assert default_payment_method_idempotency_key(event_id).startswith("billingkit-default-pm-")
    assert default_payment_method_idempotency_key(event_id) != (
        default_payment_method_idempotency_key(event_id + "x")
    )
    with world.repository.unit_of_work() as uow:
        default = uow.default_payment_method(customer)
    assert default is not None and default.payment_method_id is not None


def test_start_payment_method_update_needs_a_live_customer_and_good_urls() -> None:
    world = World()
    with pytest.raises(NoCustomerError):
        world.billing.checkout.start_payment_method_update(
            "nobody", "https://app.example/ok", "https://app.example/no"
        )
    with pytest.raises(InvalidInputError):
        world.billing.checkout.start_payment_method_update("user-1", "/relative", "https://a.b/")
    customer = world.subscribe()
    world.stripe.delete_customer(customer)
    world.deliver()
    with pytest.raises(NoCustomerError):
        world.billing.checkout.start_payment_method_update(
            "user-1", "https://app.example/ok", "https://app.example/no"
        )
    assert world.stripe.calls["create_setup_checkout_session"] == 0


def test_a_double_submit_gets_the_same_setup_session() -> None:
    world = World()
    world.subscribe()
    args = ("user-1", "https://app.example/ok", "https://app.example/no")
    first = world.billing.checkout.start_payment_method_update(*args)
    second = world.billing.checkout.start_payment_method_update(*args)
    assert first.session_id == second.session_id
    retrieved = world.stripe.retrieve_checkout_session(first.session_id)
    assert retrieved.mode == "setup" and retrieved.payment_status == "no_payment_required"


def test_a_setup_intent_billingkit_did_not_start_changes_no_default() -> None:
    world = World()
    customer = world.subscribe()
    method = _card(customer, "pm_other")
    intent = {
        "id": "seti_1",
        "object": "setup_intent",
        "customer": customer,
        "payment_method": method,
        "metadata": {},
        "status": "succeeded",
    }
    world.stripe.reset_calls()
    assert world.send("setup_intent.succeeded", intent, 2_000_000_000) is WebhookOutcome.PROCESSED
    assert world.stripe.total_calls == 0
    with world.repository.unit_of_work() as uow:
        stored = uow.get_payment_method("pm_other")  # the expanded method is stored
        assert uow.default_payment_method(customer) is None
    assert stored is not None and stored.watermark == 2_000_000_000


# ------------------------------------------------------------------ payment-method events


def _card(customer: str | None, ident: str = "pm_1", **card: Any) -> dict[str, Any]:
    details = {"brand": "visa", "last4": "4242", "exp_month": 4, "exp_year": 2031, "wallet": None}
    details.update(card)
    return {
        "id": ident,
        "object": "payment_method",
        "type": "card",
        "card": details,
        "created": 1_900_000_000,
        "customer": customer,
    }


def test_events_in_any_order_end_in_the_newest_state() -> None:
    base = 2_000_000_000
    history = [
        ("payment_method.attached", _card("cus_1"), base),
        ("payment_method.updated", _card("cus_1", exp_year=2032), base + 10),
        ("payment_method.automatically_updated", _card("cus_1", exp_year=2034), base + 20),
        ("payment_method.detached", _card(None, exp_year=2034), base + 30),
    ]
    rng = random.Random(13)
    for _ in range(12):
        world = World()
        deliveries = [*history, *rng.sample(history, 2)]  # with duplicates
        rng.shuffle(deliveries)
        for type, obj, created in deliveries:
            world.send(type, obj, created)
        with world.repository.unit_of_work() as uow:
            stored = uow.get_payment_method("pm_1")
            assert uow.payment_methods_for_customer("cus_1") == []
        assert stored is not None
        assert (stored.detached, stored.exp_year) == (True, 2034)
        assert stored.watermark == base + 30


def test_fixture_payment_methods_of_every_shape_are_read() -> None:
    world = World()
    outcomes = []
    for name, created in (("attached", 1_628_646_543), ("updated", 1_628_646_600)):
        raw = json.loads((FIXTURES / f"stripe/pay/payment_method.{name}.json").read_text())
        outcomes.append(world.send(f"payment_method.{name}", raw["object"], created))
    assert outcomes == [WebhookOutcome.PROCESSED, WebhookOutcome.PROCESSED]
    with world.repository.unit_of_work() as uow:
        methods = uow.payment_methods_for_customer("cus_1234")
    assert {(m.id, m.last4, m.exp_year) for m in methods} == {
        ("card_1JN6Z1KXBGcbgpbZ2AZJOYEZ", "4242", 2024),
        ("pm_1000", "3184", 2035),
    }


def test_customer_updated_sets_and_clears_the_default() -> None:
    world = World()
    customer = world.subscribe()
    for ident, created in (("pm_a", 1_900_000_000), ("pm_b", 1_900_000_100)):
        method = _card(customer, ident)
        method["created"] = created
        world.send("payment_method.attached", method, created)
    details = world.billing.customers.for_user("user-1")
    assert details.payment_method is not None and details.payment_method.id == "pm_b"  # newest

    cust = world.stripe.stripe_object(customer)
    cust["invoice_settings"]["default_payment_method"] = "pm_a"
    assert world.send("customer.updated", cust, 2_000_000_000) is WebhookOutcome.PROCESSED
    details = world.billing.customers.for_user("user-1")
    assert details.payment_method is not None and details.payment_method.id == "pm_a"
    older = json.loads(json.dumps(cust))
    older["invoice_settings"]["default_payment_method"] = "pm_b"
    assert world.send("customer.updated", older, 1_999_999_999) is WebhookOutcome.STALE
    details = world.billing.customers.for_user("user-1")
    assert details.payment_method is not None and details.payment_method.id == "pm_a"


def test_customer_updated_of_an_unlinked_customer_still_records_its_default() -> None:
    world = World()
    customer = {
        "id": "cus_later",
        "object": "customer",
        "invoice_settings": {"default_payment_method": "pm_9"},
    }
    assert world.send("customer.updated", customer, 2_000_000_000) is WebhookOutcome.PROCESSED
    assert world.send("customer.updated", customer, 1_000_000_000) is WebhookOutcome.STALE
    del customer["invoice_settings"]
    assert world.send("customer.updated", customer, 2_000_000_001) is WebhookOutcome.IGNORED


# ------------------------------------------------------------------ expiring-card banner


def test_card_expiring_answers_the_banner_without_calling_stripe() -> None:
    world = World()
    customer = world.subscribe()
    # the fake's clock is on 1 March 2031: a card valid through March stops on 1 April
    world.stripe.attach_payment_method(customer, last4="1111", exp_month=3, exp_year=2031)
    world.deliver()
    world.stripe.reset_calls()
    assert world.billing.customers.card_expiring("user-1") is None
    expiring = world.billing.customers.card_expiring("user-1", within_days=31)
    assert expiring is not None and expiring.last4 == "1111"
    world.stripe.advance(timedelta(days=32))  # expired: still the banner's answer
    assert world.billing.customers.card_expiring("user-1", within_days=0) is not None
    world.deliver()
    world.stripe.reset_calls()
    assert world.stripe.total_calls == 0
    (method,) = [m.id for m in _methods(world, customer)]
    world.stripe.update_card_expiry(method, 3, 2034)  # the card updater renewed it
    world.deliver()
    assert world.billing.customers.card_expiring("user-1") is None
    assert world.billing.customers.card_expiring("nobody") is None
    with pytest.raises(InvalidInputError):
        world.billing.customers.card_expiring("user-1", within_days=-1)
    with pytest.raises(InvalidInputError):
        world.billing.customers.card_expiring(" ")
    assert world.stripe.total_calls == 0


def test_a_detached_default_is_no_longer_shown() -> None:
    world = World()
    customer = world.subscribe()
    first = world.stripe.attach_payment_method(customer, last4="1111")
    world.stripe.advance(timedelta(seconds=5))
    second = world.stripe.attach_payment_method(customer, last4="2222")
    world.stripe.set_default_payment_method(
        customer_id=customer, payment_method_id=first, idempotency_key="k1"
    )
    world.deliver()
    shown = world.billing.customers.for_user("user-1").payment_method
    assert shown is not None and shown.id == first
    world.stripe.advance(timedelta(seconds=5))
    world.stripe.detach_payment_method(first)
    assert [t for t, _ in world.deliver()] == ["payment_method.detached", "customer.updated"]
    shown = world.billing.customers.for_user("user-1").payment_method
    assert shown is not None and shown.id == second


def test_card_expiry_arithmetic() -> None:
    def card(month: int | None, year: int | None) -> PaymentMethodSummary:
        return PaymentMethodSummary(id="pm", type="card", exp_month=month, exp_year=year)

    now = datetime(2031, 11, 20, tzinfo=timezone.utc)
    assert card(12, 2031).expires_at == datetime(2032, 1, 1, tzinfo=timezone.utc)
    assert card(10, 2031).expires_within(now, 0)  # already expired
    assert card(11, 2031).expires_within(now, 11) and not card(11, 2031).expires_within(now, 10)
    assert not card(12, 2031).expires_within(now, 30)
    assert card(12, 2031).expires_within(now, 42)
    assert card(None, None).expires_at is None and not card(None, None).expires_within(now, 99)
    assert card(12, 9999).expires_at is not None


# ------------------------------------------------------------------ upcoming invoice


def test_next_invoice_is_one_preview_call_then_cached() -> None:
    world = World(next_invoice_cache_seconds=120)
    world.subscribe()
    world.stripe.reset_calls()
    upcoming = world.billing.customers.next_invoice("user-1")
    assert upcoming is not None
    assert upcoming.amount_due.amount == 1900 and upcoming.amount_due.currency == "usd"
    assert upcoming.at is not None and upcoming.at > START
    assert world.stripe.calls["preview_invoice"] == 1
    assert world.billing.customers.next_invoice("user-1") == upcoming
    assert world.stripe.calls["preview_invoice"] == 1  # from the cache
    world.stripe.advance(timedelta(seconds=121))
    world.billing.customers.next_invoice("user-1")
    assert world.stripe.calls["preview_invoice"] == 2


def test_the_next_invoice_cache_forgets_expired_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    from billingkit.services import customers

    monkeypatch.setattr(customers, "_NEXT_INVOICE_SWEEP", 3)
    world = World(next_invoice_cache_seconds=10)
    for user in ("a", "b", "c"):
        assert world.billing.customers.next_invoice(user) is None
    world.stripe.advance(timedelta(seconds=11))
    world.billing.customers.next_invoice("d")
    assert set(world.billing.customers._next_invoices) == {"d"}


def test_next_invoice_without_a_billed_subscription_makes_no_call() -> None:
    world = World(next_invoice_cache_seconds=0)
    assert world.billing.customers.next_invoice("user-1") is None
    assert world.stripe.total_calls == 0
    world.subscribe()
    (subscription,) = world.stripe.subscription_ids()
    world.stripe.update_subscription(subscription, cancel_at_period_end=True)
    world.deliver()
    world.stripe.reset_calls()
    assert world.billing.customers.next_invoice("user-1") is None
    assert world.stripe.total_calls == 0


def test_next_invoice_needs_a_gateway() -> None:
    from billingkit import CustomerDetails

    world = World()
    details = CustomerDetails(
        world.billing.config,
        repository=world.repository,
        catalog=world.billing.catalog,
        clock=world.stripe.now,
    )
    with pytest.raises(ConfigurationError):
        details.next_invoice("user-1")
    with pytest.raises(InvalidInputError):
        world.billing.customers.next_invoice("")


# ------------------------------------------------------------------ entitlements


def test_features_from_stripe_entitlements_limits_from_the_plan() -> None:
    world = World(features_source="stripe_entitlements")
    customer = world.subscribe()
    details = world.billing.customers.for_user("user-1")
    assert details.entitlements == ()  # none known yet
    assert not details.has_feature("reports")
    world.stripe.set_entitlements(customer, ["reports", "sso", "reports"])
    assert world.deliver() == [
        ("entitlements.active_entitlement_summary.updated", WebhookOutcome.PROCESSED)
    ]
    world.stripe.reset_calls()
    details = world.billing.customers.for_user("user-1")
    assert details.entitlements == ("reports", "sso")
    assert details.has_feature("sso") and details.has_feature("reports")
    assert not details.has_feature("basic")  # the plan's features are not read
    assert details.limit("projects") == 10  # limits still from the plan
    assert world.stripe.total_calls == 0
    # the free plan (no subscription) keeps its configured features
    free = world.billing.customers.for_user("user-2")
    assert free.entitlements is None and free.has_feature("basic")


def test_plans_remain_the_default_features_source() -> None:
    world = World()
    customer = world.subscribe()
    world.stripe.set_entitlements(customer, ["sso"])
    world.deliver()
    details = world.billing.customers.for_user("user-1")
    assert details.entitlements is None
    assert details.has_feature("reports") and not details.has_feature("sso")


def test_an_older_entitlement_summary_is_stale() -> None:
    world = World(features_source="stripe_entitlements")
    customer = world.subscribe()
    derived = FIXTURES / "derived/webhooks/entitlements.active_entitlement_summary.updated.json"
    summary = json.loads(derived.read_text())["object"]
    summary["customer"] = customer
    assert (
        world.send("entitlements.active_entitlement_summary.updated", summary, 2_000_000_000)
        is WebhookOutcome.PROCESSED
    )
    empty = {**summary, "entitlements": {"object": "list", "data": [], "has_more": False}}
    assert (
        world.send("entitlements.active_entitlement_summary.updated", empty, 1_999_999_999)
        is WebhookOutcome.STALE
    )
    assert world.billing.customers.for_user("user-1").has_feature("premium-support")


def test_features_source_is_validated() -> None:
    with pytest.raises(ConfigurationError):
        make_config(features_source="dashboard")


def _methods(world: World, customer: str) -> list[PaymentMethodSummary]:
    with world.repository.unit_of_work() as uow:
        return uow.payment_methods_for_customer(customer)


# ------------------------------------------------------------------ readers


@pytest.mark.parametrize(
    "path",
    sorted((FIXTURES / "stripe/openapi").glob("*/customer.json")),
    ids=lambda p: p.parent.name,
)
def test_the_default_is_read_from_customers_of_every_era(path: Path) -> None:
    from billingkit.stripe_objects import customer_default_payment_method

    customer = json.loads(path.read_text())
    told, default = customer_default_payment_method(customer)
    assert told == ("invoice_settings" in customer)
    expected = (customer.get("invoice_settings") or {}).get("default_payment_method")
    assert default == (
        expected if isinstance(expected, str) or expected is None else expected["id"]
    )


def test_readers_of_the_derived_setup_intent_and_odd_methods() -> None:
    from billingkit.errors import WebhookPayloadError
    from billingkit.stripe_objects import (
        entitlement_summary_from_stripe,
        payment_method_from_stripe,
        setup_intent_from_stripe,
    )

    raw = json.loads((FIXTURES / "derived/webhooks/setup_intent.succeeded.json").read_text())
    intent = setup_intent_from_stripe(raw["object"])
    assert (intent.customer_id, intent.payment_method_id) == (
        "cus_1234",
        "card_1JN6Z1KXBGcbgpbZ2AZJOYEZ",
    )
    assert intent.payment_method is not None and intent.payment_method.last4 == "4242"
    assert intent.metadata["billingkit_purpose"] == "payment_method_update"

    sepa = payment_method_from_stripe(
        {"id": "pm_s", "type": "sepa_debit", "sepa_debit": {"last4": "3000"}, "customer": "c"}
    )
    assert (sepa.type, sepa.last4, sepa.card_brand, sepa.exp_month) == (
        "sepa_debit",
        "3000",
        None,
        None,
    )
    legacy = payment_method_from_stripe(
        {"id": "card_1", "object": "card", "brand": "Visa", "last4": "1", "exp_month": 1,
         "exp_year": 2030, "customer": "cus_1"}
    )  # fmt: skip
    assert (legacy.type, legacy.card_brand, legacy.wallet) == ("card", "Visa", None)
    wallet = payment_method_from_stripe(
        _card("cus_1", wallet={"type": "apple_pay", "apple_pay": {}})
    )
    assert wallet.wallet == "apple_pay"
    for bad in (
        {"id": "pm_x", "customer": "c"},  # no type
        _card("c", exp_month=13),
        _card("c", wallet="apple_pay"),
        _card("c", brand="x" * 65),
    ):
        with pytest.raises(WebhookPayloadError):
            payment_method_from_stripe(bad)
    with pytest.raises(WebhookPayloadError):
        entitlement_summary_from_stripe({"object": "entitlements.active_entitlement_summary"})


# ------------------------------------------------------------------ the fake's refusals


def test_the_fake_refuses_what_stripe_refuses() -> None:
    from billingkit.errors import GatewayInvalidRequestError, GatewayNotFoundError

    world = World()
    customer = world.subscribe()
    other = world.subscribe("user-2")
    (other_sub,) = world.stripe.subscription_ids(other)
    stripe = world.stripe
    with pytest.raises(GatewayNotFoundError):
        stripe.complete_setup_checkout("cs_test_missing")
    with pytest.raises(GatewayNotFoundError):
        stripe.expire_setup_checkout("cs_test_missing")
    start = world.billing.checkout.start_payment_method_update(
        "user-1", "https://app.example/ok", "https://app.example/no"
    )
    stripe.expire_setup_checkout(start.session_id)
    assert [t for t, _ in world.deliver()] == ["checkout.session.expired"]
    for refused in (
        lambda: stripe.complete_setup_checkout(start.session_id),
        lambda: stripe.expire_setup_checkout(start.session_id),
        lambda: stripe.attach_payment_method(customer, exp_month=13),
        lambda: stripe.attach_payment_method(customer, last4="42"),
    ):
        with pytest.raises(GatewayInvalidRequestError):
            refused()
    with pytest.raises(GatewayNotFoundError):
        stripe.detach_payment_method("pm_missing")
    method = stripe.attach_payment_method(customer, wallet="google_pay")
    assert stripe.stripe_object(method)["card"]["wallet"]["type"] == "google_pay"
    with pytest.raises(GatewayInvalidRequestError):  # another customer's subscription
        stripe.set_default_payment_method(
            customer_id=customer,
            payment_method_id=method,
            subscription_ids=[other_sub],
            idempotency_key="k-foreign-sub",
        )
    with pytest.raises(GatewayInvalidRequestError):  # not the customer's method
        stripe.set_default_payment_method(
            customer_id=other, payment_method_id=method, idempotency_key="k-foreign-pm"
        )
    stripe.detach_payment_method(method)  # not the default: no customer.updated
    assert [t for t, _ in world.deliver()][-1] == "payment_method.detached"
    for refused in (
        lambda: stripe.detach_payment_method(method),
        lambda: stripe.update_card_expiry(method, 1, 2040),
    ):
        with pytest.raises(GatewayInvalidRequestError):
            refused()


def test_setting_the_same_default_twice_emits_nothing_new() -> None:
    world = World()
    customer = world.subscribe()
    (subscription,) = world.stripe.subscription_ids(customer)
    method = world.stripe.attach_payment_method(customer)
    for key in ("k1", "k2"):
        world.stripe.set_default_payment_method(
            customer_id=customer,
            payment_method_id=method,
            subscription_ids=[subscription],
            idempotency_key=key,
        )
    types = [t for t, _ in world.deliver()]
    assert types == ["payment_method.attached", "customer.updated", "customer.subscription.updated"]
    intent: dict[str, Any] = {"id": "seti_x", "object": "setup_intent", "customer": customer}
    assert world.stripe.stripe_object(customer)["invoice_settings"]["default_payment_method"] == (
        method
    )
    world.stripe.reset_calls()
    # billingkit's purpose without a payment method: nothing to make the default
    intent["metadata"] = {"billingkit_purpose": "payment_method_update"}
    assert world.send("setup_intent.succeeded", intent, 2_000_000_000) is WebhookOutcome.PROCESSED
    assert world.stripe.total_calls == 0


def test_a_setup_intent_of_an_unlinked_customer_updates_the_customer_only() -> None:
    world = World()
    customer = world.stripe.create_customer(
        user_id="outside", email=None, idempotency_key="k-outside"
    ).id
    method = world.stripe.attach_payment_method(customer)
    world.stripe.drain_events()
    expanded = world.stripe.stripe_object(method)
    expanded["customer"] = None  # an expanded method without its customer
    intent = {
        "id": "seti_y",
        "object": "setup_intent",
        "customer": customer,
        "payment_method": expanded,
        "metadata": {"billingkit_purpose": "payment_method_update"},
    }
    world.stripe.reset_calls()
    assert world.send("setup_intent.succeeded", intent, 2_000_000_000) is WebhookOutcome.PROCESSED
    assert world.stripe.calls["set_default_payment_method"] == 1
    with world.repository.unit_of_work() as uow:
        stored = uow.get_payment_method(method)
    assert stored is not None and stored.customer_id == customer  # taken from the intent


def test_a_method_moving_to_another_customer_is_listed_under_the_new_one() -> None:
    world = World()
    world.send("payment_method.attached", _card("cus_a"), 2_000_000_000)
    world.send("payment_method.updated", _card("cus_b"), 2_000_000_001)
    assert _methods(world, "cus_a") == []
    assert [m.id for m in _methods(world, "cus_b")] == ["pm_1"]


def test_entitlements_of_a_subscription_whose_customer_is_not_linked_are_none() -> None:
    from billingkit.domain import Subscription, SubscriptionStatus

    world = World(features_source="stripe_entitlements")
    with world.repository.unit_of_work() as uow:
        uow.save_subscription(
            Subscription(
                id="sub_x",
                customer_id="cus_x",
                user_id="user-x",
                status=SubscriptionStatus.ACTIVE,
                price_id="price_unknown",
                created=START,
                watermark=1,
            )
        )
    details = world.billing.customers.for_user("user-x")
    assert details.entitlements == () and not details.has_feature("reports")


def test_a_reported_card_update_lets_the_next_call_open_a_new_session() -> None:
    world = World()
    world.subscribe()
    args = ("user-1", "https://app.example/ok", "https://app.example/no")
    first = world.billing.checkout.start_payment_method_update(*args)
    world.stripe.complete_setup_checkout(first.session_id, last4="4444")
    world.deliver()  # the new default is stored: the completed session is never handed out
    second = world.billing.checkout.start_payment_method_update(*args)
    assert second.session_id != first.session_id
    assert world.stripe.stripe_object(second.session_id)["status"] == "open"
