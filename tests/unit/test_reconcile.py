"""Reconcile: every drift class, dry runs, checkpoints and races with events (over the fake)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from billingkit import Billing, BillingConfig, InMemoryRepository, PlanDefinition
from billingkit.domain import Subscription, SubscriptionStatus
from billingkit.errors import ConfigurationError, GatewayServerError
from billingkit.ports import Page
from billingkit.services.reconcile import (
    Checkpoint,
    Drift,
    FileCheckpointStore,
    MemoryCheckpointStore,
    Reconciler,
    RepositoryCheckpointStore,
    backfill,
    pairs_from_metadata,
)
from billingkit.testing import FakeStripeGateway

SECRET = "whsec_reconcile_test_0123456789"
START = datetime(2031, 3, 1, 12, 0, tzinfo=timezone.utc)


class Stripe(FakeStripeGateway):
    """The fake, with a hook run after a page was fetched and before it is handed over."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.after_fetch: Callable[[], None] | None = None

    def list_subscriptions(self, **options: Any) -> Iterator[Page[Subscription]]:
        for page in super().list_subscriptions(**options):
            hook, self.after_fetch = self.after_fetch, None
            if hook is not None:
                hook()
            yield page


@dataclass
class World:
    stripe: Stripe
    repository: InMemoryRepository
    billing: Billing
    checkpoints: MemoryCheckpointStore

    def reconciler(self, **options: Any) -> Reconciler:
        return Reconciler(
            self.stripe,
            self.repository,
            catalog=self.billing.catalog,
            clock=self.stripe.now,
            checkpoints=self.checkpoints,
            **options,
        )

    def subscribe(self, user_id: str) -> str:
        started = self.billing.checkout.start_checkout(
            user_id=user_id,
            email=f"{user_id}@example.com",
            plan_key="pro",
            interval="month",
            success_url="https://app.example/ok?session_id={CHECKOUT_SESSION_ID}",
            cancel_url="https://app.example/pricing",
        )
        session = self.stripe.complete_checkout(started.session_id)
        assert session.subscription_id is not None
        return session.subscription_id

    def deliver(self) -> None:
        for delivery in self.stripe.drain_events():
            self.billing.webhooks.handle(delivery.payload, delivery.signature)

    def stored(self, subscription_id: str) -> Subscription | None:
        with self.repository.unit_of_work() as uow:
            return uow.get_subscription(subscription_id)

    def later(self, minutes: int = 5) -> None:
        """Let time pass (beyond the clock skew) with nothing due."""
        self.stripe.advance(timedelta(minutes=minutes))


@pytest.fixture
def world() -> World:
    stripe = Stripe(webhook_secret=SECRET, start=START)
    stripe.add_price(amount=1900, interval="month", lookup_key="pro_monthly", product_name="Pro")
    stripe.add_price(amount=4900, interval="month", lookup_key="max_monthly", product_name="Max")
    config = BillingConfig(
        plans=[
            PlanDefinition(key="free", name="Free"),
            PlanDefinition(key="pro", name="Pro", order=1, prices={"month": "pro_monthly"}),
            PlanDefinition(key="max", name="Max", order=2, prices={"month": "max_monthly"}),
        ],
        free_plan="free",
        webhook_secrets=[SECRET],
    )
    repository = InMemoryRepository()
    billing = Billing.build(config, stripe, repository, clock=stripe.now)
    return World(stripe, repository, billing, MemoryCheckpointStore())


def _price(world: World, key: str) -> str:
    return world.stripe.list_prices(lookup_keys=[key])[0].id


def test_nothing_drifted_means_one_call_and_no_write(world: World) -> None:
    ids = [world.subscribe(f"user-{n}") for n in range(3)]
    world.deliver()
    world.later()
    world.stripe.reset_calls()
    report = world.reconciler().run()
    assert report.counts["listed"] == 3
    assert report.counts["in_sync"] == 3
    assert report.drifted == 0
    assert report.rows_written == 0
    assert report.findings == []
    assert world.stripe.calls["list_subscriptions"] == 1  # (the catalog may refresh its prices)
    assert report.stripe_calls == 1
    assert all(world.stored(i) is not None for i in ids)


