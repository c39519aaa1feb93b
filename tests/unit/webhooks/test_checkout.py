"""``checkout.session.*`` handlers: customer link, checkout record, hook."""

from __future__ import annotations

import pytest

from billingkit.services.hooks import CheckoutCompleted
from billingkit.services.webhooks import WebhookOutcome

from .webhook_support import ERAS, Harness, checkout_record, link, load, recorder


def test_checkout_completed_links_customer_advances_record_and_fires_hook() -> None:
    h = Harness()
    seen = recorder(h)
    session = load("pay/checkout.session.completed.json")["object"]
    with h.repository.unit_of_work() as uow:
        uow.save_checkout(checkout_record(session["id"], "user_1"))
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
        uow.save_checkout(checkout_record(session["id"], "user_e", mode="payment"))
    h.deliver(h.event("checkout.session.expired", {**session, "status": "expired"}))
    with h.repository.unit_of_work() as uow:
        record = uow.get_checkout(session["id"])
        assert record is not None and record.status == "expired"


def test_async_payment_events_move_the_record_forward_only() -> None:
    h = Harness()
    seen = recorder(h)
    session = load("pay/checkout.session.completed.json")["object"]
    with h.repository.unit_of_work() as uow:
        uow.save_checkout(checkout_record(session["id"], "user_2"))
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


def test_a_session_billingkit_did_not_start_names_the_user_linked_to_its_customer() -> None:
    # Issue 11 item 7: no checkout record, no metadata, no client_reference_id; the
    # customer is already linked, so the hook (and the subscription) name that user.
    h = Harness()
    seen = recorder(h)
    session = {
        **load("pay/checkout.session.completed.json")["object"],
        "metadata": {},
        "client_reference_id": None,
    }
    link(h, "user_linked", session["customer"])
    assert h.deliver(h.event("checkout.session.completed", session)).outcome is (
        WebhookOutcome.PROCESSED
    )
    completed = [e for e in seen if isinstance(e, CheckoutCompleted)]
    assert [e.user_id for e in completed] == ["user_linked"]


def test_a_session_of_an_unknown_customer_still_has_no_user() -> None:
    h = Harness()
    seen = recorder(h)
    session = {
        **load("pay/checkout.session.completed.json")["object"],
        "metadata": {},
        "client_reference_id": None,
    }
    h.deliver(h.event("checkout.session.completed", session))
    assert [e.user_id for e in seen if isinstance(e, CheckoutCompleted)] == [None]
    with h.repository.unit_of_work() as uow:
        assert uow.customer_by_id(session["customer"]) is None
