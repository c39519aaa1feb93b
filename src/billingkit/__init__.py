"""billingkit: a correct, fast, well-tested Stripe billing core for Python web apps.

The public API is what ``__all__`` lists (pinned by a test). Services depend only on the two
ports in :mod:`billingkit.ports`; adapters live in :mod:`billingkit.adapters` and the test kit
in :mod:`billingkit.testing`.
"""

from billingkit.config import AccessPolicy, BillingConfig
from billingkit.domain import (
    CheckoutRecord,
    CustomerLink,
    EventRecord,
    EventStatus,
    Interval,
    Money,
    Plan,
    PlanDefinition,
    Price,
    PriceRef,
    Subscription,
    SubscriptionStatus,
)
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
from billingkit.ports import Repository, StripeGateway, UnitOfWork

__version__ = "0.1.0.dev0"

__all__ = [
    "AccessPolicy",
    "AlreadySubscribedError",
    "BillingConfig",
    "BillingError",
    "CheckoutOwnershipError",
    "CheckoutRecord",
    "ConfigurationError",
    "ConflictError",
    "CustomerLink",
    "DomainError",
    "EventRecord",
    "EventStatus",
    "GatewayAuthenticationError",
    "GatewayCardError",
    "GatewayConnectionError",
    "GatewayError",
    "GatewayInvalidRequestError",
    "GatewayNotFoundError",
    "GatewayRateLimitError",
    "GatewayServerError",
    "Interval",
    "Money",
    "NoCustomerError",
    "Plan",
    "PlanDefinition",
    "Price",
    "PriceRef",
    "PricesUnavailableError",
    "Repository",
    "RepositoryError",
    "RepositoryUnavailableError",
    "StripeGateway",
    "Subscription",
    "SubscriptionStatus",
    "UnitOfWork",
    "UnknownPlanError",
    "WebhookError",
    "WebhookPayloadError",
    "WebhookVerificationError",
    "__version__",
]