def test_missing_here_is_stored_with_its_user_and_plan(world: World) -> None:
    sub_id = world.subscribe("user-1")
    world.stripe.drain_events()  # the webhooks never arrived
    world.later()
    report = world.reconciler().run()
    assert report.counts[str(Drift.MISSING_HERE)] == 1
    assert report.counts["fixed"] == 1
    [finding] = report.findings
    assert (finding.subscription_id, finding.user_id, finding.action) == (
        sub_id,
        "user-1",
        "fixed",
    )
    stored = world.stored(sub_id)
    assert stored is not None
    assert (stored.status, stored.user_id, stored.plan_key) == (
        SubscriptionStatus.ACTIVE,
        "user-1",
        "pro",
    )
    details = world.billing.customers.for_user("user-1")
    assert (details.plan_key, details.has_access) == ("pro", True)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ("cancel_now", {Drift.STATUS, Drift.OTHER}),
        ("plan", {Drift.PLAN}),
        ("cancel_flag", {Drift.CANCEL_FLAG}),
        ("renewal", {Drift.PERIOD}),
        ("metadata", {Drift.OTHER}),
    ],
)
def test_each_kind_of_drift_is_classified_and_fixed(
    world: World, change: str, expected: set[Drift]
) -> None:
    sub_id = world.subscribe("user-1")
    world.deliver()
    world.later()
    if change == "cancel_now":
        world.stripe.cancel_subscription(sub_id)
    elif change == "plan":
        world.stripe.update_subscription(sub_id, price_id=_price(world, "max_monthly"))
    elif change == "cancel_flag":
        world.stripe.update_subscription(sub_id, cancel_at_period_end=True)
    elif change == "renewal":
        world.stripe.advance(timedelta(days=32))
    else:
        world.stripe.update_subscription(sub_id, metadata={"team": "blue"})
    world.stripe.drain_events()  # missed
    world.later()
    truth = world.stripe.retrieve_subscription(sub_id)

    report = world.reconciler().run()
    [finding] = report.findings
    # a cancel also sets canceled_at/ended_at (OTHER only when nothing else differs)
    assert set(finding.drifts) == expected - ({Drift.OTHER} if change == "cancel_now" else set())
    assert finding.action == "fixed"
    assert report.rows_written == 1
    stored = world.stored(sub_id)
    assert stored is not None and stored.same_state(truth)
    assert stored.user_id == "user-1"
    if change == "plan":
        assert stored.plan_key == "max"

    again = world.reconciler().run()
    assert again.drifted == 0 and again.rows_written == 0


def test_unknown_customer_is_reported_not_stored(world: World) -> None:
    customer = world.stripe.add_customer(email="legacy@example.com")
    sub = world.stripe.add_subscription(customer.id, _price(world, "pro_monthly"))
    world.later()
    report = world.reconciler().run()
    assert report.counts[str(Drift.UNKNOWN_CUSTOMER)] == 1
    assert report.counts["reported"] == 1
    assert report.rows_written == 0
    assert world.stored(sub.id) is None


def test_gone_at_stripe_is_reported_for_a_user(world: World) -> None:
    kept = world.subscribe("user-1")
    world.deliver()
    world.later()
    world.stripe.remove_subscription(kept)
    report = world.reconciler().run(user_id="user-1")
    assert report.counts[str(Drift.GONE_AT_STRIPE)] == 1
    [finding] = report.findings
    assert (finding.subscription_id, finding.stripe_status, finding.action) == (
        kept,
        None,
        "reported",
    )
    assert world.stored(kept) is not None  # reported, never deleted


def test_a_user_run_lists_only_their_customer(world: World) -> None:
    world.subscribe("user-1")
    world.subscribe("user-2")
    world.stripe.drain_events()
    world.later()
    report = world.reconciler().run(user_id="user-2")
    assert report.counts["listed"] == 1
    assert [f.user_id for f in report.findings] == ["user-2"]
    assert world.reconciler().run(user_id="nobody").counts["listed"] == 0


