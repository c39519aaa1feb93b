"""UsageService: the transactional outbox, flushing to the fake's meters, reliability."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from billingkit import (
    Billing,
    BillingConfig,
    CustomerLink,
    FlushResult,
    InMemoryRepository,
    PlanDefinition,
    Subscription,
    SubscriptionStatus,
    UsageRecord,
    UsageService,
    UsageStatus,
    UsageTotal,
)
from billingkit.errors import (
    ConfigurationError,
    GatewayConnectionError,
    GatewayInvalidRequestError,
    GatewayServerError,
    InvalidInputError,
)
from billingkit.services.webhooks.deferred import RetryPolicy
from billingkit.testing import FakeStripeGateway

SECRET = "whsec_usage_test"
START = datetime(2031, 3, 1, 12, 0, tzinfo=timezone.utc)
METER = "api_calls"
#: No jitter: retry times are exact.
POLICY = RetryPolicy(max_attempts=3, base_seconds=30.0, max_seconds=600.0, random=lambda: 0.0)


class _Killed(BaseException):
    """The flushing process dies (SIGKILL-like: no bookkeeping runs)."""


def _config() -> BillingConfig:
    return BillingConfig(
        plans=[PlanDefinition(key="free", name="Free")],
        free_plan="free",
        webhook_secrets=[SECRET],
    )


class World:
    """A fake Stripe with a meter, a repository and a service; users linked to customers."""

    def __init__(self, *, retry: RetryPolicy = POLICY) -> None:
        self.fake = FakeStripeGateway(webhook_secret=SECRET, start=START)
        self.fake.add_meter(METER)
        self.repository = InMemoryRepository()
        self.service = UsageService(
            _config(),
            gateway=self.fake,
            repository=self.repository,
            clock=self.fake.now,
            retry=retry,
        )

    def link(self, user_id: str) -> str:
        customer = self.fake.create_customer(
            user_id=user_id, email=None, idempotency_key=f"link-{user_id}"
        )
        with self.repository.unit_of_work() as uow:
            uow.link_customer(CustomerLink(user_id=user_id, customer_id=customer.id))
        return customer.id

    def stored(self, identifier: str) -> UsageRecord:
        with self.repository.unit_of_work() as uow:
            record = uow.get_usage(identifier)
        assert record is not None
        return record

    def at_stripe(self) -> dict[str, int]:
        """Identifier -> value of every meter event the fake counted."""
        return {event.identifier: event.value for event in self.fake.meter_events()}


@pytest.fixture
def world() -> World:
    return World()


# --------------------------------------------------------------------------------- record


def test_record_writes_the_outbox_and_calls_no_stripe(world: World) -> None:
    world.link("user_1")
    world.fake.reset_calls()
    record = world.service.record("user_1", METER, 5, identifier="req_1")
    assert record == world.stored("req_1")
    assert (record.status, record.value, record.timestamp, record.recorded_at) == (
        UsageStatus.PENDING,
        5,
        START,
        START,
    )
    assert world.fake.total_calls == 0


def test_record_generates_a_stable_identifier_and_is_idempotent(world: World) -> None:
    first = world.service.record("user_1", METER, 1)
    second = world.service.record("user_1", METER, 1)
    assert first.identifier != second.identifier
    assert first.identifier.startswith("bku_") and len(first.identifier) <= 100
    again = world.service.record("user_1", METER, 99, identifier=first.identifier)
    assert again == first  # the stored record, unchanged
    when = START - timedelta(hours=2)
    dated = world.service.record("user_1", METER, 2, timestamp=when)
    assert dated.timestamp == when


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [
        (("", METER, 1), {}),
        (("user_1", "", 1), {}),
        (("user_1", "x" * 101, 1), {}),
        (("user_1", METER, -1), {}),
        (("user_1", METER, True), {}),
        (("user_1", METER, 1.5), {}),
        (("user_1", METER, 1), {"identifier": ""}),
        (("user_1", METER, 1), {"identifier": "x" * 101}),
        (("user_1", METER, 1), {"timestamp": datetime(2031, 3, 1)}),
    ],
)
def test_record_refuses_bad_input(world: World, args: tuple[Any, ...], kwargs: Any) -> None:
    with pytest.raises(InvalidInputError):
        world.service.record(*args, **kwargs)
    with world.repository.unit_of_work() as uow:
        assert uow.list_usage() == []


def test_record_commits_or_rolls_back_with_the_callers_transaction() -> None:
    """The app's unit of work: the record is part of it (SQL: see test_usage_sql)."""
    world = World()
    with pytest.raises(RuntimeError), world.repository.unit_of_work() as uow:
        uow.add_usage(
            UsageRecord(
                identifier="u1",
                user_id="user_1",
                event_name=METER,
                value=1,
                timestamp=START,
                recorded_at=START,
            )
        )
        raise RuntimeError("the business write failed")
    with world.repository.unit_of_work() as uow:
        assert uow.get_usage("u1") is None


