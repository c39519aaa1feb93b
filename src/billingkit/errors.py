"""The whole billingkit exception tree.

Every exception billingkit raises on purpose derives from ``BillingError``, so an app
can catch the library's failures in one place. Outcomes that are not failures (a duplicate
webhook, an ignored event type, a stale event) are result values, never exceptions.

::

    BillingError
    ├── ConfigurationError (ValueError)      invalid or missing configuration, at construction
    ├── InvalidInputError (ValueError)       a malformed argument (empty user id, bad URL, ...)
    ├── DomainError                          a billing rule refuses the request
    │   ├── UnknownPlanError (LookupError)   no such plan, or no price for that interval
    │   ├── AlreadySubscribedError           the user already has a live subscription
    │   ├── CheckoutOwnershipError           the checkout session belongs to another user
    │   ├── NoCustomerError (LookupError)    the user has no Stripe customer yet
    │   ├── PricesUnavailableError           catalog prices were never loaded
    │   ├── NoSubscriptionError (LookupError)  no live subscription of the user to act on
    │   ├── SubscriptionOwnershipError       the subscription id is not one of the user's
    │   ├── AmbiguousSubscriptionError       several live subscriptions: name one
    │   ├── SubscriptionStateError           the operation does not apply in this state
    │   └── InvalidPromotionCodeError        unknown, expired or used-up promotion code
    ├── WebhookError                         a webhook request must be answered 400
    │   ├── WebhookVerificationError         bad, missing or expired signature
    │   └── WebhookPayloadError (ValueError) body too large, not JSON, not an event, ...
    ├── GatewayError                         a call to Stripe failed (``retryable`` etc.)
    │   ├── GatewayAuthenticationError       401/403: bad or revoked API key
    │   ├── GatewayCardError                 402: card or payment declined
    │   ├── GatewayInvalidRequestError       400: Stripe rejected the parameters
    │   │   └── GatewayNotFoundError (LookupError)  404 / ``resource_missing``
    │   ├── GatewayRateLimitError            429: retryable
    │   ├── GatewayServerError               5xx: retryable
    │   └── GatewayConnectionError           network failure: retryable
    └── RepositoryError                      persistence failed
        ├── ConflictError                    a uniqueness rule was violated
        └── RepositoryUnavailableError       the database could not be reached: retryable

Secrets (API keys, webhook secrets) never appear in messages or ``repr``.
"""

from __future__ import annotations

__all__ = [
    "AlreadySubscribedError",
    "AmbiguousSubscriptionError",
    "BillingError",
    "CheckoutOwnershipError",
    "ConfigurationError",
    "ConflictError",
    "DomainError",
    "GatewayAuthenticationError",
    "GatewayCardError",
    "GatewayConnectionError",
    "GatewayError",
    "GatewayInvalidRequestError",
    "GatewayNotFoundError",
    "GatewayRateLimitError",
    "GatewayServerError",
    "InvalidInputError",
    "InvalidPromotionCodeError",
    "NoCustomerError",
    "NoSubscriptionError",
    "PricesUnavailableError",
    "RepositoryError",
    "RepositoryUnavailableError",
    "SubscriptionOwnershipError",
    "SubscriptionStateError",
    "UnknownPlanError",
    "WebhookError",
    "WebhookPayloadError",
    "WebhookVerificationError",
]


class BillingError(Exception):
    """Root of every exception billingkit raises on purpose."""

    #: Whether retrying the same operation later may succeed.
    retryable: bool = False


class ConfigurationError(BillingError, ValueError):
    """The configuration is invalid or incomplete; raised at construction time."""


class InvalidInputError(BillingError, ValueError):
    """An argument the app passed is malformed; nothing was sent to Stripe or stored."""


class DomainError(BillingError):
    """A billing rule refuses the request."""


class UnknownPlanError(DomainError, LookupError):
    """No plan with that key, or the plan has no price for the requested interval."""


class AlreadySubscribedError(DomainError):
    """The user already has a live subscription; change it with ``SubscriptionService``."""


class CheckoutOwnershipError(DomainError):
    """The checkout session was not started by (or for) this user."""


class NoCustomerError(DomainError, LookupError):
    """The user has no Stripe customer yet (they never started a checkout)."""


class PricesUnavailableError(DomainError):
    """Catalog prices could not be loaded and no earlier value exists to fall back on."""

    retryable = True


class NoSubscriptionError(DomainError, LookupError):
    """The user has no live subscription stored to act on (or not the one named)."""


class SubscriptionOwnershipError(DomainError):
    """The subscription id names a subscription that is not the user's; Stripe not called."""


class AmbiguousSubscriptionError(DomainError):
    """The user has several live subscriptions: pass ``subscription_id`` to pick one."""


class SubscriptionStateError(DomainError):
    """The operation does not apply to the subscription in its current state.

    E.g. resuming a subscription that is neither paused nor set to cancel, or undoing a
    scheduled change when none is scheduled.
    """


class InvalidPromotionCodeError(DomainError):
    """The promotion code is unknown, expired, deactivated or used up: show it to the user."""


class WebhookError(BillingError):
    """The webhook request is bad and must be answered 400; nothing was stored."""


class WebhookVerificationError(WebhookError):
    """The ``Stripe-Signature`` header is missing, malformed, expired or does not match."""


class WebhookPayloadError(WebhookError, ValueError):
    """The body is empty, too large, not JSON, not an object, or not a well-formed event."""


class GatewayError(BillingError):
    """A call to Stripe failed.

    Attributes:
        retryable: whether the same request (with the same idempotency key) may succeed later.
        http_status: the HTTP status Stripe answered, or ``None`` for connection errors.
        code: Stripe's structured error code (e.g. ``resource_missing``), if any.
        request_id: Stripe's request id, for support tickets.
        user_message: a message that is safe to show to the paying user (card errors).
    """

    def __init__(
        self,
        message: str,
        *,
        retryable: bool = False,
        http_status: int | None = None,
        code: str | None = None,
        request_id: str | None = None,
        user_message: str | None = None,
    ) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.http_status = http_status
        self.code = code
        self.request_id = request_id
        self.user_message = user_message

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({str(self)!r}, retryable={self.retryable}, "
            f"http_status={self.http_status}, code={self.code!r}, request_id={self.request_id!r})"
        )


class GatewayAuthenticationError(GatewayError):
    """Stripe refused the API key (401) or its permissions (403)."""


class GatewayCardError(GatewayError):
    """The card or payment was declined (402); ``user_message`` is safe to display."""


class GatewayInvalidRequestError(GatewayError):
    """Stripe rejected the request's parameters (400)."""


class GatewayNotFoundError(GatewayInvalidRequestError, LookupError):
    """The object does not exist (404, code ``resource_missing``)."""


class GatewayRateLimitError(GatewayError):
    """Too many requests (429); retry later."""


class GatewayServerError(GatewayError):
    """Stripe had an internal error (5xx); retry later."""


class GatewayConnectionError(GatewayError):
    """Stripe could not be reached; retry later."""


class RepositoryError(BillingError):
    """Persistence failed."""


class ConflictError(RepositoryError):
    """A uniqueness rule was violated (e.g. a Stripe customer already linked to another user)."""


class RepositoryUnavailableError(RepositoryError):
    """The database could not be reached or the transaction was aborted; retry later."""

    retryable = True
