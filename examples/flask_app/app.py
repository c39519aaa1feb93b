"""The Flask example: ``create_app()`` and the shop's views.

Pages: ``/pricing`` (the plan catalog), ``POST /checkout`` (start a Stripe Checkout),
``/checkout/success`` (confirm it), ``/account`` (the user's billing details, card, invoices
and usage, with forms posting to ``/account/plan/preview``, ``/account/plan``,
``/account/plan/undo``, ``/account/seats``, ``/account/cancel``, ``/account/resume``,
``/account/promotion``, ``/account/card`` and ``/account/usage``), ``/exports`` (only for
plans with that feature), ``POST /billing/portal`` (Stripe's billing portal).
``POST /webhooks/stripe`` is billingkit's: :class:`billingkit.contrib.flask.BillingKit`
registers it, with ``current_billing`` and ``requires_feature``.
In fake mode :mod:`examples.flask_app.fake_stripe` adds local pages playing Stripe.

Users are a demo: the login form puts an e-mail address in the session, and that address is
the ``user_id`` billingkit ties to a Stripe customer. A real app uses its own user ids.
"""

from __future__ import annotations

import logging
import os
import secrets
import tempfile
from collections.abc import Callable, Mapping
from functools import wraps
from pathlib import Path
from typing import Any, Literal, TypeVar, cast

