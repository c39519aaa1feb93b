"""Every handler's effect, on real Stripe payloads of every era (and labelled derived ones)."""

from __future__ import annotations

from typing import Any

import pytest
from webhook_support import NOW, Harness, load, load_derived

from billingkit.domain import (
    CheckoutRecord,
    CustomerLink,
    EventStatus,
    Interval,
    Money,
    SubscriptionStatus,
)
from billingkit.services.hooks import (
    CheckoutCompleted,
    HookEvent,
    HookKind,
    PaymentActionRequired,
    PaymentFailed,
    PlanChanged,
    SubscriptionActivated,
    SubscriptionCanceled,
    TrialWillEnd,
)
from billingkit.services.webhook_handlers import HANDLERS
from billingkit.services.webhooks import WebhookOutcome

ERAS = [
    "2017-09-20_bb581d37",
    "2020-09-02_dd1cdfcd",
    "2025-02-14_b819eedc",
    "2025-03-25_1ef159c3",
    "2026-07-29_f0758b15",
]


def recorder(h: Harness) -> list[HookEvent]:
    seen: list[HookEvent] = []
    for kind in HookKind:
        h.processor.on(kind, seen.append)
    return seen


def link(h: Harness, user_id: str, customer_id: str) -> None:
    with h.repository.unit_of_work() as uow:
        uow.link_customer(CustomerLink(user_id=user_id, customer_id=customer_id))


# --------------------------------------------------------------------------- subscriptions


@pytest.mark.parametrize("era", ERAS)
def test_subscription_of_every_era_is_stored(era: str) -> None:
    h = Harness()
    obj = load(f"openapi/{era}/subscription.json")
    event = h.event("customer.subscription.updated", obj)
    assert h.deliver(event).outcome is WebhookOutcome.PROCESSED
    stored = h.stored_subscription(obj["id"])
    assert stored is not None
    assert stored.status.value == obj["status"]
    assert stored.customer_id == obj["customer"]
    assert stored.watermark == event["created"]
    item = obj["items"]["data"][0]
    expected_price = (item.get("price") or item.get("plan"))["id"]
    assert stored.price_id == expected_price
    period_end = obj.get("current_period_end") or item.get("current_period_end")
    assert stored.current_period_end is not None
    assert stored.current_period_end.timestamp() == period_end


@pytest.mark.parametrize("name", [f"subscription_sub_fakefakefakefakefake000{i}" for i in (1, 4)])
def test_dj_stripe_subscriptions_are_stored(name: str) -> None:
    h = Harness()
    obj = load(f"dj-stripe/{name}.json")
    h.deliver(h.event("customer.subscription.created", obj))
    stored = h.stored_subscription(obj["id"])
    assert stored is not None and stored.status.value == obj["status"]
    assert stored.price_id == obj["items"]["data"][0]["plan"]["id"]


def test_created_active_fires_activated_with_the_user_from_the_link() -> None:
    h = Harness()
    seen = recorder(h)
    body = load("pay/subscription.created.json")
    link(h, "user_pay", body["object"]["customer"])
    event = h.event("customer.subscription.created", body["object"])
    h.deliver(event)
    stored = h.stored_subscription(body["object"]["id"])
    assert stored is not None and stored.user_id == "user_pay"
    assert seen == [
        SubscriptionActivated(
            event_id=event["id"],
            event_type="customer.subscription.created",
            user_id="user_pay",
            subscription=stored,
            previous_status=None,
        )
    ]


def test_updated_with_previous_plan_fires_plan_changed() -> None:
    h = Harness()
    seen = recorder(h)
    body = load("pay/subscription.updated.json")
    event = h.event(
        "customer.subscription.updated",
        body["object"],
        previous_attributes=body["previous_attributes"],
    )
    h.deliver(event)
    changed = [e for e in seen if isinstance(e, PlanChanged)]
    assert len(changed) == 1
    assert changed[0].previous_price_id == "OLD_00000000000000"
    assert changed[0].subscription.price_id == body["object"]["items"]["data"][0]["price"]["id"]


def test_deleted_fires_canceled_and_stores_terminal_state() -> None:
    h = Harness()
    seen = recorder(h)
    body = load("pay/subscription.deleted.json")
    h.deliver(h.event("customer.subscription.deleted", body["object"]))
    stored = h.stored_subscription(body["object"]["id"])
    assert stored is not None and stored.status is SubscriptionStatus.CANCELED
    assert [type(e) for e in seen] == [SubscriptionCanceled]


def test_trial_will_end_fires_only_while_trialing() -> None:
    h = Harness()
    seen = recorder(h)
    body = load_derived("subscription.trialing.json")
    event = h.event("customer.subscription.trial_will_end", body["object"])
    assert h.deliver(event).outcome is WebhookOutcome.PROCESSED
    trial = [e for e in seen if isinstance(e, TrialWillEnd)]
    assert len(trial) == 1 and trial[0].user_id == "user_trial"
    assert trial[0].trial_end is not None and trial[0].trial_end.timestamp() == 1746209600
    # Pay's trial_will_end payload is for a subscription already active: no hook.
    h2 = Harness()
    seen2 = recorder(h2)
    pay = load("pay/subscription.trial_will_end.json")
    h2.deliver(h2.event("customer.subscription.trial_will_end", pay["object"]))
    assert not [e for e in seen2 if isinstance(e, TrialWillEnd)]


