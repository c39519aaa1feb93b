"""billingkit.stripe_objects: Stripe JSON of every API era -> billingkit values."""

from __future__ import annotations

import contextlib
import copy
import json
import re
from collections.abc import Iterator, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from billingkit.domain import Interval, Price, Subscription, SubscriptionStatus
from billingkit.errors import WebhookPayloadError
from billingkit.ports import CheckoutSession, PortalSession, StripeCustomer
from billingkit.stripe_objects import (
    checkout_session_from_stripe,
    customer_from_stripe,
    invoice_from_stripe,
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
    return sorted(str(p.relative_to(STRIPE)) for p in OPENAPI.glob(f"*/{name}.json"))


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
        (lambda o: [o.pop("created"), o.pop("start_date")], "subscription.created"),
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


PRICE_FILES = (
    era_files("price")
    + era_files("plan")
    + [
        "dj-stripe/price_gold21323.json",
        "dj-stripe/price_silver41294.json",
        "dj-stripe/plan_gold21323.json",
        "dj-stripe/plan_silver41294.json",
    ]
)


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
    assert isinstance(
        subscription_from_stripe(load(f"openapi/{DAHLIA}/subscription.json")), Subscription
    )
    assert isinstance(price_from_stripe(load(f"openapi/{DAHLIA}/price.json")), Price)


# --------------------------------------------------------------------------- era fallbacks

DERIVED = Path(__file__).parents[1] / "fixtures" / "derived" / "readers"


def test_pre_2014_subscription_reads_created_from_start() -> None:
    raw = json.loads((DERIVED / "subscription.pre_2014_start_only.json").read_text("utf-8"))
    obj = raw["object"]
    assert "created" not in obj and "start_date" not in obj and "items" not in obj
    sub = subscription_from_stripe(obj)
    assert ts(sub.created) == obj["start"] == 1_357_000_000
    assert sub.price_id == obj["plan"]["id"]  # the subscription's own legacy plan
    assert sub.quantity == obj["quantity"]
    assert_valid(sub)


def test_subscription_created_falls_back_to_start_date_then_start() -> None:
    raw = load("openapi/2019-11-07_a2f0a361/subscription.json")
    raw.update(created=None, start_date=1_500_000_000, start=1_400_000_000)
    assert ts(subscription_from_stripe(raw).created) == 1_500_000_000  # start_date first
    del raw["start_date"]
    assert ts(subscription_from_stripe(raw).created) == 1_400_000_000  # then start
    raw["created"] = 1_600_000_000
    assert ts(subscription_from_stripe(raw).created) == 1_600_000_000  # created wins
    del raw["created"], raw["start"]
    with pytest.raises(WebhookPayloadError, match=re.escape("subscription.created: missing")):
        subscription_from_stripe(raw)


def test_a_bad_fallback_is_named_not_skipped() -> None:
    raw = load("openapi/2019-11-07_a2f0a361/subscription.json")
    del raw["created"]
    raw["start_date"] = "2019-11-05"
    with pytest.raises(WebhookPayloadError, match=re.escape("subscription.start_date")):
        subscription_from_stripe(raw)


# --------------------------------------------------------------------------- out-of-range values

MAX_TS = 253_402_300_799  # 9999-12-31T23:59:59Z


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda o: o.update(created=MAX_TS + 1), "subscription.created"),
        (lambda o: o.update(created=10**20), "subscription.created"),
        (lambda o: o.update(created=-1), "subscription.created"),
        (lambda o: o.update(created=True), "subscription.created"),
        (lambda o: o.update(created=1_700_000_000.5), "subscription.created"),
        (lambda o: o.update(trial_end=float("nan")), "subscription.trial_end"),
        (lambda o: o.update(trial_end=float("inf")), "subscription.trial_end"),
        (lambda o: o.update(canceled_at=1e300), "subscription.canceled_at"),
        (lambda o: o.update(status={"value": "active"}), "subscription.status"),
        (lambda o: o.update(status=["active"]), "subscription.status"),
        (lambda o: o.update(livemode="false"), "subscription.livemode"),
        (lambda o: o.update(id="sub_\x00"), "subscription.id"),
        (lambda o: o.update(metadata={"user_id": 7}), "subscription.metadata.user_id"),
        (lambda o: o.update(metadata={"user_id": "u" * 501}), "subscription.metadata.user_id"),
        (lambda o: o.update(metadata={"k" * 41: "v"}), "subscription.metadata"),
        (lambda o: o.update(metadata={f"k{i}": "v" for i in range(51)}), "subscription.metadata"),
        (
            lambda o: o["items"]["data"][0].update(quantity=10**30),
            "subscription.items.data[0].quantity",
        ),
        (
            lambda o: o["items"]["data"][0].update(quantity=-1),
            "subscription.items.data[0].quantity",
        ),
        (
            lambda o: o["items"]["data"][0].update(quantity=True),
            "subscription.items.data[0].quantity",
        ),
        (
            lambda o: o["items"]["data"][0].update(current_period_end=10**20),
            "subscription.items.data[0].current_period_end",
        ),
        (
            lambda o: o["items"]["data"][0].update(current_period_start=float("nan")),
            "subscription.items.data[0].current_period_start",
        ),
    ],
)
def test_out_of_range_subscription_values_name_the_field(mutate: Any, field: str) -> None:
    raw = load(f"openapi/{DAHLIA}/subscription.json")
    item = raw["items"]["data"][0]
    item["current_period_start"], item["current_period_end"] = 1_700_000_000, 1_702_592_000
    mutate(raw)
    with pytest.raises(WebhookPayloadError, match=re.escape(field)):
        subscription_from_stripe(raw)


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda o: o.update(unit_amount=10**30), "price.unit_amount"),
        (lambda o: o.update(unit_amount=-5), "price.unit_amount"),
        (lambda o: o.update(currency="ÄÖÜ"), "price.currency"),
        (lambda o: o.update(active="false"), "price.active"),
        (lambda o: o.update(type={"x": 1}), "price.type"),
        (lambda o: o.update(billing_scheme=["tiered"]), "price.billing_scheme"),
        (lambda o: o.update(object={"nested": True}, id=None), "price.id"),
        (lambda o: o["recurring"].update(interval_count=0), "price.recurring.interval_count"),
        (lambda o: o["recurring"].update(interval_count=10**20), "price.recurring.interval_count"),
        (lambda o: o["recurring"].update(interval={"month": 1}), "price.recurring.interval"),
        (lambda o: o.update(recurring="month"), "price.recurring"),
    ],
)
def test_out_of_range_price_values_name_the_field(mutate: Any, field: str) -> None:
    raw = load(f"openapi/{DAHLIA}/price.json")
    mutate(raw)
    with pytest.raises(WebhookPayloadError, match=re.escape(field)):
        price_from_stripe(raw)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("mode", {"type": "subscription"}),
        ("mode", ["payment"]),
        ("status", {}),
        ("payment_status", []),
        ("created", 10**20),
        ("created", float("nan")),
        ("expires_at", MAX_TS + 1),
        ("amount_total", 10**30),
        ("amount_total", -1),
        ("currency", "dollars"),
        ("customer_details", "ada@example.com"),
    ],
)
def test_out_of_range_session_values_name_the_field(field: str, value: object) -> None:
    raw = load(f"openapi/{DAHLIA}/checkout.session.json")
    raw[field] = value
    with pytest.raises(WebhookPayloadError, match=re.escape(f"checkout.session.{field}")):
        checkout_session_from_stripe(raw)