def test_since_keeps_newer_subscriptions(world: World) -> None:
    world.subscribe("user-1")
    world.stripe.advance(timedelta(days=2))
    cutoff = world.stripe.now()
    world.subscribe("user-2")
    world.stripe.drain_events()
    world.later()
    report = world.reconciler().run(since=cutoff, dry_run=True)
    assert [f.user_id for f in report.findings] == ["user-2"]
    with pytest.raises(ConfigurationError):
        world.reconciler().run(since=datetime(2031, 1, 1))


def test_a_dry_run_writes_nothing(world: World) -> None:
    synced = world.subscribe("user-1")
    world.deliver()
    missing = world.subscribe("user-2")
    world.stripe.cancel_subscription(synced)
    world.stripe.drain_events()
    world.later()
    before = (world.stored(synced), world.stored(missing))
    for _ in range(250):  # more than one page, so a checkpoint would be due
        customer = world.stripe.add_customer()
        world.stripe.add_subscription(customer.id, _price(world, "pro_monthly"))

    report = world.reconciler().run(dry_run=True)
    assert report.dry_run
    assert report.counts["would_fix"] == 2
    assert report.counts["reported"] == 250
    assert report.rows_written == 0
    assert (world.stored(synced), world.stored(missing)) == before
    assert world.checkpoints.saves == 0


def test_the_guard_keeps_a_state_from_a_newer_event(world: World) -> None:
    sub_id = world.subscribe("user-1")
    world.deliver()
    world.later()
    newer_at_stripe: list[Subscription] = []

    def event_arrives() -> None:
        # After the page was listed, the customer cancels at period end and the event is
        # delivered before the reconcile writes: the listed state is now the older one.
        newer_at_stripe.append(world.stripe.update_subscription(sub_id, cancel_at_period_end=True))
        world.deliver()

    world.stripe.update_subscription(sub_id, quantity=3)  # missed drift
    world.stripe.drain_events()
    world.stripe.advance(timedelta(minutes=5))
    world.stripe.after_fetch = event_arrives
    report = world.reconciler().run()
    [finding] = report.findings
    assert finding.action == "kept"
    assert report.rows_written == 0
    stored = world.stored(sub_id)
    assert stored is not None
    assert stored.same_state(newer_at_stripe[0])  # the newer event won
    assert stored.cancel_at_period_end and stored.quantity == 3


def test_an_older_event_arriving_after_the_reconcile_is_stale(world: World) -> None:
    sub_id = world.subscribe("user-1")
    world.deliver()
    world.stripe.update_subscription(sub_id, quantity=2)
    held_back = world.stripe.drain_events()
    world.stripe.update_subscription(sub_id, quantity=5)
    world.stripe.drain_events()
    world.later()
    assert world.reconciler().run().counts["fixed"] == 1
    for delivery in held_back:  # Stripe retries the old event now
        world.billing.webhooks.handle(delivery.payload, delivery.signature)
    stored = world.stored(sub_id)
    assert stored is not None and stored.quantity == 5


def test_a_dry_run_predicts_the_guard(world: World) -> None:
    sub_id = world.subscribe("user-1")
    world.deliver()
    world.stripe.update_subscription(sub_id, quantity=2)
    world.stripe.drain_events()
    # no time passes: the stored event is within the clock skew, so the guard keeps it
    report = world.reconciler().run(dry_run=True)
    assert [f.action for f in report.findings] == ["kept"]
    assert world.reconciler().run().counts["kept"] == 1


def test_an_interrupted_run_resumes_where_it_stopped(world: World) -> None:
    price = _price(world, "pro_monthly")
    ids = []
    for number in range(250):
        customer = world.stripe.add_customer(metadata={"user_id": f"u{number}"})
        ids.append(
            world.stripe.add_subscription(customer.id, price, metadata={"user_id": f"u{number}"}).id
        )
    world.later()
    world.stripe.reset_calls()
    seen = [0]

    def tick() -> None:
        seen[0] += 1
        if seen[0] == 200:  # the third page fails
            world.stripe.fail_next("list_subscriptions", GatewayServerError("Stripe is down"))

    with pytest.raises(GatewayServerError):
        world.reconciler().run(on_subscription=tick)
    checkpoint = world.checkpoints.checkpoint
    assert checkpoint is not None
    assert checkpoint.counts["listed"] == 200
    assert checkpoint.starting_after == ids[50]  # newest first: the 200th listed
    assert sum(world.stored(i) is not None for i in ids) == 200

    world.stripe.reset_calls()
    report = world.reconciler().run(resume=True)
    assert world.stripe.calls["list_subscriptions"] == 1
    assert report.resumed_from == ids[50]
    assert report.counts["listed"] == 250
    assert report.counts["missing_here"] == 250
    assert all(world.stored(i) is not None for i in ids)
    assert world.checkpoints.checkpoint is None  # finished: forgotten

    fresh = world.reconciler().run(resume=True)  # nothing to resume: a full run
    assert fresh.resumed_from is None and fresh.counts["in_sync"] == 250