# ---------------------------------------------------------------------------------- flush


def test_flush_sends_every_record_once_in_batches(world: World) -> None:
    customer = world.link("user_1")
    for index in range(7):
        world.service.record("user_1", METER, index + 1, identifier=f"u{index}")
    result = world.service.flush(batch_size=3)
    assert result == FlushResult(sent=7, calls=7)
    assert result.claimed == 7
    assert world.at_stripe() == {f"u{i}": i + 1 for i in range(7)}
    assert world.fake.meter_usage(customer, METER) == 28
    assert all(world.stored(f"u{i}").status is UsageStatus.SENT for i in range(7))
    assert world.stored("u0").sent_at == START
    assert world.service.flush() == FlushResult()
    assert world.fake.calls["create_meter_event"] == 7


def test_flush_limit_caps_the_records_sent(world: World) -> None:
    world.link("user_1")
    for index in range(5):
        world.service.record("user_1", METER, 1, identifier=f"u{index}")
    assert world.service.flush(batch_size=2, limit=3).sent == 3
    assert world.service.flush(limit=0) == FlushResult()
    assert world.service.flush().sent == 2


def test_flush_refuses_bad_arguments(world: World) -> None:
    with pytest.raises(InvalidInputError):
        world.service.flush(batch_size=0)
    with pytest.raises(InvalidInputError):
        world.service.flush(limit=-1)


def test_a_user_without_a_customer_is_retried_until_linked(world: World) -> None:
    world.service.record("user_late", METER, 4, identifier="late")
    result = world.service.flush()
    assert (result.failed, result.calls) == (1, 0)
    assert "no Stripe customer" in result.errors[0]
    failed = world.stored("late")
    assert (failed.status, failed.attempts) == (UsageStatus.FAILED, 1)
    assert failed.next_attempt_at == START + timedelta(seconds=30)
    world.link("user_late")
    assert world.service.flush() == FlushResult()  # not due yet
    world.fake.advance(timedelta(seconds=30))
    assert world.service.flush().sent == 1
    assert world.at_stripe() == {"late": 4}


def test_a_refused_record_is_dead_at_once_and_the_batch_goes_on(world: World) -> None:
    world.link("user_1")
    world.service.record("user_1", "no_such_meter", 1, identifier="bad")
    world.service.record("user_1", METER, 2, identifier="good")
    result = world.service.flush()
    assert (result.sent, result.dead, result.calls) == (1, 1, 2)
    dead = world.stored("bad")
    assert (dead.status, dead.attempts) == (UsageStatus.DEAD, 1)
    assert dead.last_error is not None and "GatewayInvalidRequestError" in dead.last_error
    assert [r.identifier for r in world.service.failures()] == ["bad"]
    world.fake.advance(timedelta(days=1))
    assert world.service.flush() == FlushResult()  # a dead record is never sent


def test_retryable_failures_back_off_then_die(world: World) -> None:
    world.link("user_1")
    world.service.record("user_1", METER, 1, identifier="u1")
    for attempt, delay in ((1, 30), (2, 60)):
        world.fake.fail_next("create_meter_event", GatewayServerError("down", retryable=True))
        assert world.service.flush().failed == 1
        stored = world.stored("u1")
        assert (stored.status, stored.attempts) == (UsageStatus.FAILED, attempt)
        assert stored.next_attempt_at == world.fake.now() + timedelta(seconds=delay)
        world.fake.advance(timedelta(seconds=delay))
    world.fake.fail_next("create_meter_event", GatewayServerError("down", retryable=True))
    assert world.service.flush().dead == 1
    assert world.stored("u1").status is UsageStatus.DEAD
    assert world.at_stripe() == {}