def test_nested_subscription_errors_name_the_session_path() -> None:
    raw = data_object("pay/checkout.session.completed.json")
    raw["subscription"] = load(f"openapi/{DAHLIA}/subscription.json")
    raw["subscription"]["status"] = "frozen"
    with pytest.raises(
        WebhookPayloadError, match=re.escape("checkout.session.subscription.status")
    ):
        checkout_session_from_stripe(raw, created_fallback=EVENT_CREATED)


def test_timestamps_at_the_edges_of_the_range_are_read() -> None:
    raw = load(f"openapi/{DAHLIA}/subscription.json")
    raw.update(created=0, trial_end=MAX_TS)
    sub = subscription_from_stripe(raw)
    assert sub.created == datetime(1970, 1, 1, tzinfo=timezone.utc)
    assert sub.trial_end == datetime(9999, 12, 31, 23, 59, 59, tzinfo=timezone.utc)


# --------------------------------------------------------------------------- every field, fuzzed
#
# The fields each reader touches are found by running it on a real fixture wrapped in a
# recording mapping (every key it asks for, present or not, plus the keys asked for once a
# touched field is removed, which is where the era fallbacks are read). Each is then set to
# wrong types and out-of-range values: the reader must give a valid value or a
# WebhookPayloadError naming the field; nothing else may escape.

Path_ = tuple[str | int, ...]


class _Recording(Mapping[str, Any]):
    """A read-only view of a JSON object that records every key looked up (by path)."""

    def __init__(self, data: dict[str, Any], path: Path_, seen: set[Path_]) -> None:
        self._data, self._path, self._seen = data, path, seen

    def __getitem__(self, key: str) -> Any:
        path = (*self._path, key)
        self._seen.add(path)
        return _record(self._data[key], path, self._seen)

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)


