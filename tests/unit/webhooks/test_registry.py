"""The dispatch table: every event type the issue lists has a handler."""

from __future__ import annotations

from billingkit.services.webhooks.registry import HANDLERS


def test_registry_covers_the_issue_list() -> None:
    expected = {
        "checkout.session.completed",
        "checkout.session.async_payment_succeeded",
        "checkout.session.async_payment_failed",
        "checkout.session.expired",
        "customer.subscription.created",
        "customer.subscription.updated",
        "customer.subscription.deleted",
        "customer.subscription.paused",
        "customer.subscription.resumed",
        "customer.subscription.pending_update_applied",
        "customer.subscription.trial_will_end",
        "invoice.paid",
        "invoice.payment_succeeded",
        "invoice.payment_failed",
        "invoice.payment_action_required",
        "customer.updated",
        "customer.deleted",
    }
    assert expected <= set(HANDLERS)
    assert {k for k in HANDLERS if k.split(".")[0] in ("price", "product", "plan")} == {
        f"{obj}.{verb}"
        for obj in ("price", "product", "plan")
        for verb in ("created", "updated", "deleted")
    }