from examples.flask_app.billing import DEFAULT_PLANS_FILE, build_billing, fake_gateway, load_plans
from flask import (
    Blueprint,
    Flask,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response as BaseResponse

from billingkit import BillingDetails
from billingkit.contrib.flask import (
    WEBHOOK_ENDPOINT,
    BillingKit,
    current_billing,
    requires_feature,
)
from billingkit.domain import Plan, from_timestamp
from billingkit.errors import (
    AlreadySubscribedError,
    AmbiguousSubscriptionError,
    BillingError,
    CheckoutOwnershipError,
    ConfigurationError,
    GatewayCardError,
    GatewayError,
    GatewayNotFoundError,
    InvalidInputError,
    InvalidPromotionCodeError,
    NoCustomerError,
    NoSubscriptionError,
    PricesUnavailableError,
    SubscriptionOwnershipError,
    SubscriptionStateError,
    UnknownPlanError,
)

__all__ = ["STATUS_LABELS", "create_app", "settings_from_env", "shop", "worker_settings"]

F = TypeVar("F", bound=Callable[..., Any])

logger = logging.getLogger("flask_app")

shop = Blueprint("shop", __name__)

#: Subscription statuses as the pages show them.
STATUS_LABELS = {
    "active": "Active",
    "trialing": "Trial",
    "past_due": "Past due",
    "unpaid": "Unpaid",
    "paused": "Paused",
    "incomplete": "Awaiting payment",
    "incomplete_expired": "Expired",
    "canceled": "Canceled",
}

#: Settings read from the environment when ``create_app`` is not given them.
_ENV_SETTINGS = (
    "STRIPE_API_KEY",
    "STRIPE_WEBHOOK_SECRET",
    "BILLING_DATABASE_URL",
    "BILLING_PLANS_FILE",
    "BILLING_PAST_DUE_GRACE_DAYS",
    "BILLING_DEFERRED",
    "BILLING_BROKER_URL",
    "BILLING_QUEUE",
)


def settings_from_env(environ: Mapping[str, str]) -> dict[str, Any]:
    """The settings the environment provides (unset or empty variables are left out)."""
    found: dict[str, Any] = {name: environ[name] for name in _ENV_SETTINGS if environ.get(name)}
    if environ.get("FLASK_SECRET_KEY"):
        found["SECRET_KEY"] = environ["FLASK_SECRET_KEY"]
    return found


def _defaults(environ: Mapping[str, str]) -> dict[str, Any]:
    return {
        "BILLING_PLANS_FILE": str(DEFAULT_PLANS_FILE),
        "BILLING_PAST_DUE_GRACE_DAYS": None,
        "BILLING_DEFERRED": "",
        "FAKE_DELIVERY": "http",
        "FAKE_START": None,
        "ENVIRON": dict(environ),
    }


def worker_settings(environ: Mapping[str, str]) -> dict[str, Any]:
    """The settings of a queue worker (``tasks.py``): the web app's, from the environment.

    Raises :class:`~billingkit.errors.ConfigurationError` without ``BILLING_DATABASE_URL``:
    the workers must share the web app's database.
    """
    settings = {**_defaults(environ), **settings_from_env(environ)}
    if not settings.get("BILLING_DATABASE_URL"):
        raise ConfigurationError(
            "set BILLING_DATABASE_URL: the workers apply events from the web app's database"
        )
    return settings


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build the app: settings (defaults < environment < ``config``), then billingkit.

    Settings (all optional):

    ``STRIPE_API_KEY`` / ``STRIPE_WEBHOOK_SECRET``
        Both set: Stripe test mode. Neither: the fake Stripe.
    ``BILLING_DATABASE_URL``
        SQLAlchemy URL. Default: a SQLite file in a new temporary directory with the fake
        (its state lives in memory, so each start begins afresh), else
        ``<instance path>/billing.sqlite3``.
    ``BILLING_PLANS_FILE``
        The plans (JSON, see ``plans.json``); ``BILLING_PRICE_<PLAN>_<INTERVAL>``
        environment variables override single prices.
    ``BILLING_PAST_DUE_GRACE_DAYS``
        Overrides the plans file's access policy.
    ``BILLING_DEFERRED``
        ``""`` (default): webhooks are applied in the request. ``"celery"`` or ``"rq"``:
        deferred mode, the webhook only stores the event and the queue's workers
        (``examples/flask_app/tasks.py``) apply it; needs an explicit
        ``BILLING_DATABASE_URL`` shared with them.
    ``BILLING_BROKER_URL`` / ``BILLING_QUEUE``
        Deferred mode: the broker (default ``redis://127.0.0.1:6379/0``) and queue name
        (default ``billing``).
    ``FAKE_DELIVERY``
        Fake mode: how the fake's signed events reach ``/webhooks/stripe``: ``"http"``
        (default: POSTed to the app's own URL; the server must be multi-threaded) or
        ``"test_client"`` (through ``app.test_client()``, for headless runs).
    ``FAKE_START``
        Fake mode: the fake Stripe's initial time (aware datetime); default now.
    """
    app = Flask(__name__)
    app.config.update(SECRET_KEY=secrets.token_hex(32), **_defaults(os.environ))
    app.config.update(settings_from_env(os.environ))
    app.config.update(config or {})
    if app.config["FAKE_DELIVERY"] not in ("http", "test_client"):
        raise ConfigurationError("FAKE_DELIVERY must be 'http' or 'test_client'")
    if not app.config.get("BILLING_DATABASE_URL"):
        if app.config.get("BILLING_DEFERRED"):
            raise ConfigurationError(
                "deferred mode needs BILLING_DATABASE_URL: the workers share the database"
            )
        app.config["BILLING_DATABASE_URL"] = _default_database_url(app)

    # billingkit's extension: the services, POST /webhooks/stripe, current_billing and
    # requires_feature (which asks _current_user_id who is logged in).
    billing = build_billing(app.config)
    # Plan key -> the meter event name its usage is recorded under (the plans file's "meters").
    app.config["PLAN_METERS"] = load_plans(
        app.config["BILLING_PLANS_FILE"], app.config.get("ENVIRON") or {}
    ).meters
    BillingKit(app, billing=billing, user_id=_current_user_id, denied=_feature_denied)
    fake = fake_gateway(billing)
    app.register_blueprint(shop)
    if fake is not None:
        from examples.flask_app.fake_stripe import fake_stripe

        app.register_blueprint(fake_stripe)
    app.before_request(_check_csrf)
    app.jinja_env.globals["csrf_token"] = _csrf_token
    app.jinja_env.filters["status_label"] = _status_label
    app.context_processor(lambda: {"user_id": session.get("user_id"), "fake": fake})
    app.register_error_handler(BillingError, _billing_error)
    app.register_error_handler(HTTPException, _http_error)
    return app


def _default_database_url(app: Flask) -> str:
    stripe_mode = bool(app.config.get("STRIPE_API_KEY"))
    if stripe_mode:
        Path(app.instance_path).mkdir(parents=True, exist_ok=True)
        folder = app.instance_path
    else:
        folder = tempfile.mkdtemp(prefix="billingkit-flask-")
    return f"sqlite:///{Path(folder) / 'billing.sqlite3'}"


# --------------------------------------------------------------------------- plumbing


def _csrf_token() -> str:
    token = session.get("csrf_token")
    if not isinstance(token, str):
        token = secrets.token_urlsafe(24)
        session["csrf_token"] = token
    return token


def _check_csrf() -> None:
    """Every form POST carries the session's token; Stripe's webhook is signed instead."""
    if request.method != "POST" or request.endpoint == WEBHOOK_ENDPOINT:
        return
    sent = request.form.get("csrf_token", "")
    expected = session.get("csrf_token")
    if not isinstance(expected, str) or not secrets.compare_digest(sent, expected):
        abort(400, "Your form expired. Reload the page and try again.")


def _current_user_id() -> str | None:
    """Who is logged in (the demo keeps an e-mail address in the session)."""
    user_id = session.get("user_id")
    return user_id if isinstance(user_id, str) else None


def login_required(view: F) -> F:
    """Send anonymous visitors to the login form, then back."""

    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if "user_id" not in session:
            return redirect(url_for("shop.login", next=request.path))
        return view(*args, **kwargs)

    return cast(F, wrapper)


def _user_id() -> str:
    user_id = session["user_id"]
    assert isinstance(user_id, str)
    return user_id


def _status_label(status: Any) -> str:
    """``past_due`` -> ``Past due``: a subscription status (enum or string) for people."""
    value = str(getattr(status, "value", status))
    return STATUS_LABELS.get(value, value.replace("_", " ").capitalize())


def _feature_denied(feature: str, details: BillingDetails | None) -> BaseResponse:
    """``requires_feature`` refused: log in first, or see the plans that include it."""
    if details is None:
        flash("Log in to use that page.")
        return redirect(url_for("shop.login", next=request.path))
    flash(f"Your plan does not include {feature}: pick a plan that does.")
    return redirect(url_for("shop.pricing"))


def _problem(status: int, title: str, message: str) -> tuple[str, int]:
    return render_template("problem.html", status=status, title=title, message=message), status


def _billing_error(error: BillingError) -> tuple[str, int]:
    """billingkit's errors as friendly pages; the details (Stripe's own text) go to the log."""
    status, title, message = 500, "Something went wrong", "Please try again in a moment."
    if isinstance(error, CheckoutOwnershipError):
        status, title = 403, "Not your checkout"
        message = "This checkout was started from another account."
    elif isinstance(error, UnknownPlanError):
        status, title, message = 404, "Unknown plan", "That plan is not for sale."
    elif isinstance(error, NoCustomerError):
        status, title = 404, "No billing account yet"
        message = "Subscribe to a plan first."
    elif isinstance(error, NoSubscriptionError):
        status, title = 404, "No subscription"
        message = "You have no subscription to change: pick a plan first."
    elif isinstance(error, SubscriptionOwnershipError | AmbiguousSubscriptionError):
        status, title = 403, "Not your subscription"
        message = "That subscription cannot be changed from this account."
    elif isinstance(error, SubscriptionStateError):
        status, title = 409, "Not possible right now"
        message = "Your subscription cannot be changed that way in its current state."
    elif isinstance(error, GatewayNotFoundError):
        status, title = 404, "Not found"
        message = "Stripe does not know this checkout; start again from the plans."
    elif isinstance(error, InvalidInputError):
        status, title, message = 400, "Invalid request", "Go back and try again."
    elif isinstance(error, GatewayCardError):
        status, title = 402, "Payment declined"
        message = "Your card was declined. Try another card in the billing portal."
    elif isinstance(error, PricesUnavailableError | GatewayError):
        status = 503 if error.retryable else 502
        title = "Stripe is unavailable"
        message = "Stripe could not be reached or refused the request; try again shortly."
    log = logger.warning if status < 500 else logger.error
    log("%s answered %d: %s: %s", request.path, status, type(error).__name__, error)
    return _problem(status, title, message)


_HTTP_MESSAGES = {
    400: ("Invalid request", "Go back and try again."),
    401: ("Please log in", "Log in to see this page."),
    403: ("Not allowed", "Your account cannot open this page."),
    404: ("Page not found", "There is nothing at this address."),
    405: ("Page not found", "This page cannot be opened from here."),
}


def _http_error(error: HTTPException) -> BaseResponse | tuple[str, int]:
    """Werkzeug's HTTP errors (404, 405, a stale form...) as the same friendly page."""
    status = error.code or 500
    if error.response is not None or request.endpoint == WEBHOOK_ENDPOINT:
        return error.get_response()
    title, message = _HTTP_MESSAGES.get(status, ("Something went wrong", "Please try again."))
    if error.description and error.description != type(error).description:
        message = error.description  # our own abort(..., message)
    return _problem(status, title, message)


def _external(endpoint: str) -> str:
    return url_for(endpoint, _external=True)


def _start_checkout(plan: str, interval: str) -> BaseResponse:
    """Start a Checkout Session for the logged-in user and send them to pay."""
    billing = current_billing
    user_id = _user_id()
    try:
        start = billing.checkout.start_checkout(
            user_id=user_id,
            email=user_id,
            plan_key=plan,
            interval=interval,
            success_url=_external("shop.checkout_success") + "?session_id={CHECKOUT_SESSION_ID}",
            cancel_url=_external("shop.pricing"),
        )
    except AlreadySubscribedError:
        flash("You already have a subscription: change or cancel it in the billing portal.")
        return redirect(url_for("shop.account"))
    if fake_gateway(billing) is not None:  # the fake's URL points at Stripe: play Checkout locally
        return redirect(url_for("fake_stripe.checkout", session_id=start.session_id), 303)
    return redirect(start.url, 303)


# --------------------------------------------------------------------------- views


@shop.get("/")
def home() -> BaseResponse:
    """The pricing page is the home page."""
    return redirect(url_for("shop.pricing"))


@shop.route("/login", methods=["GET", "POST"])
def login() -> str | BaseResponse:
    """A demo login: any e-mail address becomes the user id.

    A plan chosen before logging in (kept in the session by ``POST /checkout``) goes
    straight on to Checkout.
    """
    if request.method == "POST":
        email = request.form.get("email", "").strip().lower()
        if "@" not in email or len(email) > 200:
            flash("Enter an e-mail address.")
            return render_template("login.html"), 400  # type: ignore[return-value]
        session["user_id"] = email
        pending = session.pop("pending_checkout", None)
        if isinstance(pending, dict):
            return _start_checkout(str(pending.get("plan")), str(pending.get("interval")))
        target = request.args.get("next", "")
        safe = target.startswith("/") and not target.startswith("//")
        return redirect(target if safe else url_for("shop.account"))
    return render_template("login.html")


@shop.post("/logout")
def logout() -> BaseResponse:
    """Forget the demo user."""
    session.pop("user_id", None)
    session.pop("pending_checkout", None)
    return redirect(url_for("shop.pricing"))


@shop.get("/pricing")
def pricing() -> str:
    """The catalog: plans with live prices (one cached Stripe call for all of them)."""
    billing = current_billing
    current = billing.customers.for_user(session["user_id"]) if "user_id" in session else None
    return render_template(
        "pricing.html",
        plans=[_plan_view(plan) for plan in billing.catalog.plans()],
        current=current,
    )


def _plan_view(plan: Plan) -> dict[str, Any]:
    return {
        "key": plan.key,
        "name": plan.name,
        "description": plan.definition.description,
        "features": plan.features,
        "limits": plan.limits,
        "is_free": plan.is_free,
        "stale": plan.stale,
        "prices": [
            {
                "interval": interval.value,
                "amount": price.amount.format() if price.amount else "-",
                "metered": price.is_metered,
            }
            for interval, price in plan.prices.items()
        ],
    }


@shop.post("/checkout")
def start_checkout() -> BaseResponse:
    """Start a Checkout Session for the chosen plan; logged out, log in first, then go on."""
    plan, interval = request.form.get("plan", ""), request.form.get("interval", "")
    if "user_id" not in session:
        session["pending_checkout"] = {"plan": plan, "interval": interval}
        chosen = current_billing.config.plan_definition(plan)
        what = f"{chosen.name} ({interval}ly)" if chosen is not None else "the plan you chose"
        flash(f"Log in to continue to checkout: your plan is kept, {what}.")
        return redirect(url_for("shop.login"), 303)
    return _start_checkout(plan, interval)


@shop.get("/checkout/success")
@login_required
def checkout_success() -> str:
    """Stripe sends the user here; check the session is theirs and apply it."""
    session_id = request.args.get("session_id", "")
    confirmation = current_billing.checkout.confirm_checkout(session_id, _user_id())
    return render_template("success.html", confirmation=confirmation)


@shop.get("/account")
@login_required
def account() -> str:
    """The user's plan, status, access, card, invoices and usage: no Stripe call.

    Also the forms that manage the subscription (change plan, seats, cancel/resume, a
    promotion code, update the card, use the API on a metered plan).
    """
    billing = current_billing
    user_id = _user_id()
    details = billing.customers.for_user(user_id)
    limits = details.plan.limits if details.plan is not None and details.has_access else {}
    meter = _meter_of(details)
    return render_template(
        "account.html",
        details=details,
        limits=limits,
        invoices=billing.customers.invoices(user_id, limit=10),
        expiring=billing.customers.card_expiring(user_id),
        meter=meter,
        usage=billing.usage.usage(user_id, meter) if meter is not None else None,
        plans=[plan for plan in billing.config.plans if not plan.is_free],
    )


def _meter_of(details: BillingDetails) -> str | None:
    """The meter event name of the user's plan, if it is a metered plan they are on."""
    if not details.is_subscribed or details.plan_key is None:
        return None
    meters: Mapping[str, str] = current_app.config["PLAN_METERS"]
    return meters.get(details.plan_key)


def _back(message: str) -> BaseResponse:
    flash(message)
    return redirect(url_for("shop.account"), 303)


def _plan_name(plan_key: str) -> str:
    plan = current_billing.config.plan_definition(plan_key)
    return plan.name if plan is not None else plan_key


@shop.post("/account/plan/preview")
@login_required
def preview_plan_change() -> str:
    """Show what changing to the chosen plan bills (one Stripe preview), with a confirm form."""
    plan_key, interval = request.form.get("plan", ""), request.form.get("interval") or None
    preview = current_billing.subscriptions.preview_change(_user_id(), plan_key, interval)
    return render_template(
        "change_plan.html",
        preview=preview,
        plan_name=_plan_name(plan_key),
        interval=interval or "",
        proration_date=int(preview.proration_date.timestamp()),
    )


@shop.post("/account/plan")
@login_required
def change_plan() -> BaseResponse:
    """Change plan now (billed as the preview showed) or at the renewal.

    A declined payment leaves the subscription on its old plan (Stripe keeps the change
    pending until its invoice is paid): the page says so.
    """
    plan_key, interval = request.form.get("plan", ""), request.form.get("interval") or None
    when: Literal["now", "period_end"] = (
        "period_end" if request.form.get("when") == "period_end" else "now"
    )
    proration_date = None
    if when == "now" and request.form.get("proration_date", "").isdigit():
        proration_date = from_timestamp(int(request.form["proration_date"]))
    result = current_billing.subscriptions.change_plan(
        _user_id(), plan_key, interval, when=when, proration_date=proration_date
    )
    name = _plan_name(plan_key)
    if result.pending_payment:  # Stripe keeps the change for 23 hours, then drops it
        logger.info("plan change to %s pending payment: %s", plan_key, result.invoice_id)
        current = _plan_name(result.subscription.plan_key or "")
        return _back(
            f"Your card was declined: you stay on the {current} plan. Update your card, "
            "then try again."
        )
    if result.outcome == "scheduled" and result.effective_at is not None:
        return _back(f"You move to {name} on {result.effective_at:%Y-%m-%d}.")
    if result.outcome == "unchanged":
        return _back(f"You are already on {name}.")
    return _back(f"You are now on the {name} plan.")


@shop.post("/account/plan/undo")
@login_required
def undo_plan_change() -> BaseResponse:
    """Withdraw a plan change scheduled for the renewal."""
    current_billing.subscriptions.undo_scheduled_change(_user_id())
    return _back("The scheduled plan change is withdrawn.")


@shop.post("/account/seats")
@login_required
def set_seats() -> BaseResponse:
    """Set the number of seats (the subscription's quantity; prorated on the next invoice)."""
    seats = request.form.get("seats", "")
    if not seats.isdigit() or not 1 <= int(seats) <= 1000:
        return _back("Enter a number of seats from 1 to 1000.")
    result = current_billing.subscriptions.set_quantity(_user_id(), int(seats))
    if result.pending_payment:
        return _back("Your card was declined: your seats are unchanged.")
    return _back(f"You now have {result.subscription.quantity} seat(s).")


@shop.post("/account/cancel")
@login_required
def cancel_subscription() -> BaseResponse:
    """Cancel at the end of the period (access continues until then)."""
    result = current_billing.subscriptions.cancel(_user_id())
    end = result.subscription.current_period_end
    return _back(f"Your subscription ends on {end:%Y-%m-%d}." if end else "Canceled.")


@shop.post("/account/resume")
@login_required
def resume_subscription() -> BaseResponse:
    """Withdraw the cancellation."""
    current_billing.subscriptions.resume(_user_id())
    return _back("Your subscription continues: it renews as before.")


@shop.post("/account/promotion")
@login_required
def apply_promotion() -> BaseResponse:
    """Apply a promotion code to the subscription."""
    code = request.form.get("code", "").strip()
    if not code:
        return _back("Enter a promotion code.")
    try:
        current_billing.subscriptions.apply_promotion_code(_user_id(), code)
    except InvalidPromotionCodeError as error:
        logger.info("promotion code %r refused: %s", code, error)
        return _back(f"The code {code} is not valid.")
    return _back(f"The code {code} is applied to your subscription.")


@shop.post("/account/card")
@login_required
def update_card() -> BaseResponse:
    """Save a new card on a setup-mode Checkout page (nothing is charged)."""
    billing = current_billing
    try:
        start = billing.checkout.start_payment_method_update(
            _user_id(), _external("shop.account"), _external("shop.account")
        )
    except NoCustomerError:
        flash("Subscribe to a plan first: there is no card to update yet.")
        return redirect(url_for("shop.pricing"), 303)
    if fake_gateway(billing) is not None:  # the fake's URL points at Stripe: play it locally
        return redirect(url_for("fake_stripe.setup", session_id=start.session_id), 303)
    return redirect(start.url, 303)


@shop.post("/account/usage")
@login_required
def use_api() -> BaseResponse:
    """ "Use the API": record usage on a metered plan (an INSERT; ``flush`` sends it)."""
    billing = current_billing
    user_id = _user_id()
    meter = _meter_of(billing.customers.for_user(user_id))
    if meter is None:
        return _back("Your plan is not billed by usage.")
    calls = request.form.get("calls", "10")
    if not calls.isdigit() or not 1 <= int(calls) <= 10_000:
        return _back("Enter a number of API calls from 1 to 10000.")
    billing.usage.record(user_id, meter, int(calls))
    total = billing.usage.usage(user_id, meter)
    return _back(f"{calls} API calls recorded: {total.value} this period.")


@shop.get("/exports")
@requires_feature("exports")
def exports() -> str:
    """A page only plans with the ``exports`` feature open (while access is granted)."""
    return render_template("exports.html")


@shop.post("/billing/portal")
@login_required
def billing_portal() -> BaseResponse:
    """Open Stripe's billing portal (plan changes, card, cancellation)."""
    billing = current_billing
    try:
        url = billing.checkout.open_billing_portal(_user_id(), _external("shop.account"))
    except NoCustomerError:
        flash("Subscribe to a plan first: the billing portal is for paying customers.")
        return redirect(url_for("shop.pricing"))
    if fake_gateway(billing) is not None:  # the fake's portal URL points at Stripe: play it locally
        return redirect(url_for("fake_stripe.portal"), 303)
    return redirect(url, 303)
