"""billingkit.stripe_objects: Stripe JSON of every API era -> billingkit values."""

from __future__ import annotations

import copy
import json
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from billingkit.domain import Interval, Price, Subscription, SubscriptionStatus
from billingkit.errors import WebhookPayloadError
from billingkit.ports import CheckoutSession, PortalSession, StripeCustomer
from billingkit.stripe_objects import (
    checkout_session_from_stripe,
    customer_from_stripe,
    invoice_subscription_id,
    portal_session_from_stripe,
    price_from_stripe,
    subscription_from_stripe,
)

STRIPE = Path(__file__).parents[1] / "fixtures" / "stripe"
OPENAPI = STRIPE / "openapi"
ACACIA = "2025-02-14_b819eedc"
BASIL = "2025-03-25_1ef159c3"
DAHLIA = "2026-07-29_f0758b15"
EVENT_CREATED = datetime(2022, 7, 20, 21, 41, 36, tzinfo=timezone.utc)


def load(relative: str) -> Any:
    return json.loads((STRIPE / relative).read_text(encoding="utf-8"))


def data_object(relative: str) -> dict[str, Any]:
    """A fixture's Stripe object, unwrapping Pay's ``{"object": {...}}`` event data."""
    raw = load(relative)
    inner = raw.get("object")
    return inner if isinstance(inner, dict) else raw


def era_files(name: str) -> list[str]:
    return sorted(
        str(p.relative_to(STRIPE)) for p in OPENAPI.glob(f"*/{name}.json")
    )


def ts(moment: datetime | None) -> int | None:
    return None if moment is None else int(moment.timestamp())


def assert_valid(value: Any) -> None:
    """The value passes its model's own validation unchanged (nothing bypassed wrongly)."""
    assert type(value).model_validate(value.model_dump()) == value


SUBSCRIPTION_FILES = (
    era_files("subscription")
    + sorted(str(p.relative_to(STRIPE)) for p in (STRIPE / "dj-stripe").glob("subscription_*"))
    + sorted(str(p.relative_to(STRIPE)) for p in (STRIPE / "pay").glob("subscription.*"))
)


# --------------------------------------------------------------------------- subscriptions


@pytest.mark.parametrize("relative", SUBSCRIPTION_FILES)
def test_every_subscription_fixture_parses(relative: str) -> None:
    raw = data_object(relative)
    sub = subscription_from_stripe(raw)

    assert sub.id == raw["id"]
    assert sub.customer_id == raw["customer"]
    assert sub.status is SubscriptionStatus(raw["status"])
    assert ts(sub.created) == raw["created"]
    assert sub.created.tzinfo is timezone.utc
    assert sub.watermark == 0
    first = raw["items"]["data"][0]
    price = first.get("price") or first.get("plan")
    assert sub.price_id == price["id"]
    assert sub.cancel_at_period_end is bool(raw["cancel_at_period_end"])
    assert ts(sub.trial_end) == raw.get("trial_end")
    assert dict(sub.metadata) == raw["metadata"]
    if raw.get("current_period_end") is not None:
        assert ts(sub.current_period_end) == raw["current_period_end"]
        assert ts(sub.current_period_start) == raw["current_period_start"]
    else:
        assert ts(sub.current_period_end) == first["current_period_end"]
        assert ts(sub.current_period_start) == first["current_period_start"]
    assert_valid(sub)


def test_old_subscription_reads_periods_from_the_subscription_and_legacy_plan() -> None:
    raw = load("openapi/2017-09-20_bb581d37/subscription.json")
    del raw["items"]["data"][0]["plan"]  # only the subscription-level legacy plan remains
    sub = subscription_from_stripe(raw)
    assert sub.price_id == "ruby-express-932"
    assert ts(sub.current_period_end) == raw["current_period_end"]


@pytest.mark.parametrize("era", [BASIL, DAHLIA])
def test_basil_and_later_read_periods_from_the_items(era: str) -> None:
    raw = load(f"openapi/{era}/subscription.json")
    assert "current_period_end" not in raw
    item = raw["items"]["data"][0]
    item["current_period_start"], item["current_period_end"] = 1_700_000_000, 1_702_592_000
    sub = subscription_from_stripe(raw)
    assert sub.current_period_start == datetime(2023, 11, 14, 22, 13, 20, tzinfo=timezone.utc)
    assert ts(sub.current_period_end) == 1_702_592_000


