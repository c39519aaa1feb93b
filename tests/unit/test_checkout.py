"""CheckoutService over InMemoryRepository + FakeStripeGateway (no mocks of the SDK)."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pytest

from billingkit.adapters.memory import InMemoryRepository
from billingkit.config import BillingConfig
from billingkit.domain import (
    LIVE_STATUSES,
    TERMINAL_STATUSES,
    CheckoutRecord,
    CustomerLink,
    Interval,
    PlanDefinition,
    Subscription,
    SubscriptionStatus,
)
from billingkit.errors import (
    AlreadySubscribedError,
    CheckoutOwnershipError,
    ConfigurationError,
    ConflictError,
    GatewayConnectionError,
    GatewayError,
    GatewayInvalidRequestError,
    GatewayNotFoundError,
    GatewayServerError,
    InvalidInputError,
    NoCustomerError,
    UnknownPlanError,
)
from billingkit.ports import CheckoutSession, CheckoutSessionRequest, StripeCustomer
from billingkit.services.catalog import PlanCatalog
from billingkit.services.checkout import (
    CheckoutService,
    checkout_idempotency_key,
    checkout_request_key,
    customer_idempotency_key,
)
from billingkit.services.webhooks import WebhookProcessor
from billingkit.testing import FakeStripeGateway

SECRET = "whsec_checkout_tests"
SUCCESS = "https://app.example/billing/success?session_id={CHECKOUT_SESSION_ID}"
CANCEL = "https://app.example/pricing"

PLANS = (
    PlanDefinition(key="free", name="Free"),
    PlanDefinition(
        key="pro",
        name="Pro",
        prices={Interval.MONTH: "price_pro_monthly", Interval.YEAR: "pro_yearly"},
    ),
    PlanDefinition(key="team", name="Team", prices={Interval.MONTH: "price_team_monthly"}),
    PlanDefinition(key="lifetime", name="Lifetime", prices={Interval.ONE_TIME: "price_lifetime"}),
)


class RecordingStripe(FakeStripeGateway):
    """The fake, also recording the idempotency key of every create attempt (failed too)."""

    def __init__(self) -> None:
        super().__init__(webhook_secret=SECRET)
        self.customer_keys: list[str] = []
        self.session_keys: list[str] = []

    def create_customer(
        self,
        *,
        user_id: str,
        email: str | None,
        idempotency_key: str,
        metadata: Mapping[str, str] | None = None,
    ) -> StripeCustomer:
        self.customer_keys.append(idempotency_key)
        return super().create_customer(
            user_id=user_id, email=email, idempotency_key=idempotency_key, metadata=metadata
        )

    def create_checkout_session(self, request: CheckoutSessionRequest) -> CheckoutSession:
        self.session_keys.append(request.idempotency_key)
        return super().create_checkout_session(request)

    def customers_created(self) -> int:
        return sum(1 for event in self.emitted_events() if event["type"] == "customer.created")


@dataclass
class World:
    stripe: RecordingStripe
    repo: InMemoryRepository
    catalog: PlanCatalog
    config: BillingConfig
    service: CheckoutService

    def link(self, user_id: str) -> CustomerLink | None:
        with self.repo.unit_of_work() as uow:
            return uow.customer_for_user(user_id)

    def record(self, session_id: str) -> CheckoutRecord | None:
        with self.repo.unit_of_work() as uow:
            return uow.get_checkout(session_id)

    def subscriptions(self, user_id: str) -> list[Subscription]:
        with self.repo.unit_of_work() as uow:
            return uow.subscriptions_for_user(user_id)

    def open_checkout(self, user_id: str) -> CheckoutRecord | None:
        """Any open checkout of the user with the key of a default ``start``."""
        with self.repo.unit_of_work() as uow:
            return uow.find_open_checkout(
                user_id=user_id,
                request_key=default_request_key(user_id),
                created_after=self.stripe.now() - timedelta(days=30),
            )

    def start(self, user_id: str = "u1", **overrides: Any) -> Any:
        arguments: dict[str, Any] = {
            "user_id": user_id,
            "email": f"{user_id}@example.com",
            "plan_key": "pro",
            "interval": Interval.MONTH,
            "success_url": SUCCESS,
            "cancel_url": CANCEL,
        }
        arguments.update(overrides)
        return self.service.start_checkout(**arguments)

    def processor(self) -> WebhookProcessor:
        return WebhookProcessor(
            self.config,
            gateway=self.stripe,
            repository=self.repo,
            catalog=self.catalog,
            clock=self.stripe.clock,
        )

    def deliver_events(self) -> None:
        processor = self.processor()
        for delivery in self.stripe.drain_events():
            processor.handle(delivery.payload, delivery.signature)

    def store_subscription(self, user_id: str, status: SubscriptionStatus) -> None:
        with self.repo.unit_of_work() as uow:
            uow.save_subscription(
                Subscription(
                    id=f"sub_{user_id}",
                    customer_id=f"cus_{user_id}",
                    user_id=user_id,
                    status=status,
                    created=self.stripe.now(),
                    watermark=1,
                )
            )


def default_request_key(user_id: str) -> str:
    return checkout_request_key(
        user_id=user_id,
        plan_key="pro",
        interval=Interval.MONTH,
        price_id="price_pro_monthly",
        quantity=1,
        trial_days=None,
        allow_promotion_codes=False,
        success_url=SUCCESS,
        cancel_url=CANCEL,
        metadata={},
    )


def make_world(stripe: RecordingStripe | None = None, *, warm: bool = True, **config: Any) -> World:
    stripe = stripe or RecordingStripe()
    stripe.add_price(amount=2000, interval="month", price_id="price_pro_monthly")
    stripe.add_price(amount=20000, interval="year", lookup_key="pro_yearly", price_id="price_py")
    stripe.add_price(amount=5000, interval="month", price_id="price_team_monthly")
    stripe.add_price(amount=9900, interval=Interval.ONE_TIME, price_id="price_lifetime")
    billing = BillingConfig(plans=PLANS, free_plan="free", webhook_secrets=(SECRET,), **config)
    repo = InMemoryRepository()
    catalog = PlanCatalog(billing, gateway=stripe, clock=stripe.clock)
    if warm:
        catalog.plans()
    stripe.reset_calls()
    service = CheckoutService(
        billing, gateway=stripe, repository=repo, catalog=catalog, clock=stripe.clock
    )
    return World(stripe, repo, catalog, billing, service)


@pytest.fixture
def world() -> World:
    return make_world()


# --------------------------------------------------------------------------- start


def test_new_user_gets_a_customer_and_a_subscription_session_in_two_calls(world: World) -> None:
    start = world.start(
        quantity=3, trial_days=14, allow_promotion_codes=True, metadata={"campaign": "spring"}
    )

    assert world.stripe.calls == {"create_customer": 1, "create_checkout_session": 1}
    assert start.url and start.session_id.startswith("cs_")
    assert start.expires_at == world.stripe.now() + timedelta(hours=24)
    assert start.reused is False
    link = world.link("u1")
    assert link is not None and link.email == "u1@example.com"
    assert world.stripe.stripe_object(link.customer_id)["metadata"]["user_id"] == "u1"

    request = world.stripe.checkout_request(start.session_id)
    tags = {"user_id": "u1", "plan_key": "pro", "interval": "month"}
    assert request.mode == "subscription"
    assert request.customer_id == link.customer_id
    assert request.price_id == "price_pro_monthly"
    assert request.client_reference_id == "u1"
    assert request.metadata == {"campaign": "spring", **tags}
    assert request.subscription_metadata == {"campaign": "spring", **tags}
    assert (request.quantity, request.trial_days, request.allow_promotion_codes) == (3, 14, True)
    assert (request.success_url, request.cancel_url) == (SUCCESS, CANCEL)

    record = world.record(start.session_id)
    assert record is not None
    assert record.model_dump(exclude={"request_key"}) == {
        "session_id": start.session_id,
        "user_id": "u1",
        "customer_id": link.customer_id,
        "plan_key": "pro",
        "interval": Interval.MONTH,
        "mode": "subscription",
        "status": "open",
        "payment_status": "unpaid",
        "url": start.url,
        "expires_at": start.expires_at,
        "subscription_id": None,
        "created_at": world.stripe.now(),
    }
    assert len(record.request_key) == 64


def test_existing_customer_is_reused_and_costs_one_call(world: World) -> None:
    first = world.start()
    world.stripe.expire_checkout(first.session_id)  # abandoned; its webhook arrives
    world.deliver_events()
    customer = world.link("u1")
    world.stripe.reset_calls()

    second = world.start(plan_key="team")

    assert world.stripe.calls == {"create_checkout_session": 1}
    assert second.session_id != first.session_id
    assert world.stripe.checkout_request(second.session_id).customer_id == (
        customer.customer_id if customer else None
    )
    assert world.stripe.customers_created() == 1


def test_a_cold_catalog_adds_its_single_price_list_call() -> None:
    world = make_world(warm=False)
    world.start()
    assert world.stripe.calls == {
        "list_prices": 1,
        "create_customer": 1,
        "create_checkout_session": 1,
    }
    world.stripe.reset_calls()
    world.start(plan_key="lifetime", interval=Interval.ONE_TIME)
    assert world.stripe.calls == {"create_checkout_session": 1}


def test_a_lookup_key_plan_is_charged_the_price_stripe_resolves(world: World) -> None:
    start = world.start(interval="year")
    request = world.stripe.checkout_request(start.session_id)
    assert request.price_id == "price_py"
    assert request.metadata["interval"] == "year"


def test_a_one_time_price_opens_a_payment_session_without_subscription_data(world: World) -> None:
    start = world.start(plan_key="lifetime", interval=Interval.ONE_TIME)
    request = world.stripe.checkout_request(start.session_id)
    assert request.mode == "payment"
    assert request.price_id == "price_lifetime"
    assert request.subscription_metadata == {}
    assert request.metadata == {"user_id": "u1", "plan_key": "lifetime", "interval": "one_time"}
    record = world.record(start.session_id)
    assert record is not None and record.mode == "payment"


@pytest.mark.parametrize(
    ("plan_key", "interval"),
    [
        ("enterprise", Interval.MONTH),  # no such plan
        ("free", Interval.MONTH),  # free: no price at all
        ("team", Interval.YEAR),  # no yearly price
        ("pro", "fortnight"),  # no such interval
        ("lifetime", Interval.MONTH),
        ("", Interval.MONTH),
    ],
)
def test_unknown_plan_or_interval_is_refused_before_any_call(
    world: World, plan_key: str, interval: Any
) -> None:
    with pytest.raises(UnknownPlanError):
        world.start(plan_key=plan_key, interval=interval)
    assert world.stripe.total_calls == 0
    assert world.link("u1") is None


def test_a_price_archived_in_stripe_is_never_sold() -> None:
    stripe = RecordingStripe()
    world = make_world(stripe, warm=False)
    stripe.update_price("price_team_monthly", active=False)
    with pytest.raises(UnknownPlanError):
        world.start(plan_key="team")
    assert "create_checkout_session" not in stripe.calls


@pytest.mark.parametrize("status", sorted(LIVE_STATUSES))
def test_a_live_subscription_refuses_a_new_subscription_checkout(
    world: World, status: SubscriptionStatus
) -> None:
    world.store_subscription("u1", status)
    with pytest.raises(AlreadySubscribedError, match="billing portal"):
        world.start()
    assert world.stripe.total_calls == 0
    assert world.link("u1") is None


@pytest.mark.parametrize("status", sorted(TERMINAL_STATUSES))
def test_an_ended_subscription_does_not_block_a_new_checkout(
    world: World, status: SubscriptionStatus
) -> None:
    world.store_subscription("u1", status)
    assert world.start().url


def test_allow_multiple_subscriptions_lets_a_subscriber_buy_an_add_on() -> None:
    world = make_world(allow_multiple_subscriptions=True)
    world.store_subscription("u1", SubscriptionStatus.ACTIVE)
    assert world.start(plan_key="team").url


def test_a_subscriber_may_still_make_a_one_time_purchase(world: World) -> None:
    world.store_subscription("u1", SubscriptionStatus.ACTIVE)
    start = world.start(plan_key="lifetime", interval=Interval.ONE_TIME)
    assert world.stripe.checkout_request(start.session_id).mode == "payment"


# --------------------------------------------------------------------------- double submit


def test_a_double_submit_returns_the_same_session_after_one_look_at_stripe(
    world: World,
) -> None:
    first = world.start()
    world.stripe.reset_calls()
    world.stripe.advance(timedelta(seconds=30))

    again = world.start(email="other-address@example.com")  # e-mail is not part of the key

    assert again.session_id == first.session_id and again.url == first.url
    assert again.reused is True
    # Only a session Stripe still shows open is handed out again: one retrieve, no create.
    assert world.stripe.calls == {"retrieve_checkout_session": 1}


@pytest.mark.parametrize(
    "change",
    [
        {"quantity": 2},
        {"interval": Interval.YEAR},
        {"plan_key": "team"},
        {"trial_days": 7},
        {"allow_promotion_codes": True},
        {"metadata": {"campaign": "x"}},
        {"success_url": "https://app.example/elsewhere"},
        {"cancel_url": "https://app.example/back"},
    ],
)
def test_different_inputs_start_a_different_session(world: World, change: dict[str, Any]) -> None:
    first = world.start()
    other = world.start(**change)
    assert other.session_id != first.session_id
    assert other.reused is False


def test_after_the_dedupe_window_a_new_session_is_started(world: World) -> None:
    first = world.start()
    world.stripe.advance(timedelta(seconds=world.config.checkout_dedupe_seconds + 1))
    assert world.start().session_id != first.session_id


def test_an_expired_session_is_not_handed_out_again() -> None:
    world = make_world(checkout_dedupe_seconds=3 * 24 * 3600)
    first = world.start()
    world.stripe.advance(timedelta(hours=25))  # Stripe expires it; no webhook processed
    second = world.start()
    assert second.session_id != first.session_id
    assert second.expires_at is not None and second.expires_at > world.stripe.now()


def test_a_stored_record_without_url_is_not_handed_out(world: World) -> None:
    with world.repo.unit_of_work() as uow:
        uow.save_checkout(
            CheckoutRecord(
                session_id="cs_without_url",
                user_id="u1",
                plan_key="pro",
                interval=Interval.MONTH,
                mode="subscription",
                request_key=default_request_key("u1"),
                created_at=world.stripe.now(),
            )
        )
    start = world.start()
    assert start.session_id != "cs_without_url" and start.reused is False


def test_dedupe_disabled_asks_stripe_every_time() -> None:
    world = make_world(checkout_dedupe_seconds=0)
    first = world.start()
    world.stripe.advance(timedelta(seconds=1))
    second = world.start()
    assert world.stripe.calls["create_checkout_session"] == 2
    assert second.session_id != first.session_id


def test_an_identical_submit_after_completion_does_not_reopen_the_stored_record() -> None:
    # A 10-second bucket: the resubmit sends the same idempotency key, and Stripe replays the
    # original (open) response. The stored record must stay complete, and the completed
    # session is not handed out again: a new key starts a new session.
    world = make_world(checkout_dedupe_seconds=10)
    first = world.start(plan_key="lifetime", interval=Interval.ONE_TIME)
    world.stripe.complete_checkout(first.session_id)
    world.service.confirm_checkout(first.session_id, "u1")
    world.stripe.reset_calls()

    again = world.start(plan_key="lifetime", interval=Interval.ONE_TIME)

    assert again.session_id != first.session_id and again.reused is False
    assert world.stripe.calls == {"create_checkout_session": 2}  # the replay, then a new key
    assert world.stripe.session_keys[-1] != world.stripe.session_keys[-2]
    record = world.record(first.session_id)
    assert record is not None and (record.status, record.payment_status) == ("complete", "paid")


# --------------------------------------------------------------------------- payment in flight


def test_a_paid_checkout_whose_events_are_late_blocks_a_second_subscription(
    world: World,
) -> None:
    first = world.start()
    world.stripe.complete_checkout(first.session_id)  # paid; no event delivered yet
    world.stripe.reset_calls()

    with pytest.raises(AlreadySubscribedError, match="first payment went through"):
        world.start(plan_key="team")

    assert world.stripe.calls == {"retrieve_checkout_session": 1}
    assert world.stripe.subscription_ids() == [world.subscriptions("u1")[0].id]
    # Applied through the confirm/webhook path: the state is stored once ...
    [subscription] = world.subscriptions("u1")
    assert (subscription.status, subscription.plan_key) == (SubscriptionStatus.ACTIVE, "pro")
    record = world.record(first.session_id)
    assert record is not None and (record.status, record.payment_status) == ("complete", "paid")
    assert record.subscription_id == subscription.id
    before = _stored_state(world, "u1", first.session_id)
    # ... and the late webhook changes nothing.
    world.deliver_events()
    after = _stored_state(world, "u1", first.session_id)
    assert after[:2] == before[:2] and after[2][0].same_state(before[2][0])
    # From now on the stored subscription refuses without any call.
    world.stripe.reset_calls()
    with pytest.raises(AlreadySubscribedError):
        world.start(plan_key="team")
    assert world.stripe.total_calls == 0


def test_a_double_submit_after_payment_is_refused_not_handed_the_completed_session(
    world: World,
) -> None:
    first = world.start()
    world.stripe.complete_checkout(first.session_id)
    world.stripe.advance(timedelta(seconds=20))  # inside the dedupe window
    world.stripe.reset_calls()

    with pytest.raises(AlreadySubscribedError, match="first payment went through"):
        world.start()

    assert world.stripe.calls == {"retrieve_checkout_session": 1}
    assert len(world.stripe.subscription_ids()) == 1


def test_an_open_checkout_for_another_plan_costs_one_look_and_does_not_block(
    world: World,
) -> None:
    first = world.start()
    world.stripe.reset_calls()

    second = world.start(plan_key="team")

    assert world.stripe.calls == {"retrieve_checkout_session": 1, "create_checkout_session": 1}
    assert second.session_id != first.session_id and second.reused is False
    record = world.record(first.session_id)
    assert record is not None and record.status == "open"  # nothing was paid: it stays usable


def test_a_checkout_expired_at_stripe_is_marked_expired_and_a_new_one_started() -> None:
    world = make_world(checkout_dedupe_seconds=3600)
    first = world.start()
    world.stripe.expire_checkout(first.session_id)  # its event is not delivered
    world.stripe.reset_calls()

    again = world.start()

    assert world.stripe.calls == {"retrieve_checkout_session": 1, "create_checkout_session": 1}
    assert again.session_id != first.session_id and again.reused is False
    record = world.record(first.session_id)
    assert record is not None and record.status == "expired"
    # the expired one is known now: the next double submit checks only the new session
    world.stripe.reset_calls()
    assert world.start().session_id == again.session_id
    assert world.stripe.calls == {"retrieve_checkout_session": 1}


def test_only_open_checkouts_not_yet_expired_are_looked_up() -> None:
    world = make_world(checkout_dedupe_seconds=3 * 24 * 3600)
    first = world.start()
    world.stripe.advance(timedelta(hours=25))  # past expires_at; no webhook processed
    world.catalog.plans()  # warm again after 25 hours
    world.stripe.reset_calls()

    second = world.start(plan_key="team")

    assert world.stripe.calls == {"create_checkout_session": 1}
    assert second.session_id != first.session_id


def test_with_multiple_subscriptions_allowed_an_open_checkout_is_not_looked_up() -> None:
    world = make_world(allow_multiple_subscriptions=True)
    first = world.start()
    world.stripe.complete_checkout(first.session_id)
    world.stripe.reset_calls()

    add_on = world.start(plan_key="team")

    assert world.stripe.calls == {"create_checkout_session": 1}
    assert add_on.session_id != first.session_id


def test_an_open_one_time_purchase_does_not_block_a_subscription(world: World) -> None:
    purchase = world.start(plan_key="lifetime", interval=Interval.ONE_TIME)
    world.stripe.complete_checkout(purchase.session_id)
    world.stripe.reset_calls()

    start = world.start()

    assert world.stripe.calls == {"create_checkout_session": 1}
    assert start.reused is False


def test_a_stored_open_session_unknown_to_stripe_does_not_block(world: World) -> None:
    with world.repo.unit_of_work() as uow:
        uow.save_checkout(
            CheckoutRecord(
                session_id="cs_from_another_account",
                user_id="u1",
                plan_key="pro",
                interval=Interval.MONTH,
                mode="subscription",
                url="https://checkout.stripe.com/c/pay/cs_from_another_account",
                expires_at=world.stripe.now() + timedelta(hours=1),
                created_at=world.stripe.now(),
            )
        )

    start = world.start(plan_key="team")

    assert world.stripe.calls == {
        "retrieve_checkout_session": 1,
        "create_customer": 1,
        "create_checkout_session": 1,
    }
    assert start.session_id != "cs_from_another_account"


def test_a_one_time_double_submit_after_payment_starts_a_new_session() -> None:
    # A one-hour bucket: the resubmit has the same idempotency key, for which Stripe would
    # replay the completed session. Only an open session is ever handed out again.
    world = make_world(checkout_dedupe_seconds=3600)
    first = world.start(plan_key="lifetime", interval=Interval.ONE_TIME)
    world.stripe.complete_checkout(first.session_id)  # paid; no event delivered
    world.stripe.reset_calls()

    again = world.start(plan_key="lifetime", interval=Interval.ONE_TIME)

    assert again.session_id != first.session_id and again.reused is False
    assert world.stripe.calls == {"retrieve_checkout_session": 1, "create_checkout_session": 1}
    record = world.record(first.session_id)
    assert record is not None and (record.status, record.payment_status) == ("complete", "paid")
    assert world.stripe.stripe_object(again.session_id)["status"] == "open"


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"user_id": ""}, "user_id"),
        ({"user_id": "   "}, "user_id"),
        ({"user_id": "u" * 201}, "user_id"),
        ({"user_id": 42}, "user_id"),
        ({"email": ""}, "email"),
        ({"success_url": ""}, "success_url"),
        ({"success_url": "/billing/success"}, "success_url"),
        ({"success_url": "ftp://app.example/x"}, "success_url"),
        ({"success_url": "https://"}, "success_url"),
        ({"cancel_url": "https://app.example/a b"}, "cancel_url"),
        ({"cancel_url": None}, "cancel_url"),
        ({"quantity": 0}, "quantity"),
        ({"quantity": -1}, "quantity"),
        ({"quantity": True}, "quantity"),
        ({"quantity": 1.5}, "quantity"),
        ({"trial_days": 0}, "trial_days"),
        ({"trial_days": 731}, "trial_days"),
        ({"allow_promotion_codes": "yes"}, "allow_promotion_codes"),
        ({"metadata": {"user_id": "u2"}}, "reserved"),
        ({"metadata": {"plan_key": "enterprise"}}, "reserved"),
        ({"metadata": {"interval": "year", "a": "b"}}, "reserved"),
        ({"metadata": {"ref": 7}}, "metadata"),
        ({"metadata": {"ref": "x" * 501}}, "metadata"),
        ({"metadata": {"k" * 41: "v"}}, "metadata key"),
        ({"metadata": {"": "v"}}, "metadata key"),
        ({"metadata": {f"k{i}": "v" for i in range(48)}}, "at most 47"),
        ({"metadata": ["not", "a", "mapping"]}, "mapping"),
        ({"plan_key": "lifetime", "interval": Interval.ONE_TIME, "trial_days": 7}, "trial"),
    ],
)
def test_bad_input_is_a_typed_error_before_anything_happens(
    world: World, change: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidInputError, match=message) as raised:
        world.start(**change)
    assert isinstance(raised.value, ValueError)
    assert world.stripe.total_calls == 0
    assert world.link("u1") is None


def test_the_largest_valid_inputs_are_accepted(world: World) -> None:
    start = world.start(
        user_id="u" * 200,
        email=None,
        quantity=10_000,
        trial_days=730,
        metadata={f"k{i:02d}" + "k" * 36: "v" * 500 for i in range(47)},
    )
    request = world.stripe.checkout_request(start.session_id)
    assert len(request.metadata) == 50


# --------------------------------------------------------------------------- customers


def _start_twice_at_once(world: World, user_id: str) -> list[Any]:
    barrier = threading.Barrier(2)
    results: list[Any] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            barrier.wait(timeout=10)
            results.append(world.start(user_id))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert errors == []
    return results


def test_two_threads_starting_checkout_for_a_new_user_create_one_customer() -> None:
    world = make_world()
    users = [f"racer{i}" for i in range(5)]
    for user in users:
        first, second = _start_twice_at_once(world, user)
        assert first.session_id == second.session_id
        link = world.link(user)
        assert link is not None
        assert world.stripe.checkout_request(first.session_id).customer_id == link.customer_id
    assert world.stripe.customers_created() == len(users)
    assert len(set(world.stripe.customer_keys)) == len(users)


class InterleavingStripe(RecordingStripe):
    """Runs ``before_return`` right after Stripe created a customer (a racing request)."""

    before_return: Any = None

    def create_customer(self, **kwargs: Any) -> StripeCustomer:
        customer = super().create_customer(**kwargs)
        if self.before_return is not None:
            self.before_return(customer)
        return customer


def test_losing_the_link_race_uses_the_winners_customer() -> None:
    stripe = InterleavingStripe()
    world = make_world(stripe)
    # The winner linked u1 to another (real) Stripe customer, e.g. created by an older
    # request whose idempotency key has expired.
    winner = FakeStripeGateway.create_customer(
        stripe, user_id="u1", email=None, idempotency_key="winner"
    )

    def winner_links_first(_: StripeCustomer) -> None:
        with world.repo.unit_of_work() as uow:
            uow.link_customer(CustomerLink(user_id="u1", customer_id=winner.id))

    stripe.before_return = winner_links_first
    result = world.start()

    link = world.link("u1")
    assert link is not None and link.customer_id == winner.id
    assert world.stripe.checkout_request(result.session_id).customer_id == winner.id


def test_a_customer_already_linked_to_another_user_is_a_conflict() -> None:
    stripe = InterleavingStripe()
    world = make_world(stripe)

    def someone_else_owns_it(customer: StripeCustomer) -> None:
        with world.repo.unit_of_work() as uow:
            uow.link_customer(CustomerLink(user_id="someone-else", customer_id=customer.id))

    stripe.before_return = someone_else_owns_it
    with pytest.raises(ConflictError):
        world.start()
    assert world.link("u1") is None
    assert "create_checkout_session" not in stripe.calls


def test_a_failed_customer_creation_stores_nothing_and_the_retry_reuses_its_key(
    world: World,
) -> None:
    world.stripe.fail_next(
        "create_customer",
        GatewayConnectionError("connection reset", retryable=True),
        after_applying=True,  # Stripe created it, the answer was lost
    )
    with pytest.raises(GatewayConnectionError) as raised:
        world.start()
    assert raised.value.retryable is True
    assert world.link("u1") is None
    assert world.open_checkout("u1") is None

    world.start()

    assert world.stripe.customer_keys == [customer_idempotency_key("u1")] * 2
    assert world.stripe.customers_created() == 1


# --------------------------------------------------------------------------- gateway failures


@pytest.mark.parametrize("after_applying", [False, True])
def test_a_failed_session_creation_stores_nothing_and_the_retry_reuses_its_key(
    world: World, after_applying: bool
) -> None:
    world.stripe.fail_next(
        "create_checkout_session",
        GatewayServerError("Stripe is down", retryable=True, http_status=500),
        after_applying=after_applying,
    )
    with pytest.raises(GatewayServerError) as raised:
        world.start()
    assert raised.value.retryable is True and raised.value.http_status == 500
    assert world.open_checkout("u1") is None
    world.stripe.advance(timedelta(seconds=5))

    retried = world.start()

    first_key, retry_key = world.stripe.session_keys
    assert retry_key == first_key
    record = world.record(retried.session_id)
    assert record is not None and record.status == "open"
    if after_applying:  # Stripe answered the retry with the session it had created
        assert retried.session_id == "cs_test_fake0001"
    with pytest.raises(GatewayNotFoundError):
        world.stripe.stripe_object("cs_test_fake0002")


def test_a_refused_session_is_not_retryable_and_stores_nothing(world: World) -> None:
    world.stripe.fail_next(
        "create_checkout_session",
        GatewayInvalidRequestError("No such price", http_status=400),
    )
    with pytest.raises(GatewayError) as raised:
        world.start()
    assert raised.value.retryable is False
    assert world.open_checkout("u1") is None


class UrlLessStripe(RecordingStripe):
    def create_checkout_session(self, request: CheckoutSessionRequest) -> CheckoutSession:
        return super().create_checkout_session(request).model_copy(update={"url": None})


def test_a_session_without_url_is_a_gateway_error() -> None:
    world = make_world(UrlLessStripe())
    with pytest.raises(GatewayError, match="without a URL"):
        world.start()
    assert world.open_checkout("u1") is None


# --------------------------------------------------------------------------- keys


def test_customer_key_is_stable_per_user_and_hides_the_id() -> None:
    key = customer_idempotency_key("alice@example.com")
    assert key == customer_idempotency_key("alice@example.com")
    assert key != customer_idempotency_key("bob@example.com")
    assert "alice" not in key and len(key) <= 255


def test_request_key_ignores_metadata_order_and_sees_every_field() -> None:
    base: dict[str, Any] = {
        "user_id": "u1",
        "plan_key": "pro",
        "interval": Interval.MONTH,
        "price_id": "price_a",
        "quantity": 1,
        "trial_days": None,
        "allow_promotion_codes": False,
        "success_url": SUCCESS,
        "cancel_url": CANCEL,
        "metadata": {"a": "1", "b": "2"},
    }
    key = checkout_request_key(**base)
    assert key == checkout_request_key(**{**base, "metadata": {"b": "2", "a": "1"}})
    changes = {
        "user_id": "u2",
        "plan_key": "team",
        "interval": Interval.YEAR,
        "price_id": "price_b",
        "quantity": 2,
        "trial_days": 3,
        "allow_promotion_codes": True,
        "success_url": "https://x.example",
        "cancel_url": "https://y.example",
        "metadata": {"a": "1"},
    }
    for field, value in changes.items():
        assert checkout_request_key(**{**base, field: value}) != key, field


def test_session_key_is_shared_within_a_time_bucket_only() -> None:
    start = datetime.fromisoformat("2026-01-05T09:00:00+00:00")
    key = checkout_idempotency_key("r", "cus_1", start, 60)
    assert key == checkout_idempotency_key("r", "cus_1", start + timedelta(seconds=59), 60)
    assert key != checkout_idempotency_key("r", "cus_1", start + timedelta(seconds=60), 60)
    assert key != checkout_idempotency_key("r", "cus_2", start, 60)
    assert key != checkout_idempotency_key("s", "cus_1", start, 60)
    # a zero window still groups requests within the same second
    assert checkout_idempotency_key("r", "c", start, 0) == checkout_idempotency_key(
        "r", "c", start + timedelta(milliseconds=500), 0
    )


# --------------------------------------------------------------------------- confirm


def test_confirm_after_payment_reports_stripes_status_in_one_call(world: World) -> None:
    start = world.start()
    world.stripe.complete_checkout(start.session_id)
    world.stripe.reset_calls()

    confirmation = world.service.confirm_checkout(start.session_id, "u1")

    assert world.stripe.calls == {"retrieve_checkout_session": 1}
    assert confirmation.status == "complete" and confirmation.payment_status == "paid"
    assert confirmation.subscription_status is SubscriptionStatus.ACTIVE
    assert (confirmation.plan_key, confirmation.interval) == ("pro", Interval.MONTH)
    assert confirmation.mode == "subscription" and confirmation.is_complete
    link = world.link("u1")
    assert link is not None and confirmation.customer_id == link.customer_id
    [subscription] = world.subscriptions("u1")
    assert subscription.id == confirmation.subscription_id
    assert subscription.status is SubscriptionStatus.ACTIVE
    assert (subscription.user_id, subscription.plan_key) == ("u1", "pro")
    record = world.record(start.session_id)
    assert record is not None
    assert (record.status, record.payment_status) == ("complete", "paid")
    assert record.subscription_id == subscription.id


def test_confirm_of_an_open_session_reports_it_open_and_unpaid(world: World) -> None:
    start = world.start()
    confirmation = world.service.confirm_checkout(start.session_id, "u1")
    assert (confirmation.status, confirmation.payment_status) == ("open", "unpaid")
    assert confirmation.subscription_status is None and confirmation.subscription_id is None
    assert not confirmation.is_complete
    assert world.subscriptions("u1") == []
    record = world.record(start.session_id)
    assert record is not None and record.status == "open"


def test_confirm_of_a_trial_reports_trialing_without_payment(world: World) -> None:
    start = world.start(trial_days=14)
    world.stripe.complete_checkout(start.session_id)
    confirmation = world.service.confirm_checkout(start.session_id, "u1")
    assert confirmation.payment_status == "no_payment_required"
    assert confirmation.subscription_status is SubscriptionStatus.TRIALING
    assert confirmation.is_complete


def test_confirm_of_a_one_time_purchase(world: World) -> None:
    start = world.start(plan_key="lifetime", interval=Interval.ONE_TIME)
    world.stripe.complete_checkout(start.session_id)
    confirmation = world.service.confirm_checkout(start.session_id, "u1")
    assert confirmation.mode == "payment" and confirmation.payment_status == "paid"
    assert confirmation.subscription_status is None
    assert (confirmation.plan_key, confirmation.interval) == ("lifetime", Interval.ONE_TIME)
    assert world.subscriptions("u1") == []


def test_confirm_of_an_expired_session_reports_expired(world: World) -> None:
    start = world.start()
    world.stripe.expire_checkout(start.session_id)
    confirmation = world.service.confirm_checkout(start.session_id, "u1")
    assert confirmation.status == "expired" and not confirmation.is_complete
    record = world.record(start.session_id)
    assert record is not None and record.status == "expired"


def _paid_outside_start_checkout(
    world: World,
    *,
    customer_owner: str,
    reference: str | None,
    metadata: dict[str, str],
    price_id: str = "price_pro_monthly",
    link: bool = False,
) -> tuple[str, str]:
    """A session created on the fake directly (not by start_checkout) and paid.

    Returns the session id and its customer id; ``link`` stores the customer's link first.
    """
    customer = world.stripe.create_customer(
        user_id=customer_owner, email=None, idempotency_key=f"c-{customer_owner}"
    )
    if link:
        with world.repo.unit_of_work() as uow:
            uow.link_customer(CustomerLink(user_id=customer_owner, customer_id=customer.id))
    session = world.stripe.create_checkout_session(
        CheckoutSessionRequest(
            mode="subscription",
            customer_id=customer.id,
            price_id=price_id,
            success_url=SUCCESS,
            cancel_url=CANCEL,
            client_reference_id=reference or "",
            metadata=metadata,
            idempotency_key=f"s-{reference}-{sorted(metadata.items())}-{customer_owner}",
        )
    )
    world.stripe.complete_checkout(session.id)
    return session.id, customer.id


def test_confirm_without_a_stored_record_takes_plan_from_the_session(world: World) -> None:
    # A session billingkit started on another deployment sharing Stripe: the record is absent.
    session_id, customer_id = _paid_outside_start_checkout(
        world,
        customer_owner="u1",
        reference="u1",
        metadata={"user_id": "u1", "plan_key": "team", "interval": "month"},
        price_id="price_team_monthly",
    )
    confirmation = world.service.confirm_checkout(session_id, "u1")
    assert (confirmation.plan_key, confirmation.interval) == ("team", Interval.MONTH)
    link = world.link("u1")
    assert link is not None and link.customer_id == customer_id


def test_confirm_without_plan_metadata_resolves_the_plan_from_the_price(world: World) -> None:
    session_id, _ = _paid_outside_start_checkout(
        world, customer_owner="u1", reference="u1", metadata={"interval": "monthly-ish"}
    )
    confirmation = world.service.confirm_checkout(session_id, "u1")
    assert (confirmation.plan_key, confirmation.interval) == ("pro", None)


class SetupModeStripe(RecordingStripe):
    def retrieve_checkout_session(self, session_id: str) -> CheckoutSession:
        return super().retrieve_checkout_session(session_id).model_copy(update={"mode": "setup"})


def test_a_setup_mode_session_is_never_confirmed_as_a_purchase() -> None:
    world = make_world(SetupModeStripe())
    start = world.start()
    with pytest.raises(CheckoutOwnershipError):
        world.service.confirm_checkout(start.session_id, "u1")


def test_another_users_session_is_refused_and_nothing_is_stored(world: World) -> None:
    start = world.start("alice")
    world.stripe.complete_checkout(start.session_id)
    world.stripe.reset_calls()

    with pytest.raises(CheckoutOwnershipError) as raised:
        world.service.confirm_checkout(start.session_id, "mallory")

    assert "alice" not in str(raised.value)
    assert world.stripe.calls == {"retrieve_checkout_session": 1}
    assert world.link("mallory") is None
    assert world.subscriptions("mallory") == [] and world.subscriptions("alice") == []
    record = world.record(start.session_id)
    assert record is not None and (record.user_id, record.status) == ("alice", "open")


def _foreign_session(
    world: World, *, reference: str | None, metadata_user: str | None, customer_owner: str
) -> str:
    session_id, _ = _paid_outside_start_checkout(
        world,
        customer_owner=customer_owner,
        reference=reference,
        metadata={"user_id": metadata_user} if metadata_user else {},
        link=True,
    )
    return session_id


@pytest.mark.parametrize(
    ("reference", "metadata_user", "customer_owner"),
    [
        ("mallory", "alice", "mallory"),  # metadata says another user
        ("alice", "mallory", "mallory"),  # reference says another user
        ("mallory", "mallory", "alice"),  # the customer is another user's
        (None, None, "mallory"),  # not started by billingkit: no claim at all
    ],
)
def test_any_disagreeing_owner_refuses_the_session(
    world: World, reference: str | None, metadata_user: str | None, customer_owner: str
) -> None:
    session_id = _foreign_session(
        world, reference=reference, metadata_user=metadata_user, customer_owner=customer_owner
    )
    with pytest.raises(CheckoutOwnershipError):
        world.service.confirm_checkout(session_id, "mallory")
    assert world.subscriptions("mallory") == [] and world.subscriptions("alice") == []


def test_a_stored_record_of_another_user_refuses_the_session(world: World) -> None:
    # Stripe-side claims all say mallory, but billingkit recorded the session for alice.
    session_id = _foreign_session(
        world, reference="mallory", metadata_user="mallory", customer_owner="mallory"
    )
    alices = CheckoutRecord(
        session_id=session_id,
        user_id="alice",
        plan_key="pro",
        interval=Interval.MONTH,
        mode="subscription",
        created_at=world.stripe.now(),
    )
    with world.repo.unit_of_work() as uow:
        uow.save_checkout(alices)

    with pytest.raises(CheckoutOwnershipError):
        world.service.confirm_checkout(session_id, "mallory")
    assert world.subscriptions("mallory") == []
    assert world.record(session_id) == alices


def test_confirm_of_an_unknown_session_is_not_found(world: World) -> None:
    with pytest.raises(GatewayNotFoundError):
        world.service.confirm_checkout("cs_test_nope", "u1")


@pytest.mark.parametrize(("session_id", "user_id"), [("", "u1"), ("cs_1", ""), (None, "u1")])
def test_confirm_validates_its_arguments(world: World, session_id: Any, user_id: Any) -> None:
    with pytest.raises(InvalidInputError):
        world.service.confirm_checkout(session_id, user_id)
    assert world.stripe.total_calls == 0


def _stored_state(world: World, user_id: str, session_id: str) -> tuple[Any, ...]:
    return (world.link(user_id), world.record(session_id), world.subscriptions(user_id))


@pytest.mark.parametrize("trial_days", [None, 7])
def test_confirm_and_webhook_end_in_the_same_state_in_either_order(
    trial_days: int | None,
) -> None:
    confirm_first, webhook_first = make_world(), make_world()
    for world in (confirm_first, webhook_first):
        start = world.start(trial_days=trial_days)
        world.stripe.complete_checkout(start.session_id)
    session_id = start.session_id

    confirm_first.service.confirm_checkout(session_id, "u1")
    after_confirm = _stored_state(confirm_first, "u1", session_id)
    confirm_first.deliver_events()
    after_both = _stored_state(confirm_first, "u1", session_id)
    # The webhook changes no state (only the subscription's ordering watermark).
    assert after_both[:2] == after_confirm[:2]
    [before], [after] = after_confirm[2], after_both[2]
    assert after.same_state(before) and (after.user_id, after.plan_key) == ("u1", "pro")

    webhook_first.deliver_events()
    after_webhook = _stored_state(webhook_first, "u1", session_id)
    webhook_first.service.confirm_checkout(session_id, "u1")
    assert _stored_state(webhook_first, "u1", session_id) == after_webhook  # nothing changed

    assert after_webhook == after_both


def test_confirm_never_regresses_a_newer_webhook_state(world: World) -> None:
    start = world.start()
    world.stripe.complete_checkout(start.session_id)
    world.deliver_events()
    [subscription] = world.subscriptions("u1")
    world.stripe.cancel_subscription(subscription.id)
    world.deliver_events()

    confirmation = world.service.confirm_checkout(start.session_id, "u1")

    assert confirmation.subscription_status is SubscriptionStatus.CANCELED
    [stored] = world.subscriptions("u1")
    assert stored.status is SubscriptionStatus.CANCELED


# --------------------------------------------------------------------------- portal


def test_billing_portal_for_a_customer_costs_one_call(world: World) -> None:
    world.start()
    world.stripe.reset_calls()
    url = world.service.open_billing_portal("u1", "https://app.example/account")
    assert url.startswith("https://billing.stripe.com/")
    assert world.stripe.calls == {"create_billing_portal_session": 1}


def test_billing_portal_without_a_customer_is_a_typed_error(world: World) -> None:
    with pytest.raises(NoCustomerError) as raised:
        world.service.open_billing_portal("stranger", "https://app.example/account")
    assert isinstance(raised.value, LookupError)
    assert world.stripe.total_calls == 0


@pytest.mark.parametrize(("user_id", "url"), [("", "https://a.example"), ("u1", "account")])
def test_billing_portal_validates_its_arguments(world: World, user_id: str, url: str) -> None:
    world.start()
    world.stripe.reset_calls()
    with pytest.raises(InvalidInputError):
        world.service.open_billing_portal(user_id, url)
    assert world.stripe.total_calls == 0


# --------------------------------------------------------------------------- clock


def test_a_naive_clock_is_refused_when_the_service_is_built() -> None:
    world = make_world()
    with pytest.raises(ConfigurationError, match="timezone-aware"):
        CheckoutService(
            world.config,
            gateway=world.stripe,
            repository=world.repo,
            catalog=world.catalog,
            clock=lambda: datetime(2026, 1, 1, 12, 0),
        )
    assert world.stripe.total_calls == 0


# --------------------------------------------------------------------------- issue 11 item 10


def _delete_customer_of(world: World, user_id: str) -> str:
    """Delete the user's Stripe customer at Stripe and deliver what Stripe sends."""
    link = world.link(user_id)
    assert link is not None
    world.deliver_events()
    world.stripe.delete_customer(link.customer_id)
    world.deliver_events()
    after = world.link(user_id)
    assert after is not None and after.deleted
    return link.customer_id


