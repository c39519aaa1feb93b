"""FastAPI glue: the webhook router and the ``get_billing`` and ``requires_feature`` dependencies.

Install with ``pip install "billingkit[fastapi]"``.

::

    from fastapi import Depends, FastAPI
    from billingkit.contrib.fastapi import BillingDep, init_app, requires_feature

    app = FastAPI()
    init_app(app, billing)          # app.state.billing + POST /webhooks/stripe

    @app.get("/account")
    def account(billing: BillingDep, user_id: str = Depends(current_user_id)):
        return billing.customers.for_user(user_id).model_dump()

    @app.get("/export", dependencies=[requires_feature("exports", user_id=current_user_id)])
    def export(): ...

billingkit's services are synchronous (blocking I/O to Stripe and the database): use them
from plain ``def`` endpoints and dependencies, which FastAPI runs in its thread pool. The
webhook endpoint reads the body asynchronously, in chunks, refusing one over
``BillingConfig.webhook_max_body_bytes`` (on its ``Content-Length``, else as soon as the cap
is passed, without buffering the rest), then runs
``handle_http`` in the thread pool and answers what it says
(400 bad signature or payload, 200 processed/duplicate/ignored/stale, 500 failure).

This is the only module of billingkit that imports FastAPI or Starlette.
"""

# No ``from __future__ import annotations``: FastAPI reads these signatures at runtime.

from collections.abc import Callable
from typing import Annotated, Any

from billingkit._optional import requires_extra
from billingkit.composition import Billing
from billingkit.contrib import BodyTooLarge, declared_too_large, too_large
from billingkit.errors import ConfigurationError
from billingkit.services.customers import BillingDetails
from billingkit.services.webhooks import WebhookResponse

with requires_extra("fastapi", "fastapi", "starlette"):
    from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request, Response
    from starlette.concurrency import run_in_threadpool

__all__ = [
    "BillingDep",
    "get_billing",
    "init_app",
    "read_body_capped",
    "requires_feature",
    "webhook_router",
]


def get_billing(request: Request) -> Billing:
    """Dependency: the ``Billing`` stored by ``init_app``.

    Raises ``ConfigurationError`` when the app has none.
    """
    billing = getattr(request.app.state, "billing", None)
    if not isinstance(billing, Billing):
        raise ConfigurationError("no billingkit services on this app: call init_app(app, billing)")
    return billing


#: ``billing: BillingDep`` in an endpoint's parameters gives it the app's services.
BillingDep = Annotated[Billing, Depends(get_billing)]


async def read_body_capped(request: Request, max_bytes: int) -> bytes:
    """The raw request body, read chunk by chunk; at most ``max_bytes``.

    Raises ``BodyTooLarge`` when the ``Content-Length`` or the bytes
    received pass the cap; the rest of the body is then never read.
    """
    if declared_too_large(request.headers.get("content-length"), max_bytes):
        raise BodyTooLarge(f"body larger than {max_bytes} bytes")
    parts: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise BodyTooLarge(f"body larger than {max_bytes} bytes")
        parts.append(chunk)
    return b"".join(parts)


def _respond(answer: WebhookResponse) -> Response:
    return Response(answer.body, status_code=answer.status, media_type=answer.content_type)


async def _stripe_webhook(request: Request) -> Response:
    billing = get_billing(request)
    cap = billing.config.webhook_max_body_bytes
    try:
        body = await read_body_capped(request, cap)
    except BodyTooLarge:
        refused = _respond(too_large(cap))
        refused.headers["Connection"] = "close"  # the rest of the body is left unread
        return refused
    signature = request.headers.get("stripe-signature")
    answer = await run_in_threadpool(billing.webhooks.handle_http, body, signature)
    return _respond(answer)


def webhook_router(path: str = "/webhooks/stripe") -> APIRouter:
    """An ``APIRouter`` with ``POST path``: Stripe's webhook endpoint.

    Its services come from ``get_billing`` (``app.state.billing``). Left out of the
    OpenAPI schema: Stripe, not your API's clients, calls it.
    """
    router = APIRouter()
    router.add_api_route(
        path,
        _stripe_webhook,
        methods=["POST"],
        name="stripe_webhook",
        include_in_schema=False,
        response_class=Response,
    )
    return router


def init_app(
    app: FastAPI, billing: Billing, *, webhook_path: str | None = "/webhooks/stripe"
) -> None:
    """Store ``billing`` on ``app.state.billing`` and include ``webhook_router``.

    Build ``billing`` once at start-up (``Billing.build``); close it at shutdown
    (``billing.close()``, e.g. in the app's lifespan). ``webhook_path=None`` adds no route.
    """
    app.state.billing = billing
    if webhook_path is not None:
        app.include_router(webhook_router(webhook_path))


def requires_feature(feature: str, *, user_id: Callable[..., str | None]) -> Any:
    """A dependency letting the endpoint run only if the user's plan grants ``feature``.

    ``user_id`` is your authentication dependency: it returns the current user's billing id,
    or ``None`` when nobody is logged in (answered 401). A user without the feature (see
    ``has_feature``) is answered 403. Use it in
    ``dependencies=[...]``, or as a parameter default to receive the
    ``BillingDetails``.
    """

    def check_feature(
        billing: BillingDep, user: Annotated[str | None, Depends(user_id)]
    ) -> BillingDetails:
        if user is None:
            raise HTTPException(status_code=401, detail="Log in first.")
        details = billing.customers.for_user(user)
        if not details.has_feature(feature):
            raise HTTPException(status_code=403, detail=f"Your plan does not include {feature!r}.")
        return details

    return Depends(check_feature)
