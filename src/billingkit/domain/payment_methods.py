"""Payment methods, the customer's default one, and Stripe Entitlements, as stored.

Pure values and their ordering rules (no I/O). Every stored value carries a ``watermark``:
the Unix ``created`` second of the Stripe event that carried it, as for subscriptions.

* ``PaymentMethodSummary`` — one payment method: a *detached* method is final (Stripe
  never re-attaches one), so no later-arriving event brings it back (``decide_payment_method``).
* ``DefaultPaymentMethod`` — which method is the customer's default
  (``invoice_settings.default_payment_method``); the newer event wins, a tie is written.
* ``EntitlementSummary`` — the lookup keys of the customer's active entitlements; the
  newer summary wins, a tie is written (Stripe sends the whole summary each time).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from pydantic import Field

from billingkit.domain._base import UTCDateTime, Value
from billingkit.domain.ordering import SaveOutcome

__all__ = [
    "PAYMENT_METHOD_UPDATE",
    "PURPOSE_METADATA_KEY",
    "DefaultPaymentMethod",
    "EntitlementSummary",
    "PaymentMethodSummary",
    "SetupIntentOutcome",
    "decide_payment_method",
    "decide_watermark",
]

#: Metadata key naming why billingkit started a setup-mode Checkout (on the session and on
#: its SetupIntent)...
PURPOSE_METADATA_KEY = "billingkit_purpose"
#: ...and its value for ``CheckoutService.start_payment_method_update``: when the SetupIntent
#: succeeds, the new method becomes the customer's and its live subscriptions' default.
PAYMENT_METHOD_UPDATE = "payment_method_update"


class PaymentMethodSummary(Value):
    """What billingkit keeps of a Stripe payment method (never the card number).

    Attributes:
        id: the payment method (``pm_...``, or a legacy ``card_...``).
        customer_id: the customer it is attached to (kept when a detach clears it).
        type: Stripe's ``type`` (``card``, ``sepa_debit``, ``us_bank_account``, ...).
        card_brand: ``visa``, ``mastercard``, ... for a card.
        last4: the last four digits (card, bank account or IBAN).
        exp_month: a card's expiry month (1-12).
        exp_year: a card's expiry year.
        wallet: the wallet a card came from (``apple_pay``, ``google_pay``, ...), if any.
        detached: detached from the customer: final.
        created: when Stripe created the method.
        watermark: Unix second of the event that carried this state.
    """

    id: str = Field(min_length=1)
    customer_id: str | None = None
    type: str = Field(min_length=1)
    card_brand: str | None = None
    last4: str | None = None
    exp_month: int | None = Field(default=None, ge=1, le=12)
    exp_year: int | None = Field(default=None, ge=1, le=9999)
    wallet: str | None = None
    detached: bool = False
    created: UTCDateTime | None = None
    watermark: int = 0

    @property
    def expires_at(self) -> datetime | None:
        """The first instant the card no longer works (the month after its expiry month)."""
        if self.exp_month is None or self.exp_year is None:
            return None
        if self.exp_month == 12:
            if self.exp_year >= 9999:
                return datetime.max.replace(tzinfo=timezone.utc)
            return datetime(self.exp_year + 1, 1, 1, tzinfo=timezone.utc)
        return datetime(self.exp_year, self.exp_month + 1, 1, tzinfo=timezone.utc)

    def expires_within(self, now: datetime, days: int) -> bool:
        """Whether the card has expired or expires within ``days`` days of ``now``."""
        end = self.expires_at
        return end is not None and end <= now + timedelta(days=days)


class DefaultPaymentMethod(Value):
    """The customer's default payment method (``None``: none set), as of ``watermark``."""

    customer_id: str = Field(min_length=1)
    payment_method_id: str | None = None
    watermark: int = 0


class EntitlementSummary(Value):
    """The lookup keys of a customer's active Stripe entitlements, as of ``watermark``."""

    customer_id: str = Field(min_length=1)
    lookup_keys: tuple[str, ...] = ()
    watermark: int = 0


class SetupIntentOutcome(Value):
    """What a ``setup_intent.succeeded`` event tells: which method the customer saved.

    ``payment_method`` is filled when the event carried the method expanded.
    """

    id: str = Field(min_length=1)
    customer_id: str | None = None
    payment_method_id: str | None = None
    payment_method: PaymentMethodSummary | None = None
    metadata: dict[str, str] = Field(default_factory=dict)


def decide_payment_method(stored: PaymentMethodSummary, new: PaymentMethodSummary) -> SaveOutcome:
    """The reference rule for replacing a stored payment method.

    A stored detached method stays detached (``STALE`` for a non-detached state, whatever
    its watermark); otherwise a lower watermark is ``STALE`` and an equal or higher one is
    ``WRITTEN`` (a duplicate rewrites the same state).
    """
    if stored.detached and not new.detached:
        return SaveOutcome.STALE
    return decide_watermark(stored.watermark, new.watermark)


def decide_watermark(stored: int, new: int) -> SaveOutcome:
    """``WRITTEN`` when ``new`` is not older than ``stored`` (ties written), else ``STALE``."""
    return SaveOutcome.STALE if new < stored else SaveOutcome.WRITTEN