def test_several_items_span_earliest_start_to_latest_end() -> None:
    raw = load(f"openapi/{DAHLIA}/subscription.json")
    first = raw["items"]["data"][0]
    first["current_period_start"], first["current_period_end"] = 1_700_000_500, 1_702_000_000
    second = copy.deepcopy(first)
    second["id"] = "si_second"
    second["price"] = "price_second"
    second["current_period_start"], second["current_period_end"] = 1_700_000_000, 1_705_000_000
    raw["items"]["data"].append(second)
    sub = subscription_from_stripe(raw)
    assert ts(sub.current_period_start) == 1_700_000_000
    assert ts(sub.current_period_end) == 1_705_000_000
    assert sub.price_id == first["price"]["id"]  # price and quantity: the first item


def test_multi_item_dj_stripe_subscription_takes_first_item() -> None:
    raw = load("dj-stripe/subscription_sub_fakefakefakefakefake0004.json")
    assert len(raw["items"]["data"]) == 2
    assert subscription_from_stripe(raw).price_id == raw["items"]["data"][0]["price"]["id"]


def test_price_id_string_and_expanded_customer() -> None:
    raw = load(f"openapi/{DAHLIA}/subscription.json")
    raw["items"]["data"][0]["price"] = "price_by_id"
    raw["customer"] = load(f"openapi/{DAHLIA}/customer.json")
    sub = subscription_from_stripe(raw)
    assert sub.price_id == "price_by_id"
    assert sub.customer_id == "cus_QXg1o8vcGmoR32"


def test_quantity_and_metadata_user_id() -> None:
    raw = data_object("pay/subscription.created.json")
    raw["metadata"] = {"user_id": "u-42", "plan_key": "pro"}
    sub = subscription_from_stripe(raw)
    assert sub.quantity == 2
    assert sub.user_id == "u-42"
    assert sub.plan_key is None  # the plan follows from the price, not stale metadata
    assert sub.metadata == {"user_id": "u-42", "plan_key": "pro"}


@pytest.mark.parametrize("status", [s.value for s in SubscriptionStatus])
def test_all_eight_statuses(status: str) -> None:
    raw = load(f"openapi/{DAHLIA}/subscription.json")
    raw["status"] = status
    assert subscription_from_stripe(raw).status.value == status


def test_null_optional_timestamps_stay_none() -> None:
    raw = data_object("pay/subscription.created.json")
    sub = subscription_from_stripe(raw)
    assert sub.canceled_at is None and sub.ended_at is None and sub.cancel_at is None


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda o: o.update(status="frozen"), "subscription.status"),
        (lambda o: o.pop("status"), "subscription.status"),
        (lambda o: o.pop("id"), "subscription.id"),
        (lambda o: o.update(id=""), "subscription.id"),
        (lambda o: o.pop("customer"), "subscription.customer"),
        (lambda o: o.update(customer={"object": "customer"}), "subscription.customer.id"),
        (lambda o: o.update(customer=42), "subscription.customer"),
        (lambda o: o.pop("created"), "subscription.created"),
        (lambda o: o.update(created="yesterday"), "subscription.created"),
        (lambda o: o.update(trial_end="soon"), "subscription.trial_end"),
        (lambda o: o.update(cancel_at_period_end="no"), "subscription.cancel_at_period_end"),
        (lambda o: o.update(metadata=["x"]), "subscription.metadata"),
        (lambda o: o.update(items={"data": "nope"}), "subscription.items"),
        (lambda o: o["items"]["data"].__setitem__(0, "si_x"), "subscription.items.data[0]"),
        (
            lambda o: o["items"]["data"][0].update(current_period_end="later"),
            "current_period_end",
        ),
        (lambda o: o["items"]["data"][0].update(quantity="2"), "quantity"),
    ],
)
def test_malformed_subscription_names_the_field(mutate: Any, field: str) -> None:
    raw = load(f"openapi/{DAHLIA}/subscription.json")
    mutate(raw)
    with pytest.raises(WebhookPayloadError, match=re.escape(field)):
        subscription_from_stripe(raw)


