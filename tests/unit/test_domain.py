from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from billingkit.domain import (
    Interval,
    Money,
    Plan,
    PlanDefinition,
    Price,
    PriceRef,
    Subscription,
    SubscriptionStatus,
    from_timestamp,
    minor_unit_exponent,
    to_timestamp,
)

# ---------------------------------------------------------------------------------- Money


@pytest.mark.parametrize(
    ("amount", "currency", "text"),
    [
        (2000, "usd", "20.00 USD"),
        (5, "eur", "0.05 EUR"),
        (500, "jpy", "500 JPY"),
        (123456, "krw", "123456 KRW"),
        (1234, "kwd", "1.234 KWD"),
        (5, "bhd", "0.005 BHD"),
        (-150, "eur", "-1.50 EUR"),
        (-500, "jpy", "-500 JPY"),
        (0, "usd", "0.00 USD"),
    ],
)
def test_money_formats_in_the_currency_minor_unit(amount: int, currency: str, text: str) -> None:
    money = Money(amount=amount, currency=currency)
    assert money.format() == text
    assert str(money) == text


def test_money_refuses_floats_and_numeric_strings() -> None:
    with pytest.raises(ValidationError):
        Money(amount=19.99, currency="usd")
    with pytest.raises(ValidationError):
        Money(amount=20.0, currency="usd")
    with pytest.raises(ValidationError):
        Money(amount="2000", currency="usd")


def test_money_normalises_currency_and_refuses_bad_codes() -> None:
    assert Money(amount=1, currency=" USD ").currency == "usd"
    for bad in ("us", "usdollar", "12x", ""):
        with pytest.raises(ValidationError):
            Money(amount=1, currency=bad)


def test_money_arithmetic_is_exact_and_currency_checked() -> None:
    total = Money(amount=1999, currency="usd") + Money(amount=1, currency="usd")
    assert total == Money(amount=2000, currency="usd")
    assert Money(amount=333, currency="jpy") * 3 == Money(amount=999, currency="jpy")
    with pytest.raises(ValueError, match="jpy"):
        Money(amount=1, currency="usd") + Money(amount=1, currency="jpy")
    with pytest.raises(TypeError):
        Money(amount=1, currency="usd") * 1.5  # type: ignore[operator]
    with pytest.raises(TypeError):
        Money(amount=1, currency="usd") + 1


def test_money_is_frozen_and_hashable() -> None:
    money = Money(amount=1, currency="usd")
    with pytest.raises(ValidationError):
        money.amount = 2  # type: ignore[misc]
    assert {money, Money(amount=1, currency="USD")} == {money}


def test_minor_unit_exponent() -> None:
    assert [minor_unit_exponent(c) for c in ("JPY", "usd", "kwd")] == [0, 2, 3]


# ----------------------------------------------------------------------------- plans/prices


@pytest.mark.parametrize(
    ("text", "price_id", "lookup_key"),
    [
        ("price_1Abc", "price_1Abc", None),
        ("plan_legacy", "plan_legacy", None),
        ("pro_monthly", None, "pro_monthly"),
        ("prices_are_keys_too", None, "prices_are_keys_too"),
    ],
)
def test_price_ref_parse(text: str, price_id: str | None, lookup_key: str | None) -> None:
    ref = PriceRef.parse(text)
    assert (ref.price_id, ref.lookup_key) == (price_id, lookup_key)


def test_price_ref_needs_exactly_one_of_id_or_key() -> None:
    with pytest.raises(ValidationError):
        PriceRef()
    with pytest.raises(ValidationError):
        PriceRef(price_id="price_1", lookup_key="pro")


def test_plan_definition_parses_string_refs_and_knows_free() -> None:
    plan = PlanDefinition(
        key="pro",
        name="Pro",
        prices={"month": "price_1", Interval.YEAR: PriceRef(lookup_key="pro_year")},
        features=("exports",),
        limits={"projects": None, "seats": 5},
    )
    assert plan.prices[Interval.MONTH] == PriceRef(price_id="price_1")
    assert plan.prices[Interval.YEAR] == PriceRef(lookup_key="pro_year")
    assert not plan.is_free
    assert PlanDefinition(key="free", name="Free").is_free


@pytest.mark.parametrize("key", ["", "has space", "-leading-dash", "x" * 65, "pro/plan"])
def test_plan_definition_refuses_bad_keys(key: str) -> None:
    with pytest.raises(ValidationError):
        PlanDefinition(key=key, name="X")


def test_plan_definition_refuses_unknown_intervals_and_fields() -> None:
    with pytest.raises(ValidationError):
        PlanDefinition(key="pro", name="Pro", prices={"fortnight": "price_1"})
    with pytest.raises(ValidationError):
        PlanDefinition(key="pro", name="Pro", colour="red")  # type: ignore[call-arg]


def test_price_amount_and_plan_accessors() -> None:
    price = Price(
        id="price_1", product_id="prod_1", currency="JPY", unit_amount=980, interval="month"
    )
    assert price.amount == Money(amount=980, currency="jpy")
    assert price.is_recurring
    tiered = price.model_copy(update={"unit_amount": None, "billing_scheme": "tiered"})
    assert tiered.amount is None
    definition = PlanDefinition(key="pro", name="Pro", features=("a",), limits={"n": 3})
    plan = Plan(definition=definition, prices={Interval.MONTH: price})
    assert (plan.key, plan.name, plan.features, dict(plan.limits)) == (
        "pro",
        "Pro",
        ("a",),
        {"n": 3},
    )
    assert not plan.stale


# ---------------------------------------------------------------------------- subscriptions


def test_subscription_statuses_and_terminality() -> None:
    assert {s.value for s in SubscriptionStatus} == {
        "incomplete", "incomplete_expired", "trialing", "active",
        "past_due", "canceled", "unpaid", "paused",
    }  # fmt: skip
    terminal = {s for s in SubscriptionStatus if s.is_terminal}
    assert terminal == {SubscriptionStatus.CANCELED, SubscriptionStatus.INCOMPLETE_EXPIRED}


def test_subscription_refuses_naive_datetimes_and_normalises_to_utc() -> None:
    with pytest.raises(ValidationError):
        Subscription(id="sub_1", customer_id="cus_1", status="active", created=datetime(2026, 1, 1))
    plus_two = timezone(timedelta(hours=2))
    sub = Subscription(
        id="sub_1",
        customer_id="cus_1",
        status="active",
        created=datetime(2026, 1, 1, 2, tzinfo=plus_two),
    )
    assert sub.created == datetime(2026, 1, 1, tzinfo=timezone.utc)
    assert sub.created.tzinfo == timezone.utc


def test_timestamps_round_trip() -> None:
    assert to_timestamp(from_timestamp(1_767_225_600)) == 1_767_225_600
    assert from_timestamp(0) == datetime(1970, 1, 1, tzinfo=timezone.utc)


def test_enums_print_as_their_stripe_values() -> None:
    from billingkit import EventStatus, Interval, SubscriptionStatus

    assert str(SubscriptionStatus.PAST_DUE) == "past_due"
    assert f"{Interval.MONTH}" == "month"
    assert str(EventStatus.PROCESSED) == "processed"
