"""The Flask example: ``create_app()`` and the shop's views.

Pages: ``/pricing`` (the plan catalog), ``POST /checkout`` (start a Stripe Checkout),
``/checkout/success`` (confirm it), ``/account`` (the user's billing details), ``/exports``
(only for plans with that feature), ``POST /billing/portal`` (Stripe's billing portal).
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
from typing import Any, TypeVar, cast

from examples.flask_app.billing import DEFAULT_PLANS_FILE, build_billing, fake_gateway
from flask import (
    Blueprint,
    Flask,
    abort,
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
from billingkit.domain import Plan
from billingkit.errors import (
    AlreadySubscribedError,
    BillingError,
    CheckoutOwnershipError,
    ConfigurationError,
    GatewayCardError,
    GatewayError,
    GatewayNotFoundError,
    InvalidInputError,
    NoCustomerError,
    PricesUnavailableError,
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
            {"interval": interval.value, "amount": price.amount.format() if price.amount else "-"}
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
    """The user's plan, status, access, renewal date and features: no Stripe call."""
    details = current_billing.customers.for_user(_user_id())
    limits = details.plan.limits if details.plan is not None and details.has_access else {}
    return render_template("account.html", details=details, limits=limits)


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
