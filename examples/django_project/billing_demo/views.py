"""The demo's pages: thin views over billingkit's services (``get_billing()``).

The signed-in "user" is a demo id kept in the session: billingkit only needs an opaque
``user_id`` string, whatever the app's user model is.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from functools import wraps
from typing import Any

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from billing_demo.billing import deliver_fake_events, fake_gateway
from billingkit.contrib.django import get_billing
from billingkit.contrib.django.decorators import requires_feature
from billingkit.domain import Interval, Plan
from billingkit.errors import (
    AlreadySubscribedError,
    BillingError,
    CheckoutOwnershipError,
    GatewayCardError,
    GatewayError,
    GatewayNotFoundError,
    InvalidInputError,
    InvalidPromotionCodeError,
    NoCustomerError,
    NoSubscriptionError,
    PricesUnavailableError,
    SubscriptionStateError,
    UnknownPlanError,
)
from billingkit.services.subscriptions import SubscriptionResult
from billingkit.testing import FakeStripeGateway

_SESSION_USER = "billing_demo_user"
_SESSION_EMAIL = "billing_demo_email"
_SESSION_NOTICE = "billing_demo_notice"
_MAX_USER_ID = 64
_MAX_SEATS = 500

logger = logging.getLogger("billing_demo")

View = Callable[..., HttpResponse]


# --------------------------------------------------------------------------- helpers


def billing_user_id(request: HttpRequest) -> str | None:
    """The signed-in demo user's billing id (``BILLINGKIT["USER_ID"]`` names this function)."""
    user: str | None = request.session.get(_SESSION_USER)
    return user


def _notify(request: HttpRequest, text: str) -> None:
    request.session[_SESSION_NOTICE] = text


def _page(request: HttpRequest, template: str, status: int = 200, **context: Any) -> HttpResponse:
    context.setdefault("user_id", billing_user_id(request))
    context.setdefault("fake_mode", fake_gateway() is not None)
    context["notice"] = request.session.pop(_SESSION_NOTICE, None)
    return render(request, f"billing_demo/{template}", context, status=status)


def _problem(request: HttpRequest, status: int, message: str) -> HttpResponse:
    return _page(request, "problem.html", status=status, message=message)


