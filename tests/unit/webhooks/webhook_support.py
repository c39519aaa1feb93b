"""Shared helpers for the webhook tests: a clock, a tiny gateway double, signed delivery."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from billingkit.adapters.memory import InMemoryRepository
from billingkit.config import BillingConfig
from billingkit.domain import (
    CheckoutRecord,
    CustomerLink,
    Interval,
    PlanDefinition,
    Price,
    Subscription,
)
from billingkit.ports import (
    CheckoutSession,
    CheckoutSessionRequest,
    PortalSession,
    StripeCustomer,
    StripeGateway,
)
from billingkit.services.catalog import PlanCatalog
from billingkit.services.hooks import HookEvent, HookKind
from billingkit.services.webhooks import WebhookProcessor
from billingkit.testing import build_event, sign_payload

FIXTURES = Path(__file__).parents[2] / "fixtures"
STRIPE = FIXTURES / "stripe"
DERIVED = FIXTURES / "derived" / "webhooks"
SECRET = "whsec_test_secret_primary"
OTHER_SECRET = "whsec_test_secret_rotated"
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)

PLANS = (
    PlanDefinition(key="free", name="Free"),
    PlanDefinition(key="basic", name="Basic", prices={Interval.MONTH: "price_basic_month"}),
    PlanDefinition(key="pro", name="Pro", prices={Interval.MONTH: "price_pro_month"}),
)


def load(relative: str) -> Any:
    """A Stripe fixture (``tests/fixtures/stripe/<relative>``) parsed."""
    return json.loads((STRIPE / relative).read_text(encoding="utf-8"))


def load_derived(name: str) -> Any:
    """A derived fixture (``tests/fixtures/derived/webhooks/<name>``) parsed."""
    return json.loads((DERIVED / name).read_text(encoding="utf-8"))


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: datetime = NOW) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)

    @property
    def seconds(self) -> int:
        return int(self.now.timestamp())


class SubscriptionGateway(StripeGateway):
    """A test double of the port: only ``retrieve_subscription`` answers.

    ``truth`` gives the subscription's state at Stripe "now"; every other call fails the
    test, so a test using it proves the code under test made no other gateway call.
    """

    def __init__(self, truth: Callable[[str], Subscription] | None = None) -> None:
        self.truth = truth
        self.retrieved: list[str] = []

    def retrieve_subscription(self, subscription_id: str) -> Subscription:
        self.retrieved.append(subscription_id)
        if self.truth is None:
            raise AssertionError("unexpected retrieve_subscription")
        return self.truth(subscription_id)

    def create_customer(
        self,
        *,
        user_id: str,
        email: str | None,
        idempotency_key: str,
        metadata: Mapping[str, str] | None = None,
    ) -> StripeCustomer:
        raise AssertionError("unexpected gateway call")

    def retrieve_customer(self, customer_id: str) -> StripeCustomer:
        raise AssertionError("unexpected gateway call")

    def create_checkout_session(self, request: CheckoutSessionRequest) -> CheckoutSession:
        raise AssertionError("unexpected gateway call")

    def retrieve_checkout_session(self, session_id: str) -> CheckoutSession:
        raise AssertionError("unexpected gateway call")

    def list_prices(
        self, *, price_ids: Sequence[str] = (), lookup_keys: Sequence[str] = ()
    ) -> list[Price]:
        raise AssertionError("unexpected gateway call")

    def create_billing_portal_session(
        self, *, customer_id: str, return_url: str, idempotency_key: str | None = None
    ) -> PortalSession:
        raise AssertionError("unexpected gateway call")

    def modify_subscription(self, update: Any) -> Any:
        raise AssertionError("unexpected gateway call")

    def cancel_subscription_now(self, subscription_id: str, **options: Any) -> Any:
        raise AssertionError("unexpected gateway call")

    def resume_paused_subscription(self, subscription_id: str, **options: Any) -> Any:
        raise AssertionError("unexpected gateway call")

    def preview_invoice(self, request: Any) -> Any:
        raise AssertionError("unexpected gateway call")

    def schedule_subscription_change(self, change: Any) -> Any:
        raise AssertionError("unexpected gateway call")

    def release_subscription_schedule(self, schedule_id: str, **options: Any) -> Any:
        raise AssertionError("unexpected gateway call")

    def find_promotion_code(self, code: str) -> Any:
        raise AssertionError("unexpected gateway call")

    def list_subscriptions(self, **options: Any) -> Any:
        raise AssertionError("unexpected gateway call")

    def list_customers(self, **options: Any) -> Any:
        raise AssertionError("unexpected gateway call")

    def list_webhook_endpoints(self, **options: Any) -> Any:
        raise AssertionError("unexpected gateway call")

    def create_setup_checkout_session(self, request: Any) -> Any:
        raise AssertionError("unexpected gateway call")

    def set_default_payment_method(self, **kwargs: Any) -> None:
        raise AssertionError("unexpected gateway call")

    def create_meter_event(self, **params: Any) -> Any:
        raise AssertionError("unexpected gateway call")


class Harness:
    """A processor over an in-memory repository, with signed delivery at the clock's time."""

    def __init__(
        self,
        *,
        gateway: SubscriptionGateway | None = None,
        secrets: Sequence[str] = (SECRET,),
        livemode: bool = False,
        **config: Any,
    ) -> None:
        self.clock = Clock()
        self.config = BillingConfig(
            plans=PLANS,
            free_plan="free",
            webhook_secrets=tuple(secrets),
            livemode=livemode,
            **config,
        )
        self.repository = InMemoryRepository()
        self.gateway = gateway or SubscriptionGateway()
        self.catalog = PlanCatalog(self.config, gateway=self.gateway, clock=self.clock)
        self.processor = WebhookProcessor(
            self.config,
            gateway=self.gateway,
            repository=self.repository,
            catalog=self.catalog,
            clock=self.clock,
        )

    def sign(self, payload: bytes, secret: str = SECRET) -> str:
        return sign_payload(payload, secret, self.clock.seconds)

    def deliver(self, event: Mapping[str, Any], secret: str = SECRET) -> Any:
        payload = json.dumps(event).encode()
        return self.processor.handle(payload, self.sign(payload, secret))

    def event(
        self,
        type: str,
        obj: Mapping[str, Any],
        *,
        created: int | None = None,
        event_id: str | None = None,
        previous_attributes: Mapping[str, Any] | None = None,
        livemode: bool = False,
    ) -> dict[str, Any]:
        return build_event(
            type,
            obj,
            created=self.clock.seconds - 5 if created is None else created,
            event_id=event_id,
            previous_attributes=previous_attributes,
            livemode=livemode,
        )

    def snapshot(self) -> dict[str, Any]:
        """Every table of the in-memory repository (test-only peek), to compare."""
        tables = self.repository._tables
        return {
            name: {
                key: dict(value) if isinstance(value, dict) else value
                for key, value in getattr(tables, name).items()
            }
            for name in tables.__slots__
        }

    def stored_event(self, event_id: str) -> Any:
        with self.repository.unit_of_work() as uow:
            return uow.get_event(event_id)

    def stored_subscription(self, subscription_id: str) -> Subscription | None:
        with self.repository.unit_of_work() as uow:
            return uow.get_subscription(subscription_id)


