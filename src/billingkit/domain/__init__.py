"""Pure billing values and rules: no I/O, no Stripe SDK, no database."""

from billingkit.domain._base import UTCDateTime, Value, from_timestamp, to_timestamp
from billingkit.domain.billing import (
    LIVE_STATUSES,
    TERMINAL_STATUSES,
    CheckoutRecord,
    CustomerLink,
    EventRecord,
    EventStatus,
    Subscription,
    SubscriptionStatus,
)
from billingkit.domain.money import ZERO_DECIMAL_CURRENCIES, Money, minor_unit_exponent
from billingkit.domain.plans import Interval, Plan, PlanDefinition, Price, PriceRef
from billingkit.domain.purchases import Purchase, PurchaseStatus

__all__ = [
    "LIVE_STATUSES",
    "TERMINAL_STATUSES",
    "ZERO_DECIMAL_CURRENCIES",
    "CheckoutRecord",
    "CustomerLink",
    "EventRecord",
    "EventStatus",
    "Interval",
    "Money",
    "Plan",
    "PlanDefinition",
    "Price",
    "PriceRef",
    "Purchase",
    "PurchaseStatus",
    "Subscription",
    "SubscriptionStatus",
    "UTCDateTime",
    "Value",
    "from_timestamp",
    "minor_unit_exponent",
    "to_timestamp",
]