def login_required(view: View) -> View:
    """Send anonymous visitors to the demo login; call ``view(request, user_id, ...)``."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        user_id = billing_user_id(request)
        if user_id is None:
            return redirect(f"{reverse('billing_demo:login')}?next={request.path}")
        return view(request, user_id, *args, **kwargs)

    return wrapper


def _fake() -> FakeStripeGateway:
    fake = fake_gateway()
    if fake is None:
        raise Http404("the fake Stripe pages exist only when no Stripe keys are configured")
    return fake


def _absolute(request: HttpRequest, name: str, **kwargs: Any) -> str:
    return request.build_absolute_uri(reverse(f"billing_demo:{name}", kwargs=kwargs or None))


# --------------------------------------------------------------------------- demo login


def login(request: HttpRequest) -> HttpResponse:
    """A demo sign-in: any name becomes the user id (no password)."""
    target = request.GET.get("next") or reverse("billing_demo:account")
    if not target.startswith("/") or target.startswith("//"):
        target = reverse("billing_demo:account")
    if request.method == "POST":
        user_id = request.POST.get("user_id", "").strip()
        email = request.POST.get("email", "").strip()
        if not user_id or len(user_id) > _MAX_USER_ID:
            return _page(request, "login.html", status=400, next=target,
                         error=f"Choose a name of 1 to {_MAX_USER_ID} characters.")  # fmt: skip
        request.session.cycle_key()
        request.session[_SESSION_USER] = user_id
        request.session[_SESSION_EMAIL] = email or None
        return redirect(target)
    return _page(request, "login.html", next=target)


@require_POST
def logout(request: HttpRequest) -> HttpResponse:
    """Forget the demo user."""
    request.session.flush()
    return redirect("billing_demo:pricing")


# --------------------------------------------------------------------------- pricing


def _plan_rows(plans: list[Plan]) -> list[dict[str, Any]]:
    rows = []
    for plan in plans:
        prices = []
        for interval, price in sorted(plan.prices.items(), key=lambda item: item[1].id):
            amount = price.amount
            prices.append(
                {
                    "interval": interval.value,
                    "label": amount.format() if amount is not None else "custom pricing",
                    "per": "" if interval is Interval.ONE_TIME else f"/ {interval.value}",
                }
            )
        rows.append({"plan": plan, "prices": prices})
    return rows


@require_GET
def pricing(request: HttpRequest) -> HttpResponse:
    """The plans with their live prices, from ``PlanCatalog``."""
    try:
        plans = get_billing().catalog.plans()
    except PricesUnavailableError:
        return _problem(request, 503, "Prices are unavailable right now; try again shortly.")
    stale = any(plan.stale for plan in plans)
    return _page(request, "pricing.html", rows=_plan_rows(plans), stale=stale)


# --------------------------------------------------------------------------- checkout


@require_POST
@login_required
def start_checkout(request: HttpRequest, user_id: str) -> HttpResponse:
    """The subscribe button: start a Checkout Session and send the user to it."""
    services = get_billing()
    success_url = _absolute(request, "checkout_success") + "?session_id={CHECKOUT_SESSION_ID}"
    try:
        start = services.checkout.start_checkout(
            user_id=user_id,
            email=request.session.get(_SESSION_EMAIL),
            plan_key=request.POST.get("plan", ""),
            interval=request.POST.get("interval", ""),
            success_url=success_url,
            cancel_url=_absolute(request, "pricing"),
        )
    except AlreadySubscribedError:
        _notify(request, "You already have a subscription: change it in the billing portal.")
        return redirect("billing_demo:account")
    except (UnknownPlanError, InvalidInputError) as error:
        return _problem(request, 400, str(error))
    except (PricesUnavailableError, GatewayError):
        return _problem(request, 503, "Stripe could not be reached; try again shortly.")
    if fake_gateway() is not None:
        return redirect("billing_demo:fake_checkout", session_id=start.session_id)
    return HttpResponseRedirect(start.url)


@require_GET
@login_required
def checkout_success(request: HttpRequest, user_id: str) -> HttpResponse:
    """Stripe's success redirect: confirm the session for this user (ownership checked)."""
    try:
        confirmation = get_billing().checkout.confirm_checkout(
            request.GET.get("session_id", ""), user_id
        )
    except InvalidInputError as error:
        return _problem(request, 400, str(error))
    except CheckoutOwnershipError:
        return _problem(request, 403, "This checkout was not started by you.")
    except GatewayNotFoundError:
        return _problem(request, 404, "No such checkout session.")
    except GatewayError:
        return _problem(request, 503, "Stripe could not be reached; reload to try again.")
    return _page(request, "success.html", confirmation=confirmation)


# --------------------------------------------------------------------------- account


def _metered_plans() -> dict[str, str]:
    """Plan key -> the meter event name its price bills (``BILLING_DEMO_METERED_PLANS``)."""
    plans: dict[str, str] = getattr(settings, "BILLING_DEMO_METERED_PLANS", {})
    return plans


@require_GET
@login_required
def account(request: HttpRequest, user_id: str) -> HttpResponse:
    """The account page, all from the repository (``CustomerDetails``, ``UsageService``).

    Plan, status, access, renewal date, features and seats; the billing history with links
    to the hosted invoices; the default card with an "update card" button and the
    expiring-card banner; the usage this period on a metered plan; the forms that change
    the plan (preview first), the seats, cancel/resume and a promotion code.
    """
    services = get_billing()
    details = services.customers.for_user(user_id)
    context: dict[str, Any] = {
        "details": details,
        "invoices": services.customers.invoices(user_id, limit=12),
        "card": details.payment_method,
        "expiring": services.customers.card_expiring(user_id),
    }
    meter = _metered_plans().get(details.plan_key or "")
    if meter is not None and details.is_subscribed:
        context["usage"] = {"meter": meter, "total": services.usage.usage(user_id, meter)}
    if details.is_subscribed:
        try:
            context["scheduled"] = services.subscriptions.subscription(user_id).schedule_id
        except BillingError:  # several live subscriptions: the portal manages them
            context["scheduled"] = None
        try:
            plans = services.catalog.plans()
        except PricesUnavailableError:
            plans = []
        context["choices"] = [
            {
                "plan": row["plan"],
                "interval": price["interval"],
                "label": price["label"],
                "per": price["per"],
            }
            for row in _plan_rows([plan for plan in plans if plan.prices])
            for price in row["prices"]
        ]
    fake = fake_gateway()
    if fake is not None:
        context["fake_now"] = fake.now()
        context["fake_pending"] = len(fake.pending_events())
    return _page(request, "account.html", **context)


# --------------------------------------------------------------------------- self-service


