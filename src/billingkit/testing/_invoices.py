"""Invoices and their payment attempts (what a subscription's billing produces).

This module decides whether a payment succeeds and when it is retried; what the outcome
does to the subscription (``past_due``, ``active``, ended) is
:meth:`~billingkit.testing._subscriptions.Subscriptions.collect`'s business. Invoice
previews and proration lines belong here.
"""

from __future__ import annotations

import copy
from enum import Enum
from typing import Any

from billingkit.testing import _shapes
from billingkit.testing._state import FakeState, SubRecord, invalid, not_found

__all__ = ["Invoices", "Payment"]


class Payment(Enum):
    """The outcome of one payment attempt."""

    PAID = "paid"
    #: Declined; another automatic attempt is scheduled (``next_payment_attempt``).
    RETRYING = "retrying"
    #: Declined and no attempt is left.
    EXHAUSTED = "exhausted"


class Invoices:
    """Opens subscription invoices and attempts their payment."""

    def __init__(self, state: FakeState) -> None:
        self._state = state

    def latest_copy(self, subscription_id: str) -> dict[str, Any]:
        """A copy of the subscription's latest invoice JSON."""
        invoice_id = self._state.sub(subscription_id).json["latest_invoice"]
        if invoice_id is None:
            raise not_found("invoice", f"latest of {subscription_id}")
        return copy.deepcopy(self._state.invoices[invoice_id])

    def open_of(self, sub: SubRecord) -> dict[str, Any]:
        """The sub's latest invoice if it is open (awaiting payment)."""
        invoice = self._state.invoices.get(sub.json["latest_invoice"] or "")
        if invoice is None or invoice["status"] != "open":
            raise invalid(f"subscription {sub.json['id']} has no open invoice")
        return invoice

    def open(self, sub: SubRecord, at: int, reason: str, invoice_id: str) -> dict[str, Any]:
        """Create the invoice ``invoice_id`` for the sub's current period.

        Emits ``invoice.created`` then ``invoice.finalized``, both at ``at``.
        """
        state = self._state
        item = sub.json["items"]["data"][0]
        price = item["price"]
        trialing = sub.json["status"] == "trialing"
        amount = 0 if trialing else (price["unit_amount"] or 0) * item["quantity"]
        customer = state.customers.get(sub.json["customer"], {})
        invoice = _shapes.invoice_json(
            id=invoice_id,
            number=f"FAKE-{invoice_id[-4:]}",
            customer=sub.json["customer"],
            customer_email=customer.get("email"),
            subscription=sub.json,
            product_name=state.products[price["product"]]["name"],
            line_id=state.new_id("il"),
            created=at,
            billing_reason=reason,
            amount=amount,
            livemode=state.livemode,
        )
        state.invoices[invoice_id] = invoice
        sub.json["latest_invoice"] = invoice_id
        state.emit("invoice.created", invoice, at)
        invoice["status"] = "open"
        invoice["effective_at"] = at
        invoice["status_transitions"]["finalized_at"] = at
        state.emit("invoice.finalized", invoice, at)
        return invoice

    def attempt(
        self, sub: SubRecord, invoice: dict[str, Any], at: int, *, may_fail: bool
    ) -> Payment:
        """Try to pay ``invoice`` at ``at``; emits the invoice's payment events.

        A payment fails when it is due (amount > 0), ``may_fail`` and the sub was told to
        fail once or its customer's card declines. A failure schedules the next retry after
        the configured delays, or ends the retries.
        """
        state = self._state
        invoice["attempt_count"] += 1
        invoice["attempted"] = True
        declined = (
            may_fail
            and invoice["amount_due"] > 0
            and (sub.fail_next_payment or sub.json["customer"] in state.declining)
        )
        if may_fail:
            sub.fail_next_payment = False
        if declined:
            attempts = invoice["attempt_count"]
            delays = state.retry_delays
            retry = (
                at + int(delays[attempts - 1].total_seconds()) if attempts <= len(delays) else None
            )
            invoice["next_payment_attempt"] = retry
            state.emit("invoice.payment_failed", invoice, at)
            return Payment.EXHAUSTED if retry is None else Payment.RETRYING
        invoice["status"] = "paid"
        invoice["amount_paid"] = invoice["amount_due"]
        invoice["amount_remaining"] = 0
        invoice["next_payment_attempt"] = None
        invoice["status_transitions"]["paid_at"] = at
        state.emit("invoice.paid", invoice, at)
        state.emit("invoice.payment_succeeded", invoice, at)
        return Payment.PAID

    def stop_retries(self, subscription_id: str) -> None:
        """No more automatic attempts on the subscription's open invoices (it ended)."""
        for invoice in self._state.invoices.values():
            details = invoice["parent"]["subscription_details"]
            if details["subscription"] == subscription_id and invoice["status"] == "open":
                invoice["next_payment_attempt"] = None