def test_not_an_object_is_a_payload_error() -> None:
    with pytest.raises(WebhookPayloadError, match=re.escape("subscription")):
        subscription_from_stripe(["sub_1"])  # type: ignore[arg-type]


# --------------------------------------------------------------------------- prices


PRICE_FILES = era_files("price") + era_files("plan") + [
    "dj-stripe/price_gold21323.json",
    "dj-stripe/price_silver41294.json",
    "dj-stripe/plan_gold21323.json",
    "dj-stripe/plan_silver41294.json",
]


@pytest.mark.parametrize("relative", PRICE_FILES)
def test_every_price_and_plan_fixture_parses(relative: str) -> None:
    raw = load(relative)
    price = price_from_stripe(raw)
    assert price.id == raw["id"]
    assert price.currency == raw["currency"]
    assert price.unit_amount == raw.get("unit_amount", raw.get("amount"))
    recurring = raw.get("recurring") or raw
    assert price.interval is Interval(recurring["interval"])
    assert price.interval_count == recurring["interval_count"]
    assert price.is_recurring
    assert_valid(price)


def test_legacy_2017_plan_has_a_name_but_no_product() -> None:
    price = price_from_stripe(load("openapi/2017-09-20_bb581d37/plan.json"))
    assert price.product_id == ""
    assert price.product_name == "Ruby Express"
    assert price.amount is not None and price.amount.format() == "9.99 USD"


def test_one_time_price_from_an_invoice_line() -> None:
    line = load(f"openapi/{ACACIA}/invoice.json")["lines"]["data"][0]
    price = price_from_stripe(line["price"])
    assert price.interval is Interval.ONE_TIME
    assert not price.is_recurring
    assert price.unit_amount == 1000


def test_expanded_product_gives_the_name() -> None:
    raw = load(f"openapi/{DAHLIA}/price.json")
    raw["product"] = load(f"openapi/{DAHLIA}/product.json")
    raw["lookup_key"] = "pro_monthly"
    price = price_from_stripe(raw)
    assert (price.product_id, price.product_name) == ("prod_QXg1hqf4jFNsqG", "T-shirt")
    assert price.lookup_key == "pro_monthly"


def test_separate_product_object_gives_the_name() -> None:
    product = load(f"openapi/{DAHLIA}/product.json")
    price = price_from_stripe(load(f"openapi/{DAHLIA}/price.json"), product)
    assert price.product_name == "T-shirt"
    other = dict(product, id="prod_other")
    with pytest.raises(WebhookPayloadError, match=re.escape("price.product")):
        price_from_stripe(load(f"openapi/{DAHLIA}/price.json"), other)


def test_tiered_price_has_no_unit_amount() -> None:
    raw = load(f"openapi/{DAHLIA}/price.json")
    raw.update(billing_scheme="tiered", tiers_mode="graduated", unit_amount=None)
    price = price_from_stripe(raw)
    assert price.unit_amount is None and price.amount is None
    assert price.billing_scheme == "tiered"


def test_zero_decimal_currency_and_yearly_interval() -> None:
    raw = load(f"openapi/{DAHLIA}/price.json")
    raw.update(currency="JPY", unit_amount=500)
    raw["recurring"].update(interval="year", interval_count=1)
    price = price_from_stripe(raw)
    assert price.currency == "jpy"
    assert price.interval is Interval.YEAR
    assert price.amount is not None and price.amount.format() == "500 JPY"


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda o: o.pop("id"), "price.id"),
        (lambda o: o.update(currency="dollars"), "price.currency"),
        (lambda o: o.update(recurring=None), "price.recurring"),
        (lambda o: o["recurring"].update(interval="fortnight"), "price.recurring.interval"),
        (lambda o: o.update(unit_amount=19.99), "price.unit_amount"),
        (lambda o: o.update(billing_scheme="volume"), "price.billing_scheme"),
    ],
)
def test_malformed_price_names_the_field(mutate: Any, field: str) -> None:
    raw = load(f"openapi/{DAHLIA}/price.json")
    mutate(raw)
    with pytest.raises(WebhookPayloadError, match=re.escape(field)):
        price_from_stripe(raw)


