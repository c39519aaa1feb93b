"""A scripted walkthrough of billingkit, printed to the terminal: ``python -m billingkit.demo``.

Everything runs in process on ``FakeStripeGateway`` and
``InMemoryRepository``: no network, no database, no keys.

The walkthrough is a list of ``Step`` s sharing one ``Demo`` (the composition
root plus the demo's user). Later features extend it by appending steps to ``STEPS``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TextIO

from billingkit.adapters.memory import InMemoryRepository
from billingkit.composition import Billing
from billingkit.config import AccessPolicy, BillingConfig
from billingkit.domain import Interval, PlanDefinition, PriceRef
from billingkit.services.checkout import CheckoutStart
from billingkit.services.customers import BillingDetails
from billingkit.services.hooks import HookEvent, HookKind
from billingkit.testing import FakeStripeGateway

__all__ = ["STEPS", "Demo", "Step", "build_demo", "main", "run"]

#: The demo's endpoint signing secret (the fake Stripe signs its events with it).
DEMO_WEBHOOK_SECRET = "whsec_billingkit_demo"


@dataclass
class Demo:
    """What every step works with: the wired services, the fake Stripe and the output.

    ``billing`` holds the app's services (``billing.catalog``, ``.checkout``, ``.webhooks``,
    ``.customers``, ``.config``, ``.repository``); ``gateway`` is the fake Stripe under them.
    """

    out: TextIO
    billing: Billing
    gateway: FakeStripeGateway
    user_id: str = "user-42"
    #: Free-form state steps pass along (e.g. a checkout session id).
    state: dict[str, object] = field(default_factory=dict)

    def say(self, text: str = "") -> None:
        """Print one line of the walkthrough."""
        print(text, file=self.out)


@dataclass(frozen=True)
class Step:
    """One titled part of the walkthrough."""

    title: str
    run: Callable[[Demo], None]


def demo_config() -> BillingConfig:
    """Three plans: free; Pro by price id; Team by lookup key, including a JPY price."""
    return BillingConfig(
        plans=(
            PlanDefinition(
                key="free",
                name="Free",
                description="Try it out",
                order=0,
                features=("projects",),
                limits={"projects": 1, "seats": 1},
            ),
            PlanDefinition(
                key="pro",
                name="Pro",
                description="For professionals",
                order=1,
                prices={
                    Interval.MONTH: "price_demo_pro_monthly",
                    Interval.YEAR: "price_demo_pro_yearly",
                },
                features=("projects", "exports"),
                limits={"projects": None, "seats": 3},
            ),
            PlanDefinition(
                key="team",
                name="Team",
                description="For teams, billed in yen",
                order=2,
                prices={
                    Interval.MONTH: PriceRef(lookup_key="team_monthly_jpy"),
                    Interval.YEAR: PriceRef(lookup_key="team_yearly_jpy"),
                },
                features=("projects", "exports", "sso"),
                limits={"projects": None, "seats": None},
            ),
        ),
        free_plan="free",
        webhook_secrets=(DEMO_WEBHOOK_SECRET,),
        access=AccessPolicy(past_due_grace_days=7),
    )


def seed_prices(gateway: FakeStripeGateway) -> None:
    """Create the demo's products and prices in the fake Stripe account."""
    pro = gateway.add_product("Pro")
    gateway.add_price(price_id="price_demo_pro_monthly", amount=1900, interval="month", product=pro)
    gateway.add_price(price_id="price_demo_pro_yearly", amount=19000, interval="year", product=pro)
    team = gateway.add_product("Team")
    for interval, amount in (("month", 4900), ("year", 49000)):
        gateway.add_price(
            amount=amount,
            currency="jpy",
            interval=interval,
            lookup_key=f"team_{interval}ly_jpy",
            product=team,
        )


def build_demo(out: TextIO) -> Demo:
    """The demo's composition root: config, fake Stripe, memory repository, services."""
    gateway = FakeStripeGateway(webhook_secret=DEMO_WEBHOOK_SECRET)
    seed_prices(gateway)
    billing = Billing.build(demo_config(), gateway, InMemoryRepository(), clock=gateway.now)
    demo = Demo(out=out, billing=billing, gateway=gateway)

    def tell(event: HookEvent) -> None:
        told = demo.state.setdefault("hooks", [])
        assert isinstance(told, list)
        told.append(f"{type(event).__name__} (event {event.event_id})")

    for kind in HookKind:
        billing.webhooks.on(kind, tell)
    return demo


