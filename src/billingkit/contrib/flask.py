"""Flask glue: the extension, the webhook blueprint, ``current_billing``, ``requires_feature``.

Install with ``pip install "billingkit[flask]"``.

::

    from flask import Flask, session
    from billingkit.contrib.flask import BillingKit, current_billing, requires_feature

    app = Flask(__name__)
    app.config.update(
        BILLING_PLANS=[...],                       # PlanDefinition objects or dicts
        STRIPE_API_KEY="sk_test_...",
        STRIPE_WEBHOOK_SECRET="whsec_...",
        BILLING_DATABASE_URL="sqlite:///billing.sqlite3",
    )
    BillingKit(app, user_id=lambda: session.get("user_id"))   # POST /webhooks/stripe

    @app.get("/export")
    @requires_feature("exports")
    def export(): ...

The extension builds one ``Billing`` per app from ``app.config`` (see
``billing_from_config``), or takes one built by the app (``BillingKit(app,
billing=...)``: the fake Stripe in tests, custom wiring). It registers the blueprint
``webhook_blueprint``, whose endpoint hands the raw body to
``handle_http`` and answers what it says (400 bad signature
or payload, 200 processed/duplicate/ignored/stale, 500 failure). A body over
``BillingConfig.webhook_max_body_bytes`` is refused with 400 without being buffered: on its
``Content-Length``, else while it is read in chunks.

This is the only module of billingkit that imports Flask.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import wraps
from typing import Any, TypeVar, cast

from billingkit._optional import requires_extra
from billingkit.composition import Billing
from billingkit.config import BillingConfig
from billingkit.contrib import BodyTooLarge, declared_too_large, read_capped, too_large
from billingkit.errors import ConfigurationError
from billingkit.services.customers import BillingDetails

with requires_extra("flask", "flask", "werkzeug"):
    from flask import Blueprint, Flask, Response, abort, current_app, request
    from flask.typing import ResponseReturnValue
    from werkzeug.local import LocalProxy

__all__ = [
    "EXTENSION_KEY",
    "WEBHOOK_ENDPOINT",
    "BillingKit",
    "billing_from_config",
    "current_billing",
    "current_billing_details",
    "requires_feature",
    "webhook_blueprint",
]

#: Where the extension keeps its state: ``app.extensions["billingkit"]``.
EXTENSION_KEY = "billingkit"
#: The webhook view's endpoint name (exempt it from CSRF protection, e.g. Flask-WTF's).
WEBHOOK_ENDPOINT = "billingkit.stripe_webhook"

F = TypeVar("F", bound=Callable[..., Any])
#: Answers a request denied by ``requires_feature``: ``(feature, details)`` -> response;
#: ``details`` is ``None`` when nobody is logged in.
DeniedHandler = Callable[[str, "BillingDetails | None"], ResponseReturnValue]


@dataclass(frozen=True)
class _State:
    billing: Billing
    user_id: Callable[[], str | None] | None
    denied: DeniedHandler | None


def billing_from_config(config: Mapping[str, Any]) -> Billing:
    """Build the services from Flask settings (production wiring: Stripe and SQL).

    Keys:

    ``BILLING_PLANS`` (required)
        The plans: ``PlanDefinition`` objects or dicts of their fields.
    ``BILLING_FREE_PLAN``
        Key of the plan of users without a subscription.
    ``STRIPE_API_KEY``, ``STRIPE_WEBHOOK_SECRET`` (required)
        The secret key and the endpoint's signing secret (a list during rotation).
    ``BILLING_DATABASE_URL`` (required)
        SQLAlchemy URL of the billing tables (``billingkit[sqlalchemy]``).
    ``BILLING_RUN_MIGRATIONS``
        ``True``: apply billingkit's migrations at start-up (handy on SQLite and in
        development; in production run them as a deployment step). Default ``False``.
    ``BILLING_OPTIONS``
        Any other ``BillingConfig`` field, e.g.
        ``{"access": {"past_due_grace_days": 3}, "livemode": True}``.

    Raises ``ConfigurationError`` for a missing or invalid setting.
    """
    missing = [
        key
        for key in (
            "BILLING_PLANS",
            "STRIPE_API_KEY",
            "STRIPE_WEBHOOK_SECRET",
            "BILLING_DATABASE_URL",
        )
        if not config.get(key)
    ]
    if missing:
        raise ConfigurationError(
            f"set {', '.join(missing)} in app.config, or pass BillingKit(app, billing=...)"
        )
    options = dict(config.get("BILLING_OPTIONS") or {})
    billing_config = BillingConfig(
        **options,
        plans=config["BILLING_PLANS"],
        free_plan=config.get("BILLING_FREE_PLAN"),
        webhook_secrets=config["STRIPE_WEBHOOK_SECRET"],
    )
    from billingkit.adapters.sqlalchemy import SqlAlchemyRepository, upgrade
    from billingkit.adapters.stripe_sdk import StripeSdkGateway

    repository = SqlAlchemyRepository(config["BILLING_DATABASE_URL"])
    if config.get("BILLING_RUN_MIGRATIONS"):
        upgrade(repository.engine)
    gateway = StripeSdkGateway.from_api_key(config["STRIPE_API_KEY"])
    return Billing.build(billing_config, gateway, repository)


def _stripe_webhook() -> Response:
    """Stripe's webhook: the raw body (capped, streamed) and signature to ``handle_http``."""
    billing = _state().billing
    cap = billing.config.webhook_max_body_bytes
    try:
        if declared_too_large(request.content_length, cap):
            raise BodyTooLarge
        body = read_capped(request.stream.read, cap)
    except BodyTooLarge:
        refused = too_large(cap)
        response = Response(refused.body, status=refused.status, content_type=refused.content_type)
        response.headers["Connection"] = "close"  # the rest of the body is left unread
        return response
    answer = billing.webhooks.handle_http(body, request.headers.get("Stripe-Signature"))
    return Response(answer.body, status=answer.status, content_type=answer.content_type)


