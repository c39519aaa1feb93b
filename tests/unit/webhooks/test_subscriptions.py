"""``customer.subscription.*`` handlers, on real payloads of every era and derived ones."""

from __future__ import annotations

from typing import Any

import pytest

from billingkit.domain import SubscriptionStatus
from billingkit.domain.access import AccessPolicy, is_activation, is_recovery
from billingkit.errors import WebhookPayloadError
from billingkit.services.hooks import (
    PlanChanged,
    SubscriptionActivated,
    SubscriptionCanceled,
    SubscriptionPlanUnknown,
    SubscriptionRecovered,
    TrialWillEnd,
)
from billingkit.services.webhooks import WebhookOutcome
from billingkit.stripe_objects import previous_price_id, previous_status

from .webhook_support import ERAS, Harness, checkout_record, link, load, load_derived, recorder


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
        ("customer.subscription.resumed", "subscription.resumed.json", "active", False),
        ("customer.subscription.updated", "subscription.past_due.json", "past_due", False),
        (
            "customer.subscription.pending_update_applied",
            "subscription.resumed.json",
            "active",
            False,
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


S = SubscriptionStatus
DEFAULT = AccessPolicy()
PAUSED_GRANTS = AccessPolicy(
    granting_statuses=frozenset({S.ACTIVE, S.TRIALING, S.PAUSED}), past_due_grace_days=3
)
ACTIVE_ONLY = AccessPolicy(granting_statuses=frozenset({S.ACTIVE}))


@pytest.mark.parametrize(
    ("policy", "previous", "status", "activated"),
    [
        (DEFAULT, None, S.ACTIVE, True),
        (DEFAULT, None, S.TRIALING, True),
        (DEFAULT, None, S.INCOMPLETE, False),
        (DEFAULT, S.INCOMPLETE, S.ACTIVE, True),
        # back from a lapse: a recovery, not a second activation
        (DEFAULT, S.PAST_DUE, S.ACTIVE, False),
        (DEFAULT, S.UNPAID, S.ACTIVE, False),
        (DEFAULT, S.PAUSED, S.ACTIVE, False),
        (ACTIVE_ONLY, S.PAUSED, S.ACTIVE, True),  # the trial before the pause granted nothing
        (DEFAULT, S.TRIALING, S.ACTIVE, False),
        (DEFAULT, S.ACTIVE, S.PAUSED, False),
        (DEFAULT, S.ACTIVE, S.PAST_DUE, False),
        (PAUSED_GRANTS, S.PAUSED, S.ACTIVE, False),
        (PAUSED_GRANTS, S.ACTIVE, S.PAUSED, False),
        (PAUSED_GRANTS, S.INCOMPLETE, S.PAUSED, True),
        (PAUSED_GRANTS, S.PAST_DUE, S.ACTIVE, False),  # a recovery; grace plays no part
        (ACTIVE_ONLY, None, S.TRIALING, False),
        (ACTIVE_ONLY, S.TRIALING, S.ACTIVE, True),
    ],
)
def test_activation_is_entering_a_granting_status_from_one_that_is_not(
    policy: AccessPolicy, previous: S | None, status: S, activated: bool
) -> None:
    assert is_activation(previous, status, policy) is activated


@pytest.mark.parametrize(
    ("granting", "name", "activated"),
    [
        # paused -> active: a recovery by default (the trial granted access), nothing when
        # paused grants access too, an activation when trials grant nothing.
        (PAUSED_GRANTS, "subscription.resumed.json", False),
        (DEFAULT, "subscription.resumed.json", False),
        (ACTIVE_ONLY, "subscription.resumed.json", True),
        # active -> paused: never an activation (paused granting or not).
        (PAUSED_GRANTS, "subscription.paused.json", False),
        # created trialing: an activation unless trials do not grant access.
        (ACTIVE_ONLY, "subscription.trialing.json", False),
        (DEFAULT, "subscription.trialing.json", True),
    ],
)
def test_activated_hook_follows_the_configured_access_policy(
    granting: AccessPolicy, name: str, activated: bool
) -> None:
    h = Harness(access=granting)
    seen = recorder(h)
    body = load_derived(name)
    previous = body.get("previous_attributes")
    kind = "customer.subscription.updated" if previous else "customer.subscription.created"
    h.deliver(h.event(kind, body["object"], previous_attributes=previous))
    assert any(isinstance(e, SubscriptionActivated) for e in seen) is activated


def test_trial_to_active_activates_when_trials_do_not_grant_access() -> None:
    h = Harness(access=ACTIVE_ONLY)
    seen = recorder(h)
    body = load_derived("subscription.trialing.json")
    h.deliver(h.event("customer.subscription.created", body["object"], created=h.clock.seconds - 9))
    active = {**body["object"], "status": "active"}
    event = h.event(
        "customer.subscription.updated", active, previous_attributes={"status": "trialing"}
    )
    h.deliver(event)
    activated = [e for e in seen if isinstance(e, SubscriptionActivated)]
    assert len(activated) == 1
    assert activated[0].event_id == event["id"]
    assert activated[0].previous_status is S.TRIALING
    assert activated[0].subscription.status is S.ACTIVE


def test_subscription_before_its_link_is_tied_to_the_user_later() -> None:
    h = Harness()
    session = load("pay/checkout.session.completed.json")["object"]
    sub = {**load("openapi/2026-07-29_f0758b15/subscription.json")}
    sub.update(id=session["subscription"], customer=session["customer"], metadata={})
    h.deliver(h.event("customer.subscription.created", sub, created=h.clock.seconds - 9))
    with h.repository.unit_of_work() as uow:
        assert uow.subscriptions_for_user("user_late") == []
        uow.save_checkout(checkout_record(session["id"], "user_late"))
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


# --------------------------------------------------------------------------- previous attributes


@pytest.mark.parametrize(
    ("previous", "price_id"),
    [
        ({"items": {"data": [{"price": {"id": "price_old", "object": "price"}}]}}, "price_old"),
        ({"items": {"data": [{"price": "price_old"}]}}, "price_old"),
        ({"items": {"data": [{"plan": {"id": "plan_old"}}]}}, "plan_old"),
        ({"plan": {"id": "plan_legacy"}}, "plan_legacy"),
        ({"plan": "plan_legacy"}, "plan_legacy"),
        ({"status": "trialing"}, None),
        ({}, None),
    ],
)
def test_previous_price_id_reads_items_then_the_legacy_plan(
    previous: dict[str, Any], price_id: str | None
) -> None:
    assert previous_price_id(previous) == price_id


def test_previous_status_reads_a_status_and_names_an_unknown_one() -> None:
    assert previous_status({"status": "past_due"}) is S.PAST_DUE
    assert previous_status({"metadata": {}}) is None
    with pytest.raises(WebhookPayloadError, match=r"previous_attributes\.status: unknown"):
        previous_status({"status": "frozen"})
    with pytest.raises(WebhookPayloadError, match=r"previous_attributes\.items\.data\[0\]\.price"):
        previous_price_id({"items": {"data": [{"price": 42}]}})


# --------------------------------------------------------------------------- issue 11 item 6


def _priced(obj: dict[str, Any], price_id: str) -> dict[str, Any]:
    """``obj`` (a subscription) billed at ``price_id``."""
    item = {**obj["items"]["data"][0], "price": {**obj["items"]["data"][0]["price"]}}
    item["price"]["id"] = price_id
    return {**obj, "items": {**obj["items"], "data": [item]}}


def test_plan_unknown_fires_once_per_subscription_and_price_transition() -> None:
    h = Harness()
    seen = recorder(h, plan_unknown=True)
    obj = load("pay/subscription.created.json")["object"]
    link(h, "user_pay", obj["customer"])
    t = h.clock.seconds
    deliveries = [
        ("customer.subscription.created", "price_legacy", t - 50),
        ("customer.subscription.updated", "price_legacy", t - 40),  # same price: no news
        ("customer.subscription.updated", "price_ancient", t - 45),  # stale: nothing stored
        ("customer.subscription.updated", "price_basic_month", t - 30),  # a configured plan
        ("customer.subscription.updated", "price_other", t - 20),
        ("customer.subscription.updated", "price_basic_month", t - 10),
        ("customer.subscription.updated", "price_other", t - 5),  # back again: a transition
    ]
    events = [h.event(kind, _priced(obj, price), created=at) for kind, price, at in deliveries]
    for event in events:
        h.deliver(event)
    h.deliver(events[0])  # a redelivery is a duplicate
    unknown = [e for e in seen if isinstance(e, SubscriptionPlanUnknown)]
    assert [(e.subscription_id, e.price_id, e.user_id) for e in unknown] == [
        (obj["id"], "price_legacy", "user_pay"),
        (obj["id"], "price_other", "user_pay"),
        (obj["id"], "price_other", "user_pay"),
    ]
    assert [e.event_id for e in unknown] == [events[0]["id"], events[4]["id"], events[6]["id"]]
    assert unknown[0].subscription.plan_key is None


def test_plan_unknown_fires_for_the_first_state_seen_whatever_the_event_type() -> None:
    h = Harness()
    seen = recorder(h, plan_unknown=True)
    obj = _priced(load("pay/subscription.created.json")["object"], "legacy-gold")
    h.deliver(h.event("customer.subscription.updated", obj))
    assert [(type(e), e.user_id) for e in seen if isinstance(e, SubscriptionPlanUnknown)] == [
        (SubscriptionPlanUnknown, None)
    ]


def test_plan_unknown_does_not_fire_for_a_configured_price() -> None:
    h = Harness()
    seen = recorder(h, plan_unknown=True)
    obj = _priced(load("pay/subscription.created.json")["object"], "price_pro_month")
    h.deliver(h.event("customer.subscription.created", obj))
    assert not [e for e in seen if isinstance(e, SubscriptionPlanUnknown)]
    stored = h.stored_subscription(obj["id"])
    assert stored is not None and stored.plan_key == "pro"


@pytest.mark.parametrize(
    ("policy", "previous", "status", "recovered"),
    [
        (DEFAULT, S.PAST_DUE, S.ACTIVE, True),
        (DEFAULT, S.UNPAID, S.ACTIVE, True),
        (DEFAULT, S.PAUSED, S.ACTIVE, True),
        (DEFAULT, S.PAST_DUE, S.TRIALING, True),
        (DEFAULT, None, S.ACTIVE, False),
        (DEFAULT, S.INCOMPLETE, S.ACTIVE, False),
        (DEFAULT, S.TRIALING, S.ACTIVE, False),
        (DEFAULT, S.ACTIVE, S.PAST_DUE, False),
        (DEFAULT, S.PAST_DUE, S.UNPAID, False),
        (ACTIVE_ONLY, S.PAUSED, S.ACTIVE, False),
        (PAUSED_GRANTS, S.PAUSED, S.ACTIVE, False),  # paused granted access: no return
        (PAUSED_GRANTS, S.UNPAID, S.PAUSED, True),
    ],
)
def test_recovery_is_a_return_to_access_from_a_lapse(
    policy: AccessPolicy, previous: S | None, status: S, recovered: bool
) -> None:
    assert is_recovery(previous, status, policy) is recovered
    if recovered:
        assert not is_activation(previous, status, policy)


def _status_event(h: Harness, obj: dict[str, Any], status: str, was: str, *, at: int) -> Any:
    return h.event(
        "customer.subscription.updated",
        {**obj, "status": status},
        previous_attributes={"status": was},
        created=at,
    )


def test_activated_fires_once_and_a_recovery_fires_recovered_once() -> None:
    h = Harness()
    seen = recorder(h)
    body = load_derived("subscription.trialing.json")["object"]
    active = {**body, "status": "active"}
    start = h.clock.seconds - 100
    h.deliver(h.event("customer.subscription.created", active, created=start))
    lapse = _status_event(h, body, "past_due", "active", at=start + 10)
    h.deliver(lapse)
    paid = _status_event(h, body, "active", "past_due", at=start + 20)
    for _ in range(2):  # the webhook delivered twice
        h.deliver(paid)
    unpaid = _status_event(h, body, "unpaid", "active", at=start + 30)
    h.deliver(unpaid)
    back = _status_event(h, body, "active", "unpaid", at=start + 40)
    h.deliver(back)
    kinds = [(type(e).__name__, e.event_id) for e in seen]
    assert [k for k in kinds if k[0] in {"SubscriptionActivated", "SubscriptionRecovered"}] == [
        ("SubscriptionActivated", kinds[0][1]),
        ("SubscriptionRecovered", paid["id"]),
        ("SubscriptionRecovered", back["id"]),
    ]
    recovered = [e for e in seen if isinstance(e, SubscriptionRecovered)]
    assert [e.previous_status for e in recovered] == [S.PAST_DUE, S.UNPAID]
    assert all(e.subscription.status is S.ACTIVE for e in recovered)


def test_a_stale_recovery_event_fires_nothing() -> None:
    h = Harness()
    seen = recorder(h)
    body = load_derived("subscription.trialing.json")["object"]
    start = h.clock.seconds - 100
    h.deliver(_status_event(h, body, "canceled", "past_due", at=start + 30))
    h.deliver(_status_event(h, body, "active", "past_due", at=start + 20))
    assert not [e for e in seen if isinstance(e, SubscriptionRecovered)]