# ------------------------------------------------------------------------------- steps


def show_configuration(demo: Demo) -> None:
    """Print the plans as the app configured them."""
    for plan in demo.billing.config.plans:
        refs = ", ".join(
            f"{interval.value}: {ref.price_id or 'lookup key ' + str(ref.lookup_key)}"
            for interval, ref in plan.prices.items()
        )
        demo.say(f"  {plan.key:<5} {plan.name:<5} {refs or 'free, no Stripe price'}")
    grace = demo.billing.config.access.past_due_grace_days
    demo.say(f"  free plan: {demo.billing.config.free_plan}; past_due grace: {grace} days")


def list_plans(demo: Demo) -> None:
    """List the catalog with live prices, twice, to show the single cached call."""
    for plan in demo.billing.catalog.plans():
        prices = ", ".join(
            f"{price.amount or 'tiered'} / {interval.value}"
            for interval, price in plan.prices.items()
        )
        demo.say(f"  {plan.name:<5} {prices or 'free'}")
    demo.billing.catalog.plans()
    demo.billing.catalog.price_for("team", "year")
    calls = demo.gateway.calls["list_prices"]
    demo.say(f"  Stripe calls for the whole catalog, listed twice: {calls} (list_prices)")


def show_details(demo: Demo) -> None:
    """Print the demo user's billing details (no Stripe call)."""
    before = demo.gateway.total_calls
    details = demo.billing.customers.for_user(demo.user_id)
    print_details(demo, details)
    demo.say(f"  Stripe calls to answer: {demo.gateway.total_calls - before}")


def print_details(demo: Demo, details: BillingDetails) -> None:
    """Print ``BillingDetails`` the way an account page would show them."""
    plan = details.plan.name if details.plan else "none"
    status = details.status.value if details.status else "no subscription"
    demo.say(f"  user {details.user_id}: plan {plan} ({status}), access: {details.has_access}")
    if details.current_period_end is not None:
        ending = "ends for good" if details.cancel_at_period_end else "renews"
        demo.say(f"  current period {ending} {details.current_period_end:%Y-%m-%d}")
    for feature in ("exports", "sso"):
        demo.say(f"  feature {feature}: {details.has_feature(feature)}")
    projects = details.limit("projects")
    demo.say(f"  projects limit: {'unlimited' if projects is None else projects}")


def start_checkout(demo: Demo) -> None:
    """Start a Checkout Session for the Pro plan, monthly; a double submit reuses it."""

    def submit() -> CheckoutStart:
        return demo.billing.checkout.start_checkout(
            user_id=demo.user_id,
            email="ada@example.com",
            plan_key="pro",
            interval=Interval.MONTH,
            success_url="https://app.example/billing/success?session_id={CHECKOUT_SESSION_ID}",
            cancel_url="https://app.example/pricing",
        )

    started, again = submit(), submit()
    demo.state["session_id"] = started.session_id
    demo.say(f"  session {started.session_id}: redirect the user to {started.url}")
    demo.say(f"  double submit returned the same session: {again.session_id == started.session_id}")
    demo.say(f"  Stripe calls so far: {dict(demo.gateway.calls)}")


def pay(demo: Demo) -> None:
    """The customer pays on (fake) Stripe Checkout; the success page confirms it."""
    session_id = str(demo.state["session_id"])
    demo.gateway.complete_checkout(session_id)
    confirmation = demo.billing.checkout.confirm_checkout(session_id, demo.user_id)
    status = confirmation.subscription_status
    demo.say(
        f"  success page: session {confirmation.status}, payment {confirmation.payment_status}, "
        f"subscription {status.value if status else '-'}"
    )


def deliver_events(demo: Demo) -> None:
    """Deliver Stripe's signed events to the webhook processor, each one twice."""
    deliveries = demo.gateway.drain_events()
    for delivery in deliveries:
        first = demo.billing.webhooks.handle(delivery.payload, delivery.signature)
        again = demo.billing.webhooks.handle(delivery.payload, delivery.signature)
        demo.say(
            f"  {delivery.type:<34} -> {first.outcome.value}; redelivered -> {again.outcome.value}"
        )
        told = demo.state.pop("hooks", [])
        assert isinstance(told, list)
        for line in told:
            demo.say(f"      app hook: {line}")
    if not deliveries:
        demo.say("  (no events)")