def test_an_unexpected_error_keeps_what_was_sent_and_releases_the_rest(world: World) -> None:
    world.link("user_1")
    for index in range(4):
        world.service.record("user_1", METER, 1, identifier=f"u{index}")
    real = world.fake.create_meter_event
    calls = 0

    def flaky(**params: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise RuntimeError("a bug in the middle of a batch")
        return real(**params)

    world.fake.create_meter_event = flaky  # type: ignore[method-assign]
    with pytest.raises(RuntimeError):
        world.service.flush()
    statuses = [world.stored(f"u{i}").status for i in range(4)]
    assert statuses == [
        UsageStatus.SENT,
        UsageStatus.SENT,
        UsageStatus.PENDING,
        UsageStatus.PENDING,
    ]
    world.fake.create_meter_event = real  # type: ignore[method-assign]
    assert world.service.flush().sent == 2
    assert set(world.at_stripe()) == {"u0", "u1", "u2", "u3"}


# ----------------------------------------------------------------------------- reliability


@pytest.mark.parametrize("k", [0, 1, 4, 9])
def test_a_gateway_failure_after_k_of_n_loses_nothing_and_sends_once(k: int) -> None:
    """Stripe fails on record k+1 of a batch of n: after the next flush all n are there once."""
    n = 10
    world = World()
    world.link("user_1")
    for index in range(n):
        world.service.record("user_1", METER, index + 1, identifier=f"u{index:02d}")
    world.fake.fail_next(
        "create_meter_event",
        GatewayConnectionError("connection reset", retryable=True),
        after_applying=True,  # Stripe may have counted it: the response was lost
        after_calls=k,
    )
    first = world.service.flush(batch_size=n)
    assert (first.sent, first.failed, first.released) == (k, 1, n - k - 1)
    world.fake.advance(timedelta(seconds=30))
    second = world.service.flush(batch_size=n)
    assert second.sent == n - k
    assert world.at_stripe() == {f"u{i:02d}": i + 1 for i in range(n)}
    assert len(world.fake.meter_events()) == n  # each identifier counted exactly once
    with world.repository.unit_of_work() as uow:
        assert [r.status for r in uow.list_usage()] == [UsageStatus.SENT] * n


def test_a_flush_killed_mid_batch_is_finished_by_the_next_one_after_the_lease() -> None:
    """The process dies after k sends: nothing is marked; the lease ends; Stripe dedupes."""
    n, k = 8, 3
    world = World()
    world.link("user_1")
    for index in range(n):
        world.service.record("user_1", METER, 1, identifier=f"u{index}")
    real = world.fake.create_meter_event
    sent = 0

    def dies_after_k(**params: Any) -> Any:
        nonlocal sent
        if sent == k:
            raise _Killed
        sent += 1
        return real(**params)

    world.fake.create_meter_event = dies_after_k  # type: ignore[method-assign]
    with pytest.raises(_Killed):
        world.service.flush(batch_size=n)
    world.fake.create_meter_event = real  # type: ignore[method-assign]
    assert len(world.at_stripe()) == k
    with world.repository.unit_of_work() as uow:
        assert {r.status for r in uow.list_usage()} == {UsageStatus.SENDING}
    assert world.service.flush() == FlushResult()  # leased to the dead flush
    world.fake.advance(timedelta(minutes=5))
    assert world.service.flush(batch_size=n).sent == n
    assert sorted(world.at_stripe()) == [f"u{i}" for i in range(n)]
    assert len(world.fake.meter_events()) == n


def test_a_rate_limit_stops_the_flush_and_releases_the_batch(world: World) -> None:
    world.link("user_1")
    for index in range(3):
        world.service.record("user_1", METER, 1, identifier=f"u{index}")
    world.fake.fail_next("create_meter_event", GatewayServerError("429", retryable=True))
    result = world.service.flush()
    assert (result.failed, result.released, result.calls) == (1, 2, 1)
    assert world.service.flush().sent == 2  # the released ones are due at once


# ---------------------------------------------------------------------------------- reads


def _subscribe(world: World, user_id: str, start: datetime, end: datetime) -> None:
    with world.repository.unit_of_work() as uow:
        uow.save_subscription(
            Subscription(
                id="sub_1",
                customer_id="cus_x",
                user_id=user_id,
                status=SubscriptionStatus.ACTIVE,
                created=start,
                current_period_start=start,
                current_period_end=end,
                watermark=1,
            )
        )


def test_usage_this_period_is_read_locally(world: World) -> None:
    world.link("user_1")
    period_start, period_end = START - timedelta(days=10), START + timedelta(days=20)
    _subscribe(world, "user_1", period_start, period_end)
    before = period_start - timedelta(seconds=1)
    world.service.record("user_1", METER, 5, identifier="a", timestamp=before)
    world.service.record("user_1", METER, 7, identifier="b")
    world.service.record("user_1", METER, 11, identifier="c")
    world.service.flush(limit=2)
    world.fake.reset_calls()
    assert world.service.usage("user_1", METER) == UsageTotal(value=18, records=2, unsent=1)
    explicit = world.service.usage("user_1", METER, (period_start - timedelta(days=1), START))
    assert explicit == UsageTotal(value=5, records=1, unsent=0)
    assert world.fake.total_calls == 0  # read path: no Stripe call


def test_usage_without_a_live_subscription_is_empty(world: World) -> None:
    world.service.record("user_1", METER, 5)
    assert world.service.usage("user_1", METER) == UsageTotal()
    with world.repository.unit_of_work() as uow:  # ended, and live without a period
        uow.save_subscription(
            Subscription(
                id="sub_old",
                customer_id="cus_x",
                user_id="user_1",
                status=SubscriptionStatus.CANCELED,
                created=START,
                current_period_start=START - timedelta(days=1),
                current_period_end=START + timedelta(days=1),
                watermark=1,
            )
        )
        uow.save_subscription(
            Subscription(
                id="sub_new",
                customer_id="cus_x",
                user_id="user_1",
                status=SubscriptionStatus.ACTIVE,
                created=START - timedelta(days=2),
                watermark=1,
            )
        )
    assert world.service.usage("user_1", METER) == UsageTotal()
    assert str(UsageStatus.SENT) == "sent"
    with pytest.raises(InvalidInputError):
        world.service.usage("user_1", METER, (datetime(2031, 1, 1), START))


def test_billing_build_wires_the_usage_service() -> None:
    fake = FakeStripeGateway(webhook_secret=SECRET, start=START)
    billing = Billing.build(_config(), fake, InMemoryRepository(), clock=fake.now)
    assert isinstance(billing.usage, UsageService)
    assert billing.usage.record("user_1", METER, 1).recorded_at == START
    assert "UsageService" in repr(billing.usage)


def test_the_service_refuses_a_non_positive_lease() -> None:
    fake = FakeStripeGateway(webhook_secret=SECRET, start=START)
    with pytest.raises(InvalidInputError):
        UsageService(_config(), gateway=fake, repository=InMemoryRepository(), lease=timedelta(0))


# ------------------------------------------------------------------------------ the fake


def test_the_fake_refuses_what_stripe_refuses(world: World) -> None:
    customer = world.link("user_1")
    world.fake.add_meter("paused_meter", active=False)
    for name, when in (("paused_meter", START), ("unknown", START)):
        with pytest.raises(GatewayInvalidRequestError):
            world.fake.create_meter_event(
                event_name=name, customer_id=customer, value=1, identifier="x", timestamp=when
            )
    for when in (START - timedelta(days=36), START + timedelta(minutes=6)):
        with pytest.raises(GatewayInvalidRequestError):
            world.fake.create_meter_event(
                event_name=METER, customer_id=customer, value=1, identifier="x", timestamp=when
            )
    world.fake.delete_customer(customer)
    with pytest.raises(GatewayInvalidRequestError):
        world.fake.create_meter_event(
            event_name=METER, customer_id=customer, value=1, identifier="x", timestamp=START
        )
    assert world.fake.meter_events() == []


def test_the_fake_refuses_bad_meters(world: World) -> None:
    for name in ("", "x" * 101, METER):
        with pytest.raises(ConfigurationError):
            world.fake.add_meter(name)
    with pytest.raises(ConfigurationError):
        world.fake.fail_next("create_meter_event", GatewayServerError("x"), after_calls=-1)


def test_a_meter_event_with_a_fractional_value_is_a_payload_error() -> None:
    from billingkit.errors import WebhookPayloadError
    from billingkit.stripe_objects import meter_event_from_stripe

    event: dict[str, Any] = {
        "object": "billing.meter_event",
        "event_name": METER,
        "identifier": "x",
        "payload": {"stripe_customer_id": "cus_1", "value": "2.5"},
        "timestamp": 1_900_000_000,
    }
    with pytest.raises(WebhookPayloadError):
        meter_event_from_stripe(event)
    assert (
        meter_event_from_stripe({**event, "payload": {**event["payload"], "value": "7"}}).value == 7
    )


def test_the_fake_counts_an_identifier_once(world: World) -> None:
    customer = world.link("user_1")
    first = world.fake.create_meter_event(
        event_name=METER, customer_id=customer, value=3, identifier="same", timestamp=START
    )
    again = world.fake.create_meter_event(
        event_name=METER, customer_id=customer, value=300, identifier="same", timestamp=START
    )
    assert again == first
    assert world.fake.meter_usage(customer, METER) == 3
    assert world.fake.meter_usage(customer, METER, start=START + timedelta(seconds=1)) == 0
    assert world.fake.meter_usage(customer, METER, end=START) == 0
    assert world.fake.meter_events(customer_id="cus_other") == []
    assert world.fake.meter_events(event_name=METER) == [first]


# ------------------------------------------------------------ metered prices, end to end


def test_a_metered_plan_checks_out_without_quantity_and_bills_the_usage_at_renewal() -> None:
    from billingkit import CheckoutService, Interval, PlanCatalog
    from billingkit.ports import CheckoutSessionRequest

    fake = FakeStripeGateway(webhook_secret=SECRET, start=START)
    fake.add_meter(METER)
    price = fake.add_price(amount=3, interval="month", lookup_key="api_monthly", meter=METER)
    assert price.is_metered and price.meter_id is not None and price.usage_type == "metered"
    config = BillingConfig(
        plans=[
            PlanDefinition(key="free", name="Free"),
            PlanDefinition(key="api", name="API", prices={Interval.MONTH: "api_monthly"}),
        ],
        free_plan="free",
        webhook_secrets=[SECRET],
    )
    repository = InMemoryRepository()
    catalog = PlanCatalog(config, gateway=fake, clock=fake.now)
    checkout = CheckoutService(
        config, gateway=fake, repository=repository, catalog=catalog, clock=fake.now
    )
    with pytest.raises(InvalidInputError):
        checkout.start_checkout(
            user_id="user_1",
            email=None,
            plan_key="api",
            interval="month",
            success_url="https://app.example.com/ok",
            cancel_url="https://app.example.com/no",
            quantity=2,
        )
    started = checkout.start_checkout(
        user_id="user_1",
        email=None,
        plan_key="api",
        interval="month",
        success_url="https://app.example.com/ok",
        cancel_url="https://app.example.com/no",
    )
    request = fake.checkout_request(started.session_id)
    assert request.metered is True
    session = fake.complete_checkout(started.session_id)
    assert session.amount_total == 0  # metered: nothing is due up front
    assert session.subscription_id is not None
    usage = UsageService(config, gateway=fake, repository=repository, clock=fake.now, retry=POLICY)
    usage.record("user_1", METER, 40, identifier="a")
    usage.record("user_1", METER, 2, identifier="b")
    assert usage.flush().sent == 2
    fake.advance(timedelta(days=31))  # renewal: the period that ended is billed
    invoice = fake.latest_invoice(session.subscription_id)
    (line,) = invoice["lines"]["data"]
    assert (line["quantity"], line["amount"], invoice["amount_due"]) == (42, 126, 126)
    fake.advance(timedelta(days=31))  # nothing recorded since: a zero line
    invoice = fake.latest_invoice(session.subscription_id)
    assert invoice["lines"]["data"][0]["quantity"] == 0 and invoice["amount_due"] == 0
    # Stripe refuses a quantity on a metered price, and its absence on a licensed one
    with pytest.raises(GatewayInvalidRequestError):
        fake.create_checkout_session(request.model_copy(update={"metered": False}))
    with pytest.raises(ConfigurationError):
        fake.add_price(amount=1, interval=Interval.ONE_TIME, meter=METER)
    with pytest.raises(ConfigurationError):
        fake.add_price(amount=1, interval="month", meter="no_meter")
    assert isinstance(request, CheckoutSessionRequest)