def test_resuming_with_other_options_is_refused(world: World) -> None:
    world.checkpoints.save(Checkpoint(scope="[null,null]", starting_after="sub_x", counts={}))
    with pytest.raises(ConfigurationError, match="other options"):
        world.reconciler().run(resume=True, since=START)


def test_the_file_checkpoint_round_trips(tmp_path: Path) -> None:
    store = FileCheckpointStore(tmp_path / "state" / "reconcile.json")
    assert store.load() is None
    store.save(Checkpoint("[null,null]", "sub_123", {"listed": 100, "fixed": 2}))
    loaded = store.load()
    assert loaded == Checkpoint("[null,null]", "sub_123", {"listed": 100, "fixed": 2})
    store.clear()
    assert store.load() is None
    store.clear()  # twice is fine
    store.path.write_text("{not json", encoding="utf-8")
    with pytest.raises(ConfigurationError, match="unreadable"):
        store.load()


def test_a_negative_skew_is_refused(world: World) -> None:
    with pytest.raises(ConfigurationError):
        world.reconciler(clock_skew=timedelta(seconds=-1))


def test_findings_are_capped_but_counted(world: World) -> None:
    price = _price(world, "pro_monthly")
    for _ in range(5):
        world.stripe.add_subscription(world.stripe.add_customer().id, price)
    report = world.reconciler(kept_findings=2).run()
    assert len(report.findings) == 2
    assert report.counts["unknown_customer"] == 5
    assert report.as_json()["drift"] == {
        "missing_here": 0,
        "status": 0,
        "plan": 0,
        "period": 0,
        "cancel_flag": 0,
        "other": 0,
        "unknown_customer": 5,
        "gone_at_stripe": 0,
    }


def test_the_repository_checkpoint_round_trips(world: World) -> None:
    store = RepositoryCheckpointStore(world.repository, name="nightly", clock=world.stripe.now)
    assert store.load() is None
    store.save(Checkpoint("[null,null]", "sub_123", {"listed": 100}))
    assert store.load() == Checkpoint("[null,null]", "sub_123", {"listed": 100})
    with world.repository.unit_of_work() as uow:
        stored = uow.get_reconcile_checkpoint("nightly")
    assert stored is not None and stored.updated_at == world.stripe.now()
    store.clear()
    assert store.load() is None


def _stored_sync(world: World, count: int, *, step: timedelta | None) -> list[str]:
    """``count`` subscriptions at Stripe, all stored; ``step`` apart (same second if None)."""
    price = _price(world, "pro_monthly")
    ids = []
    for number in range(count):
        user = {"user_id": f"u{number}"}
        customer = world.stripe.add_customer(metadata=user)
        ids.append(world.stripe.add_subscription(customer.id, price, metadata=user).id)
        if step is not None:
            world.stripe.advance(step)
    world.stripe.drain_events()
    world.later()
    assert world.reconciler().run().counts["fixed"] == count
    return ids


@pytest.mark.parametrize("step", [None, timedelta(seconds=1), timedelta(milliseconds=400)])
def test_gone_at_stripe_is_found_page_by_page(world: World, step: timedelta | None) -> None:
    ids = _stored_sync(world, 250, step=step)
    removed = [ids[0], ids[99], ids[100], ids[150], ids[249]]  # ends and page boundaries
    for sub_id in removed:
        world.stripe.remove_subscription(sub_id)
    report = world.reconciler().run()
    assert report.counts["listed"] == 245
    assert report.counts["in_sync"] == 245
    assert sorted(f.subscription_id for f in report.findings) == sorted(removed)
    assert {(f.drifts, f.action) for f in report.findings} == {
        ((Drift.GONE_AT_STRIPE,), "reported")
    }
    assert all(world.stored(sub_id) is not None for sub_id in removed)  # never deleted


