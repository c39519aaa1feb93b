"""``charge.*``: refunds feed the invoice history; disputes fire hooks.

* ``charge.succeeded``/``charge.refunded`` merge the charge into its stored record
  (``apply_charge``): refunds only grow, so any delivery order ends in the same refunded
  amount, which the invoice the charge paid then reports
  (``amount_refunded``).
* ``charge.dispute.created``/``charge.dispute.closed`` fire
  ``DisputeOpened``/``DisputeClosed``
  once per event. billingkit stores no dispute state and takes no action: the app decides
  (e.g. suspend access while a dispute is open).

**Seam for one-time purchases:** ``apply_charge`` is the one place a charge's refund is
stored; it returns the merged ``ChargeRecord`` (payment
intent id, amount, amount refunded, fully refunded or not), which is what a purchase keyed by
its payment intent needs to update its refund status in the same unit of work.
"""

from __future__ import annotations

from billingkit.domain import EventStatus
from billingkit.domain.invoices import ChargeRecord
from billingkit.ports import UnitOfWork
from billingkit.services.hooks import DisputeClosed, DisputeHookEvent, DisputeOpened, HookKind
from billingkit.services.webhooks.handlers import HandlerContext
from billingkit.services.webhooks.handlers.purchases import purchase_refunded
from billingkit.stripe_objects import charge_from_stripe, dispute_from_stripe

__all__ = ["apply_charge", "charge_event", "dispute_closed", "dispute_opened"]


def apply_charge(uow: UnitOfWork, charge: ChargeRecord) -> ChargeRecord:
    """Merge ``charge`` into its stored record and return the stored record.

    Order-proof (see ``merge_charge``). Call it from any code
    that needs a charge's refund state kept, e.g. the purchases of one-time payments.
    """
    return uow.save_charge(charge)


def charge_event(ctx: HandlerContext) -> EventStatus:
    """``charge.succeeded``/``charge.refunded``: store the charge and its refunded amount."""
    apply_charge(ctx.uow, charge_from_stripe(ctx.event.object))
    return EventStatus.PROCESSED


def charge_refunded(ctx: HandlerContext) -> EventStatus:
    """``charge.refunded``: the invoice history's refunded amount, then the purchase's.

    One event feeds both: the charge record (an invoice's refunded amount sums its charges)
    and, for a one-time purchase, the purchase's refund and its ``PurchaseRefunded`` hook.
    """
    charge_event(ctx)
    purchase = purchase_refunded(ctx)
    # a purchase's refund decides (a late, smaller total is stale); else the charge was stored
    return EventStatus.PROCESSED if purchase is EventStatus.IGNORED else purchase


def dispute_opened(ctx: HandlerContext) -> EventStatus:
    """``charge.dispute.created``: the ``DisputeOpened`` hook."""
    return _dispute_hook(ctx, HookKind.DISPUTE_OPENED, DisputeOpened)


def dispute_closed(ctx: HandlerContext) -> EventStatus:
    """``charge.dispute.closed``: the ``DisputeClosed`` hook."""
    return _dispute_hook(ctx, HookKind.DISPUTE_CLOSED, DisputeClosed)


def _dispute_hook(ctx: HandlerContext, kind: HookKind, cls: type[DisputeHookEvent]) -> EventStatus:
    dispute = dispute_from_stripe(ctx.event.object)  # validated even when nobody listens
    if not ctx.hooks.wants(kind):
        return EventStatus.PROCESSED
    uow = ctx.uow
    charge: ChargeRecord | None = None
    for key in (dispute.payment_intent_id, dispute.charge_id):
        if key is not None and charge is None:
            charge = uow.get_charge(key)
    customer_id = charge.customer_id if charge is not None else None
    invoice_id = charge.invoice_id if charge is not None else None
    if customer_id is None and invoice_id is not None:
        invoice = uow.get_invoice(invoice_id)
        customer_id = invoice.customer_id if invoice is not None else None
    link = uow.customer_by_id(customer_id) if customer_id is not None else None
    ctx.hooks.emit(
        cls(
            event_id=ctx.event.id,
            event_type=ctx.event.type,
            user_id=link.user_id if link is not None else None,
            dispute_id=dispute.id,
            amount=dispute.amount,
            reason=dispute.reason,
            status=dispute.status,
            charge_id=dispute.charge_id,
            payment_intent_id=dispute.payment_intent_id,
            invoice_id=invoice_id,
            customer_id=customer_id,
        )
    )
    return EventStatus.PROCESSED
