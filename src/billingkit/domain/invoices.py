"""An invoice as the webhook handlers read it (from ``invoice.*`` events)."""

from __future__ import annotations

from billingkit.domain._base import UTCDateTime, Value
from billingkit.domain.money import Money

__all__ = ["Invoice"]


class Invoice(Value):
    """The invoice fields billingkit reads; built by ``stripe_objects.invoice_from_stripe``.

    Attributes:
        id: ``in_...``.
        customer_id: the Stripe customer billed, if any.
        subscription_id: the subscription the invoice belongs to (``None`` for a one-off).
        amount_due: in minor units; ``None`` when the invoice gives no amount or currency.
        attempt_count: payment attempts so far.
        next_payment_attempt: when Stripe retries the payment, if it will.
        hosted_invoice_url: where the customer can pay or authenticate.
    """

    id: str
    customer_id: str | None = None
    subscription_id: str | None = None
    amount_due: Money | None = None
    attempt_count: int | None = None
    next_payment_attempt: UTCDateTime | None = None
    hosted_invoice_url: str | None = None