def webhook_blueprint(path: str = "/webhooks/stripe") -> Blueprint:
    """A blueprint named ``billingkit`` with ``POST path``: Stripe's webhook endpoint.

    ``BillingKit`` registers one; register it yourself only with ``webhook_path=None``.
    """
    blueprint = Blueprint("billingkit", __name__)
    blueprint.add_url_rule(
        path, endpoint="stripe_webhook", view_func=_stripe_webhook, methods=["POST"]
    )
    return blueprint


class BillingKit:
    """The Flask extension: one ``Billing`` per app, plus the webhook route.

    Args:
        app: the app, or ``None`` to call ``init_app`` later (app factories).
        billing: services built by the app; default: built from ``app.config`` by
            ``billing_from_config`` in ``init_app``.
        user_id: returns the current user's billing id (or ``None`` when logged out);
            needed by ``requires_feature`` and ``current_billing_details``.
        denied: answers a request ``requires_feature`` refuses; default ``abort(401)``
            when logged out, ``abort(403)`` without the feature.
        webhook_path: where Stripe POSTs events; ``None`` registers no route.
    """

    def __init__(
        self,
        app: Flask | None = None,
        *,
        billing: Billing | None = None,
        user_id: Callable[[], str | None] | None = None,
        denied: DeniedHandler | None = None,
        webhook_path: str | None = "/webhooks/stripe",
    ) -> None:
        self._billing = billing
        self._user_id = user_id
        self._denied = denied
        self._webhook_path = webhook_path
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask, *, billing: Billing | None = None) -> None:
        """Attach billingkit to ``app``: its services and the webhook blueprint.

        Raises ``ConfigurationError`` when ``app`` already has one.
        """
        if EXTENSION_KEY in app.extensions:
            raise ConfigurationError("billingkit is already initialised on this app")
        billing = billing or self._billing or billing_from_config(app.config)
        app.extensions[EXTENSION_KEY] = _State(billing, self._user_id, self._denied)
        if self._webhook_path is not None:
            app.register_blueprint(webhook_blueprint(self._webhook_path))

    @staticmethod
    def billing_for(app: Flask) -> Billing:
        """The services of ``app`` (outside a request: CLI commands, workers, tests)."""
        state = app.extensions.get(EXTENSION_KEY)
        if not isinstance(state, _State):
            raise ConfigurationError("billingkit is not initialised on this app: BillingKit(app)")
        return state.billing


def _state() -> _State:
    state = current_app.extensions.get(EXTENSION_KEY)
    if not isinstance(state, _State):
        raise ConfigurationError("billingkit is not initialised on this app: BillingKit(app)")
    return state


def _current_billing() -> Billing:
    return _state().billing


#: The ``Billing`` of the app handling the current request (a proxy, like
#: ``flask.current_app``): ``current_billing.customers.for_user(user_id)``.
current_billing: Billing = cast(Billing, LocalProxy(_current_billing))


def current_billing_details() -> BillingDetails | None:
    """The logged-in user's ``BillingDetails`` (no Stripe call), or ``None``.

    Read from the repository on each call. Raises
    ``ConfigurationError`` without ``BillingKit(user_id=...)``.
    """
    state = _state()
    if state.user_id is None:
        raise ConfigurationError("pass BillingKit(app, user_id=...) to know the current user")
    user_id = state.user_id()
    if user_id is None:
        return None
    return state.billing.customers.for_user(user_id)


def requires_feature(feature: str) -> Callable[[F], F]:
    """Let the view run only for a logged-in user whose plan grants ``feature`` now.

    Access follows ``has_feature`` (status, grace period).
    Otherwise the extension's ``denied`` handler answers, by default ``401`` when logged
    out and ``403`` without the feature.
    """

    def decorate(view: F) -> F:
        @wraps(view)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            details = current_billing_details()
            if details is not None and details.has_feature(feature):
                return view(*args, **kwargs)
            denied = _state().denied
            if denied is not None:
                return denied(feature, details)
            if details is None:
                abort(401)
            abort(403, description=f"Your plan does not include {feature!r}.")

        return cast(F, guarded)

    return decorate