def test_billing_portal_for_a_deleted_customer_is_no_customer(world: World) -> None:
    world.start()
    _delete_customer_of(world, "u1")
    world.stripe.reset_calls()
    with pytest.raises(NoCustomerError):
        world.service.open_billing_portal("u1", "https://app.example/account")
    assert world.stripe.total_calls == 0


def test_a_checkout_after_the_customer_was_deleted_links_a_fresh_customer(world: World) -> None:
    start = world.start()
    world.stripe.complete_checkout(start.session_id)
    old = _delete_customer_of(world, "u1")
    world.stripe.reset_calls()
    again = world.start()
    assert world.stripe.calls == {"create_customer": 1, "create_checkout_session": 1}
    link = world.link("u1")
    assert link is not None and link.customer_id != old and not link.deleted
    record = world.record(again.session_id)
    assert record is not None and record.customer_id == link.customer_id
    with world.repo.unit_of_work() as uow:
        history = uow.customer_by_id(old)  # the old link is kept as history
    assert history is not None and (history.user_id, history.deleted) == ("u1", True)
    # The replacement's key differs from the first customer's, so Stripe makes a new one.
    assert world.stripe.customer_keys[-1] != customer_idempotency_key("u1")
    # A later checkout uses the fresh customer.
    world.stripe.expire_checkout(again.session_id)
    world.stripe.reset_calls()
    world.start(plan_key="team")
    assert "create_customer" not in world.stripe.calls


def test_an_open_session_of_a_deleted_customer_is_not_reused(world: World) -> None:
    first = world.start()
    old = _delete_customer_of(world, "u1")
    again = world.start()
    assert not again.reused and again.session_id != first.session_id
    link = world.link("u1")
    assert link is not None and link.customer_id != old