def _friendly(error: BillingError) -> tuple[int, str]:
    """The status and the message a user sees for ``error`` (Stripe's text goes to the log)."""
    if isinstance(error, InvalidPromotionCodeError):
        return 400, "That promotion code is not valid."
    if isinstance(error, UnknownPlanError):
        return 400, "That plan does not exist."
    if isinstance(error, InvalidInputError):
        return 400, "Please check what you entered and try again."
    if isinstance(error, NoSubscriptionError | NoCustomerError):
        return 409, "You have no subscription to change: choose a plan first."
    if isinstance(error, SubscriptionStateError):
        return 409, "Your subscription cannot be changed that way right now."
    if isinstance(error, GatewayCardError):
        return 402, "Your card was declined. Nothing was changed."
    if isinstance(error, GatewayError):
        return 503, "Stripe could not be reached; try again shortly."
    return 400, "That did not work; nothing was changed."


def _failed(request: HttpRequest, user_id: str, action: str, error: BillingError) -> HttpResponse:
    logger.warning("user %s: %s failed: %s: %s", user_id, action, type(error).__name__, error)
    status, message = _friendly(error)
    return _problem(request, status, message)


def _done(request: HttpRequest, result: SubscriptionResult, applied: str) -> HttpResponse:
    """Tell the user what a ``SubscriptionService`` call did; back to the account page."""
    if result.outcome == "pending_payment":
        text = "Your card was declined: you stay on your current plan."
        if result.hosted_invoice_url:
            text += f" Pay the invoice to complete the change: {result.hosted_invoice_url}"
        _notify(request, text)
    elif result.outcome == "scheduled":
        when = result.effective_at.strftime("%Y-%m-%d") if result.effective_at else "period end"
        _notify(request, f"{applied} on {when}.")
    elif result.outcome == "unchanged":
        _notify(request, "Nothing to change.")
    else:
        _notify(request, f"{applied}.")
    return redirect("billing_demo:account")


def _choice(request: HttpRequest) -> tuple[str, str]:
    plan, _, interval = request.POST.get("choice", "").partition(":")
    return plan, interval


@require_POST
@login_required
def preview_change(request: HttpRequest, user_id: str) -> HttpResponse:
    """Step 1 of a plan change: what it costs now and next (``preview_change``)."""
    plan_key, interval = _choice(request)
    try:
        preview = get_billing().subscriptions.preview_change(user_id, plan_key, interval or None)
    except BillingError as error:
        return _failed(request, user_id, "preview_change", error)
    plan = get_billing().config.plan_definition(plan_key)
    return _page(request, "change_plan.html", preview=preview, plan=plan, interval=interval,
                 choice=f"{plan_key}:{interval}")  # fmt: skip


@require_POST
@login_required
def change_plan(request: HttpRequest, user_id: str) -> HttpResponse:
    """Step 2: the confirmed change, now or at the period end (``change_plan``)."""
    plan_key, interval = _choice(request)
    when = request.POST.get("when", "now")
    if when not in ("now", "period_end"):
        return _problem(request, 400, "Choose to change now or at the end of the period.")
    try:
        result = get_billing().subscriptions.change_plan(
            user_id, plan_key, interval or None, when="now" if when == "now" else "period_end"
        )
    except BillingError as error:
        return _failed(request, user_id, "change_plan", error)
    return _done(request, result, "Your plan changes" if when == "period_end" else "Plan changed")


@require_POST
@login_required
def undo_change(request: HttpRequest, user_id: str) -> HttpResponse:
    """Drop the plan change scheduled for the period end (``undo_scheduled_change``)."""
    try:
        result = get_billing().subscriptions.undo_scheduled_change(user_id)
    except BillingError as error:
        return _failed(request, user_id, "undo_scheduled_change", error)
    return _done(request, result, "The scheduled change was dropped")


@require_POST
@login_required
def set_seats(request: HttpRequest, user_id: str) -> HttpResponse:
    """Set the number of seats (``set_quantity``)."""
    seats = request.POST.get("seats", "").strip()
    if not seats.isdigit() or not 1 <= int(seats) <= _MAX_SEATS:
        return _problem(request, 400, f"Seats must be a whole number from 1 to {_MAX_SEATS}.")
    try:
        result = get_billing().subscriptions.set_quantity(user_id, int(seats))
    except BillingError as error:
        return _failed(request, user_id, "set_quantity", error)
    return _done(request, result, f"You now have {int(seats)} seats")


