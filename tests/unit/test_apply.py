"""services/apply: the shared path for confirm_checkout and webhooks, and its watermarks."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from webhooks.webhook_support import NOW, Harness, SubscriptionGateway, load

from billingkit.domain import CheckoutRecord, CustomerLink, Interval, Subscription
from billingkit.errors import ConflictError
from billingkit.ports import SaveOutcome
from billingkit.services.apply import (
    FETCHED_WATERMARK,
    apply_checkout_session,
    apply_fetched_subscription,
    apply_subscription,
    link_customer,
)
from billingkit.services.webhooks import WebhookOutcome
from billingkit.stripe_objects import checkout_session_from_stripe, subscription_from_stripe

SESSION = load("pay/checkout.session.completed.json")["object"]
BASE = load("openapi/2026-07-29_f0758b15/subscription.json")


def sub_obj(status: str, *, price: str = "price_basic_month") -> dict[str, Any]:
    obj: dict[str, Any] = copy.deepcopy(BASE)
    obj.update(id=SESSION["subscription"], customer=SESSION["customer"], status=status)
    obj["items"]["data"][0]["price"] = {**obj["items"]["data"][0]["price"], "id": price}
    return obj


def expanded_session(status: str) -> dict[str, Any]:
    return {**SESSION, "subscription": sub_obj(status)}


def record() -> CheckoutRecord:
    return CheckoutRecord(
        session_id=SESSION["id"],
        user_id="user_1",
        plan_key="basic",
        interval=Interval.MONTH,
        mode="subscription",
        created_at=NOW,
    )


def confirm(h: Harness, status: str = "active") -> Any:
    session = checkout_session_from_stripe(expanded_session(status), created_fallback=NOW)
    with h.repository.unit_of_work() as uow:
        return apply_checkout_session(uow, session, catalog=h.catalog, user_id="user_1")


def state(h: Harness) -> tuple[Any, ...]:
    with h.repository.unit_of_work() as uow:
        sub = uow.get_subscription(SESSION["subscription"])
        return (
            uow.get_checkout(SESSION["id"]),
            uow.customer_for_user("user_1"),
            None if sub is None else sub.model_dump(exclude={"watermark"}),
        )


def test_confirm_then_webhook_and_webhook_then_confirm_end_in_the_same_state() -> None:
    results = []
    for confirm_first in (True, False):
        h = Harness()
        with h.repository.unit_of_work() as uow:
            uow.save_checkout(record())
        created = h.clock.seconds - 30
        events = [
            h.event("customer.subscription.created", sub_obj("active"), created=created),
            h.event("checkout.session.completed", SESSION, created=created + 1),
        ]
        if confirm_first:
            confirm(h)
            snapshot = state(h)
            for event in events:
                h.deliver(event)
            assert state(h) == snapshot  # the later one changes nothing
        else:
            for event in events:
                h.deliver(event)
            snapshot = state(h)
            change = confirm(h)
            assert change.subscription.outcome is SaveOutcome.STALE
            assert not change.newly_completed
            assert state(h) == snapshot
        results.append(state(h))
    assert results[0] == results[1]
    checkout, link, sub = results[0]
    assert checkout.status == "complete" and checkout.customer_id == SESSION["customer"]
    assert link.customer_id == SESSION["customer"]
    assert sub["status"] == "active" and sub["plan_key"] == "basic"


def test_fetched_state_is_not_regressed_by_an_older_event() -> None:
    """Success page saw "active"; a late created(incomplete) must not show "incomplete"."""
    truth = subscription_from_stripe(sub_obj("active"))
    gateway = SubscriptionGateway(lambda _id: truth)
    h = Harness(gateway=gateway)
    confirm(h)
    stored = h.stored_subscription(SESSION["subscription"])
    assert stored is not None and stored.watermark == FETCHED_WATERMARK
    created = h.clock.seconds - 30
    late = h.event("customer.subscription.created", sub_obj("incomplete"), created=created)
    assert h.deliver(late).outcome is WebhookOutcome.PROCESSED
    stored = h.stored_subscription(SESSION["subscription"])
    assert stored is not None and stored.status.value == "active"
    assert stored.watermark == created  # now event-ordered
    assert gateway.retrieved == [SESSION["subscription"]]
    # From here on, ordinary watermark rules: a newer event wins without any call.
    newer = h.event("customer.subscription.updated", sub_obj("past_due"), created=created + 5)
    h.deliver(newer)
    stored = h.stored_subscription(SESSION["subscription"])
    assert stored is not None and stored.status.value == "past_due"
    assert gateway.retrieved == [SESSION["subscription"]]


def test_fetched_state_equal_to_the_event_needs_no_gateway_call() -> None:
    h = Harness()  # any gateway call fails
    confirm(h)
    created = h.clock.seconds - 30
    h.deliver(h.event("customer.subscription.created", sub_obj("active"), created=created))
    stored = h.stored_subscription(SESSION["subscription"])
    assert stored is not None and stored.watermark == created


def test_fetched_state_never_replaces_an_event_ordered_state() -> None:
    h = Harness()
    created = h.clock.seconds - 30
    h.deliver(h.event("customer.subscription.updated", sub_obj("past_due"), created=created))
    with h.repository.unit_of_work() as uow:
        change = apply_fetched_subscription(
            uow, subscription_from_stripe(sub_obj("active")), catalog=h.catalog
        )
    assert change.outcome is SaveOutcome.STALE and not change.written
    assert change.current is not None and change.current.status.value == "past_due"


def test_apply_subscription_reports_the_stored_state() -> None:
    h = Harness()
    incoming = subscription_from_stripe(sub_obj("active"))
    with h.repository.unit_of_work() as uow:
        uow.link_customer(CustomerLink(user_id="user_1", customer_id=SESSION["customer"]))
        deps: dict[str, Any] = {"gateway": h.gateway, "catalog": h.catalog}
        first = apply_subscription(uow, incoming, watermark=10, **deps)
        older = apply_subscription(uow, incoming, watermark=9, **deps)
    assert first.written
    assert first.current is not None
    assert (first.current.user_id, first.current.plan_key, first.current.watermark) == (
        "user_1",
        "basic",
        10,
    )
    assert older.outcome is SaveOutcome.STALE
    assert older.current == first.current == h.stored_subscription(incoming.id)


def test_a_move_to_an_unknown_price_does_not_keep_the_old_plan_key() -> None:
    h = Harness()
    deps: dict[str, Any] = {"gateway": h.gateway, "catalog": h.catalog}
    with h.repository.unit_of_work() as uow:
        uow.link_customer(CustomerLink(user_id="user_1", customer_id=SESSION["customer"]))
        basic = apply_subscription(
            uow, subscription_from_stripe(sub_obj("active")), watermark=10, **deps
        )
        same = apply_subscription(
            uow, subscription_from_stripe(sub_obj("past_due")), watermark=11, **deps
        )
        moved = apply_subscription(
            uow,
            subscription_from_stripe(sub_obj("active", price="price_mystery")),
            watermark=12,
            **deps,
        )
    assert basic.current is not None and basic.current.plan_key == "basic"
    assert same.current is not None and same.current.plan_key == "basic"
    assert moved.current is not None and moved.current.plan_key is None
    assert h.stored_subscription(moved.current.id) == moved.current


def test_link_customer_is_idempotent_and_unique() -> None:
    h = Harness()
    with h.repository.unit_of_work() as uow:
        first = link_customer(uow, user_id="u1", customer_id="cus_1", email="a@example.com")
        assert link_customer(uow, user_id="u1", customer_id="cus_1") == first
    with pytest.raises(ConflictError), h.repository.unit_of_work() as uow:
        link_customer(uow, user_id="u2", customer_id="cus_1")


def test_session_not_started_by_billingkit_links_but_stores_no_record() -> None:
    h = Harness()
    session = checkout_session_from_stripe(
        {**SESSION, "client_reference_id": "user_9"}, created_fallback=NOW
    )
    with h.repository.unit_of_work() as uow:
        applied = apply_checkout_session(uow, session, catalog=h.catalog)
        assert applied.user_id == "user_9" and applied.record is None
        assert uow.get_checkout(SESSION["id"]) is None
        link = uow.customer_for_user("user_9")
        assert link is not None and link.customer_id == SESSION["customer"]


def test_fetched_subscription_keeps_its_metadata_user() -> None:
    h = Harness()
    obj = sub_obj("trialing")
    obj["metadata"] = {"user_id": "user_meta"}
    with h.repository.unit_of_work() as uow:
        change = apply_fetched_subscription(uow, subscription_from_stripe(obj), catalog=h.catalog)
    assert isinstance(change.current, Subscription)
    assert change.current.user_id == "user_meta"
    assert change.current.watermark == FETCHED_WATERMARK


# --------------------------------------------------------------------------- write-first path


class CountingUnitOfWork:
    """Delegates to a real unit of work and counts the calls made by name."""

    def __init__(self, uow: Any) -> None:
        self._uow = uow
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Any:
        self.calls.append(name)
        return getattr(self._uow, name)


def with_user(obj: dict[str, Any]) -> dict[str, Any]:
    return {**obj, "metadata": {**obj.get("metadata", {}), "user_id": "user_1"}}


def test_a_newer_fully_known_state_is_written_without_any_read() -> None:
    h = Harness()
    first = subscription_from_stripe(with_user(sub_obj("active")))
    newer = subscription_from_stripe(with_user(sub_obj("past_due")))
    deps: dict[str, Any] = {"gateway": h.gateway, "catalog": h.catalog}
    with h.repository.unit_of_work() as real:
        uow = CountingUnitOfWork(real)
        assert apply_subscription(uow, first, watermark=10, **deps).written  # type: ignore[arg-type]
        change = apply_subscription(uow, newer, watermark=11, **deps)  # type: ignore[arg-type]
    assert uow.calls == ["save_subscription", "save_subscription"]
    assert change.written and change.current == h.stored_subscription(newer.id)
    assert change.current is not None
    assert (change.current.user_id, change.current.plan_key, change.current.watermark) == (
        "user_1",
        "basic",
        11,
    )


def test_without_metadata_user_the_state_is_read_first() -> None:
    h = Harness()
    incoming = subscription_from_stripe(sub_obj("active"))
    with h.repository.unit_of_work() as real:
        uow = CountingUnitOfWork(real)
        apply_subscription(uow, incoming, watermark=10, gateway=h.gateway, catalog=h.catalog)  # type: ignore[arg-type]
    assert uow.calls[0] == "get_subscription"


_STATUSES = ["incomplete", "trialing", "active", "past_due", "canceled", "unpaid"]
_steps = st.lists(
    st.tuples(
        st.sampled_from(["event", "fetched"]),
        st.integers(min_value=1, max_value=4),  # event watermark: small so ties happen
        st.sampled_from(_STATUSES),
    ),
    min_size=1,
    max_size=7,
)


def _run(steps: list[tuple[str, int, str]], truth_status: str, *, metadata_user: bool) -> Any:
    """Apply ``steps``; the user comes from metadata (write-first) or from the link."""

    def obj(status: str) -> dict[str, Any]:
        return with_user(sub_obj(status)) if metadata_user else sub_obj(status)

    truth = subscription_from_stripe(obj(truth_status))
    gateway = SubscriptionGateway(lambda _id: truth)
    h = Harness(gateway=gateway)
    with h.repository.unit_of_work() as uow:
        uow.link_customer(CustomerLink(user_id="user_1", customer_id=SESSION["customer"]))
    results = []
    for kind, watermark, status in steps:
        state = subscription_from_stripe(obj(status))
        with h.repository.unit_of_work() as uow:
            if kind == "event":
                change = apply_subscription(
                    uow, state, watermark=watermark, gateway=gateway, catalog=h.catalog
                )
            else:
                change = apply_fetched_subscription(uow, state, catalog=h.catalog)
        current = change.current and change.current.model_dump(exclude={"metadata"})
        results.append((change.outcome, change.refetched, current, len(gateway.retrieved)))
    stored = h.stored_subscription(SESSION["subscription"])
    assert stored is not None and stored.user_id == "user_1"
    return results, stored.model_dump(exclude={"metadata"})


@settings(max_examples=150, deadline=None)
@given(steps=_steps, truth_status=st.sampled_from(_STATUSES))
def test_write_first_gives_the_same_results_as_read_and_decide(
    steps: list[tuple[str, int, str]], truth_status: str
) -> None:
    fast = _run(steps, truth_status, metadata_user=True)
    slow = _run(steps, truth_status, metadata_user=False)
    assert fast == slow
