"""Invoices and the charges that paid them, as billingkit stores them; their ordering rules.

* ``InvoiceSummary`` — what the billing-history page shows, stored from every
  ``invoice.*`` event through ``decide_invoice_save`` (newer wins, terminal statuses stay
  terminal, same-second ties by ``invoice_progress``) and ``merge_invoice`` (a write
  never erases a known number, URL, user or payment id).
* ``ChargeRecord`` — one payment of an invoice or purchase, from ``charge.*`` and
  ``invoice_payment.paid`` events. Refunds only grow, so the stored record is the
  field-wise merge of everything seen (``merge_charge``): any delivery order ends in the
  same state. An invoice's refunded amount is the sum over its charges.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum
from typing import Any

from pydantic import Field

from billingkit.domain._base import UTCDateTime, Value
from billingkit.domain.money import Money
from billingkit.domain.ordering import SaveOutcome

__all__ = [
    "TERMINAL_INVOICE_STATUSES",
    "ChargeRecord",
    "Dispute",
    "Invoice",
    "InvoiceStatus",
    "InvoiceSummary",
    "charge_from_columns",
    "charge_to_columns",
    "decide_invoice_save",
    "invoice_from_columns",
    "invoice_progress",
    "invoice_to_columns",
    "merge_charge",
    "merge_invoice",
]


class InvoiceStatus(str, Enum):
    """A Stripe invoice status, plus ``deleted`` for a draft removed by ``invoice.deleted``.

    ``deleted`` is billingkit's tombstone: the summary stays stored (so a late
    ``invoice.created`` cannot bring the draft back) but is never listed.
    """

    DRAFT = "draft"
    OPEN = "open"
    PAID = "paid"
    UNCOLLECTIBLE = "uncollectible"
    VOID = "void"
    DELETED = "deleted"

    def __str__(self) -> str:
        return self.value

    @property
    def is_terminal(self) -> bool:
        """Whether the invoice never goes back to ``draft`` or ``open`` from here."""
        return self in TERMINAL_INVOICE_STATUSES


#: Statuses an invoice never leaves for ``draft`` or ``open``.
TERMINAL_INVOICE_STATUSES = frozenset(
    {InvoiceStatus.PAID, InvoiceStatus.UNCOLLECTIBLE, InvoiceStatus.VOID, InvoiceStatus.DELETED}
)

#: How far along its life an invoice is; breaks same-second ties (higher is later).
_RANK = {
    InvoiceStatus.DRAFT: 0,
    InvoiceStatus.OPEN: 1,
    InvoiceStatus.UNCOLLECTIBLE: 2,
    InvoiceStatus.PAID: 3,
    InvoiceStatus.VOID: 3,
    InvoiceStatus.DELETED: 4,
}


class InvoiceSummary(Value):
    """An invoice as the billing history shows it; built by ``invoice_from_stripe``.

    Attributes:
        id: ``in_...``.
        customer_id: the Stripe customer billed, if any.
        user_id: the app's user (from the customer link), when known.
        number: the invoice number (set at finalization; drafts have none).
        status: see ``InvoiceStatus``.
        billing_reason: Stripe's ``billing_reason`` (``subscription_create``,
            ``subscription_cycle``, ``manual``, ...).
        subscription_id: the subscription the invoice belongs to (``None`` for a one-off).
        period_start, period_end: the period the invoice covers.
        total, amount_due, amount_paid, amount_remaining: amounts in the invoice currency
            (``None`` when the payload has none).
        amount_refunded: refunded so far through the invoice's charges; filled when read
            from the repository (``None`` in a summary parsed from a payload).
        created: when Stripe created the invoice.
        hosted_invoice_url: the page where the customer sees and pays the invoice.
        invoice_pdf: the PDF download URL.
        lines: the line descriptions, in Stripe's order.
        attempt_count: payment attempts so far.
        next_payment_attempt: when Stripe retries the payment, if it will.
        payment_intent_id, charge_id: the payment behind the invoice, when the payload
            names it (API versions before basil; later ones link it with
            ``invoice_payment.paid``).
        livemode: live or test mode.
        watermark: Unix seconds of the event that carried this state (0: none).
    """

    id: str
    customer_id: str | None = None
    user_id: str | None = None
    number: str | None = None
    status: InvoiceStatus = InvoiceStatus.DRAFT
    billing_reason: str | None = None
    subscription_id: str | None = None
    period_start: UTCDateTime | None = None
    period_end: UTCDateTime | None = None
    total: Money | None = None
    amount_due: Money | None = None
    amount_paid: Money | None = None
    amount_remaining: Money | None = None
    amount_refunded: Money | None = None
    created: UTCDateTime | None = None
    hosted_invoice_url: str | None = None
    invoice_pdf: str | None = None
    lines: tuple[str, ...] = ()
    attempt_count: int | None = None
    next_payment_attempt: UTCDateTime | None = None
    payment_intent_id: str | None = None
    charge_id: str | None = None
    livemode: bool = False
    watermark: int = 0

    @property
    def currency(self) -> str | None:
        """The invoice currency (from its amounts), or ``None`` when it has no amount."""
        for money in (self.total, self.amount_due, self.amount_paid, self.amount_remaining):
            if money is not None:
                return money.currency
        return None


#: The name the webhook handlers and hook events used before the summary was stored.
Invoice = InvoiceSummary


class ChargeRecord(Value):
    """One payment (a charge) as billingkit stores it, keyed by ``key``.

    Attributes:
        key: the payment intent id when there is one, else the charge id: the one key that
            ``charge.*`` events and ``invoice_payment.paid`` (which names only the payment
            intent) both know.
        charge_id: ``ch_...`` when known.
        payment_intent_id: ``pi_...`` when known.
        invoice_id: the invoice the payment paid, when known.
        customer_id: the Stripe customer, when known.
        amount: the charged amount, when known.
        amount_refunded: refunded so far, in minor units of ``amount``'s currency.
        refunded: whether the charge was refunded in full.
        created: when the charge was created, when known.
    """

    key: str = Field(min_length=1)
    charge_id: str | None = None
    payment_intent_id: str | None = None
    invoice_id: str | None = None
    customer_id: str | None = None
    amount: Money | None = None
    amount_refunded: int = Field(default=0, ge=0)
    refunded: bool = False
    created: UTCDateTime | None = None


class Dispute(Value):
    """A dispute (chargeback) on a charge, from ``charge.dispute.*`` events.

    Attributes:
        id: ``du_...`` (``dp_...`` on old API versions).
        charge_id: the disputed charge.
        payment_intent_id: its payment intent, when the payload names it.
        amount: the disputed amount.
        reason: Stripe's reason (``fraudulent``, ``product_not_received``, ...).
        status: Stripe's status (``needs_response``, ``under_review``, ``won``, ``lost``, ...).
        created: when the dispute was opened.
    """

    id: str
    charge_id: str | None = None
    payment_intent_id: str | None = None
    amount: Money | None = None
    reason: str | None = None
    status: str | None = None
    created: UTCDateTime | None = None


def invoice_progress(invoice: InvoiceSummary) -> tuple[int, int, int]:
    """How far along ``invoice`` is: (status rank, attempts, amount paid); higher is later.

    Used only to order two states carried by events of the same second: an invoice moves
    draft -> open -> paid (or uncollectible, void), its attempt count only grows and so does
    what was paid.
    """
    paid = invoice.amount_paid.amount if invoice.amount_paid is not None else 0
    return (_RANK[invoice.status], invoice.attempt_count or 0, paid)


def decide_invoice_save(stored: InvoiceSummary, new: InvoiceSummary) -> SaveOutcome:
    """The rule every repository's ``save_invoice`` applies against a stored summary.

    In order: a deleted (tombstoned) draft stays deleted, and a terminal status never goes
    back to ``draft``/``open`` (``STALE``); a lower watermark is ``STALE``, a higher one
    ``WRITTEN``; for the same second, the state with more ``invoice_progress`` wins and an
    equal one is ``WRITTEN`` (merged with ``merge_invoice``, so nothing known is lost).
    """
    if stored.status is InvoiceStatus.DELETED and new.status is not InvoiceStatus.DELETED:
        return SaveOutcome.STALE
    if stored.status.is_terminal and not new.status.is_terminal:
        return SaveOutcome.STALE
    if new.watermark != stored.watermark:
        return SaveOutcome.WRITTEN if new.watermark > stored.watermark else SaveOutcome.STALE
    if invoice_progress(new) < invoice_progress(stored):
        return SaveOutcome.STALE
    return SaveOutcome.WRITTEN


def merge_invoice(stored: InvoiceSummary | None, new: InvoiceSummary) -> InvoiceSummary:
    """``new`` as stored over ``stored``: fields it leaves ``None`` keep the stored value.

    Applies to the user, number, URLs, payment ids and period: facts that, once known, stay
    true. ``amount_refunded`` is never stored on the invoice (it is read from the charges).
    """
    kept: dict[str, object] = {}
    if new.amount_refunded is not None:
        kept["amount_refunded"] = None
    if stored is not None:
        for name in _KEPT_FIELDS:
            if getattr(new, name) is None and getattr(stored, name) is not None:
                kept[name] = getattr(stored, name)
    return new.model_copy(update=kept) if kept else new


_KEPT_FIELDS = (
    "user_id",
    "number",
    "hosted_invoice_url",
    "invoice_pdf",
    "payment_intent_id",
    "charge_id",
    "subscription_id",
    "period_start",
    "period_end",
)


def merge_charge(stored: ChargeRecord | None, new: ChargeRecord) -> ChargeRecord:
    """The field-wise union of two records of one payment; order does not matter.

    Ids, amount and creation time are filled once (a known value is kept); the refunded
    amount is the larger of the two (refunds only grow) and ``refunded`` stays true once true.
    """
    if stored is None:
        return new
    return ChargeRecord(
        key=stored.key,
        charge_id=stored.charge_id or new.charge_id,
        payment_intent_id=stored.payment_intent_id or new.payment_intent_id,
        invoice_id=stored.invoice_id or new.invoice_id,
        customer_id=stored.customer_id or new.customer_id,
        amount=stored.amount or new.amount,
        amount_refunded=max(stored.amount_refunded, new.amount_refunded),
        refunded=stored.refunded or new.refunded,
        created=stored.created or new.created,
    )


# --------------------------------------------------------------------------- flat (stored) form

_INVOICE_AMOUNTS = ("total", "amount_due", "amount_paid", "amount_remaining")


def invoice_to_columns(invoice: InvoiceSummary) -> dict[str, Any]:
    """The summary as one flat row for a SQL table (what the SQL adapters store).

    The amounts become integers plus one ``currency`` column (an invoice has one currency);
    ``lines`` a JSON list; ``status`` its string; ``amount_refunded`` is not stored.
    """
    row: dict[str, Any] = {
        name: getattr(invoice, name)
        for name in InvoiceSummary.model_fields
        if name not in _INVOICE_AMOUNTS and name != "amount_refunded"
    }
    row["status"] = InvoiceStatus(invoice.status).value
    row["lines"] = list(invoice.lines)
    row["currency"] = invoice.currency
    for name in _INVOICE_AMOUNTS:
        money = getattr(invoice, name)
        row[name] = None if money is None else money.amount
    return row


def invoice_from_columns(row: Mapping[str, Any], *, refunded: int | None = None) -> InvoiceSummary:
    """The summary stored by ``invoice_to_columns``, with ``refunded`` minor units refunded.

    ``amount_refunded`` is ``Money(refunded)`` in the invoice currency when the row has a
    currency (``refunded`` ``None`` counting as 0), else ``None``.
    """
    values = dict(row)
    currency = values.pop("currency", None)
    for name in _INVOICE_AMOUNTS:
        amount = values.get(name)
        values[name] = (
            None if amount is None or currency is None else Money(amount=amount, currency=currency)
        )
    values["lines"] = tuple(values.get("lines") or ())
    values["amount_refunded"] = (
        None if currency is None else Money(amount=refunded or 0, currency=currency)
    )
    return InvoiceSummary.model_validate(values)


def charge_to_columns(charge: ChargeRecord) -> dict[str, Any]:
    """The charge as one flat row: ``amount`` becomes an integer plus ``currency``."""
    row = {name: getattr(charge, name) for name in ChargeRecord.model_fields}
    row["currency"] = None if charge.amount is None else charge.amount.currency
    row["amount"] = None if charge.amount is None else charge.amount.amount
    return row


def charge_from_columns(row: Mapping[str, Any]) -> ChargeRecord:
    """The charge stored by ``charge_to_columns``."""
    values = dict(row)
    currency = values.pop("currency", None)
    amount = values.get("amount")
    values["amount"] = (
        None if amount is None or currency is None else Money(amount=amount, currency=currency)
    )
    return ChargeRecord.model_validate(values)
