"""Invoices and their payment attempts (what a subscription's billing produces).

This module decides whether a payment succeeds and when it is retried; what the outcome
does to the subscription (``past_due``, ``active``, ended) is
``collect``'s business. Invoice
previews and proration lines belong here.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from decimal import ROUND_HALF_UP, Decimal
from enum import Enum
from typing import Any

from billingkit.testing import _shapes
from billingkit.testing._state import FakeState, SubRecord, diff, invalid, not_found

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
        #: Units of a metered price to bill on a subscription's new invoice (``None``: not
        #: metered); set by the facade to the meters part.
        self.metered_usage: Callable[[Mapping[str, Any], Mapping[str, Any]], int | None] = (
            lambda subscription, price: None
        )
        self._state = state
        #: Charges by id, the charge that paid each invoice, disputes by id.
        self.charges: dict[str, dict[str, Any]] = {}
        self.charge_of_invoice: dict[str, str] = {}
        self.disputes: dict[str, dict[str, Any]] = {}

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

        Proration items waiting on the sub (``create_prorations``) are added to it and its
        coupon applied. Emits ``invoice.created`` then ``invoice.finalized``, both at ``at``;
        finalizing gives it its hosted page and PDF URLs.
        """
        state = self._state
        item = sub.json["items"]["data"][0]
        price = item["price"]
        trialing = sub.json["status"] == "trialing"
        usage = self.metered_usage(sub.json, price)
        units = item["quantity"] if usage is None else usage
        amount = 0 if trialing else (price["unit_amount"] or 0) * units
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
        if usage is not None:  # the metered line: the usage of the period that ended
            line = invoice["lines"]["data"][0]
            line["quantity"] = usage
            line["description"] = f"{usage} × {state.products[price['product']]['name']}"  # noqa: RUF001
        if trialing:
            self.set_lines(invoice, invoice["lines"]["data"], None)
        else:
            pending = [dict(line, invoice=invoice_id) for line in sub.pending_items]
            sub.pending_items = []
            self.set_lines(invoice, invoice["lines"]["data"] + pending, self.coupon_of(sub))
        return self.issue(sub, invoice, at)

    def draft(
        self,
        sub: SubRecord,
        sub_json: Mapping[str, Any],
        at: int,
        reason: str,
        invoice_id: str,
        lines: list[dict[str, Any]] | None,
        coupon: Mapping[str, Any] | None,
    ) -> dict[str, Any]:
        """A draft invoice (not stored, no event) for ``sub_json``'s item.

        ``lines`` replace the default line (a full period of the item's price), unless
        ``None``. ``coupon`` discounts the discountable lines.
        """
        state = self._state
        item = sub_json["items"]["data"][0]
        price = item["price"]
        customer = state.customers.get(sub_json["customer"], {})
        invoice = _shapes.invoice_json(
            id=invoice_id,
            number=f"FAKE-{invoice_id[-4:]}",
            customer=sub_json["customer"],
            customer_email=customer.get("email"),
            subscription=sub_json,
            product_name=state.products[price["product"]]["name"],
            line_id=state.new_id("il") if lines is None else f"il_{invoice_id}",
            created=at,
            billing_reason=reason,
            amount=(price["unit_amount"] or 0) * item["quantity"],
            livemode=state.livemode,
        )
        chosen = invoice["lines"]["data"] if lines is None else lines
        self.set_lines(invoice, [dict(line, invoice=invoice_id) for line in chosen], coupon)
        return invoice

    def issue(self, sub: SubRecord, invoice: dict[str, Any], at: int) -> dict[str, Any]:
        """Store a draft, make it the sub's latest invoice and finalize it.

        Emits ``invoice.created`` then ``invoice.finalized``, both at ``at``. A customer's
        credit balance pays what it can (a negative total adds to that credit).
        """
        state = self._state
        customer = state.customers.get(sub.json["customer"])
        balance = (customer or {}).get("balance") or 0
        if customer is not None and (balance or invoice["total"] < 0):
            due = invoice["total"] + balance
            invoice["starting_balance"] = balance
            invoice["ending_balance"] = min(due, 0)
            invoice["amount_due"] = invoice["amount_remaining"] = max(due, 0)
            customer["balance"] = min(due, 0)
        invoice_id = invoice["id"]
        state.invoices[invoice_id] = invoice
        sub.json["latest_invoice"] = invoice_id
        state.emit("invoice.created", invoice, at)
        invoice["status"] = "open"
        invoice["hosted_invoice_url"] = f"https://invoice.stripe.com/i/fake/{invoice_id}"
        invoice["invoice_pdf"] = f"https://pay.stripe.com/invoice/fake/{invoice_id}/pdf"
        invoice["effective_at"] = at
        invoice["status_transitions"]["finalized_at"] = at
        state.emit("invoice.finalized", invoice, at)
        if invoice["total_discount_amounts"] and sub.coupon_invoices_left is not None:
            sub.coupon_invoices_left -= 1
            if sub.coupon_invoices_left <= 0:
                sub.coupon, sub.coupon_invoices_left = None, None
                sub.json["discounts"] = []
        return invoice

    def coupon_of(self, sub: SubRecord) -> dict[str, Any] | None:
        """The coupon discounting the sub's next invoice, if any."""
        return sub.coupon

    def set_lines(
        self,
        invoice: dict[str, Any],
        lines: list[dict[str, Any]],
        coupon: Mapping[str, Any] | None,
    ) -> None:
        """Put ``lines`` on ``invoice`` and recompute its amounts (with ``coupon``'s discount).

        A percentage is taken of the discountable lines (rounded half up); an amount off is
        capped at them. A negative total leaves nothing due.
        """
        subtotal = sum(line["amount"] for line in lines)
        discountable = max(sum(line["amount"] for line in lines if line["discountable"]), 0)
        discount = 0
        if coupon is not None:
            if coupon["percent_off"] is not None:
                exact = Decimal(discountable) * Decimal(str(coupon["percent_off"])) / 100
                discount = int(exact.quantize(Decimal(1), rounding=ROUND_HALF_UP))
            elif coupon["amount_off"] is not None:
                discount = coupon["amount_off"]
            discount = max(0, min(discount, discountable))
        total = subtotal - discount
        invoice["lines"]["data"] = lines
        invoice["lines"]["total_count"] = len(lines)
        invoice["subtotal"] = invoice["subtotal_excluding_tax"] = subtotal
        invoice["total"] = invoice["total_excluding_tax"] = total
        invoice["amount_due"] = invoice["amount_remaining"] = max(total, 0)
        invoice["total_discount_amounts"] = (
            [{"amount": discount, "discount": f"di_{coupon['id']}"}]
            if coupon is not None and discount
            else []
        )
        if coupon is not None:
            invoice["discounts"] = [f"di_{coupon['id']}"]

    def declines(self, sub: SubRecord, amount: int) -> bool:
        """Whether a payment of ``amount`` for the sub would be declined now."""
        return amount > 0 and (
            sub.fail_next_payment or sub.json["customer"] in self._state.declining
        )

    def attempt(
        self, sub: SubRecord, invoice: dict[str, Any], at: int, *, may_fail: bool
    ) -> Payment:
        """Try to pay ``invoice`` at ``at``; emits the invoice's payment events.

        A payment fails when it is due (amount > 0), ``may_fail`` and the sub was told to
        fail once or its customer's card declines. A failure schedules the next retry after
        the configured delays, or ends the retries.
        """
        state = self._state
        before = copy.deepcopy(invoice)
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
            state.emit("invoice.updated", invoice, at, previous=diff(before, invoice))
            return Payment.EXHAUSTED if retry is None else Payment.RETRYING
        invoice["status"] = "paid"
        invoice["amount_paid"] = invoice["amount_due"]
        invoice["amount_remaining"] = 0
        invoice["next_payment_attempt"] = None
        invoice["status_transitions"]["paid_at"] = at
        state.emit("invoice.paid", invoice, at)
        state.emit("invoice.payment_succeeded", invoice, at)
        if invoice["amount_paid"] > 0:
            self._charge(invoice, at)
        state.emit("invoice.updated", invoice, at, previous=diff(before, invoice))
        return Payment.PAID

    # ------------------------------------------------------------------ charges

    def _charge(self, invoice: dict[str, Any], at: int) -> None:
        """The charge that paid ``invoice``, tied to it by ``invoice_payment.paid`` (basil+)."""
        state = self._state
        intent_id = f"pi_{invoice['id']}"  # the id modify_subscription's answer shows
        charge = _charge_json(
            id=state.new_id("ch"),
            intent_id=intent_id,
            invoice=invoice,
            created=at,
            livemode=state.livemode,
        )
        self.charges[charge["id"]] = charge
        self.charge_of_invoice[invoice["id"]] = charge["id"]
        payment = {
            "id": state.new_id("inpay"),
            "object": "invoice_payment",
            "amount_paid": charge["amount"],
            "amount_requested": charge["amount"],
            "created": at,
            "currency": charge["currency"],
            "invoice": invoice["id"],
            "is_default": True,
            "livemode": state.livemode,
            "payment": {"payment_intent": intent_id, "type": "payment_intent"},
            "status": "paid",
            "status_transitions": {"canceled_at": None, "paid_at": at},
        }
        state.emit("invoice_payment.paid", payment, at)

    def charge_for(self, charge_or_invoice: str) -> dict[str, Any]:
        """The charge with that id, or the charge that paid the invoice with that id."""
        charge_id = self.charge_of_invoice.get(charge_or_invoice, charge_or_invoice)
        charge = self.charges.get(charge_id)
        if charge is None:
            raise not_found("charge", charge_or_invoice)
        return charge

    def refund(self, charge_or_invoice: str, amount: int | None, at: int) -> dict[str, Any]:
        """Refund ``amount`` (default: all that is left) of a charge; emits ``charge.refunded``."""
        charge = self.charge_for(charge_or_invoice)
        left = charge["amount"] - charge["amount_refunded"]
        amount = left if amount is None else amount
        if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
            raise invalid("the refund amount must be a positive integer", "parameter_invalid")
        if amount > left:
            raise invalid(
                f"refund of {amount} exceeds the {left} left on {charge['id']}",
                "amount_too_large",
            )
        before = copy.deepcopy(charge)
        charge["amount_refunded"] += amount
        charge["refunded"] = charge["amount_refunded"] == charge["amount"]
        charge["refunds"]["data"].insert(
            0,
            {
                "id": self._state.new_id("re"),
                "object": "refund",
                "amount": amount,
                "charge": charge["id"],
                "created": at,
                "currency": charge["currency"],
                "payment_intent": charge["payment_intent"],
                "reason": "requested_by_customer",
                "status": "succeeded",
            },
        )
        charge["refunds"]["total_count"] += 1
        self._state.emit("charge.refunded", charge, at, previous=diff(before, charge))
        return charge

    def open_dispute(
        self, charge_or_invoice: str, *, reason: str, amount: int | None, at: int
    ) -> dict[str, Any]:
        """Open a dispute on a charge; emits ``charge.dispute.created``."""
        charge = self.charge_for(charge_or_invoice)
        amount = charge["amount"] if amount is None else amount
        if (
            isinstance(amount, bool)
            or not isinstance(amount, int)
            or not 0 < amount <= charge["amount"]
        ):
            raise invalid("the disputed amount must be positive and at most the charge's")
        dispute = {
            "id": self._state.new_id("du"),
            "object": "dispute",
            "amount": amount,
            "charge": charge["id"],
            "created": at,
            "currency": charge["currency"],
            "evidence_details": {"due_by": at + 7 * 86_400, "has_evidence": False},
            "is_charge_refundable": False,
            "livemode": self._state.livemode,
            "metadata": {},
            "payment_intent": charge["payment_intent"],
            "reason": reason,
            "status": "needs_response",
        }
        self.disputes[dispute["id"]] = dispute
        charge["disputed"] = True
        self._state.emit("charge.dispute.created", dispute, at)
        return dispute

    def close_dispute(self, dispute_id: str, *, won: bool, at: int) -> dict[str, Any]:
        """Close a dispute as won or lost; emits ``charge.dispute.closed``."""
        dispute = self.disputes.get(dispute_id)
        if dispute is None:
            raise not_found("dispute", dispute_id)
        if dispute["status"] in ("won", "lost"):
            raise invalid(f"dispute {dispute_id} is already closed")
        before = copy.deepcopy(dispute)
        dispute["status"] = "won" if won else "lost"
        self._state.emit("charge.dispute.closed", dispute, at, previous=diff(before, dispute))
        return dispute

    def stop_retries(self, subscription_id: str) -> None:
        """No more automatic attempts on the subscription's open invoices (it ended)."""
        for invoice in self._state.invoices.values():
            details = invoice["parent"]["subscription_details"]
            if details["subscription"] == subscription_id and invoice["status"] == "open":
                invoice["next_payment_attempt"] = None


def _charge_json(
    *, id: str, intent_id: str, invoice: dict[str, Any], created: int, livemode: bool
) -> dict[str, Any]:
    """A succeeded card ``charge`` (basil+ shape: no ``invoice`` field) paying ``invoice``."""
    return {
        "id": id,
        "object": "charge",
        "amount": invoice["amount_paid"],
        "amount_captured": invoice["amount_paid"],
        "amount_refunded": 0,
        "captured": True,
        "created": created,
        "currency": invoice["currency"],
        "customer": invoice["customer"],
        "description": "Subscription update",
        "disputed": False,
        "livemode": livemode,
        "metadata": {},
        "paid": True,
        "payment_intent": intent_id,
        "payment_method_details": {"card": {"brand": "visa", "last4": "4242"}, "type": "card"},
        "receipt_url": f"https://pay.stripe.com/receipts/fake/{id}",
        "refunded": False,
        "refunds": {
            "object": "list",
            "data": [],
            "has_more": False,
            "total_count": 0,
            "url": f"/v1/charges/{id}/refunds",
        },
        "status": "succeeded",
    }