@pytest.mark.parametrize(
    ("kind", "name", "status", "activated"),
    [
        ("customer.subscription.paused", "subscription.paused.json", "paused", False),
        ("customer.subscription.resumed", "subscription.resumed.json", "active", True),
        ("customer.subscription.updated", "subscription.past_due.json", "past_due", False),
        (
            "customer.subscription.pending_update_applied",
            "subscription.resumed.json",
            "active",
            True,
        ),
    ],
)
def test_derived_subscription_events(kind: str, name: str, status: str, activated: bool) -> None:
    h = Harness()
    seen = recorder(h)
    body = load_derived(name)
    h.deliver(h.event(kind, body["object"], previous_attributes=body.get("previous_attributes")))
    stored = h.stored_subscription(body["object"]["id"])
    assert stored is not None and stored.status.value == status
    assert any(isinstance(e, SubscriptionActivated) for e in seen) is activated


def test_subscription_before_its_link_is_tied_to_the_user_later() -> None:
    h = Harness()
    session = load("pay/checkout.session.completed.json")["object"]
    sub = {**load("openapi/2026-07-29_f0758b15/subscription.json")}
    sub.update(id=session["subscription"], customer=session["customer"], metadata={})
    h.deliver(h.event("customer.subscription.created", sub, created=h.clock.seconds - 9))
    with h.repository.unit_of_work() as uow:
        assert uow.subscriptions_for_user("user_late") == []
        uow.save_checkout(_record(session["id"], "user_late"))
    h.deliver(h.event("checkout.session.completed", session))
    with h.repository.unit_of_work() as uow:
        found = uow.subscriptions_for_user("user_late")
        assert [s.id for s in found] == [session["subscription"]]
        assert uow.customer_for_user("user_late") is not None


def test_subscription_metadata_user_id_ties_it_without_a_link() -> None:
    h = Harness()
    body = load_derived("subscription.trialing.json")
    h.deliver(h.event("customer.subscription.created", body["object"]))
    with h.repository.unit_of_work() as uow:
        assert [s.id for s in uow.subscriptions_for_user("user_trial")] == [body["object"]["id"]]
        assert uow.customer_for_user("user_trial") is None  # metadata never creates a link


# --------------------------------------------------------------------------- checkout


def _record(session_id: str, user_id: str, **changes: Any) -> CheckoutRecord:
    fields: dict[str, Any] = {
        "plan_key": "basic",
        "interval": Interval.MONTH,
        "mode": "subscription",
        "created_at": NOW,
        **changes,
    }
    return CheckoutRecord(session_id=session_id, user_id=user_id, **fields)


def test_checkout_completed_links_customer_advances_record_and_fires_hook() -> None:
    h = Harness()
    seen = recorder(h)
    session = load("pay/checkout.session.completed.json")["object"]
    with h.repository.unit_of_work() as uow:
        uow.save_checkout(_record(session["id"], "user_1"))
    event = h.event("checkout.session.completed", session)
    assert h.deliver(event).outcome is WebhookOutcome.PROCESSED
    with h.repository.unit_of_work() as uow:
        record = uow.get_checkout(session["id"])
        assert record is not None
        assert (record.status, record.payment_status) == ("complete", "paid")
        assert record.customer_id == session["customer"]
        assert record.subscription_id == session["subscription"]
        stored_link = uow.customer_for_user("user_1")
        assert stored_link is not None and stored_link.customer_id == session["customer"]
    assert seen == [
        CheckoutCompleted(
            event_id=event["id"],
            event_type="checkout.session.completed",
            user_id="user_1",
            session_id=session["id"],
            customer_id=session["customer"],
            mode="subscription",
            payment_status="paid",
            subscription_id=session["subscription"],
            plan_key="basic",
        )
    ]


@pytest.mark.parametrize("era", ERAS[1:])
def test_openapi_checkout_sessions_of_every_era(era: str) -> None:
    h = Harness()
    session = load(f"openapi/{era}/checkout.session.json")
    with h.repository.unit_of_work() as uow:
        uow.save_checkout(_record(session["id"], "user_e", mode="payment"))
    h.deliver(h.event("checkout.session.expired", {**session, "status": "expired"}))
    with h.repository.unit_of_work() as uow:
        record = uow.get_checkout(session["id"])
        assert record is not None and record.status == "expired"


