"""The FastAPI example: a JSON billing API over billingkit's services.

``create_app(billing, base_url=...)`` returns the app; the services come from the caller
(``build_billing`` below from the environment in production, the fake Stripe in tests), so
this module is all a FastAPI user writes. billingkit's FastAPI glue does the rest:
:func:`~billingkit.contrib.fastapi.init_app` stores the services and adds
``POST /webhooks/stripe`` (raw body, size cap, thread pool); ``BillingDep`` hands them to
endpoints; :func:`~billingkit.contrib.fastapi.requires_feature` guards one.

Endpoints are plain ``def``: FastAPI runs them in its thread pool, because billingkit's
services block on Stripe and the database. Authentication is a stand-in: the ``X-User-Id``
header is the user id (use your own).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from billingkit import Billing, BillingConfig, PlanDefinition
from billingkit.contrib.fastapi import BillingDep, init_app, requires_feature
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
    UnknownPlanError,
)

__all__ = ["PLANS", "CheckoutRequest", "build_billing", "create_app", "current_user_id"]

logger = logging.getLogger("fastapi_app")

#: The plans this API sells (lookup keys; create prices with them in Stripe test mode).
PLANS = (
    PlanDefinition(key="free", name="Free", limits={"projects": 1}),
    PlanDefinition(
        key="pro",
        name="Pro",
        prices={"month": "fastapi_demo_pro_monthly", "year": "fastapi_demo_pro_yearly"},
        features=("exports",),
        limits={"projects": None},
    ),
)


class CheckoutRequest(BaseModel):
    """The body of ``POST /billing/checkout``: a plan key and an interval, never a price."""

    plan: str
    interval: str = "month"


def current_user_id(x_user_id: Annotated[str | None, Header()] = None) -> str | None:
    """Stand-in authentication: the ``X-User-Id`` header (``None``: logged out)."""
    return x_user_id or None


def logged_in(user_id: Annotated[str | None, Depends(current_user_id)]) -> str:
    """The user id, or 401."""
    if user_id is None:
        raise HTTPException(status_code=401, detail="Log in first.")
    return user_id


User = Annotated[str, Depends(logged_in)]

# Each error class: status and a message for the client (Stripe's own text goes to the log).
_ERRORS: tuple[tuple[type[BillingError], int, str], ...] = (
    (CheckoutOwnershipError, 403, "This checkout was started by another user."),
    (UnknownPlanError, 404, "That plan is not for sale."),
    (NoCustomerError, 404, "Subscribe to a plan first."),
    (AlreadySubscribedError, 409, "You already have a subscription: use the billing portal."),
    (InvalidInputError, 400, "The request is not valid."),
    (GatewayCardError, 402, "The card was declined."),
)


def _billing_error(request: Request, error: Exception) -> JSONResponse:
    status, message = 500, "Something went wrong; try again shortly."
    for kind, kind_status, kind_message in _ERRORS:
        if isinstance(error, kind):
            status, message = kind_status, kind_message
            break
    else:
        if isinstance(error, GatewayError | PricesUnavailableError):
            status = 503 if error.retryable else 502
            message = "Stripe could not be reached; try again shortly."
        elif isinstance(error, LookupError):
            status, message = 404, "Not found."
    logger.log(
        logging.WARNING if status < 500 else logging.ERROR,
        "%s answered %d: %s: %s", request.url.path, status, type(error).__name__, error,
    )  # fmt: skip
    return JSONResponse({"error": message}, status_code=status)


def build_billing(settings: Mapping[str, str]) -> Billing:
    """Production wiring from settings (e.g. ``os.environ``): Stripe and SQL.

    Reads ``STRIPE_API_KEY``, ``STRIPE_WEBHOOK_SECRET`` and ``BILLING_DATABASE_URL``.
    """
    missing = [
        name
        for name in ("STRIPE_API_KEY", "STRIPE_WEBHOOK_SECRET", "BILLING_DATABASE_URL")
        if not settings.get(name)
    ]
    if missing:
        raise ConfigurationError(f"set {', '.join(missing)}")
    from billingkit import SqlAlchemyRepository, StripeSdkGateway

    config = BillingConfig(
        plans=PLANS, free_plan="free", webhook_secrets=[settings["STRIPE_WEBHOOK_SECRET"]]
    )
    return Billing.build(
        config,
        StripeSdkGateway.from_api_key(settings["STRIPE_API_KEY"]),
        SqlAlchemyRepository(settings["BILLING_DATABASE_URL"]),
    )


def create_app(billing: Billing, *, base_url: str) -> FastAPI:
    """The API over ``billing``; ``base_url`` is where browsers reach it (Stripe's redirects)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        billing.close()  # at shutdown: the repository's connections

    app = FastAPI(title="billingkit FastAPI example", lifespan=lifespan)
    init_app(app, billing)  # app.state.billing and POST /webhooks/stripe
    app.add_exception_handler(BillingError, _billing_error)

    @app.get("/pricing")
    def pricing(billing: BillingDep) -> list[dict[str, Any]]:
        return [
            {
                "key": plan.key,
                "name": plan.name,
                "features": list(plan.features),
                "prices": {
                    interval.value: price.amount.format() if price.amount else None
                    for interval, price in plan.prices.items()
                },
            }
            for plan in billing.catalog.plans()
        ]

    @app.post("/billing/checkout")
    def start_checkout(body: CheckoutRequest, billing: BillingDep, user: User) -> dict[str, str]:
        start = billing.checkout.start_checkout(
            user_id=user,
            email=None,
            plan_key=body.plan,
            interval=body.interval,
            success_url=f"{base_url}/billing/success?session_id={{CHECKOUT_SESSION_ID}}",
            cancel_url=f"{base_url}/pricing",
        )
        return {"session_id": start.session_id, "url": start.url}  # the client redirects

    @app.get("/billing/success")
    def checkout_success(session_id: str, billing: BillingDep, user: User) -> dict[str, Any]:
        confirmation = billing.checkout.confirm_checkout(session_id, user)
        status = confirmation.subscription_status
        return {
            "complete": confirmation.is_complete,
            "plan": confirmation.plan_key,
            "subscription_status": status.value if status else None,
        }

    @app.get("/account")
    def account(billing: BillingDep, user: User) -> dict[str, Any]:
        details = billing.customers.for_user(user)  # no Stripe call
        return {
            "plan": details.plan_key,
            "status": details.status.value if details.status else None,
            "has_access": details.has_access,
            "renews_at": details.current_period_end,
            "cancel_at_period_end": details.cancel_at_period_end,
            "features": sorted(details.plan.features)
            if details.has_access and details.plan
            else [],
        }

    @app.post("/billing/portal")
    def billing_portal(billing: BillingDep, user: User) -> dict[str, str]:
        return {"url": billing.checkout.open_billing_portal(user, f"{base_url}/account")}

    @app.get("/exports", dependencies=[requires_feature("exports", user_id=current_user_id)])
    def exports() -> dict[str, str]:
        return {"export": "projects.csv"}

    return app
