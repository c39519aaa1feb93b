"""Every StripeSdkGateway operation over cassettes: requests sent, values returned."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import pytest
from stripe_cassettes import CassetteKit, idempotency_key

from billingkit.adapters.stripe_sdk import StripeSdkGateway
from billingkit.domain import Interval, SubscriptionStatus
from billingkit.errors import GatewayConnectionError
from billingkit.ports import CheckoutSessionRequest

SUCCESS = "https://app.example.com/billing/success?session_id={CHECKOUT_SESSION_ID}"
CANCEL = "https://app.example.com/pricing"


def _price_ids(world: dict[str, Any]) -> dict[str, str]:
    return dict(world["recorded"]["prices"])


def test_create_customer_sends_user_id_metadata_and_idempotency_key(
    gateway: StripeSdkGateway, cassettes: CassetteKit, world: dict[str, Any], no_sdk_objects: Any
) -> None:
    with cassettes.use("create_customer") as cassette:
        customer = gateway.create_customer(
            user_id="user-ada",
            email="ada@example.com",
            metadata={"plan": "pro"},
            idempotency_key=idempotency_key(world, "customer-user-ada"),
        )
    assert cassettes.requests_made(cassette) == 1
    assert customer.id.startswith("cus_")
    assert customer.email == "ada@example.com"
    assert dict(customer.metadata) == {"plan": "pro", "user_id": "user-ada"}
    assert customer.deleted is False
    assert customer.livemode is False
    no_sdk_objects(customer)


def test_retrieve_customer(
    gateway: StripeSdkGateway, cassettes: CassetteKit, world: dict[str, Any], no_sdk_objects: Any
) -> None:
    recorded = world["recorded"]
    with cassettes.use("retrieve_customer"):
        customer = gateway.retrieve_customer(recorded["customer_id"])
    assert customer.id == recorded["customer_id"]
    assert customer.email == recorded["customer_email"]
    assert customer.metadata["user_id"] == "billingkit-world"
    assert customer.deleted is False
    no_sdk_objects(customer)


def test_retrieve_deleted_customer_is_flagged_not_raised(
    gateway: StripeSdkGateway, cassettes: CassetteKit, world: dict[str, Any]
) -> None:
    deleted_id = world["recorded"]["deleted_customer_id"]
    with cassettes.use("retrieve_deleted_customer"):
        customer = gateway.retrieve_customer(deleted_id)
    assert customer.id == deleted_id
    assert customer.deleted is True
    assert customer.email is None


def test_create_checkout_session_in_subscription_mode(
    gateway: StripeSdkGateway, cassettes: CassetteKit, world: dict[str, Any], no_sdk_objects: Any
) -> None:
    recorded = world["recorded"]
    request = CheckoutSessionRequest(
        mode="subscription",
        customer_id=recorded["customer_id"],
        price_id=_price_ids(world)["billingkit_test_pro_month"],
        success_url=SUCCESS,
        cancel_url=CANCEL,
        client_reference_id="user-ada",
        metadata={"user_id": "user-ada", "plan": "pro"},
        subscription_metadata={"user_id": "user-ada", "plan": "pro"},
        trial_days=14,
        allow_promotion_codes=True,
        idempotency_key=idempotency_key(world, "checkout-sub-user-ada"),
    )
    with cassettes.use("create_checkout_subscription") as cassette:
        session = gateway.create_checkout_session(request)
    assert cassettes.requests_made(cassette) == 1
    assert session.id.startswith("cs_test_")
    assert session.mode == "subscription"
    assert session.status == "open"
    assert session.payment_status == "unpaid"
    assert session.url is not None and session.url.startswith("https://checkout.stripe.com/")
    assert session.customer_id == recorded["customer_id"]
    assert session.client_reference_id == "user-ada"
    assert dict(session.metadata) == {"user_id": "user-ada", "plan": "pro"}
    assert session.subscription is None
    assert session.expires_at is not None and session.expires_at > session.created
    no_sdk_objects(session)


def test_create_checkout_session_sends_the_checkout_options_as_typed_params(
    gateway: StripeSdkGateway, cassettes: CassetteKit, world: dict[str, Any]
) -> None:
    # The cassette's form holds automatic_tax with customer_update[address]=auto, tax ids with
    # customer_update[name]=auto, the billing address, if_required card collection with the
    # trial's end behaviour, the coupon and the locale: any other spelling would not match.
    request = CheckoutSessionRequest(
        mode="subscription",
        customer_id=world["recorded"]["customer_id"],
        price_id=_price_ids(world)["billingkit_test_pro_month"],
        success_url=SUCCESS,
        cancel_url=CANCEL,
        client_reference_id="user-ada",
        metadata={"user_id": "user-ada", "plan": "pro"},
        subscription_metadata={"user_id": "user-ada", "plan": "pro"},
        trial_days=14,
        automatic_tax=True,
        tax_id_collection=True,
        billing_address_collection="required",
        payment_method_collection="if_required",
        trial_end_behavior="pause",
        coupon="launch20",
        locale="de",
        idempotency_key=idempotency_key(world, "checkout-options-user-ada"),
    )
    with cassettes.use("create_checkout_options") as cassette:
        session = gateway.create_checkout_session(request)
    assert cassettes.requests_made(cassette) == 1
    assert session.mode == "subscription" and session.status == "open"
    assert session.amount_total == 0


def test_create_checkout_session_in_payment_mode_sends_no_subscription_data(
    gateway: StripeSdkGateway, cassettes: CassetteKit, world: dict[str, Any]
) -> None:
    # subscription_metadata and trial_days make no sense for a one-time payment: the cassette's
    # body has no subscription_data, so sending it would not match.
    request = CheckoutSessionRequest(
        mode="payment",
        customer_id=world["recorded"]["customer_id"],
        price_id=_price_ids(world)["billingkit_test_lifetime"],
        quantity=2,
        success_url=SUCCESS,
        cancel_url=CANCEL,
        client_reference_id="user-ada",
        metadata={"user_id": "user-ada", "plan": "lifetime"},
        subscription_metadata={"user_id": "user-ada"},
        trial_days=7,
        idempotency_key=idempotency_key(world, "checkout-pay-user-ada"),
    )
    with cassettes.use("create_checkout_payment"):
        session = gateway.create_checkout_session(request)
    assert session.mode == "payment"
    assert session.amount_total == 19800
    assert session.currency == "usd"
    assert session.subscription_id is None


def test_retrieve_open_checkout_session_expands_subscription_in_one_request(
    gateway: StripeSdkGateway, cassettes: CassetteKit, world: dict[str, Any]
) -> None:
    request = CheckoutSessionRequest(
        mode="subscription",
        customer_id=world["recorded"]["customer_id"],
        price_id=_price_ids(world)["billingkit_test_pro_year"],
        success_url=SUCCESS,
        cancel_url=CANCEL,
        client_reference_id="user-bob",
        idempotency_key=idempotency_key(world, "checkout-open-user-bob"),
    )
    with cassettes.use("retrieve_open_checkout") as cassette:
        created = gateway.create_checkout_session(request)
        fetched = gateway.retrieve_checkout_session(created.id)
    assert cassettes.requests_made(cassette) == 2
    assert fetched.id == created.id
    assert fetched.status == "open"
    assert fetched.client_reference_id == "user-bob"
    assert fetched.subscription is None and fetched.subscription_id is None


def test_retrieve_completed_checkout_session_carries_the_subscription(
    gateway: StripeSdkGateway, cassettes: CassetteKit, world: dict[str, Any], no_sdk_objects: Any
) -> None:
    synthetic = world["synthetic"]
    with cassettes.use("retrieve_completed_checkout", synthetic=True) as cassette:
        session = gateway.retrieve_checkout_session(synthetic["session_id"])
    assert cassettes.requests_made(cassette) == 1
    assert session.status == "complete"
    assert session.payment_status == "paid"
    assert session.subscription_id == synthetic["subscription_id"]
    assert session.subscription is not None
    assert session.subscription.id == synthetic["subscription_id"]
    assert session.subscription.status is SubscriptionStatus.ACTIVE
    assert session.subscription.customer_id == synthetic["customer_id"]
    assert session.subscription.price_id == synthetic["price_id"]
    assert session.subscription.current_period_end is not None
    no_sdk_objects(session)


def _check_catalog(prices: list[Any], world: dict[str, Any]) -> None:
    by_key = {price.lookup_key: price for price in prices}
    assert set(by_key) == {entry["lookup_key"] for entry in world["catalog"]}
    for entry in world["catalog"]:
        price = by_key[entry["lookup_key"]]
        assert price.id == world["recorded"]["prices"][entry["lookup_key"]]
        assert price.unit_amount == entry["unit_amount"]
        assert price.currency == entry["currency"]
        assert price.interval is Interval(entry["interval"])
        assert price.product_name == entry["product_name"]
        assert price.product_id == world["recorded"]["products"][entry["product_name"]]
        assert price.active is True


def test_list_prices_by_lookup_keys_is_one_request_with_products(
    gateway: StripeSdkGateway, cassettes: CassetteKit, world: dict[str, Any], no_sdk_objects: Any
) -> None:
    keys = [entry["lookup_key"] for entry in world["catalog"]]
    with cassettes.use("list_prices_lookup_keys") as cassette:
        prices = gateway.list_prices(lookup_keys=keys)
    assert cassettes.requests_made(cassette) == 1
    _check_catalog(prices, world)
    no_sdk_objects(prices)


def test_list_prices_by_ids_and_keys_is_one_request(
    gateway: StripeSdkGateway, cassettes: CassetteKit, world: dict[str, Any]
) -> None:
    ids = _price_ids(world)
    with cassettes.use("list_prices_mixed") as cassette:
        prices = gateway.list_prices(
            price_ids=[ids["billingkit_test_pro_month"]],
            lookup_keys=["billingkit_test_pro_year", "billingkit_test_lifetime"],
        )
    assert cassettes.requests_made(cassette) == 1
    _check_catalog(prices, world)


def test_list_prices_splits_lookup_keys_into_chunks_of_ten(
    gateway: StripeSdkGateway, cassettes: CassetteKit, world: dict[str, Any]
) -> None:
    keys = [entry["lookup_key"] for entry in world["catalog"]]
    absent = [f"billingkit_test_absent_{n}" for n in range(1, 10)]
    with cassettes.use("list_prices_many_keys") as cassette:
        prices = gateway.list_prices(lookup_keys=[keys[0], *absent, keys[1], keys[2], keys[0]])
    assert cassettes.requests_made(cassette) == 2
    _check_catalog(prices, world)


def test_list_prices_by_id_pages_until_found_and_stops_early(
    gateway: StripeSdkGateway, cassettes: CassetteKit, world: dict[str, Any]
) -> None:
    synthetic = world["synthetic"]
    wanted = [synthetic["price_id"], synthetic["page2_price_id"]]
    # page 2 still says has_more: a third request would find no interaction and fail.
    with cassettes.use("list_prices_paginated", synthetic=True) as cassette:
        prices = gateway.list_prices(price_ids=wanted)
    assert cassettes.requests_made(cassette) == 2
    assert sorted(price.id for price in prices) == sorted(wanted)
    assert all(price.product_name == "billingkit test Pro" for price in prices)


def test_list_prices_with_nothing_asked_makes_no_request(gateway: StripeSdkGateway) -> None:
    assert gateway.list_prices() == []


def test_retrieve_subscription(
    gateway: StripeSdkGateway, cassettes: CassetteKit, world: dict[str, Any], no_sdk_objects: Any
) -> None:
    recorded = world["recorded"]
    with cassettes.use("retrieve_subscription"):
        subscription = gateway.retrieve_subscription(recorded["subscription_id"])
    assert subscription.id == recorded["subscription_id"]
    assert subscription.customer_id == recorded["customer_id"]
    assert subscription.status is SubscriptionStatus.TRIALING
    assert subscription.price_id == recorded["prices"]["billingkit_test_pro_month"]
    assert subscription.quantity == 1
    assert subscription.trial_end is not None and subscription.trial_start is not None
    assert subscription.trial_end > subscription.trial_start
    # basil+ shape: the period lives on the item and still reaches the value
    assert subscription.current_period_start is not None
    assert subscription.current_period_end is not None
    assert subscription.current_period_end > subscription.current_period_start
    assert subscription.metadata["user_id"] == "billingkit-world"
    assert subscription.watermark == 0
    assert subscription.created.tzinfo is timezone.utc
    assert subscription.created < datetime.now(timezone.utc)
    no_sdk_objects(subscription)


def test_create_billing_portal_session(
    gateway: StripeSdkGateway, cassettes: CassetteKit, world: dict[str, Any], no_sdk_objects: Any
) -> None:
    customer_id = world["recorded"]["customer_id"]
    with cassettes.use("create_portal_session"):
        portal = gateway.create_billing_portal_session(
            customer_id=customer_id,
            return_url="https://app.example.com/account",
            idempotency_key=idempotency_key(world, "portal-user-world"),
        )
    assert portal.id.startswith("bps_")
    assert portal.customer_id == customer_id
    assert portal.url.startswith("https://billing.stripe.com/")
    assert portal.return_url == "https://app.example.com/account"
    no_sdk_objects(portal)


@pytest.mark.parametrize("idem", ["different-key", None])
def test_a_changed_idempotency_key_does_not_match_the_cassette(
    gateway: StripeSdkGateway, cassettes: CassetteKit, world: dict[str, Any], idem: str | None
) -> None:
    # Guards the guard: the matcher really checks what billingkit sends. vcr refuses the
    # unmatched request inside the HTTP client, which the SDK reports as a connection error.
    if cassettes.recording:
        pytest.skip("checks playback matching only")
    with pytest.raises(GatewayConnectionError, match="Idempotency-Key"):  # noqa: SIM117
        with cassettes.use("create_portal_session"):
            gateway.create_billing_portal_session(
                customer_id=world["recorded"]["customer_id"],
                return_url="https://app.example.com/account",
                idempotency_key=idem,
            )