def test_everything_is_gone_when_stripe_lists_nothing(world: World) -> None:
    ids = _stored_sync(world, 3, step=None)
    for sub_id in ids:
        world.stripe.remove_subscription(sub_id)
    report = world.reconciler().run()
    assert report.counts["listed"] == 0
    assert report.counts[str(Drift.GONE_AT_STRIPE)] == 3


def test_gone_respects_since(world: World) -> None:
    old = _stored_sync(world, 2, step=timedelta(seconds=1))
    world.stripe.advance(timedelta(days=1))
    since = world.stripe.now()
    new = _stored_sync(world, 2, step=timedelta(seconds=1))
    for sub_id in [old[0], new[0]]:
        world.stripe.remove_subscription(sub_id)
    assert [f.subscription_id for f in world.reconciler().run(since=since).findings] == [new[0]]
    everything = world.reconciler().run()
    assert sorted(f.subscription_id for f in everything.findings) == sorted([old[0], new[0]])


@pytest.mark.parametrize("step", [None, timedelta(seconds=1)])
def test_a_resumed_run_reports_no_false_gone(world: World, step: timedelta | None) -> None:
    ids = _stored_sync(world, 250, step=step)
    world.stripe.remove_subscription(ids[10])  # on the last page, after the resume point
    seen = [0]

    def tick() -> None:
        seen[0] += 1
        if seen[0] == 100:
            world.stripe.fail_next("list_subscriptions", GatewayServerError("down"))

    with pytest.raises(GatewayServerError):
        world.reconciler().run(on_subscription=tick)
    report = world.reconciler().run(resume=True)
    assert report.counts["listed"] == 249
    gone = [f.subscription_id for f in report.findings]
    assert gone == ([] if step is None else [ids[10]])  # one second of ties is left out


def test_backfill_refuses_what_the_input_contradicts(world: World) -> None:
    price = _price(world, "pro_monthly")
    kept = world.stripe.add_customer(email="kept@example.com")
    world.stripe.add_subscription(kept.id, price)
    deleted = world.stripe.add_customer()
    world.stripe.delete_customer(deleted.id)
    pairs = [
        ("ann", kept.id),
        ("ann", kept.id),  # the same pair twice: one link
        ("bob", kept.id),  # the customer mapped to a second user
        ("cid", deleted.id),
    ]
    report = backfill(
        pairs,
        gateway=world.stripe,
        repository=world.repository,
        reconciler=world.reconciler(),
        apply=True,
        check_customers=True,
    )
    outcomes = [(link.user_id, link.outcome, link.reason) for link in report.links]
    assert outcomes == [
        ("bob", "conflict", "customer also mapped to user ann"),
        ("ann", "linked", None),
        ("cid", "conflict", "the customer is deleted"),
    ]
    assert report.reconcile is not None and report.reconcile.counts["fixed"] == 1
    assert report.as_json()["counts"] == {
        "linked": 1,
        "would_link": 0,
        "already_linked": 0,
        "conflict": 2,
    }


def test_backfill_needs_a_metadata_key(world: World) -> None:
    with pytest.raises(ConfigurationError):
        list(pairs_from_metadata(world.stripe, ""))


def test_a_resume_with_nothing_left_to_list_reports_nothing_gone(world: World) -> None:
    ids = _stored_sync(world, 150, step=timedelta(seconds=1))
    seen = [0]

    def tick() -> None:
        seen[0] += 1
        if seen[0] == 100:
            world.stripe.fail_next("list_subscriptions", GatewayServerError("down"))

    with pytest.raises(GatewayServerError):
        world.reconciler().run(on_subscription=tick)
    for sub_id in ids[:50]:  # the oldest 50, not listed yet, are deleted at Stripe meanwhile
        world.stripe.remove_subscription(sub_id)
    report = world.reconciler().run(resume=True)
    assert report.counts["listed"] == 100
    assert report.counts[str(Drift.GONE_AT_STRIPE)] == 0  # not decidable after a resume