def _record(value: Any, path: Path_, seen: set[Path_]) -> Any:
    if isinstance(value, dict):
        return _Recording(value, path, seen)
    if isinstance(value, list):
        return [_record(item, (*path, index), seen) for index, item in enumerate(value)]
    return value


def _touched(read: Any, obj: dict[str, Any]) -> set[Path_]:
    seen: set[Path_] = set()
    with contextlib.suppress(WebhookPayloadError):
        read(_record(obj, (), seen))
    return seen


def _set(obj: dict[str, Any], path: Path_, value: Any) -> None:
    """Set (or with ``_DELETE``, remove) the field at ``path``, creating nothing above it."""
    target: Any = obj
    for step in path[:-1]:
        target = target[step]
    last = path[-1]
    if value is not _DELETE:
        target[last] = value
    elif isinstance(target, dict):
        target.pop(last, None)
    elif isinstance(last, int):
        del target[last]


def _exists(obj: Any, path: Path_) -> bool:
    """Whether the object holding the last step of ``path`` exists (the step itself may not)."""
    for step in path[:-1]:
        in_list = isinstance(obj, list) and isinstance(step, int) and step < len(obj)
        if not (in_list or (isinstance(obj, dict) and step in obj)):
            return False
        obj = obj[step]
    last = path[-1]
    if isinstance(last, int):
        return isinstance(obj, list) and last < len(obj)
    return isinstance(obj, dict)


def fields_touched(read: Any, obj: dict[str, Any]) -> list[Path_]:
    """Every path ``read`` looks at in ``obj``, with its parents and its era fallbacks.

    A fallback is only read when what it stands in for is missing, so each touched field is
    removed in turn (recursively, while that reveals new fields) and the reads recorded.
    """
    seen = _touched(read, obj)
    work = [(obj, seen)]
    while work:
        base, touched = work.pop()
        for path in sorted(touched, key=dotted):
            if not _exists(base, path) or path[-1] not in _parent(base, path):
                continue
            without = copy.deepcopy(base)
            _set(without, path, _DELETE)
            found = _touched(read, without)
            if found - seen:
                seen |= found
                work.append((without, found))
    every = {path[:end] for path in seen for end in range(1, len(path) + 1)}
    return sorted(every, key=dotted)


def _parent(obj: Any, path: Path_) -> Any:
    for step in path[:-1]:
        obj = obj[step]
    return obj


_DELETE = object()


def dotted(path: Path_) -> str:
    text = ""
    for step in path:
        text += f"[{step}]" if isinstance(step, int) else f".{step}"
    return text


BAD_VALUES = st.one_of(
    st.sampled_from(
        [
            _DELETE,
            None,
            True,
            False,
            0,
            -1,
            1,
            2**63,
            2**63 - 1,
            -(2**63) - 1,
            10**20,
            10**30,
            -(10**30),
            MAX_TS,
            MAX_TS + 1,
            float("nan"),
            float("inf"),
            float("-inf"),
            1e300,
            1.5,
            1_700_000_000.0,
            "",
            "x",
            "\x00",
            "sub_\x00",
            "x" * 600,
            "active",
            "usd",
            "ÄÖÜ",
            "subscription",
            "month",
            {},
            [],
            {"id": 5},
            {"id": "x"},
            {"id": ""},
            ["x"],
            {"data": "x"},
            {"data": [1]},
            {"data": None},
        ]
    ),
    st.integers(),
    st.floats(),
    st.text(max_size=6),
    st.dictionaries(
        st.text(max_size=3), st.integers() | st.text(max_size=3) | st.none(), max_size=3
    ),
    st.lists(st.integers() | st.text(max_size=2), max_size=2),
)

INT64 = range(-(2**63), 2**63)


def assert_sane(value: Any, where: str = "value") -> None:
    """No unbounded integer, NUL byte or non-finite float reached a parsed value."""
    if isinstance(value, bool) or value is None:
        return
    if isinstance(value, int):
        assert value in INT64, where
    elif isinstance(value, float):
        raise AssertionError(f"{where} is a float")
    elif isinstance(value, str):
        assert "\x00" not in value, where
    elif isinstance(value, Mapping):
        for key, item in value.items():
            assert_sane(key, f"{where} key")
            assert_sane(item, f"{where}.{key}")
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            assert_sane(item, f"{where}[{index}]")


def _session(obj: Mapping[str, Any]) -> CheckoutSession:
    return checkout_session_from_stripe(obj, created_fallback=EVENT_CREATED)