# --------------------------------------------------------------------------- customers


CUSTOMER_FILES = era_files("customer") + sorted(
    str(p.relative_to(STRIPE)) for p in (STRIPE / "dj-stripe").glob("customer_*")
)


@pytest.mark.parametrize("relative", CUSTOMER_FILES)
def test_every_customer_fixture_parses(relative: str) -> None:
    raw = load(relative)
    customer = customer_from_stripe(raw)
    assert isinstance(customer, StripeCustomer)
    assert customer.id == raw["id"]
    assert customer.email == raw.get("email")
    assert customer.deleted is False
    assert_valid(customer)


@pytest.mark.parametrize("relative", era_files("deleted_customer"))
def test_deleted_customer(relative: str) -> None:
    customer = customer_from_stripe(load(relative))
    assert customer.deleted is True
    assert customer.email is None and customer.metadata == {}


def test_customer_metadata_and_name() -> None:
    raw = load(f"openapi/{DAHLIA}/customer.json")
    raw.update(email="ada@example.com", name="Ada", metadata={"user_id": "u-1"})
    customer = customer_from_stripe(raw)
    assert (customer.email, customer.name, customer.metadata) == (
        "ada@example.com",
        "Ada",
        {"user_id": "u-1"},
    )


def test_customer_without_id_is_rejected() -> None:
    with pytest.raises(WebhookPayloadError, match=re.escape("customer.id")):
        customer_from_stripe({"object": "customer", "deleted": True})


# --------------------------------------------------------------------------- sessions


@pytest.mark.parametrize("relative", era_files("checkout.session"))
def test_every_checkout_session_fixture_parses(relative: str) -> None:
    raw = load(relative)
    fallback = datetime(2020, 1, 1, tzinfo=timezone.utc)
    session = checkout_session_from_stripe(raw, created_fallback=fallback)
    assert isinstance(session, CheckoutSession)
    assert session.id == raw["id"]
    assert session.mode == (raw.get("mode") or "payment")
    assert session.payment_status == raw.get("payment_status", "unpaid")
    assert session.created == (
        fallback if "created" not in raw else datetime.fromtimestamp(raw["created"], timezone.utc)
    )
    assert session.payment_intent_id == raw.get("payment_intent")
    assert_valid(session)


def test_old_session_without_created_needs_a_fallback() -> None:
    raw = load("openapi/2019-11-07_a2f0a361/checkout.session.json")
    with pytest.raises(WebhookPayloadError, match=re.escape("checkout.session.created")):
        checkout_session_from_stripe(raw)


def test_completed_subscription_session_with_subscription_id() -> None:
    raw = data_object("pay/checkout.session.completed.json")
    assert "created" not in raw  # Pay's hand-made payload: the event's created stands in
    session = checkout_session_from_stripe(raw, created_fallback=EVENT_CREATED)
    assert session.created == EVENT_CREATED
    assert session.mode == "subscription"
    assert (session.status, session.payment_status) == ("complete", "paid")
    assert session.subscription_id == "sub_1LNkeSKXBGcbgpbZ7jMqOPSi"
    assert session.subscription is None
    assert session.customer_id == "cus_M5wW9RPFk9xNZ5"
    assert session.customer_email == "chris@gorails.com"  # from customer_details
    assert (session.amount_total, session.currency) == (1900, "usd")


def test_expanded_subscription_fills_the_session() -> None:
    raw = data_object("pay/checkout.session.completed.json")
    raw["subscription"] = load(f"openapi/{DAHLIA}/subscription.json")
    raw["client_reference_id"] = "u-7"
    raw["metadata"] = {"user_id": "u-7", "plan_key": "pro"}
    session = checkout_session_from_stripe(raw, created_fallback=EVENT_CREATED)
    assert session.subscription_id == "sub_1Pgc6rB7WZ01zgkWNy0Cn5nw"
    assert session.subscription is not None
    assert session.subscription.id == session.subscription_id
    assert session.client_reference_id == "u-7"
    assert session.metadata == {"user_id": "u-7", "plan_key": "pro"}
    assert_valid(session)