def forged_event(demo: Demo) -> None:
    """A forged request is refused with 400 and changes nothing."""
    response = demo.billing.webhooks.handle_http(b'{"id": "evt_forged"}', "t=1,v1=deadbeef")
    demo.say(f"  forged webhook answered {response.status}: {response.body}")


def _advance(demo: Demo, delta: timedelta) -> None:
    demo.gateway.advance(delta)
    demo.say(f"  fake Stripe clock: {demo.gateway.now():%Y-%m-%d %H:%M}")
    deliver_events(demo)
    show_details(demo)


def _subscription_id(demo: Demo) -> str:
    with demo.billing.repository.unit_of_work() as uow:
        return uow.subscriptions_for_user(demo.user_id)[0].id


def _customer_id(demo: Demo) -> str:
    with demo.billing.repository.unit_of_work() as uow:
        link = uow.customer_for_user(demo.user_id)
    assert link is not None, "the checkout linked a customer"
    return link.customer_id


def _to_period_end(demo: Demo) -> timedelta:
    details = demo.billing.customers.for_user(demo.user_id)
    assert details.current_period_end is not None
    return details.current_period_end - demo.gateway.now() + timedelta(hours=1)


def renew(demo: Demo) -> None:
    """The period ends: Stripe renews the subscription and the invoice is paid."""
    _advance(demo, _to_period_end(demo))


def fail_payment(demo: Demo) -> None:
    """The card now declines: the renewal fails and the subscription goes past_due."""
    demo.gateway.set_card_declining(_customer_id(demo))
    _advance(demo, _to_period_end(demo))


def grace_expires(demo: Demo) -> None:
    """Past the policy's grace days, past_due no longer grants access."""
    _advance(demo, timedelta(days=demo.billing.config.access.past_due_grace_days + 1))


def card_fixed(demo: Demo) -> None:
    """The customer fixes the card; retrying the invoice makes the subscription active."""
    demo.gateway.set_card_declining(_customer_id(demo), declining=False)
    demo.gateway.retry_payment(_subscription_id(demo))
    _advance(demo, timedelta(0))


def cancel_at_period_end(demo: Demo) -> None:
    """In the billing portal the user cancels at period end; at period end it ends."""
    demo.gateway.update_subscription(_subscription_id(demo), cancel_at_period_end=True)
    _advance(demo, timedelta(0))
    _advance(demo, _to_period_end(demo))


#: The walkthrough, in order.
STEPS: list[Step] = [
    Step("The app's plans", show_configuration),
    Step("Plans with live prices from Stripe", list_plans),
    Step("Billing details of a new user", show_details),
    Step("Start a checkout for Pro, monthly", start_checkout),
    Step("Pay on Stripe Checkout and land on the success page", pay),
    Step("Stripe's signed webhooks, delivered twice each", deliver_events),
    Step("A forged webhook", forged_event),
    Step("Billing details after the purchase", show_details),
    Step("A month later: renewal", renew),
    Step("Next renewal: the card declines", fail_payment),
    Step("The grace period runs out", grace_expires),
    Step("The customer fixes the card", card_fixed),
    Step("Cancel at period end", cancel_at_period_end),
]


def run(out: TextIO | None = None, steps: Sequence[Step] | None = None) -> int:
    """Run ``steps`` (all of ``STEPS`` by default), printing to ``out``; returns 0."""
    demo = build_demo(out if out is not None else sys.stdout)
    chosen = STEPS if steps is None else steps
    demo.say("billingkit demo: a fake Stripe and an in-memory database, no network")
    for number, step in enumerate(chosen, start=1):
        demo.say()
        demo.say(f"{number}. {step.title}")
        step.run(demo)
    demo.say()
    steps_text = f"{len(chosen)} step{'s' if len(chosen) != 1 else ''}"
    demo.say(f"Done: {steps_text}, {demo.gateway.total_calls} Stripe calls in all.")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point of ``python -m billingkit.demo``."""
    parser = argparse.ArgumentParser(
        prog="python -m billingkit.demo",
        description="A scripted billingkit walkthrough on a fake Stripe.",
    )
    parser.add_argument("--list", action="store_true", help="list the steps and exit")
    args = parser.parse_args(argv)
    if args.list:
        for number, step in enumerate(STEPS, start=1):
            print(f"{number}. {step.title}")
        return 0
    return run()


if __name__ == "__main__":
    raise SystemExit(main())