READERS: list[tuple[str, Any, str, list[str]]] = [
    ("subscription", subscription_from_stripe, r"subscription", SUBSCRIPTION_FILES),
    ("price", price_from_stripe, r"(?:price|plan)", PRICE_FILES),
    ("customer", customer_from_stripe, r"customer", CUSTOMER_FILES),
    ("session", _session, r"checkout\.session", era_files("checkout.session")),
    (
        "portal",
        portal_session_from_stripe,
        r"billing_portal\.session",
        era_files("billing_portal.session"),
    ),
    (
        "invoice_reader",
        invoice_from_stripe,
        r"invoice",
        [*era_files("invoice"), "pay/invoice.payment_failed.json", "pay/invoice.updated.json"],
    ),
    (
        "invoice",
        invoice_subscription_id,
        r"invoice",
        [*era_files("invoice"), "pay/invoice.payment_failed.json", "pay/invoice.updated.json"],
    ),
]
FUZZ_CASES = [
    pytest.param(read, prefix, relative, id=f"{name}:{relative}")
    for name, read, prefix, files in READERS
    for relative in files
]


@pytest.mark.parametrize(("read", "prefix", "relative"), FUZZ_CASES)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_every_touched_field_is_checked(
    read: Any, prefix: str, relative: str, data: st.DataObject
) -> None:
    key = relative + repr(read)
    if key not in _FIELDS:
        raw = data_object(relative)
        _FIELDS[key] = (json.dumps(raw), fields_touched(read, raw))
    text, fields = _FIELDS[key]
    obj = json.loads(text)  # a fresh copy, faster than deepcopy
    path = data.draw(st.sampled_from(fields), label="field")
    value = data.draw(BAD_VALUES, label="value")
    if not _exists(obj, path):
        return
    _set(obj, path, value)
    try:
        parsed = read(obj)
    except WebhookPayloadError as exc:
        named = [path, path[:-1]] if len(path) > 1 else [path]
        assert any(
            re.search(prefix + re.escape(dotted(field)) + r"(?!\w)", str(exc)) for field in named
        ), f"{exc} does not name {dotted(path)}"
        return
    if parsed is not None and not isinstance(parsed, str):
        assert_valid(parsed)
        assert_sane(parsed.model_dump())
    else:
        assert_sane(parsed)


_FIELDS: dict[str, tuple[str, list[Path_]]] = {}


def test_the_touched_fields_include_the_ones_that_matter() -> None:
    sub = {
        dotted(p)
        for p in fields_touched(
            subscription_from_stripe, load(f"openapi/{DAHLIA}/subscription.json")
        )
    }
    assert {".id", ".customer", ".status", ".created", ".start_date", ".start", ".metadata"} <= sub
    assert {".items.data[0].quantity", ".items.data[0].price.id", ".trial_end"} <= sub
    price = {
        dotted(p) for p in fields_touched(price_from_stripe, load(f"openapi/{DAHLIA}/price.json"))
    }
    assert {
        ".currency",
        ".unit_amount",
        ".recurring.interval",
        ".recurring.interval_count",
    } <= price


def test_quantity_falls_back_to_the_subscription_then_to_one() -> None:
    raw = load("openapi/2019-11-07_a2f0a361/subscription.json")
    raw["items"]["data"][0]["quantity"] = None
    raw["quantity"] = 3
    assert subscription_from_stripe(raw).quantity == 3  # the subscription's own (legacy)
    raw["quantity"] = None
    assert subscription_from_stripe(raw).quantity == 1


def test_session_mode_is_inferred_from_a_setup_intent_and_null_payment_status_is_unpaid() -> None:
    raw = load("openapi/2019-11-07_a2f0a361/checkout.session.json")
    raw.pop("mode", None)
    raw.update(subscription=None, setup_intent="seti_1", payment_status=None)
    session = checkout_session_from_stripe(raw, created_fallback=EVENT_CREATED)
    assert session.mode == "setup"
    assert session.payment_status == "unpaid"  # never trusted as paid


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("id", "in_\x00"),
        ("id", "x" * 256),
        ("amount_due", -5),
        ("amount_due", 10**30),
        ("attempt_count", -1),
        ("next_payment_attempt", float("nan")),
        ("currency", {"code": "usd"}),
    ],
)
def test_out_of_range_invoice_values_name_the_field(field: str, value: object) -> None:
    raw = load(f"openapi/{DAHLIA}/invoice.json")
    raw[field] = value
    with pytest.raises(WebhookPayloadError, match=re.escape(f"invoice.{field}")):
        invoice_from_stripe(raw)
