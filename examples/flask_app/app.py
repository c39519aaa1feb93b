"""The Flask example: ``create_app()`` and the shop's views.

Pages: ``/pricing`` (the plan catalog), ``POST /checkout`` (start a Stripe Checkout),
``/checkout/success`` (confirm it), ``/account`` (the user's billing details),
``POST /billing/portal`` (Stripe's billing portal) and ``POST /webhooks/stripe``.
In fake mode :mod:`examples.flask_app.fake_stripe` adds local pages playing Stripe.

Users are a demo: the login form puts an e-mail address in the session, and that address is
the ``user_id`` billingkit ties to a Stripe customer. A real app uses its own user ids.
"""

from __future__ import annotations

import os
import secrets
import tempfile
from collections.abc import Callable, Mapping
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar, cast

from examples.flask_app.billing import (
    DEFAULT_PLANS_FILE,
    build_billing,
    current_billing,
    fake_gateway,
)
from flask import (
    Blueprint,
    Flask,
    Response,
    abort,
    flash,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from werkzeug.wrappers import Response as BaseResponse

from billingkit.domain import Plan
from billingkit.errors import (
    AlreadySubscribedError,
    BillingError,
    CheckoutOwnershipError,
    ConfigurationError,
    GatewayCardError,
    GatewayError,
    InvalidInputError,
    NoCustomerError,
    PricesUnavailableError,
)

__all__ = ["create_app", "settings_from_env", "shop"]

F = TypeVar("F", bound=Callable[..., Any])

shop = Blueprint("shop", __name__)

#: Settings read from the environment when ``create_app`` is not given them.
_ENV_SETTINGS = (
    "STRIPE_API_KEY",
    "STRIPE_WEBHOOK_SECRET",
    "BILLING_DATABASE_URL",
    "BILLING_PLANS_FILE",
    "BILLING_PAST_DUE_GRACE_DAYS",
)


def settings_from_env(environ: Mapping[str, str]) -> dict[str, Any]:
    """The settings the environment provides (unset or empty variables are left out)."""
    found: dict[str, Any] = {name: environ[name] for name in _ENV_SETTINGS if environ.get(name)}
    if environ.get("FLASK_SECRET_KEY"):
        found["SECRET_KEY"] = environ["FLASK_SECRET_KEY"]
    return found


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
    ``FAKE_DELIVERY``
        Fake mode: how the fake's signed events reach ``/webhooks/stripe``: ``"http"``
        (default: POSTed to the app's own URL; the server must be multi-threaded) or
        ``"test_client"`` (through ``app.test_client()``, for headless runs).
    ``FAKE_START``
        Fake mode: the fake Stripe's initial time (aware datetime); default now.
    """
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY=secrets.token_hex(32),
        BILLING_PLANS_FILE=str(DEFAULT_PLANS_FILE),
        BILLING_PAST_DUE_GRACE_DAYS=None,
        FAKE_DELIVERY="http",
        FAKE_START=None,
        ENVIRON=dict(os.environ),
    )
    app.config.update(settings_from_env(os.environ))
    app.config.update(config or {})
    if app.config["FAKE_DELIVERY"] not in ("http", "test_client"):
        raise ConfigurationError("FAKE_DELIVERY must be 'http' or 'test_client'")
    if not app.config.get("BILLING_DATABASE_URL"):
        app.config["BILLING_DATABASE_URL"] = _default_database_url(app)

    billing = build_billing(app.config)
    fake = fake_gateway(billing)
    app.extensions["billing"] = billing
    app.register_blueprint(shop)
    if fake is not None:
        from examples.flask_app.fake_stripe import fake_stripe

        app.register_blueprint(fake_stripe)
    app.before_request(_check_csrf)
    app.jinja_env.globals["csrf_token"] = _csrf_token
    app.context_processor(lambda: {"user_id": session.get("user_id"), "fake": fake})
    app.register_error_handler(BillingError, _billing_error)
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
    if request.method != "POST" or request.endpoint == "shop.stripe_webhook":
        return
    sent = request.form.get("csrf_token", "")
    expected = session.get("csrf_token")
    if not isinstance(expected, str) or not secrets.compare_digest(sent, expected):
        abort(400, "missing or stale form token; reload the page and try again")


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


def _billing_error(error: BillingError) -> tuple[str, int]:
    """billingkit's errors as pages: the status says whose fault it is."""
    status = 500
    message = str(error)
    if isinstance(error, InvalidInputError):
        status = 400
    elif isinstance(error, CheckoutOwnershipError):
        status = 403
    elif isinstance(error, LookupError):  # unknown plan, unknown session, no customer
        status = 404
    elif isinstance(error, GatewayCardError):
        status, message = 402, error.user_message or "The payment was declined."
    elif isinstance(error, PricesUnavailableError | GatewayError):
        status = 503 if error.retryable else 502
        message = "Stripe could not be reached or refused the request; try again shortly."
    return render_template("problem.html", status=status, message=message), status


def _external(endpoint: str) -> str:
    return url_for(endpoint, _external=True)


# --------------------------------------------------------------------------- views


@shop.get("/")
def home() -> BaseResponse:
    """The pricing page is the home page."""
    return redirect(url_for("shop.pricing"))


@shop.route("/login", methods=["GET", "POST"])
def login() -> str | BaseResponse:
    """A demo login: any e-mail address becomes the user id."""
    if request.method == "POST":
        email = request.form.get("email", "").strip().lower()
        if "@" not in email or len(email) > 200:
            flash("Enter an e-mail address.")
            return render_template("login.html"), 400  # type: ignore[return-value]
        session["user_id"] = email
        target = request.args.get("next", "")
        return redirect(target if target.startswith("/") else url_for("shop.account"))
    return render_template("login.html")


@shop.post("/logout")
def logout() -> BaseResponse:
    """Forget the demo user."""
    session.pop("user_id", None)
    return redirect(url_for("shop.pricing"))


@shop.get("/pricing")
def pricing() -> str:
    """The catalog: plans with live prices (one cached Stripe call for all of them)."""
    billing = current_billing()
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
@login_required
def start_checkout() -> BaseResponse:
    """Start a Checkout Session for the chosen plan and send the user to pay."""
    billing = current_billing()
    user_id = _user_id()
    try:
        start = billing.checkout.start_checkout(
            user_id=user_id,
            email=user_id,
            plan_key=request.form.get("plan", ""),
            interval=request.form.get("interval", ""),
            success_url=_external("shop.checkout_success") + "?session_id={CHECKOUT_SESSION_ID}",
            cancel_url=_external("shop.pricing"),
        )
    except AlreadySubscribedError:
        flash("You already have a subscription: change or cancel it in the billing portal.")
        return redirect(url_for("shop.account"))
    if fake_gateway(billing) is not None:  # the fake's URL points at Stripe: play Checkout locally
        return redirect(url_for("fake_stripe.checkout", session_id=start.session_id), 303)
    return redirect(start.url, 303)


@shop.get("/checkout/success")
@login_required
def checkout_success() -> str:
    """Stripe sends the user here; check the session is theirs and apply it."""
    session_id = request.args.get("session_id", "")
    confirmation = current_billing().checkout.confirm_checkout(session_id, _user_id())
    return render_template("success.html", confirmation=confirmation)


@shop.get("/account")
@login_required
def account() -> str:
    """The user's plan, status, access, renewal date and features: no Stripe call."""
    billing = current_billing()
    details = billing.customers.for_user(_user_id())
    limits = details.plan.limits if details.plan is not None and details.has_access else {}
    return render_template("account.html", details=details, limits=limits)


@shop.post("/billing/portal")
@login_required
def billing_portal() -> BaseResponse:
    """Open Stripe's billing portal (plan changes, card, cancellation)."""
    billing = current_billing()
    try:
        url = billing.checkout.open_billing_portal(_user_id(), _external("shop.account"))
    except NoCustomerError:
        flash("Subscribe to a plan first: the billing portal is for paying customers.")
        return redirect(url_for("shop.pricing"))
    if fake_gateway(billing) is not None:  # the fake's portal URL points at Stripe: play it locally
        return redirect(url_for("fake_stripe.portal"), 303)
    return redirect(url, 303)


@shop.post("/webhooks/stripe")
def stripe_webhook() -> Response:
    """Stripe's webhook: the raw body and signature go to billingkit untouched.

    400 for a bad signature or payload (nothing stored), 200 for processed, duplicate,
    ignored or stale events, 500 for a failure (Stripe retries it).
    """
    answer = current_billing().webhooks.handle_http(
        request.get_data(), request.headers.get("Stripe-Signature")
    )
    return Response(answer.body, status=answer.status, content_type=answer.content_type)
