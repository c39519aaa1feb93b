"""start_checkout's options: config defaults, per-call arguments, validation, the fake."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from test_checkout import CANCEL, SUCCESS, World, default_request_key, make_world

from billingkit.config import CheckoutDefaults
from billingkit.domain import SubscriptionStatus
from billingkit.errors import (
    ConfigurationError,
    GatewayError,
    GatewayNotFoundError,
    InvalidInputError,
)
from billingkit.ports import CheckoutSessionRequest
from billingkit.services.checkout import checkout_request_key


@pytest.fixture
def world() -> World:
    return make_world()


def _request(world: World, session_id: str) -> CheckoutSessionRequest:
    return world.stripe.checkout_request(session_id)


def test_no_options_send_stripe_defaults_and_keep_the_request_key(world: World) -> None:
    start = world.start()
    request = _request(world, start.session_id)
    assert (request.automatic_tax, request.tax_id_collection) == (False, False)
    assert request.billing_address_collection is None
    assert request.payment_method_collection is None and request.trial_end_behavior is None
    assert (request.coupon, request.promotion_code, request.locale) == (None, None, None)
    record = world.record(start.session_id)
    assert record is not None and record.request_key == default_request_key("u1")


def test_config_defaults_apply_to_every_checkout() -> None:
    world = make_world(
        checkout=CheckoutDefaults(
            automatic_tax=True,
            tax_id_collection=True,
            billing_address_collection="required",
            locale="fr",
        )
    )
    start = world.start()
    request = _request(world, start.session_id)
    assert (request.automatic_tax, request.tax_id_collection) == (True, True)
    assert request.billing_address_collection == "required"
    assert request.locale == "fr"
    session = world.stripe.stripe_object(start.session_id)
    assert session["automatic_tax"]["enabled"] is True
    assert session["tax_id_collection"]["enabled"] is True
    assert session["locale"] == "fr"
    assert world.stripe.calls == {"create_customer": 1, "create_checkout_session": 1}


def test_call_arguments_override_the_config() -> None:
    world = make_world(
        checkout=CheckoutDefaults(
            automatic_tax=True, locale="fr", billing_address_collection="required"
        )
    )
    start = world.start(automatic_tax=False, locale="auto", billing_address_collection="auto")
    request = _request(world, start.session_id)
    assert request.automatic_tax is False
    assert request.locale == "auto"
    assert request.billing_address_collection is None  # auto is Stripe's default


def test_options_are_part_of_the_request_fingerprint(world: World) -> None:
    plain = world.start()
    taxed = world.start(automatic_tax=True)
    again = world.start(automatic_tax=True)
    assert taxed.session_id != plain.session_id
    assert again.session_id == taxed.session_id and again.reused
    record = world.record(taxed.session_id)
    assert record is not None
    assert record.request_key != default_request_key("u1")
    assert record.request_key == checkout_request_key(
        user_id="u1",
        plan_key="pro",
        interval=record.interval,
        price_id="price_pro_monthly",
        quantity=1,
        trial_days=None,
        allow_promotion_codes=False,
        success_url=SUCCESS,
        cancel_url=CANCEL,
        metadata={},
        options={"automatic_tax": True},
    )


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"coupon": "c1", "promotion_code": "promo_1"}, "not both"),
        ({"coupon": "c1", "allow_promotion_codes": True}, "allow_promotion_codes"),
        ({"promotion_code": "SPRING"}, "promo_"),
        ({"coupon": " "}, "coupon"),
        ({"locale": "xx"}, "locale"),
        ({"automatic_tax": "yes"}, "automatic_tax must be a bool"),
        ({"billing_address_collection": "always"}, "billing_address_collection"),
        ({"trial_requires_payment_method": False}, "trial_days"),
        ({"trial_end_without_payment_method": "pause", "trial_days": 7}, "without a card"),
        ({"trial_end_without_payment_method": "delete"}, "cancel' or 'pause"),
        (
            {
                "plan_key": "lifetime",
                "interval": "one_time",
                "trial_requires_payment_method": False,
            },
            "subscription price",
        ),
    ],
)
def test_bad_options_are_refused_before_any_call(
    world: World, arguments: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidInputError, match=message):
        world.start(**arguments)
    assert world.stripe.total_calls == 0


def test_bad_defaults_are_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="locale"):
        CheckoutDefaults(locale="klingon")


def test_the_request_value_refuses_contradictory_options() -> None:
    base: dict[str, Any] = {
        "mode": "subscription",
        "customer_id": "cus_1",
        "price_id": "price_1",
        "success_url": "https://a.example/s",
        "cancel_url": "https://a.example/c",
        "client_reference_id": "u1",
        "idempotency_key": "k",
    }
    for extra in (
        {"coupon": "c", "promotion_code": "promo_1"},
        {"coupon": "c", "allow_promotion_codes": True},
        {"mode": "payment", "payment_method_collection": "if_required"},
        {"trial_end_behavior": "pause"},
    ):
        with pytest.raises(ValueError):
            CheckoutSessionRequest(**{**base, **extra})


# ------------------------------------------------------------------ trial without a card


def _trial_without_card(world: World, behavior: str) -> str:
    start = world.start(
        trial_days=7, trial_requires_payment_method=False, trial_end_without_payment_method=behavior
    )
    request = _request(world, start.session_id)
    assert request.payment_method_collection == "if_required"
    assert request.trial_end_behavior == behavior
    world.stripe.complete_checkout(start.session_id)
    world.deliver_events()
    (sub,) = world.subscriptions("u1")
    assert sub.status is SubscriptionStatus.TRIALING
    return sub.id


@pytest.mark.parametrize(
    ("behavior", "status", "event"),
    [
        ("cancel", SubscriptionStatus.CANCELED, "customer.subscription.deleted"),
        ("pause", SubscriptionStatus.PAUSED, "customer.subscription.paused"),
    ],
)
def test_a_trial_without_a_card_that_ends_without_one_cancels_or_pauses(
    world: World, behavior: str, status: SubscriptionStatus, event: str
) -> None:
    sub_id = _trial_without_card(world, behavior)
    before = len(world.stripe.emitted_events())
    world.stripe.advance(timedelta(days=8))
    types = [e["type"] for e in world.stripe.emitted_events()[before:]]
    assert event in types
    assert "invoice.created" not in types  # nothing billed: there is no card
    world.deliver_events()
    (sub,) = world.subscriptions("u1")
    assert (sub.id, sub.status) == (sub_id, status)


def test_a_card_added_during_the_trial_converts_it(world: World) -> None:
    _trial_without_card(world, "cancel")
    (sub,) = world.subscriptions("u1")
    world.stripe.add_payment_method(sub.customer_id)
    world.stripe.advance(timedelta(days=8))
    world.deliver_events()
    (sub,) = world.subscriptions("u1")
    assert sub.status is SubscriptionStatus.ACTIVE


def test_the_config_default_makes_trials_cardless_only_when_there_is_a_trial() -> None:
    world = make_world(
        checkout=CheckoutDefaults(
            trial_requires_payment_method=False, trial_end_without_payment_method="pause"
        )
    )
    trial = _request(world, world.start(trial_days=7).session_id)
    assert (trial.payment_method_collection, trial.trial_end_behavior) == ("if_required", "pause")
    plain = _request(world, world.start(user_id="u2").session_id)
    assert plain.payment_method_collection is None and plain.trial_end_behavior is None
    once = _request(
        world, world.start(user_id="u3", plan_key="lifetime", interval="one_time").session_id
    )
    assert once.payment_method_collection is None
    forced = world.start(user_id="u4", trial_days=7, trial_requires_payment_method=True)
    assert _request(world, forced.session_id).payment_method_collection is None


# ------------------------------------------------------------------ discounts up front


def test_a_promotion_code_discounts_a_one_time_payment(world: World) -> None:
    promo = world.stripe.add_promotion_code("LAUNCH", percent_off=25)
    world.stripe.reset_calls()
    start = world.start(plan_key="lifetime", interval="one_time", promotion_code=promo.id)
    session = world.stripe.stripe_object(start.session_id)
    assert session["amount_total"] == 9900 - 2475
    assert session["discounts"] == [{"coupon": None, "promotion_code": promo.id}]
    assert world.stripe.calls["create_checkout_session"] == 1


def test_a_coupon_discounts_the_first_subscription_invoice(world: World) -> None:
    promo = world.stripe.add_promotion_code("TENOFF", amount_off=1000, currency="usd")
    start = world.start(coupon=promo.coupon_id)
    world.stripe.complete_checkout(start.session_id)
    (sub_id,) = world.stripe.subscription_ids()
    invoice = world.stripe.latest_invoice(sub_id)
    assert invoice["amount_due"] == 2000 - 1000


def test_an_unknown_coupon_or_inactive_code_is_stripes_error(world: World) -> None:
    with pytest.raises(GatewayNotFoundError):
        world.start(coupon="nope")
    promo = world.stripe.add_promotion_code("OLD", percent_off=10, active=False)
    with pytest.raises(GatewayError, match="not active"):
        world.start(promotion_code=promo.id)
