"""Each Stripe failure class maps to the right GatewayError, with status, code and request id."""

from __future__ import annotations

from typing import Any

import pytest
import stripe
from stripe_cassettes import CassetteKit, idempotency_key, response_header

from billingkit.adapters.stripe_sdk import StripeSdkGateway, gateway_error
from billingkit.errors import (
    GatewayAuthenticationError,
    GatewayCardError,
    GatewayConnectionError,
    GatewayError,
    GatewayInvalidRequestError,
    GatewayNotFoundError,
    GatewayRateLimitError,
    GatewayServerError,
)
from billingkit.ports import CheckoutSessionRequest

BAD_KEY = "sk_test_billingkitRevokedKey4242"


def _assert_safe(error: GatewayError, *secrets: str) -> None:
    for text in (str(error), repr(error), str(error.user_message)):
        assert "sk_test_" not in text and "sk_live_" not in text
        for secret in secrets:
            assert secret not in text


def test_bad_api_key_is_an_authentication_error_without_the_key(
    cassettes: CassetteKit, world: dict[str, Any]
) -> None:
    gateway = StripeSdkGateway.from_api_key(BAD_KEY)
    with (
        cassettes.use("error_authentication") as cassette,
        pytest.raises(GatewayAuthenticationError) as caught,
    ):
        gateway.retrieve_customer(world["recorded"]["customer_id"])
    error = caught.value
    assert error.http_status == 401
    assert error.retryable is False
    assert error.request_id == response_header(cassette, 0, "request-id")
    assert error.request_id is not None and error.request_id.startswith("req_")
    _assert_safe(error, BAD_KEY, BAD_KEY[-4:], "Revoked")
    assert "Invalid API Key" in str(error)


def test_missing_object_is_not_found_by_structured_code(
    gateway: StripeSdkGateway, cassettes: CassetteKit
) -> None:
    with (
        cassettes.use("error_not_found") as cassette,
        pytest.raises(GatewayNotFoundError) as caught,
    ):
        gateway.retrieve_customer("cus_billingkitMissing0")
    error = caught.value
    assert isinstance(error, LookupError)
    assert isinstance(error, GatewayInvalidRequestError)
    assert error.http_status == 404
    assert error.code == "resource_missing"
    assert error.retryable is False
    assert error.request_id == response_header(cassette, 0, "request-id")


def test_other_invalid_request_is_not_mistaken_for_not_found(
    gateway: StripeSdkGateway, cassettes: CassetteKit, world: dict[str, Any]
) -> None:
    request = CheckoutSessionRequest(
        mode="subscription",
        customer_id=world["recorded"]["customer_id"],
        price_id=world["recorded"]["prices"]["billingkit_test_pro_year"],
        success_url="not a url",
        cancel_url="https://app.example.com/pricing",
        client_reference_id="user-bad",
        idempotency_key=idempotency_key(world, "checkout-bad-url"),
    )
    with (
        cassettes.use("error_invalid_request"),
        pytest.raises(GatewayInvalidRequestError) as caught,
    ):
        gateway.create_checkout_session(request)
    error = caught.value
    assert type(error) is GatewayInvalidRequestError
    assert error.http_status == 400
    assert error.code == "url_invalid"
    assert error.retryable is False


def test_reused_idempotency_key_with_other_parameters_is_an_invalid_request(
    gateway: StripeSdkGateway, cassettes: CassetteKit, world: dict[str, Any]
) -> None:
    key = idempotency_key(world, "customer-user-idem")
    with cassettes.use("error_idempotency") as cassette:
        first = gateway.create_customer(
            user_id="user-idem", email="first@example.com", idempotency_key=key
        )
        with pytest.raises(GatewayInvalidRequestError) as caught:
            gateway.create_customer(
                user_id="user-idem", email="second@example.com", idempotency_key=key
            )
    assert first.email == "first@example.com"
    assert type(caught.value) is GatewayInvalidRequestError
    assert caught.value.http_status == 400
    assert caught.value.request_id == response_header(cassette, 1, "request-id")


def test_card_error_carries_a_message_safe_to_show(
    gateway: StripeSdkGateway, cassettes: CassetteKit, world: dict[str, Any]
) -> None:
    with cassettes.use("error_card", synthetic=True), pytest.raises(GatewayCardError) as caught:
        gateway.create_customer(
            user_id=world["synthetic"]["user_id"],
            email="card@example.com",
            idempotency_key="bk-synthetic-customer-card",
        )
    error = caught.value
    assert error.http_status == 402
    assert error.code == "card_declined"
    assert error.user_message == "Your card was declined."
    assert error.retryable is False


def test_rate_limit_is_retryable(gateway: StripeSdkGateway, cassettes: CassetteKit) -> None:
    keys = ["billingkit_test_pro_month", "billingkit_test_pro_year", "billingkit_test_lifetime"]
    with (
        cassettes.use("error_rate_limit", synthetic=True) as cassette,
        pytest.raises(GatewayRateLimitError) as caught,
    ):
        gateway.list_prices(lookup_keys=keys)
    assert cassettes.requests_made(cassette) == 1  # the SDK does not retry a 429 by itself
    assert caught.value.retryable is True
    assert caught.value.http_status == 429
    assert caught.value.code == "rate_limit"


def test_server_error_is_retryable(
    api_key: str, cassettes: CassetteKit, world: dict[str, Any]
) -> None:
    gateway = StripeSdkGateway.from_api_key(api_key, max_network_retries=0)
    with (
        cassettes.use("error_server", synthetic=True) as cassette,
        pytest.raises(GatewayServerError) as caught,
    ):
        gateway.retrieve_subscription(world["synthetic"]["subscription_id"])
    assert caught.value.retryable is True
    assert caught.value.http_status == 500
    assert caught.value.request_id == response_header(cassette, 0, "request-id")


