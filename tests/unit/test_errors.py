from __future__ import annotations

import inspect

import pytest

import billingkit.errors as errors_module
from billingkit.errors import (
    AlreadySubscribedError,
    BillingError,
    CheckoutOwnershipError,
    ConfigurationError,
    ConflictError,
    DomainError,
    GatewayAuthenticationError,
    GatewayCardError,
    GatewayConnectionError,
    GatewayError,
    GatewayInvalidRequestError,
    GatewayNotFoundError,
    GatewayRateLimitError,
    GatewayServerError,
    NoCustomerError,
    PricesUnavailableError,
    RepositoryError,
    RepositoryUnavailableError,
    UnknownPlanError,
    WebhookError,
    WebhookPayloadError,
    WebhookVerificationError,
)

PARENTS: list[tuple[type[Exception], tuple[type[BaseException], ...]]] = [
    (ConfigurationError, (BillingError, ValueError)),
    (DomainError, (BillingError,)),
    (UnknownPlanError, (DomainError, LookupError)),
    (AlreadySubscribedError, (DomainError,)),
    (CheckoutOwnershipError, (DomainError,)),
    (NoCustomerError, (DomainError, LookupError)),
    (PricesUnavailableError, (DomainError,)),
    (WebhookError, (BillingError,)),
    (WebhookVerificationError, (WebhookError,)),
    (WebhookPayloadError, (WebhookError, ValueError)),
    (GatewayError, (BillingError,)),
    (GatewayAuthenticationError, (GatewayError,)),
    (GatewayCardError, (GatewayError,)),
    (GatewayInvalidRequestError, (GatewayError,)),
    (GatewayNotFoundError, (GatewayInvalidRequestError, LookupError)),
    (GatewayRateLimitError, (GatewayError,)),
    (GatewayServerError, (GatewayError,)),
    (GatewayConnectionError, (GatewayError,)),
    (RepositoryError, (BillingError,)),
    (ConflictError, (RepositoryError,)),
    (RepositoryUnavailableError, (RepositoryError,)),
]


@pytest.mark.parametrize(("error", "parents"), PARENTS, ids=[e.__name__ for e, _ in PARENTS])
def test_tree(error: type[Exception], parents: tuple[type[BaseException], ...]) -> None:
    for parent in parents:
        assert issubclass(error, parent)
    assert error.__doc__


def test_every_exported_error_is_a_billing_error_drawn_in_the_docstring() -> None:
    exported = [getattr(errors_module, name) for name in errors_module.__all__]
    assert all(inspect.isclass(e) and issubclass(e, BillingError) for e in exported)
    doc = errors_module.__doc__ or ""
    for error in exported:
        assert error.__name__ in doc, error.__name__


def test_unknown_plan_is_caught_as_lookup_error() -> None:
    with pytest.raises(LookupError):
        raise UnknownPlanError("unknown plan 'gold'")


def test_retryable_flags() -> None:
    assert PricesUnavailableError("x").retryable
    assert RepositoryUnavailableError("x").retryable
    assert not ConflictError("x").retryable
    assert not BillingError("x").retryable


def test_gateway_error_attributes_and_repr() -> None:
    error = GatewayServerError(
        "Stripe answered 503",
        retryable=True,
        http_status=503,
        code="api_error",
        request_id="req_123",
        user_message=None,
    )
    assert (error.retryable, error.http_status, error.code, error.request_id) == (
        True,
        503,
        "api_error",
        "req_123",
    )
    assert str(error) == "Stripe answered 503"
    assert repr(error) == (
        "GatewayServerError('Stripe answered 503', retryable=True, http_status=503, "
        "code='api_error', request_id='req_123')"
    )


def test_gateway_error_defaults() -> None:
    error = GatewayConnectionError("network down")
    assert (error.retryable, error.http_status, error.code, error.request_id) == (
        False,
        None,
        None,
        None,
    )
    card = GatewayCardError("declined", http_status=402, user_message="Your card was declined.")
    assert card.user_message == "Your card was declined."
    assert "Your card was declined." not in repr(card)


def test_gateway_error_repr_does_not_carry_the_user_message_or_secrets() -> None:
    error = GatewayAuthenticationError("Invalid API key provided", http_status=401)
    text = repr(error)
    assert "sk_" not in text
    assert "user_message" not in text