@require_POST
@login_required
def cancel(request: HttpRequest, user_id: str) -> HttpResponse:
    """Cancel at the end of the period (``cancel``): access lasts until then."""
    try:
        result = get_billing().subscriptions.cancel(user_id, at_period_end=True)
    except BillingError as error:
        return _failed(request, user_id, "cancel", error)
    return _done(request, result, "Your subscription will end at the end of the period")


@require_POST
@login_required
def resume(request: HttpRequest, user_id: str) -> HttpResponse:
    """Undo a scheduled cancellation (``resume``)."""
    try:
        result = get_billing().subscriptions.resume(user_id)
    except BillingError as error:
        return _failed(request, user_id, "resume", error)
    return _done(request, result, "Your subscription continues")


@require_POST
@login_required
def promotion_code(request: HttpRequest, user_id: str) -> HttpResponse:
    """Apply a promotion code to the subscription (``apply_promotion_code``)."""
    code = request.POST.get("code", "").strip()
    if not code or len(code) > 100:
        return _problem(request, 400, "Enter a promotion code.")
    try:
        result = get_billing().subscriptions.apply_promotion_code(user_id, code)
    except BillingError as error:
        return _failed(request, user_id, "apply_promotion_code", error)
    return _done(request, result, f"Promotion code {code} applied")


@require_POST
@login_required
def update_card(request: HttpRequest, user_id: str) -> HttpResponse:
    """The "update card" button: Checkout in setup mode (``start_payment_method_update``)."""
    back = _absolute(request, "account")
    try:
        start = get_billing().checkout.start_payment_method_update(user_id, back, back)
    except BillingError as error:
        return _failed(request, user_id, "start_payment_method_update", error)
    if fake_gateway() is not None:
        return redirect("billing_demo:fake_setup", session_id=start.session_id)
    return HttpResponseRedirect(start.url)


@require_POST
@login_required
def record_usage(request: HttpRequest, user_id: str) -> HttpResponse:
    """The demo's metered "API call": records usage in the outbox (``UsageService.record``).

    A worker (``billingkit usage flush`` or the app's queue) sends it to Stripe later.
    """
    details = get_billing().customers.for_user(user_id)
    meter = _metered_plans().get(details.plan_key or "")
    if meter is None or not details.is_subscribed:
        return _problem(request, 409, "Usage is billed on a metered plan only.")
    units = request.POST.get("units", "1").strip()
    if not units.isdigit() or not 1 <= int(units) <= 1000:
        return _problem(request, 400, "Units must be a whole number from 1 to 1000.")
    get_billing().usage.record(user_id, meter, int(units))
    _notify(request, f"Recorded {int(units)} {meter}.")
    return redirect("billing_demo:account")


@require_POST
@login_required
def billing_portal(request: HttpRequest, user_id: str) -> HttpResponse:
    """Open Stripe's billing portal for the user (the fake's local portal in fake mode)."""
    services = get_billing()
    try:
        url = services.checkout.open_billing_portal(user_id, _absolute(request, "account"))
    except NoCustomerError:
        _notify(request, "Subscribe to a plan first: there is nothing to manage yet.")
        return redirect("billing_demo:pricing")
    except GatewayError:
        return _problem(request, 503, "Stripe could not be reached; try again shortly.")
    if fake_gateway() is not None:
        return redirect("billing_demo:fake_portal")
    return HttpResponseRedirect(url)


def _no_exports(request: HttpRequest, feature: str, details: object) -> HttpResponse:
    if details is None:
        return redirect(f"{reverse('billing_demo:login')}?next={request.path}")
    return _problem(request, 403, "Exports come with the Pro and Team plans.")


@require_GET
@requires_feature("exports", denied=_no_exports)
def exports(request: HttpRequest) -> HttpResponse:
    """A paid feature: the user's projects as CSV (only while the plan grants ``exports``)."""
    response = HttpResponse("project,created\n", content_type="text/csv")
    response["Content-Disposition"] = 'attachment; filename="projects.csv"'
    return response


# --------------------------------------------------------------------------- fake Stripe


def _deliver(request: HttpRequest) -> None:
    webhook_url = request.build_absolute_uri(reverse("billingkit:stripe_webhook"))
    reports = deliver_fake_events(webhook_url)
    if reports:
        answers = ", ".join(f"{r.event_type} {r.status}" for r in reports)
        _notify(request, f"Fake Stripe delivered {len(reports)} events: {answers}")


