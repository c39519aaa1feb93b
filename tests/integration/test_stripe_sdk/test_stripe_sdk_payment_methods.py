"""StripeSdkGateway's payment-method calls over cassettes (synthetic).

The setup-mode Checkout Session and the default-payment-method update (customer, then each
subscription), each request matched strictly; their errors map to the GatewayError tree.
"""

from __future__ import annotations

from typing import Any

import pytest
from stripe_cassettes import CassetteKit

from billingkit.adapters.stripe_sdk import StripeSdkGateway
from billingkit.errors import GatewayInvalidRequestError, GatewayNotFoundError
from billingkit.ports import SetupSessionRequest

CUS = "cus_QXg1CardUpdate0001"
SUB = "sub_1Pgc6rB7WZ01zgkWCardUp1"
METHOD = "pm_1PgcCardUpdateMaster01"
KEY = "billingkit-default-pm-synthetic"
METADATA = {"billingkit_purpose": "payment_method_update", "user_id": "user-card"}


def setup_request(key: str) -> SetupSessionRequest:
    return SetupSessionRequest(
        customer_id=CUS,
        success_url="https://app.example.com/account/card?done=1",
        cancel_url="https://app.example.com/account",
        client_reference_id="user-card",
        metadata=METADATA,
        idempotency_key=key,
    )


def test_create_setup_checkout_session(
    gateway: StripeSdkGateway, cassettes: CassetteKit, no_sdk_objects: Any
) -> None:
    with cassettes.use("create_setup_checkout_session", synthetic=True) as cassette:
        session = gateway.create_setup_checkout_session(setup_request("billingkit-setup-synthetic"))
    assert cassettes.requests_made(cassette) == 1
    assert session.mode == "setup" and session.status == "open"
    assert session.payment_status == "no_payment_required"
    assert session.url is not None and session.customer_id == CUS
    assert session.metadata == METADATA
    no_sdk_objects(session)


def test_create_setup_checkout_session_for_an_unknown_customer(
    gateway: StripeSdkGateway, cassettes: CassetteKit
) -> None:
    with (
        cassettes.use("create_setup_checkout_session_invalid", synthetic=True),
        pytest.raises(GatewayNotFoundError) as caught,
    ):
        gateway.create_setup_checkout_session(setup_request("billingkit-setup-synthetic-invalid"))
    assert caught.value.http_status == 400 and caught.value.code == "resource_missing"
    assert not caught.value.retryable


def test_set_default_payment_method_on_the_customer_then_each_subscription(
    gateway: StripeSdkGateway, cassettes: CassetteKit
) -> None:
    with cassettes.use("set_default_payment_method", synthetic=True) as cassette:
        gateway.set_default_payment_method(
            customer_id=CUS, payment_method_id=METHOD, subscription_ids=[SUB], idempotency_key=KEY
        )
    assert cassettes.requests_made(cassette) == 2


def test_set_default_payment_method_of_a_foreign_method(
    gateway: StripeSdkGateway, cassettes: CassetteKit
) -> None:
    with (
        cassettes.use("set_default_payment_method_invalid", synthetic=True),
        pytest.raises(GatewayInvalidRequestError) as caught,
    ):
        gateway.set_default_payment_method(
            customer_id=CUS, payment_method_id=METHOD, idempotency_key=f"{KEY}-invalid"
        )
    assert caught.value.http_status == 400
