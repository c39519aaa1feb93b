from __future__ import annotations

import builtins
import inspect
import re

import pytest

from billingkit import errors as E

PARENTS: list[tuple[type[Exception], tuple[type[BaseException], ...]]] = [
    (E.ConfigurationError, (E.BillingError, ValueError)),
    (E.InvalidInputError, (E.BillingError, ValueError)),
    (E.DomainError, (E.BillingError,)),
    (E.UnknownPlanError, (E.DomainError, LookupError)),
    (E.AlreadySubscribedError, (E.DomainError,)),
    (E.CheckoutOwnershipError, (E.DomainError,)),
    (E.NoCustomerError, (E.DomainError, LookupError)),
    (E.PricesUnavailableError, (E.DomainError,)),
    (E.NoSubscriptionError, (E.DomainError, LookupError)),
    (E.SubscriptionOwnershipError, (E.DomainError,)),
    (E.AmbiguousSubscriptionError, (E.DomainError,)),
    (E.SubscriptionStateError, (E.DomainError,)),
    (E.InvalidPromotionCodeError, (E.DomainError,)),
    (E.WebhookError, (E.BillingError,)),
    (E.WebhookVerificationError, (E.WebhookError,)),
    (E.WebhookPayloadError, (E.WebhookError, ValueError)),
    (E.GatewayError, (E.BillingError,)),
    (E.GatewayAuthenticationError, (E.GatewayError,)),
    (E.GatewayCardError, (E.GatewayError,)),
    (E.GatewayInvalidRequestError, (E.GatewayError,)),
    (E.GatewayNotFoundError, (E.GatewayInvalidRequestError, LookupError)),
    (E.GatewayRateLimitError, (E.GatewayError,)),
    (E.GatewayServerError, (E.GatewayError,)),
    (E.GatewayConnectionError, (E.GatewayError,)),
    (E.RepositoryError, (E.BillingError,)),
    (E.ConflictError, (E.RepositoryError,)),
    (E.RepositoryUnavailableError, (E.RepositoryError,)),
]


@pytest.mark.parametrize(("error", "parents"), PARENTS, ids=[e.__name__ for e, _ in PARENTS])
def test_tree(error: type[Exception], parents: tuple[type[BaseException], ...]) -> None:
    for parent in parents:
        assert issubclass(error, parent)
    assert error.__doc__


def test_every_exported_error_is_a_billing_error_drawn_in_the_docstring() -> None:
    exported = [getattr(E, name) for name in E.__all__]
    assert all(inspect.isclass(e) and issubclass(e, E.BillingError) for e in exported)
    doc = E.__doc__ or ""
    for error in exported:
        assert error.__name__ in doc, error.__name__


def test_the_drawn_tree_matches_the_classes() -> None:
    """Every line of the docstring's drawing names a class, its parent and builtin bases."""
    parents: list[str] = []
    drawn = 0
    for line in (E.__doc__ or "").splitlines():
        found = re.search(r"[├└]── (\w+)(?: \((\w+)\))?", line)
        if line.strip() == "BillingError":
            parents = ["BillingError"]
            continue
        if not found:
            continue
        depth = line.index("──") // 4
        name, builtin = found.group(1), found.group(2)
        parents = [*parents[:depth], name]
        error = getattr(E, name)
        assert error.__bases__[0] is getattr(E, parents[-2]), name
        if builtin is not None:
            assert issubclass(error, getattr(builtins, builtin)), name
        drawn += 1
    assert drawn == len(E.__all__) - 1  # every class but the root


def test_unknown_plan_is_caught_as_lookup_error() -> None:
    with pytest.raises(LookupError):
        raise E.UnknownPlanError("unknown plan 'gold'")


def test_retryable_flags() -> None:
    assert E.PricesUnavailableError("x").retryable
    assert E.RepositoryUnavailableError("x").retryable
    assert not E.ConflictError("x").retryable
    assert not E.BillingError("x").retryable


def test_gateway_error_attributes_and_repr() -> None:
    error = E.GatewayServerError(
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
    error = E.GatewayConnectionError("network down")
    assert (error.retryable, error.http_status, error.code, error.request_id) == (
        False,
        None,
        None,
        None,
    )
    card = E.GatewayCardError("declined", http_status=402, user_message="Your card was declined.")
    assert card.user_message == "Your card was declined."
    assert "Your card was declined." not in repr(card)


def test_gateway_error_repr_does_not_carry_the_user_message_or_secrets() -> None:
    error = E.GatewayAuthenticationError("Invalid API key provided", http_status=401)
    text = repr(error)
    assert "sk_" not in text
    assert "user_message" not in text