def fake_checkout(request: HttpRequest, session_id: str) -> HttpResponse:
    """Plays Stripe Checkout: GET shows the order, POST "pays" and returns to the app."""
    fake = _fake()
    try:
        session = fake.stripe_object(session_id)
        order = fake.checkout_request(session_id)
    except GatewayNotFoundError:
        raise Http404("no such checkout session") from None
    if request.method == "POST":
        try:
            fake.complete_checkout(session_id)
        except GatewayError as error:
            return _problem(request, 402, f"Payment failed: {error}")
        _deliver(request)
        return redirect(order.success_url.replace("{CHECKOUT_SESSION_ID}", session_id))
    total = session["amount_total"]
    return _page(request, "fake_checkout.html", session=session, order=order,
                 total=f"{total / 100:.2f} {session['currency'].upper()}")  # fmt: skip


@login_required
def fake_setup(request: HttpRequest, user_id: str, session_id: str) -> HttpResponse:
    """Plays setup-mode Checkout: GET asks for a card, POST "saves" it and returns."""
    fake = _fake()
    try:
        session = fake.stripe_object(session_id)
    except GatewayNotFoundError:
        raise Http404("no such checkout session") from None
    if session.get("mode") != "setup" or session.get("customer") != _customer_id(user_id):
        raise Http404("no such checkout session")
    if request.method == "POST":
        now = fake.now()
        expiring = request.POST.get("card") == "expiring"
        try:
            fake.complete_setup_checkout(
                session_id,
                last4="0341" if expiring else "4242",
                exp_month=now.month if expiring else 12,
                exp_year=now.year if expiring else now.year + 4,
            )
        except GatewayError as error:
            logger.warning("fake setup checkout %s: %s", session_id, error)
            return _problem(request, 409, "This checkout is already closed.")
        _deliver(request)
        return redirect(session.get("success_url") or reverse("billing_demo:account"))
    return _page(request, "fake_setup.html", session=session)


def _customer_id(user_id: str) -> str | None:
    with get_billing().repository.unit_of_work() as uow:
        link = uow.customer_for_user(user_id)
    return None if link is None else link.customer_id


@login_required
def fake_portal(request: HttpRequest, user_id: str) -> HttpResponse:
    """Plays the billing portal: the user's subscriptions at the fake, cancel or resume."""
    fake = _fake()
    customer_id = _customer_id(user_id)
    owned = fake.subscription_ids(customer_id) if customer_id is not None else []
    if request.method == "POST":
        subscription_id = request.POST.get("subscription", "")
        action = request.POST.get("action")
        if subscription_id not in owned or action not in ("cancel", "resume"):
            return _problem(request, 400, "Unknown subscription or action.")
        try:
            fake.update_subscription(subscription_id, cancel_at_period_end=action == "cancel")
        except GatewayError as error:
            return _problem(request, 400, str(error))
        _deliver(request)
        return redirect("billing_demo:fake_portal")
    subscriptions = [_fake_subscription(fake.stripe_object(sub_id)) for sub_id in owned]
    return _page(request, "fake_portal.html", subscriptions=subscriptions)


def _fake_subscription(json: dict[str, Any]) -> dict[str, Any]:
    item = json["items"]["data"][0]
    end = item.get("current_period_end") or json.get("current_period_end")
    return {
        "id": json["id"],
        "status": json["status"],
        "price": item["price"].get("lookup_key") or item["price"]["id"],
        "cancel_at_period_end": json["cancel_at_period_end"],
        "period_end": datetime.fromtimestamp(end, tz=timezone.utc) if end else None,
        "live": json["status"] in ("active", "trialing", "past_due", "unpaid"),
    }


@require_POST
@login_required
def fake_clock(request: HttpRequest, user_id: str) -> HttpResponse:
    """Demo controls: move the fake's time (renewals happen) or make the next payment fail."""
    fake = _fake()
    action = request.POST.get("action")
    if action == "advance":
        days = request.POST.get("days", "")
        if not days.isdigit() or not 0 < int(days) <= 400:
            return _problem(request, 400, "days must be a whole number from 1 to 400")
        fake.advance(timedelta(days=int(days)))
    elif action == "fail_next_payment":
        customer_id = _customer_id(user_id)
        for subscription_id in fake.subscription_ids(customer_id) if customer_id else []:
            fake.fail_next_payment(subscription_id)
    elif action != "deliver":
        return _problem(request, 400, "Unknown action.")
    _deliver(request)
    return redirect("billing_demo:account")