def test_sdk_retries_a_server_error_with_the_same_idempotency_key(
    api_key: str, cassettes: CassetteKit, world: dict[str, Any]
) -> None:
    # Both recorded requests carry the same Idempotency-Key, and the matcher checks it.
    gateway = StripeSdkGateway.from_api_key(api_key, max_network_retries=1)
    with cassettes.use("retry_server_error", synthetic=True) as cassette:
        customer = gateway.create_customer(
            user_id=world["synthetic"]["user_id"],
            email="retry@example.com",
            idempotency_key="bk-synthetic-customer-retry",
        )
    assert cassettes.requests_made(cassette) == 2
    assert customer.id == world["synthetic"]["customer_id"]


def test_unreachable_server_is_a_retryable_connection_error() -> None:
    # Port 9 (discard) on localhost is closed: the connection is refused at once.
    gateway = StripeSdkGateway.from_api_key(
        "sk_test_connectionCheckKey", base_url="http://127.0.0.1:9", max_network_retries=0
    )
    with pytest.raises(GatewayConnectionError) as caught:
        gateway.retrieve_customer("cus_anything")
    error = caught.value
    assert error.retryable is True
    assert error.http_status is None
    assert error.request_id is None
    _assert_safe(error, "connectionCheckKey")


def test_404_without_resource_missing_is_still_not_found(
    api_key: str, cassettes: CassetteKit, world: dict[str, Any]
) -> None:
    # Stripe answers an unknown URL with a 404 that carries no code.
    gateway = StripeSdkGateway.from_api_key(api_key, max_network_retries=0)
    with (
        cassettes.use("error_not_found_without_code", synthetic=True) as cassette,
        pytest.raises(GatewayNotFoundError) as caught,
    ):
        gateway.retrieve_subscription(world["synthetic"]["subscription_id"])
    error = caught.value
    assert isinstance(error, LookupError)
    assert error.http_status == 404
    assert error.code is None
    assert error.retryable is False
    assert error.request_id == response_header(cassette, 0, "request-id")
    assert "Unrecognized request URL" in str(error)


def test_proxy_html_502_names_the_status_and_an_excerpt(
    api_key: str, cassettes: CassetteKit, world: dict[str, Any]
) -> None:
    gateway = StripeSdkGateway.from_api_key(api_key, max_network_retries=0)
    with (
        cassettes.use("error_proxy_html_502", synthetic=True),
        pytest.raises(GatewayServerError) as caught,
    ):
        gateway.retrieve_customer(world["synthetic"]["customer_id"])
    error = caught.value
    assert error.http_status == 502
    assert error.retryable is True
    assert error.request_id is None and error.code is None
    message = str(error)
    assert "HTTP 502" in message
    assert "not Stripe's JSON" in message
    assert "502 Bad Gateway" in message  # the excerpt, tags and whitespace removed
    assert "<html>" not in message and "\r" not in message
    assert len(message) < 300  # an excerpt, not the whole page
    _assert_safe(error)


def test_proxy_html_404_is_not_found_with_the_status_and_an_excerpt(
    api_key: str, cassettes: CassetteKit, world: dict[str, Any]
) -> None:
    gateway = StripeSdkGateway.from_api_key(api_key, max_network_retries=0)
    with (
        cassettes.use("error_proxy_html_404", synthetic=True),
        pytest.raises(GatewayNotFoundError) as caught,
    ):
        gateway.retrieve_customer(world["synthetic"]["customer_id"])
    error = caught.value
    assert error.http_status == 404
    assert error.retryable is False
    assert "HTTP 404" in str(error) and "not found on this proxy" in str(error)
    _assert_safe(error)


def test_json_that_is_not_a_stripe_error_names_the_status_without_the_key(
    api_key: str, cassettes: CassetteKit, world: dict[str, Any]
) -> None:
    gateway = StripeSdkGateway.from_api_key(api_key, max_network_retries=0)
    with (
        cassettes.use("error_proxy_json_403", synthetic=True),
        pytest.raises(GatewayError) as caught,
    ):
        gateway.retrieve_customer(world["synthetic"]["customer_id"])
    error = caught.value
    assert type(error) is GatewayError  # a 403 from something that is not Stripe
    assert error.http_status == 403
    assert error.retryable is False
    assert "HTTP 403" in str(error) and "egress denied" in str(error)
    _assert_safe(error, "4242")


@pytest.mark.parametrize(
    ("status", "kind", "retryable"),
    [
        (404, GatewayNotFoundError, False),
        (429, GatewayRateLimitError, True),
        (409, GatewayServerError, True),
        (503, GatewayServerError, True),
        (401, GatewayError, False),
        (418, GatewayError, False),
    ],
)
def test_a_body_that_is_not_stripes_json_is_classified_by_status(
    status: int, kind: type[GatewayError], retryable: bool
) -> None:
    # What the SDK raises when it cannot read the body (the cassette tests cover 404/502/403
    # end to end); a proxy page may echo the request's credentials, which must not show.
    page = f"<html><body><h1>Error {status}</h1><p>Authorization: Bearer sk_live_abc123</p>"
    exc = stripe.APIError(f"Invalid response body from API: {page}", page, status, {})
    error = gateway_error(exc, "retrieve customer")
    assert type(error) is kind
    assert error.retryable is retryable
    assert error.http_status == status and error.code is None
    assert f"HTTP {status}" in str(error) and f"Error {status}" in str(error)
    _assert_safe(error, "abc123")


def test_an_empty_non_json_body_says_so() -> None:
    error = gateway_error(stripe.APIError("Invalid response body from API: ", "", 502, {}), "x")
    assert "HTTP 502" in str(error) and "(empty body)" in str(error)