def test_async_payment_events_move_the_record_forward_only() -> None:
    h = Harness()
    seen = recorder(h)
    session = load("pay/checkout.session.completed.json")["object"]
    with h.repository.unit_of_work() as uow:
        uow.save_checkout(_record(session["id"], "user_2"))
    paid = h.event("checkout.session.async_payment_succeeded", session, created=1000)
    unpaid = {**session, "payment_status": "unpaid"}
    h.deliver(paid)
    # A late completed(unpaid) or async_payment_failed never moves the record back.
    h.deliver(h.event("checkout.session.completed", unpaid, created=999))
    h.deliver(h.event("checkout.session.async_payment_failed", unpaid, created=1001))
    with h.repository.unit_of_work() as uow:
        record = uow.get_checkout(session["id"])
        assert record is not None and record.payment_status == "paid"
    assert [e.payment_status for e in seen if isinstance(e, CheckoutCompleted)] == [
        "paid",
        "unpaid",
    ]


# --------------------------------------------------------------------------- invoices


@pytest.mark.parametrize("era", ERAS)
@pytest.mark.parametrize("kind", ["invoice.paid", "invoice.payment_succeeded"])
def test_paid_invoices_are_recorded_and_change_no_state(era: str, kind: str) -> None:
    h = Harness()
    before = h.snapshot()
    event = h.event(kind, load(f"openapi/{era}/invoice.json"))
    assert h.deliver(event).outcome is WebhookOutcome.PROCESSED
    after = h.snapshot()
    assert after["subscriptions"] == before["subscriptions"]
    assert h.stored_event(event["id"]).status is EventStatus.PROCESSED


def test_payment_failed_hook_carries_the_invoice() -> None:
    h = Harness()
    seen = recorder(h)
    invoice = load("pay/invoice.payment_failed.json")["object"]
    link(h, "user_3", invoice["customer"])
    event = h.event("invoice.payment_failed", invoice)
    h.deliver(event)
    assert len(seen) == 1 and isinstance(seen[0], PaymentFailed)
    failed = seen[0]
    assert failed.user_id == "user_3"
    assert failed.invoice_id == invoice["id"]
    assert failed.amount_due == Money(amount=invoice["amount_due"], currency="usd")
    assert failed.subscription_id is not None
    assert failed.hosted_invoice_url == invoice["hosted_invoice_url"]
    assert h.stored_subscription(failed.subscription_id) is None  # no state inferred


def test_payment_action_required_hook() -> None:
    h = Harness()
    seen = recorder(h)
    invoice = load("pay/invoice.payment_action_required.json")["object"]
    h.deliver(h.event("invoice.payment_action_required", invoice))
    assert len(seen) == 1 and isinstance(seen[0], PaymentActionRequired)
    assert seen[0].subscription_id == "sub_1234"
    assert seen[0].user_id is None  # customer not linked


# --------------------------------------------------------------------------- customers, catalog


def test_customer_updated_and_deleted_change_a_linked_customer() -> None:
    h = Harness()
    customer = {**load("pay/customer.updated.json")["object"], "email": "new@example.com"}
    link(h, "user_4", customer["id"])
    h.deliver(h.event("customer.updated", customer, created=h.clock.seconds - 20))
    with h.repository.unit_of_work() as uow:
        stored = uow.customer_by_id(customer["id"])
        assert stored is not None and stored.email == "new@example.com"
    older = {**customer, "email": "old@example.com"}
    result = h.deliver(h.event("customer.updated", older, created=h.clock.seconds - 30))
    assert result.outcome is WebhookOutcome.STALE
    deleted = h.event("customer.deleted", customer, created=h.clock.seconds - 10)
    assert h.deliver(deleted).outcome is WebhookOutcome.PROCESSED
    with h.repository.unit_of_work() as uow:
        stored = uow.customer_by_id(customer["id"])
        assert stored is not None and stored.deleted and stored.email == "new@example.com"


@pytest.mark.parametrize(
    "source", ["pay/customer.deleted.json", "openapi/2026-07-29_f0758b15/deleted_customer.json"]
)
def test_unlinked_customer_events_are_ignored(source: str) -> None:
    h = Harness()
    body = load(source)
    obj = body.get("object") if isinstance(body.get("object"), dict) else body
    result = h.deliver(h.event("customer.deleted", obj))
    assert result.outcome is WebhookOutcome.IGNORED


class SpyCatalog:
    def __init__(self) -> None:
        self.invalidated = 0

    def invalidate(self) -> None:
        self.invalidated += 1

    def plan_key_for_price(self, price_id: str) -> str | None:
        return None


@pytest.mark.parametrize(
    ("kind", "source"),
    [
        ("price.updated", "openapi/2026-07-29_f0758b15/price.json"),
        ("price.deleted", "openapi/2026-07-29_f0758b15/deleted_price.json"),
        ("price.created", "dj-stripe/price_gold21323.json"),
        ("plan.updated", "openapi/2017-09-20_bb581d37/plan.json"),
        ("product.updated", "openapi/2020-09-02_dd1cdfcd/product.json"),
        ("product.deleted", "openapi/2025-03-25_1ef159c3/deleted_product.json"),
        ("product.created", "dj-stripe/product_prod_fake1.json"),
    ],
)
def test_catalog_events_invalidate_the_catalog(kind: str, source: str) -> None:
    h = Harness()
    spy = SpyCatalog()
    h.processor._catalog = spy
    assert h.deliver(h.event(kind, load(source))).outcome is WebhookOutcome.PROCESSED
    assert spy.invalidated == 1


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