# --------------------------------------------------------------------------- handler tests

#: The API eras of the OpenAPI fixtures.
ERAS = [
    "2017-09-20_bb581d37",
    "2020-09-02_dd1cdfcd",
    "2025-02-14_b819eedc",
    "2025-03-25_1ef159c3",
    "2026-07-29_f0758b15",
]


def recorder(h: Harness, *, plan_unknown: bool = False) -> list[HookEvent]:
    """Record every hook event the harness's processor emits.

    ``subscription_plan_unknown`` only when ``plan_unknown``: most fixtures are billed at
    prices the harness's plans do not use, and the tests of the transitions ignore it.
    """
    seen: list[HookEvent] = []
    for kind in HookKind:
        if kind.value != "subscription_plan_unknown" or plan_unknown:
            h.processor.on(kind, seen.append)
    return seen


def link(h: Harness, user_id: str, customer_id: str) -> None:
    """Link ``user_id`` to ``customer_id`` in the harness's repository."""
    with h.repository.unit_of_work() as uow:
        uow.link_customer(CustomerLink(user_id=user_id, customer_id=customer_id))


def checkout_record(session_id: str, user_id: str, **changes: Any) -> CheckoutRecord:
    """A stored checkout record (plan ``basic``, monthly) for ``session_id``."""
    fields: dict[str, Any] = {
        "plan_key": "basic",
        "interval": Interval.MONTH,
        "mode": "subscription",
        "created_at": NOW,
        **changes,
    }
    return CheckoutRecord(session_id=session_id, user_id=user_id, **fields)
