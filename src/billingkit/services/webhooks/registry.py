"""Stripe event type -> handler: ``HANDLERS``, the only dispatch table.

No lookup by name or prefix: a type missing here is recorded as ``ignored``. The handlers
live in ``billingkit.services.webhooks.handlers``, one module per event family.
"""

from __future__ import annotations

from collections.abc import Mapping

from billingkit.services.webhooks.handlers import Handler
from billingkit.services.webhooks.handlers.catalog import catalog_changed
from billingkit.services.webhooks.handlers.charges import (
    charge_event,
    charge_refunded,
    dispute_closed,
    dispute_opened,
)
from billingkit.services.webhooks.handlers.checkout import checkout_event
from billingkit.services.webhooks.handlers.customers import customer_deleted
from billingkit.services.webhooks.handlers.entitlements import entitlement_summary_updated
from billingkit.services.webhooks.handlers.invoices import (
    invoice_action_required,
    invoice_event,
    invoice_payment_failed,
    invoice_payment_paid,
)
from billingkit.services.webhooks.handlers.payment_methods import (
    customer_updated_with_default,
    payment_method_detached,
    payment_method_event,
    setup_intent_succeeded,
)
from billingkit.services.webhooks.handlers.subscriptions import subscription_event

__all__ = ["HANDLERS"]

#: Stripe event type -> handler.
HANDLERS: Mapping[str, Handler] = {
    "checkout.session.completed": checkout_event,
    "checkout.session.async_payment_succeeded": checkout_event,
    "checkout.session.async_payment_failed": checkout_event,
    "checkout.session.expired": checkout_event,
    "customer.subscription.created": subscription_event,
    "customer.subscription.updated": subscription_event,
    "customer.subscription.deleted": subscription_event,
    "customer.subscription.paused": subscription_event,
    "customer.subscription.resumed": subscription_event,
    "customer.subscription.pending_update_applied": subscription_event,
    "customer.subscription.trial_will_end": subscription_event,
    "invoice.created": invoice_event,
    "invoice.finalized": invoice_event,
    "invoice.updated": invoice_event,
    "invoice.paid": invoice_event,
    "invoice.payment_succeeded": invoice_event,
    "invoice.payment_failed": invoice_payment_failed,
    "invoice.payment_action_required": invoice_action_required,
    "invoice.voided": invoice_event,
    "invoice.marked_uncollectible": invoice_event,
    "invoice.deleted": invoice_event,
    "invoice_payment.paid": invoice_payment_paid,
    "charge.succeeded": charge_event,
    "charge.refunded": charge_refunded,
    "charge.dispute.created": dispute_opened,
    "charge.dispute.closed": dispute_closed,
    "customer.updated": customer_updated_with_default,
    "customer.deleted": customer_deleted,
    "price.created": catalog_changed,
    "price.updated": catalog_changed,
    "price.deleted": catalog_changed,
    "plan.created": catalog_changed,
    "plan.updated": catalog_changed,
    "plan.deleted": catalog_changed,
    "product.created": catalog_changed,
    "product.updated": catalog_changed,
    "product.deleted": catalog_changed,
    "payment_method.attached": payment_method_event,
    "payment_method.updated": payment_method_event,
    "payment_method.automatically_updated": payment_method_event,
    "payment_method.detached": payment_method_detached,
    "setup_intent.succeeded": setup_intent_succeeded,
    "entitlements.active_entitlement_summary.updated": entitlement_summary_updated,
}
