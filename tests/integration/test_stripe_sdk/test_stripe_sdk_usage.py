"""StripeSdkGateway.create_meter_event over cassettes (synthetic): the request and its errors.

The call is matched strictly (path, form body with the payload keys, idempotency key, API
version), so a renamed parameter fails here.
"""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from stripe_cassettes import CassetteKit

from billingkit.adapters.stripe_sdk import StripeSdkGateway
from billingkit.errors import GatewayInvalidRequestError, GatewayRateLimitError
from billingkit.ports import CheckoutSessionRequest, MeterEvent
from billingkit.stripe_objects import price_from_stripe

CUSTOMER = "cus_QXg1UsageBk00001"
AT = datetime(2026, 7, 29, 7, 43, 20, tzinfo=timezone.utc)


def test_create_meter_event(gateway: StripeSdkGateway, cassettes: CassetteKit) -> None:
    with cassettes.use("create_meter_event", synthetic=True):
        event = gateway.create_meter_event(
            event_name="api_calls",
            customer_id=CUSTOMER,
            value=25,
            identifier="bku_0001",
            timestamp=AT,
        )
    assert event == MeterEvent(
        identifier="bku_0001", event_name="api_calls", customer_id=CUSTOMER, value=25, timestamp=AT
    )


def test_an_unknown_meter_is_refused_for_good(
    gateway: StripeSdkGateway, cassettes: CassetteKit
) -> None:
    with (
        cassettes.use("create_meter_event_no_meter", synthetic=True),
        pytest.raises(GatewayInvalidRequestError) as caught,
    ):
        gateway.create_meter_event(
            event_name="no_such_meter",
            customer_id=CUSTOMER,
            value=25,
            identifier="bku_0002",
            timestamp=AT,
        )
    assert caught.value.retryable is False and caught.value.http_status == 400


def test_a_rate_limit_is_retryable(gateway: StripeSdkGateway, cassettes: CassetteKit) -> None:
    with (
        cassettes.use("create_meter_event_rate_limited", synthetic=True),
        pytest.raises(GatewayRateLimitError) as caught,
    ):
        gateway.create_meter_event(
            event_name="api_calls",
            customer_id=CUSTOMER,
            value=25,
            identifier="bku_0003",
            timestamp=AT,
        )
    assert caught.value.retryable is True and caught.value.http_status == 429


def test_a_metered_price_is_checked_out_without_quantity(
    gateway: StripeSdkGateway, cassettes: CassetteKit
) -> None:
    request = CheckoutSessionRequest(
        mode="subscription",
        customer_id=CUSTOMER,
        price_id="price_1PgafmB7WZ01zgkWMetered01",
        metered=True,
        success_url="https://app.example.com/billing/success?session_id={CHECKOUT_SESSION_ID}",
        cancel_url="https://app.example.com/pricing",
        client_reference_id="user-usage",
        idempotency_key="bk-synthetic-checkout-metered",
    )
    with cassettes.use("create_checkout_metered", synthetic=True):
        session = gateway.create_checkout_session(request)
    assert session.mode == "subscription" and session.customer_id == CUSTOMER


def test_a_metered_price_is_read_from_recurring() -> None:
    price = price_from_stripe(
        {
            "id": "price_m",
            "object": "price",
            "currency": "usd",
            "product": "prod_m",
            "unit_amount": 3,
            "type": "recurring",
            "recurring": {"interval": "month", "usage_type": "metered", "meter": "mtr_1"},
        }
    )
    assert (price.usage_type, price.meter_id, price.is_metered) == ("metered", "mtr_1", True)
    legacy = price_from_stripe(
        {
            "id": "plan_m",
            "object": "plan",
            "currency": "usd",
            "product": "prod_m",
            "amount": 3,
            "interval": "month",
            "usage_type": "metered",
        }
    )
    assert legacy.is_metered and legacy.meter_id is None