@pytest.mark.parametrize(
    ("field", "value"),
    [("mode", "subscribe"), ("status", "done"), ("payment_status", "maybe"), ("id", None)],
)
def test_malformed_checkout_session_names_the_field(field: str, value: object) -> None:
    raw = load(f"openapi/{DAHLIA}/checkout.session.json")
    raw[field] = value
    with pytest.raises(WebhookPayloadError, match=re.escape(f"checkout.session.{field}")):
        checkout_session_from_stripe(raw)


@pytest.mark.parametrize("relative", era_files("billing_portal.session"))
def test_every_portal_session_fixture_parses(relative: str) -> None:
    raw = load(relative)
    portal = portal_session_from_stripe(raw)
    assert isinstance(portal, PortalSession)
    assert (portal.id, portal.url, portal.customer_id) == (raw["id"], raw["url"], raw["customer"])
    assert portal.return_url == raw["return_url"]


def test_portal_session_without_url_is_rejected() -> None:
    raw = load(f"openapi/{DAHLIA}/billing_portal.session.json")
    del raw["url"]
    with pytest.raises(WebhookPayloadError, match=re.escape("billing_portal.session.url")):
        portal_session_from_stripe(raw)


# --------------------------------------------------------------------------- invoices


@pytest.mark.parametrize(
    ("relative", "expected"),
    [
        ("openapi/2017-09-20_bb581d37/invoice.json", "sub_3jtkr4OHgFoV5k"),  # invoice.subscription
        ("openapi/2018-05-09_0a1f8b2d/invoice.json", "sub_CpJxjJHucuaF7o"),  # subscription line id
        ("openapi/2019-11-07_a2f0a361/invoice.json", "sub_G8auRBhnxWG8VU"),  # line.subscription
        ("openapi/2020-09-02_dd1cdfcd/invoice.json", "sub_HwdSaB2wMprHSM"),
        ("openapi/2024-06-21_f7bafae7/invoice.json", None),  # one-off invoice item only
        ("openapi/2026-07-29_f0758b15/invoice.json", "subscription"),  # parent (placeholder id)
        ("pay/invoice.payment_failed.json", "sub_1234"),  # basil parent, no invoice.subscription
        ("pay/invoice.payment_action_required.json", "sub_1234"),
        ("pay/invoice.updated.json", "sub_1234"),  # an invoice_payment with a parent
        ("pay/invoice.json", None),
        ("dj-stripe/invoice_in_fakefakefakefakefake0001.json", "sub_fakefakefakefakefake0001"),
        ("dj-stripe/invoice_in_fakefakefakefakefake0004.json", "sub_fakefakefakefakefake0002"),
    ],
)
def test_invoice_subscription_id_across_eras(relative: str, expected: str | None) -> None:
    assert invoice_subscription_id(data_object(relative)) == expected


def test_invoice_subscription_from_line_parent_and_expanded() -> None:
    raw = data_object("pay/invoice.payment_failed.json")
    raw["parent"] = None
    assert invoice_subscription_id(raw) == "sub_1234"  # lines[].parent.subscription_item_details
    raw["subscription"] = {"id": "sub_expanded", "object": "subscription"}
    assert invoice_subscription_id(raw) == "sub_expanded"


def test_malformed_invoice_is_rejected() -> None:
    with pytest.raises(WebhookPayloadError, match=re.escape("invoice.subscription")):
        invoice_subscription_id({"id": "in_1", "subscription": 12})


# --------------------------------------------------------------------------- values are real


def test_parsed_values_are_the_domain_types() -> None:
    assert isinstance(subscription_from_stripe(load(f"openapi/{DAHLIA}/subscription.json")),
                      Subscription)
    assert isinstance(price_from_stripe(load(f"openapi/{DAHLIA}/price.json")), Price)
