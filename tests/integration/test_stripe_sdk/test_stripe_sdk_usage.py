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
from billingkit.ports import MeterEvent

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
