"""The fake Stripe's catalog: seeding refusals, price updates and promotion codes."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from billingkit.domain import Interval
from billingkit.errors import (
    ConfigurationError,
    GatewayInvalidRequestError,
    GatewayNotFoundError,
)
from billingkit.testing import FakeStripeGateway

SECRET = "whsec_fake_catalog"


@pytest.fixture
def fake() -> FakeStripeGateway:
    return FakeStripeGateway(webhook_secret=SECRET)


def types(fake: FakeStripeGateway) -> list[str]:
    return [delivery.event()["type"] for delivery in fake.drain_events()]


# ------------------------------------------------------------------------ products, prices


def test_a_product_id_cannot_be_seeded_twice(fake: FakeStripeGateway) -> None:
    assert fake.add_product("Team", product_id="prod_team") == "prod_team"
    with pytest.raises(ConfigurationError, match="prod_team"):
        fake.add_product("Other", product_id="prod_team")


def test_a_price_on_an_existing_product_keeps_that_product(fake: FakeStripeGateway) -> None:
    product = fake.add_product("Team")
    price = fake.add_price(amount=900, product=product)
    assert price.product_id == product and price.product_name == "Team"


def test_a_price_on_an_unknown_product_is_refused(fake: FakeStripeGateway) -> None:
    with pytest.raises(ConfigurationError, match="prod_missing"):
        fake.add_price(amount=900, product="prod_missing")


def test_a_price_id_cannot_be_seeded_twice(fake: FakeStripeGateway) -> None:
    fake.add_price(amount=900, price_id="price_team")
    with pytest.raises(ConfigurationError, match="price_team"):
        fake.add_price(amount=1900, price_id="price_team")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"amount": True}, "non-negative"),
        ({"amount": 100, "interval_count": 0}, "interval_count"),
    ],
)
def test_bad_price_seeds_are_refused(
    fake: FakeStripeGateway, kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message):
        fake.add_price(**kwargs)
    assert fake.list_prices(price_ids=[], lookup_keys=[]) == []


def test_a_tiered_price_has_no_unit_amount(fake: FakeStripeGateway) -> None:
    price = fake.add_price(amount=None, tiered=True, lookup_key="tiers")
    [listed] = fake.list_prices(price_ids=[], lookup_keys=["tiers"])
    assert listed == price and price.unit_amount is None


def test_a_one_time_price_has_no_interval(fake: FakeStripeGateway) -> None:
    price = fake.add_price(amount=500, interval=Interval.ONE_TIME, currency="EUR")
    assert price.interval is Interval.ONE_TIME and price.currency == "eur"


def test_list_prices_matches_ids_and_lookup_keys_in_creation_order(
    fake: FakeStripeGateway,
) -> None:
    a = fake.add_price(amount=100, lookup_key="a")
    fake.add_price(amount=200, lookup_key="b")
    c = fake.add_price(amount=300)
    listed = fake.list_prices(price_ids=[c.id], lookup_keys=["a", "missing"])
    assert [price.id for price in listed] == [a.id, c.id]


def test_updating_an_unknown_price_is_stripes_404(fake: FakeStripeGateway) -> None:
    with pytest.raises(GatewayNotFoundError) as caught:
        fake.update_price("price_missing", active=False)
    assert caught.value.http_status == 404 and caught.value.code == "resource_missing"


def test_a_lookup_key_held_by_another_price_is_refused(fake: FakeStripeGateway) -> None:
    fake.add_price(amount=100, lookup_key="taken")
    other = fake.add_price(amount=200)
    fake.drain_events()
    with pytest.raises(GatewayInvalidRequestError) as caught:
        fake.update_price(other.id, lookup_key="taken")
    assert caught.value.code == "lookup_key_exists"
    assert types(fake) == []


def test_a_price_keeps_its_own_lookup_key_or_drops_it(fake: FakeStripeGateway) -> None:
    price = fake.add_price(amount=100, lookup_key="mine")
    fake.drain_events()
    same = fake.update_price(price.id, lookup_key="mine")
    assert same.lookup_key == "mine" and types(fake) == []  # nothing changed: no event
    dropped = fake.update_price(price.id, lookup_key=None)
    assert dropped.lookup_key is None and types(fake) == ["price.updated"]
    assert fake.list_prices(price_ids=[], lookup_keys=["mine"]) == []


def test_an_update_that_changes_nothing_emits_nothing(fake: FakeStripeGateway) -> None:
    price = fake.add_price(amount=100)
    fake.drain_events()
    assert fake.update_price(price.id).active is True
    assert fake.update_price(price.id, active=True).active is True
    assert types(fake) == []


# ------------------------------------------------------------------------ promotion codes


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "exactly one"),
        ({"percent_off": 10, "amount_off": 100, "currency": "usd"}, "exactly one"),
        ({"percent_off": 0}, r"\(0, 100\]"),
        ({"percent_off": 100.5}, r"\(0, 100\]"),
        ({"amount_off": 0, "currency": "usd"}, "positive"),
        ({"amount_off": True, "currency": "usd"}, "positive"),
        ({"amount_off": 100}, "currency"),
        ({"percent_off": 10, "duration": "sometimes"}, "duration"),
        ({"percent_off": 10, "duration": "repeating"}, "duration_in_months"),
        ({"percent_off": 10, "duration_in_months": 3}, "duration_in_months"),
    ],
)
def test_bad_promotion_codes_are_refused(
    fake: FakeStripeGateway, kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message):
        fake.add_promotion_code("CODE", **kwargs)
    assert fake.find_promotion_code("CODE") is None


def test_a_promotion_code_needs_a_code(fake: FakeStripeGateway) -> None:
    with pytest.raises(ConfigurationError, match="needs a code"):
        fake.add_promotion_code("", percent_off=10)


def test_expires_at_must_be_aware(fake: FakeStripeGateway) -> None:
    with pytest.raises(ConfigurationError, match="timezone-aware"):
        fake.add_promotion_code("NAIVE", percent_off=10, expires_at=fake.now().replace(tzinfo=None))


def test_an_active_code_cannot_be_seeded_twice_whatever_its_case(
    fake: FakeStripeGateway,
) -> None:
    fake.add_promotion_code("Launch", percent_off=10)
    with pytest.raises(ConfigurationError, match="already exists"):
        fake.add_promotion_code("LAUNCH", percent_off=20)


def test_an_inactive_code_can_be_replaced_by_an_active_one(fake: FakeStripeGateway) -> None:
    old = fake.add_promotion_code("LAUNCH", percent_off=10, active=False)
    new = fake.add_promotion_code("launch", percent_off=20)
    found = fake.find_promotion_code("Launch")
    assert found is not None and found.id == new.id != old.id


def test_a_repeating_amount_off_code_keeps_its_terms(fake: FakeStripeGateway) -> None:
    promo = fake.add_promotion_code(
        "TEN", amount_off=1000, currency="USD", duration="repeating", duration_in_months=3
    )
    assert promo.amount_off is not None
    assert (promo.amount_off.amount, promo.amount_off.currency) == (1000, "usd")
    assert (promo.duration, promo.duration_in_months) == ("repeating", 3)


def test_an_expired_code_is_not_found(fake: FakeStripeGateway) -> None:
    fake.add_promotion_code("SOON", percent_off=10, expires_at=fake.now() + timedelta(days=1))
    assert fake.find_promotion_code("soon") is not None
    fake.advance(timedelta(days=2))
    assert fake.find_promotion_code("SOON") is None


def test_deactivating_a_code_emits_promotion_code_updated_once(
    fake: FakeStripeGateway,
) -> None:
    promo = fake.add_promotion_code("LAUNCH", percent_off=10)
    fake.drain_events()
    assert fake.set_promotion_code_active(promo.id, False).active is False
    assert fake.find_promotion_code("LAUNCH") is None
    assert fake.set_promotion_code_active(promo.id, False).active is False
    assert types(fake) == ["promotion_code.updated"]
    assert fake.set_promotion_code_active(promo.id, True).active is True
    assert fake.find_promotion_code("LAUNCH") is not None


def test_deactivating_an_unknown_code_is_stripes_404(fake: FakeStripeGateway) -> None:
    with pytest.raises(GatewayNotFoundError):
        fake.set_promotion_code_active("promo_missing", False)
