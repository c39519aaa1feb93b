"""billingkit: a correct, fast, well-tested Stripe billing core for Python web apps.

The public API is what ``__all__`` lists (pinned by a test). Services depend only on the two
ports in ``billingkit.ports``; adapters live in ``billingkit.adapters`` and the test kit
in ``billingkit.testing``.

``StripeSdkGateway`` and ``SqlAlchemyRepository`` are imported lazily on first access, so
``import billingkit`` loads neither the ``stripe`` package nor SQLAlchemy.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from billingkit.adapters.memory import InMemoryRepository
from billingkit.composition import Billing
from billingkit.config import AccessPolicy, BillingConfig, CheckoutDefaults
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
    Purchase,
    PurchaseStatus,
    Subscription,
    SubscriptionStatus,
)
from billingkit.domain.invoices import ChargeRecord, Dispute, InvoiceStatus, InvoiceSummary
from billingkit.domain.usage import UsageRecord, UsageStatus, UsageTotal
from billingkit.errors import (
    AlreadySubscribedError,
    AmbiguousSubscriptionError,
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
    InvalidInputError,
    InvalidPromotionCodeError,
    NoCustomerError,
    NoSubscriptionError,
    PricesUnavailableError,
    RepositoryError,
    RepositoryUnavailableError,
    SubscriptionOwnershipError,
    SubscriptionStateError,
    UnknownPlanError,
    WebhookError,
    WebhookPayloadError,
    WebhookVerificationError,
)
from billingkit.ports import Repository, StripeGateway, UnitOfWork, UnitOfWorkBase
from billingkit.services.catalog import PlanCatalog
from billingkit.services.checkout import CheckoutConfirmation, CheckoutService, CheckoutStart
from billingkit.services.customers import BillingDetails, CustomerDetails
from billingkit.services.hooks import (
    CancelScheduled,
    CancelUndone,
    CheckoutCompleted,
    DisputeClosed,
    DisputeOpened,
    HookEvent,
    HookKind,
    PaymentActionRequired,
    PaymentFailed,
    PlanChanged,
    PlanChangeScheduled,
    PurchaseCompleted,
    PurchaseRefunded,
    QuantityChanged,
    SubscriptionActivated,
    SubscriptionCanceled,
    SubscriptionPlanUnknown,
    SubscriptionRecovered,
    TrialWillEnd,
)
from billingkit.services.subscriptions import (
    ChangePreview,
    SubscriptionResult,
    SubscriptionService,
)
from billingkit.services.usage import FlushResult, UsageService
from billingkit.services.webhooks import (
    WebhookOutcome,
    WebhookProcessor,
    WebhookResponse,
    WebhookResult,
)

if TYPE_CHECKING:
    from billingkit.adapters.sqlalchemy import SqlAlchemyRepository
    from billingkit.adapters.stripe_sdk import StripeSdkGateway

__version__ = "0.1.0.dev0"

_LAZY = {
    "SqlAlchemyRepository": "billingkit.adapters.sqlalchemy",
    "StripeSdkGateway": "billingkit.adapters.stripe_sdk",
}


def __getattr__(name: str) -> Any:
    """Import the adapters with heavy dependencies only when first used."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'billingkit' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = [
    "AccessPolicy",
    "AlreadySubscribedError",
    "AmbiguousSubscriptionError",
    "Billing",
    "BillingConfig",
    "BillingDetails",
    "BillingError",
    "CancelScheduled",
    "CancelUndone",
    "ChangePreview",
    "ChargeRecord",
    "CheckoutCompleted",
    "CheckoutConfirmation",
    "CheckoutDefaults",
    "CheckoutOwnershipError",
    "CheckoutRecord",
    "CheckoutService",
    "CheckoutStart",
    "ConfigurationError",
    "ConflictError",
    "CustomerDetails",
    "CustomerLink",
    "Dispute",
    "DisputeClosed",
    "DisputeOpened",
    "DomainError",
    "EventRecord",
    "EventStatus",
    "FlushResult",
    "GatewayAuthenticationError",
    "GatewayCardError",
    "GatewayConnectionError",
    "GatewayError",
    "GatewayInvalidRequestError",
    "GatewayNotFoundError",
    "GatewayRateLimitError",
    "GatewayServerError",
    "HookEvent",
    "HookKind",
    "InMemoryRepository",
    "Interval",
    "InvalidInputError",
    "InvalidPromotionCodeError",
    "InvoiceStatus",
    "InvoiceSummary",
    "Money",
    "NoCustomerError",
    "NoSubscriptionError",
    "PaymentActionRequired",
    "PaymentFailed",
    "Plan",
    "PlanCatalog",
    "PlanChangeScheduled",
    "PlanChanged",
    "PlanDefinition",
    "Price",
    "PriceRef",
    "PricesUnavailableError",
    "Purchase",
    "PurchaseCompleted",
    "PurchaseRefunded",
    "PurchaseStatus",
    "QuantityChanged",
    "Repository",
    "RepositoryError",
    "RepositoryUnavailableError",
    "SqlAlchemyRepository",
    "StripeGateway",
    "StripeSdkGateway",
    "Subscription",
    "SubscriptionActivated",
    "SubscriptionCanceled",
    "SubscriptionOwnershipError",
    "SubscriptionPlanUnknown",
    "SubscriptionRecovered",
    "SubscriptionResult",
    "SubscriptionService",
    "SubscriptionStateError",
    "SubscriptionStatus",
    "TrialWillEnd",
    "UnitOfWork",
    "UnitOfWorkBase",
    "UnknownPlanError",
    "UsageRecord",
    "UsageService",
    "UsageStatus",
    "UsageTotal",
    "WebhookError",
    "WebhookOutcome",
    "WebhookPayloadError",
    "WebhookProcessor",
    "WebhookResponse",
    "WebhookResult",
    "WebhookVerificationError",
    "__version__",
]
