"""``StripeSdkGateway``: the real ``StripeGateway``, over the ``stripe`` SDK.

This is the only module in billingkit that imports ``stripe``. It wraps one injected
``stripe.StripeClient`` (one client per configuration, no module-level ``stripe.api_key``),
pins the Stripe API version on every request, maps every response to billingkit's own values
through ``billingkit.stripe_objects`` (never returning SDK objects) and every SDK exception
to the ``GatewayError`` tree.

Build it in the app's composition root::

    gateway = StripeSdkGateway.from_api_key(settings.STRIPE_SECRET_KEY)

or around a client you configured yourself::

    gateway = StripeSdkGateway(stripe.StripeClient(key, max_network_retries=3))

Catalog prices cost one request for a typical catalog: lookup keys are sent to
``GET /v1/prices`` in chunks of ``LOOKUP_KEYS_PER_REQUEST`` (Stripe's limit), and price ids
(which ``prices.list`` cannot filter on) are found by listing active prices, 100 per page, with
their products expanded, until every requested id has been seen.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any, TypeVar

import stripe
from stripe.params import (
    CustomerCreateParams,
    CustomerListParams,
    CustomerRetrieveParams,
    CustomerUpdateParams,
    CustomerUpdateParamsInvoiceSettings,
    InvoiceCreatePreviewParams,
    InvoiceCreatePreviewParamsDiscount,
    InvoiceCreatePreviewParamsSubscriptionDetails,
    InvoiceCreatePreviewParamsSubscriptionDetailsItem,
    PriceListParams,
    PromotionCodeListParams,
    SubscriptionCancelParams,
    SubscriptionListParams,
    SubscriptionResumeParams,
    SubscriptionRetrieveParams,
    SubscriptionScheduleCreateParams,
    SubscriptionScheduleReleaseParams,
    SubscriptionScheduleRetrieveParams,
    SubscriptionScheduleUpdateParams,
    SubscriptionScheduleUpdateParamsPhase,
    SubscriptionUpdateParams,
    SubscriptionUpdateParamsItem,
    WebhookEndpointListParams,
)
from stripe.params.billing import MeterEventCreateParams
from stripe.params.billing_portal import SessionCreateParams as PortalSessionCreateParams
from stripe.params.checkout import (
    SessionCreateParams,
    SessionCreateParamsCustomerUpdate,
    SessionCreateParamsDiscount,
    SessionCreateParamsLineItem,
    SessionCreateParamsSetupIntentData,
    SessionCreateParamsSubscriptionData,
    SessionRetrieveParams,
)

from billingkit.domain import Price, Subscription
from billingkit.errors import (
    GatewayAuthenticationError,
    GatewayCardError,
    GatewayConnectionError,
    GatewayError,
    GatewayInvalidRequestError,
    GatewayNotFoundError,
    GatewayRateLimitError,
    GatewayServerError,
    WebhookPayloadError,
)
from billingkit.ports import (
    LIST_PAGE_SIZE,
    CheckoutSession,
    CheckoutSessionRequest,
    InvoicePreview,
    InvoicePreviewRequest,
    MeterEvent,
    Page,
    PortalSession,
    PromotionCode,
    ScheduledChange,
    SetupSessionRequest,
    StripeCustomer,
    StripeGateway,
    SubscriptionSchedule,
    SubscriptionUpdate,
    SubscriptionUpdateResult,
    WebhookEndpoint,
)
from billingkit.stripe_objects import (
    checkout_session_from_stripe,
    customer_from_stripe,
    invoice_preview_from_stripe,
    meter_event_from_stripe,
    portal_session_from_stripe,
    price_from_stripe,
    promotion_code_from_stripe,
    subscription_from_stripe,
    subscription_schedule_from_stripe,
    subscription_update_result_from_stripe,
    webhook_endpoint_from_stripe,
)

__all__ = ["LOOKUP_KEYS_PER_REQUEST", "PRICES_PAGE_SIZE", "StripeSdkGateway", "sdk_api_version"]

#: Stripe's ``prices.list`` accepts at most this many ``lookup_keys`` per request.
LOOKUP_KEYS_PER_REQUEST = 10
#: Page size used when listing prices (Stripe's maximum).
PRICES_PAGE_SIZE = 100

# Secret and restricted keys, also in the masked form Stripe echoes ("sk_test_********1234").
_T = TypeVar("_T")
_KEY_PATTERN = re.compile(r"(?:sk|rk)_(?:test|live)_[A-Za-z0-9*]+")
# Bearer tokens a proxy page may echo back from the request.
_BEARER_PATTERN = re.compile(r"(?i)bearer\s+\S+")
_TAG_PATTERN = re.compile(r"<[^>]*>")
_SPACE_PATTERN = re.compile(r"\s+")
#: Characters of a non-Stripe error body quoted in a GatewayError's message.
_BODY_EXCERPT_CHARS = 120


def sdk_api_version() -> str:
    """The Stripe API version the installed ``stripe`` package pins (its default)."""
    from stripe._api_version import _ApiVersion  # the SDK's own pin; no public alias exists

    return _ApiVersion.CURRENT


def _redact(text: str) -> str:
    return _KEY_PATTERN.sub("[redacted key]", _BEARER_PATTERN.sub("Bearer [redacted]", text))


def _excerpt(body: str | None) -> str:
    """A short, one-line, redacted excerpt of an error body that is not Stripe's JSON.

    HTML tags are dropped (a proxy's error page then reads as its title and text), runs of
    whitespace become one space, and the result is cut to 120 characters.
    """
    text = _SPACE_PATTERN.sub(" ", _TAG_PATTERN.sub(" ", body or "")).strip()
    text = _redact(text)
    if not text:
        return "(empty body)"
    if len(text) > _BODY_EXCERPT_CHARS:
        text = text[:_BODY_EXCERPT_CHARS].rstrip() + "..."
    return repr(text)


class StripeSdkGateway(StripeGateway):
    """The ``StripeGateway`` that talks to Stripe through its SDK.

    Args:
        client: a configured ``stripe.StripeClient``; the gateway keeps no other state
            and never touches ``stripe``'s module-level configuration.
        api_version: the Stripe API version sent with every request; defaults to the one the
            installed ``stripe`` package pins (``sdk_api_version``). Webhook endpoints
            should be created with the same version.
    """

    def __init__(self, client: stripe.StripeClient, *, api_version: str | None = None) -> None:
        self._client = client
        self._api_version = api_version or sdk_api_version()

    @classmethod
    def from_api_key(
        cls,
        api_key: str,
        *,
        api_version: str | None = None,
        max_network_retries: int = 2,
        base_url: str | None = None,
        proxy: str | None = None,
        http_client: stripe.HTTPClient | None = None,
    ) -> StripeSdkGateway:
        """Build a gateway with its own ``stripe.StripeClient``.

        Args:
            api_key: a secret (``sk_...``) or restricted (``rk_...``) key.
            api_version: see the class; defaults to the SDK's pinned version.
            max_network_retries: retries of failed requests (connection errors, 409, 5xx),
                done by the SDK with the same idempotency key.
            base_url: the API base of a Stripe-compatible server (e.g. ``stripe-mock``),
                ``https://api.stripe.com`` when ``None``.
            proxy: an HTTP proxy URL for the SDK's default HTTP client.
            http_client: a custom ``stripe.HTTPClient`` (exclusive with ``proxy``).
        """
        version = api_version or sdk_api_version()
        client = stripe.StripeClient(
            api_key,
            stripe_version=version,
            max_network_retries=max_network_retries,
            base_addresses={"api": base_url} if base_url else None,
            proxy=proxy,
            http_client=http_client,
        )
        return cls(client, api_version=version)

    @property
    def api_version(self) -> str:
        """The Stripe API version sent with every request."""
        return self._api_version

    def __repr__(self) -> str:
        return f"StripeSdkGateway(api_version={self._api_version!r})"

    # ----------------------------------------------------------------------------- helpers

    def _options(self, idempotency_key: str | None = None) -> stripe.RequestOptions:
        options: stripe.RequestOptions = {"stripe_version": self._api_version}
        if idempotency_key is not None:
            options["idempotency_key"] = idempotency_key
        return options

    # ----------------------------------------------------------------------------- customers

    def create_customer(
        self,
        *,
        user_id: str,
        email: str | None,
        idempotency_key: str,
        metadata: Mapping[str, str] | None = None,
    ) -> StripeCustomer:
        """Create a customer whose metadata carries ``user_id`` (``POST /v1/customers``)."""
        params: CustomerCreateParams = {"metadata": {**(metadata or {}), "user_id": user_id}}
        if email is not None:
            params["email"] = email
        with _translated("create customer"):
            customer = self._client.v1.customers.create(
                params=params, options=self._options(idempotency_key)
            )
        return _mapped(customer_from_stripe, customer.to_dict())

    def retrieve_customer(self, customer_id: str) -> StripeCustomer:
        """Fetch a customer; a deleted one comes back with ``deleted=True``."""
        params: CustomerRetrieveParams = {}
        with _translated("retrieve customer"):
            customer = self._client.v1.customers.retrieve(
                customer_id, params=params, options=self._options()
            )
        return _mapped(customer_from_stripe, customer.to_dict())

    # ----------------------------------------------------------------------------- checkout

    def create_checkout_session(self, request: CheckoutSessionRequest) -> CheckoutSession:
        """Create a Checkout Session for one price (``POST /v1/checkout/sessions``)."""
        line_item: SessionCreateParamsLineItem = {"price": request.price_id}
        if not request.metered:  # a metered price takes no quantity
            line_item["quantity"] = request.quantity
        params: SessionCreateParams = {
            "mode": request.mode,
            "customer": request.customer_id,
            "line_items": [line_item],
            "success_url": request.success_url,
            "cancel_url": request.cancel_url,
            "client_reference_id": request.client_reference_id,
        }
        if request.metadata:
            params["metadata"] = dict(request.metadata)
        if request.allow_promotion_codes:
            params["allow_promotion_codes"] = True
        _add_checkout_options(params, request)
        if request.mode == "subscription":
            subscription_data: SessionCreateParamsSubscriptionData = {}
            if request.subscription_metadata:
                subscription_data["metadata"] = dict(request.subscription_metadata)
            if request.trial_days is not None:
                subscription_data["trial_period_days"] = request.trial_days
            if request.trial_end_behavior is not None:
                subscription_data["trial_settings"] = {
                    "end_behavior": {"missing_payment_method": request.trial_end_behavior}
                }
            if subscription_data:
                params["subscription_data"] = subscription_data
        with _translated("create checkout session"):
            session = self._client.v1.checkout.sessions.create(
                params=params, options=self._options(request.idempotency_key)
            )
        return _mapped(checkout_session_from_stripe, session.to_dict())

    def retrieve_checkout_session(self, session_id: str) -> CheckoutSession:
        """Fetch a Checkout Session with its subscription expanded, in one request."""
        params: SessionRetrieveParams = {"expand": ["subscription"]}
        with _translated("retrieve checkout session"):
            session = self._client.v1.checkout.sessions.retrieve(
                session_id, params=params, options=self._options()
            )
        return _mapped(checkout_session_from_stripe, session.to_dict())

    def create_billing_portal_session(
        self, *, customer_id: str, return_url: str, idempotency_key: str | None = None
    ) -> PortalSession:
        """Create a billing-portal session (``POST /v1/billing_portal/sessions``)."""
        params: PortalSessionCreateParams = {"customer": customer_id, "return_url": return_url}
        with _translated("create billing portal session"):
            session = self._client.v1.billing_portal.sessions.create(
                params=params, options=self._options(idempotency_key)
            )
        return _mapped(portal_session_from_stripe, session.to_dict())

    # ----------------------------------------------------------------------------- prices

    def list_prices(
        self, *, price_ids: Sequence[str] = (), lookup_keys: Sequence[str] = ()
    ) -> list[Price]:
        """Fetch the given active prices with their products, in as few requests as possible.

        ``prices.list`` can filter by lookup keys (at most ``LOOKUP_KEYS_PER_REQUEST`` per
        request) but not by ids. So when ids are asked for, active prices are listed 100 per
        page (products expanded) until every id and key was seen or the list ends: one request
        for a catalog in an account with up to 100 active prices. Lookup keys still missing
        after a listing that stopped early are then asked for by key; with lookup keys only,
        one request per ``LOOKUP_KEYS_PER_REQUEST`` keys. Unknown or inactive ids and keys
        are simply absent from the result.
        """
        ids = set(price_ids)
        keys = sorted(set(lookup_keys))  # sorted: the same catalog always sends the same query
        found: dict[str, Price] = {}
        if ids:
            wanted_keys = set(keys)
            seen_keys: set[str | None] = set()
            listing: PriceListParams = {
                "active": True,
                "expand": ["data.product"],
                "limit": PRICES_PAGE_SIZE,
            }
            for page in self._price_pages(listing):
                for price in page:
                    if price.id in ids or price.lookup_key in wanted_keys:
                        found[price.id] = price
                        seen_keys.add(price.lookup_key)
                if ids <= found.keys() and wanted_keys <= seen_keys:
                    break
            else:  # the listing ended: every active price was seen, missing keys don't exist
                seen_keys.update(wanted_keys)
            keys = [key for key in keys if key not in seen_keys]
        for start in range(0, len(keys), LOOKUP_KEYS_PER_REQUEST):
            by_key: PriceListParams = {
                "active": True,
                "lookup_keys": keys[start : start + LOOKUP_KEYS_PER_REQUEST],
                "expand": ["data.product"],
                "limit": PRICES_PAGE_SIZE,
            }
            for page in self._price_pages(by_key):
                found.update((price.id, price) for price in page)
        return list(found.values())

    def _price_pages(self, params: PriceListParams) -> Iterator[list[Price]]:
        """Yield ``GET /v1/prices`` pages as billingkit prices, one request per page."""
        page_params: PriceListParams = {**params}
        while True:
            with _translated("list prices"):
                page = self._client.v1.prices.list(params=page_params, options=self._options())
            data: list[dict[str, Any]] = page.to_dict().get("data") or []
            yield [_mapped(price_from_stripe, raw) for raw in data]
            if not page.has_more or not data:
                return
            page_params = {**params, "starting_after": str(data[-1]["id"])}

    # ----------------------------------------------------------------------------- subscriptions

    def retrieve_subscription(self, subscription_id: str) -> Subscription:
        """Fetch a subscription's current state (``watermark`` left at 0)."""
        params: SubscriptionRetrieveParams = {}
        with _translated("retrieve subscription"):
            subscription = self._client.v1.subscriptions.retrieve(
                subscription_id, params=params, options=self._options()
            )
        return _mapped(subscription_from_stripe, subscription.to_dict())

    # ----------------------------------------------------------------------------- management

    def modify_subscription(self, update: SubscriptionUpdate) -> SubscriptionUpdateResult:
        """``POST /v1/subscriptions/{id}`` with the latest invoice expanded; one request.

        Only the fields set on ``update`` are sent (the item by id, so it is changed, not
        added). ``payment_intent_status`` stays ``None``: since basil the payment intent is
        no longer on the invoice, and the hosted invoice URL is where the customer pays.
        """
        params: SubscriptionUpdateParams = {"expand": ["latest_invoice"]}
        if update.item_id is not None and (
            update.price_id is not None or update.quantity is not None
        ):
            item: SubscriptionUpdateParamsItem = {"id": update.item_id}
            if update.price_id is not None:
                item["price"] = update.price_id
            if update.quantity is not None:
                item["quantity"] = update.quantity
            params["items"] = [item]
        if update.proration_behavior is not None:
            params["proration_behavior"] = update.proration_behavior
        if update.proration_date is not None:
            params["proration_date"] = int(update.proration_date.timestamp())
        if update.payment_behavior is not None:
            params["payment_behavior"] = update.payment_behavior
        if update.promotion_code is not None:
            params["discounts"] = [{"promotion_code": update.promotion_code}]
        if update.cancel_at_period_end is not None:
            params["cancel_at_period_end"] = update.cancel_at_period_end
        if update.metadata is not None:
            params["metadata"] = dict(update.metadata)
        with _translated("update subscription"):
            subscription = self._client.v1.subscriptions.update(
                update.subscription_id,
                params=params,
                options=self._options(update.idempotency_key),
            )
        return _mapped(subscription_update_result_from_stripe, subscription.to_dict())

    def cancel_subscription_now(
        self,
        subscription_id: str,
        *,
        prorate: bool = False,
        invoice_now: bool = False,
        idempotency_key: str,
    ) -> Subscription:
        """``DELETE /v1/subscriptions/{id}`` (``prorate``/``invoice_now`` sent when set)."""
        params: SubscriptionCancelParams = {}
        if prorate:
            params["prorate"] = True
        if invoice_now:
            params["invoice_now"] = True
        with _translated("cancel subscription"):
            subscription = self._client.v1.subscriptions.cancel(
                subscription_id, params=params, options=self._options(idempotency_key)
            )
        return _mapped(subscription_from_stripe, subscription.to_dict())

    def resume_paused_subscription(
        self, subscription_id: str, *, idempotency_key: str
    ) -> Subscription:
        """``POST /v1/subscriptions/{id}/resume`` with Stripe's defaults."""
        params: SubscriptionResumeParams = {}
        with _translated("resume subscription"):
            subscription = self._client.v1.subscriptions.resume(
                subscription_id, params=params, options=self._options(idempotency_key)
            )
        return _mapped(subscription_from_stripe, subscription.to_dict())

    def preview_invoice(self, request: InvoicePreviewRequest) -> InvoicePreview:
        """``POST /v1/invoices/create_preview`` for the subscription change; one request."""
        details: InvoiceCreatePreviewParamsSubscriptionDetails = {
            "proration_behavior": request.proration_behavior
        }
        if request.item_id is not None and (
            request.price_id is not None or request.quantity is not None
        ):
            item: InvoiceCreatePreviewParamsSubscriptionDetailsItem = {"id": request.item_id}
            if request.price_id is not None:
                item["price"] = request.price_id
            if request.quantity is not None:
                item["quantity"] = request.quantity
            details["items"] = [item]
        if request.proration_date is not None:
            details["proration_date"] = int(request.proration_date.timestamp())
        if request.cancel_at_period_end is not None:
            details["cancel_at_period_end"] = request.cancel_at_period_end
        params: InvoiceCreatePreviewParams = {
            "customer": request.customer_id,
            "subscription": request.subscription_id,
            "subscription_details": details,
        }
        if request.promotion_code is not None:
            discount: InvoiceCreatePreviewParamsDiscount = {
                "promotion_code": request.promotion_code
            }
            params["discounts"] = [discount]
        with _translated("preview invoice"):
            invoice = self._client.v1.invoices.create_preview(
                params=params, options=self._options()
            )
        charged_now = request.proration_behavior == "always_invoice"
        return _mapped(
            lambda raw: invoice_preview_from_stripe(raw, charged_now=charged_now),
            invoice.to_dict(),
        )

    def schedule_subscription_change(self, change: ScheduledChange) -> SubscriptionSchedule:
        """Create a schedule ``from_subscription`` then set its two phases: two requests.

        Keys ``{key}:create`` and ``{key}:phases``. With ``existing_schedule_id`` the
        schedule is retrieved instead of created (its current phase is needed).
        """
        key = change.idempotency_key
        with _translated("schedule subscription change"):
            if change.existing_schedule_id is None:
                create: SubscriptionScheduleCreateParams = {
                    "from_subscription": change.subscription_id
                }
                schedule = self._client.v1.subscription_schedules.create(
                    params=create, options=self._options(f"{key}:create")
                )
            else:
                retrieve: SubscriptionScheduleRetrieveParams = {}
                schedule = self._client.v1.subscription_schedules.retrieve(
                    change.existing_schedule_id, params=retrieve, options=self._options()
                )
            current = _mapped(subscription_schedule_from_stripe, schedule.to_dict())
            if not current.phases:
                raise GatewayError(f"schedule {current.id} has no phase to keep")
            first = current.phases[0]
            now: SubscriptionScheduleUpdateParamsPhase = {
                "items": [{"price": first.price_id, "quantity": first.quantity}],
                "start_date": int(first.start.timestamp()),
            }
            if first.end is not None:
                now["end_date"] = int(first.end.timestamp())
            later: SubscriptionScheduleUpdateParamsPhase = {
                "items": [{"price": change.price_id, "quantity": change.quantity}],
                "proration_behavior": "none",
            }
            update: SubscriptionScheduleUpdateParams = {
                "end_behavior": "release",
                "phases": [now, later],
            }
            if change.metadata:
                update["metadata"] = dict(change.metadata)
            schedule = self._client.v1.subscription_schedules.update(
                current.id, params=update, options=self._options(f"{key}:phases")
            )
        return _mapped(subscription_schedule_from_stripe, schedule.to_dict())

    def release_subscription_schedule(
        self, schedule_id: str, *, idempotency_key: str
    ) -> SubscriptionSchedule:
        """``POST /v1/subscription_schedules/{id}/release``."""
        params: SubscriptionScheduleReleaseParams = {}
        with _translated("release subscription schedule"):
            schedule = self._client.v1.subscription_schedules.release(
                schedule_id, params=params, options=self._options(idempotency_key)
            )
        return _mapped(subscription_schedule_from_stripe, schedule.to_dict())

    def find_promotion_code(self, code: str) -> PromotionCode | None:
        """``GET /v1/promotion_codes?code=...&active=true`` with the coupon expanded.

        Stripe's ``active`` does not cover expiry or used-up codes, so those are checked
        here too (against the machine's clock).
        """
        params: PromotionCodeListParams = {
            "active": True,
            "code": code,
            "expand": ["data.promotion.coupon"],
            "limit": 10,
        }
        with _translated("find promotion code"):
            page = self._client.v1.promotion_codes.list(params=params, options=self._options())
        now = datetime.now(timezone.utc)
        for raw in page.to_dict().get("data") or []:
            promo = _mapped(promotion_code_from_stripe, raw)
            expired = promo.expires_at is not None and promo.expires_at <= now
            used_up = (
                promo.max_redemptions is not None and promo.times_redeemed >= promo.max_redemptions
            )
            if promo.active and not expired and not used_up:
                return promo
        return None

    # ----------------------------------------------------------------------------- list calls

    def _listed(
        self,
        operation: str,
        fetch: Callable[[str | None], Any],
        parse: Callable[[Mapping[str, Any]], _T],
        starting_after: str | None,
    ) -> Iterator[Page[_T]]:
        """Stripe's pagination with explicit ``starting_after``: one request per page.

        ``fetch(cursor)`` makes the request for the page after ``cursor``. Lazy: a page is
        requested when the iterator reaches it, and only that page is held.
        """
        cursor = starting_after
        while True:
            with _translated(operation):
                listing = fetch(cursor)
            data: list[dict[str, Any]] = listing.to_dict().get("data") or []
            more = bool(listing.has_more) and bool(data)
            cursor = str(data[-1]["id"]) if more else None
            yield Page(
                items=tuple(_mapped(parse, raw) for raw in data), has_more=more, next_cursor=cursor
            )
            if cursor is None:
                return

    def list_subscriptions(
        self,
        *,
        customer_id: str | None = None,
        created_gte: datetime | None = None,
        starting_after: str | None = None,
        page_size: int = LIST_PAGE_SIZE,
    ) -> Iterator[Page[Subscription]]:
        """``GET /v1/subscriptions?status=all``, ``page_size`` per request (at most 100)."""
        params: SubscriptionListParams = {"status": "all", "limit": page_size}
        if customer_id is not None:
            params["customer"] = customer_id
        if created_gte is not None:
            params["created"] = {"gte": int(created_gte.timestamp())}

        def fetch(cursor: str | None) -> Any:
            page: SubscriptionListParams = {**params}
            if cursor is not None:
                page["starting_after"] = cursor
            return self._client.v1.subscriptions.list(params=page, options=self._options())

        return self._listed("list subscriptions", fetch, subscription_from_stripe, starting_after)

    def list_customers(
        self,
        *,
        email: str | None = None,
        created_gte: datetime | None = None,
        starting_after: str | None = None,
        page_size: int = LIST_PAGE_SIZE,
    ) -> Iterator[Page[StripeCustomer]]:
        """``GET /v1/customers`` (deleted customers are never listed), newest first."""
        params: CustomerListParams = {"limit": page_size}
        if email is not None:
            params["email"] = email
        if created_gte is not None:
            params["created"] = {"gte": int(created_gte.timestamp())}

        def fetch(cursor: str | None) -> Any:
            page: CustomerListParams = {**params}
            if cursor is not None:
                page["starting_after"] = cursor
            return self._client.v1.customers.list(params=page, options=self._options())

        return self._listed("list customers", fetch, customer_from_stripe, starting_after)

    def list_webhook_endpoints(
        self, *, starting_after: str | None = None, page_size: int = LIST_PAGE_SIZE
    ) -> Iterator[Page[WebhookEndpoint]]:
        """``GET /v1/webhook_endpoints``, one request per page."""
        params: WebhookEndpointListParams = {"limit": page_size}

        def fetch(cursor: str | None) -> Any:
            page: WebhookEndpointListParams = {**params}
            if cursor is not None:
                page["starting_after"] = cursor
            return self._client.v1.webhook_endpoints.list(params=page, options=self._options())

        return self._listed(
            "list webhook endpoints", fetch, webhook_endpoint_from_stripe, starting_after
        )

    # ----------------------------------------------------------------------------- payment methods

    def create_setup_checkout_session(self, request: SetupSessionRequest) -> CheckoutSession:
        """``POST /v1/checkout/sessions`` in ``setup`` mode, for cards (one request).

        The metadata goes on the session and on its SetupIntent, so the
        ``setup_intent.succeeded`` event carries it.
        """
        setup_data: SessionCreateParamsSetupIntentData = {"metadata": dict(request.metadata)}
        params: SessionCreateParams = {
            "mode": "setup",
            "customer": request.customer_id,
            "allowed_payment_method_types": ["card"],
            "success_url": request.success_url,
            "cancel_url": request.cancel_url,
            "client_reference_id": request.client_reference_id,
            "metadata": dict(request.metadata),
            "setup_intent_data": setup_data,
        }
        with _translated("create setup checkout session"):
            session = self._client.v1.checkout.sessions.create(
                params=params, options=self._options(request.idempotency_key)
            )
        return _mapped(checkout_session_from_stripe, session.to_dict())

    def set_default_payment_method(
        self,
        *,
        customer_id: str,
        payment_method_id: str,
        subscription_ids: Sequence[str] = (),
        idempotency_key: str,
    ) -> None:
        """``POST /v1/customers/{id}`` then ``POST /v1/subscriptions/{id}`` per subscription.

        Keys: ``{idempotency_key}-customer`` and ``{idempotency_key}-{subscription id}``.
        """
        settings: CustomerUpdateParamsInvoiceSettings = {
            "default_payment_method": payment_method_id
        }
        customer_params: CustomerUpdateParams = {"invoice_settings": settings}
        with _translated("set default payment method"):
            self._client.v1.customers.update(
                customer_id,
                params=customer_params,
                options=self._options(f"{idempotency_key}-customer"),
            )
        for subscription_id in subscription_ids:
            sub_params: SubscriptionUpdateParams = {"default_payment_method": payment_method_id}
            with _translated("set subscription default payment method"):
                self._client.v1.subscriptions.update(
                    subscription_id,
                    params=sub_params,
                    options=self._options(f"{idempotency_key}-{subscription_id}"),
                )

    # usage-based billing ---------------------------------------------------------------------

    def create_meter_event(
        self,
        *,
        event_name: str,
        customer_id: str,
        value: int,
        identifier: str,
        timestamp: datetime,
    ) -> MeterEvent:
        """``POST /v1/billing/meter_events``, one event, keyed by its identifier.

        The identifier is also the request's idempotency key (prefixed), so a retried request
        is answered from Stripe's idempotency cache; the identifier alone already keeps the
        usage counted once (Stripe enforces it for at least 24 hours).
        """
        params: MeterEventCreateParams = {
            "event_name": event_name,
            "identifier": identifier,
            "payload": {"stripe_customer_id": customer_id, "value": str(value)},
            "timestamp": int(timestamp.timestamp()),
        }
        with _translated("create meter event"):
            event = self._client.v1.billing.meter_events.create(
                params=params, options=self._options(f"bk-meter-event-{identifier}")
            )
        return _mapped(meter_event_from_stripe, event.to_dict())


# --------------------------------------------------------------------------- mapping


def _mapped(parse: Callable[[Mapping[str, Any]], _T], raw: Mapping[str, Any]) -> _T:
    """Apply a ``billingkit.stripe_objects`` reader; a malformed answer is a GatewayError."""
    try:
        return parse(raw)
    except WebhookPayloadError as exc:
        raise GatewayError(f"Stripe returned an unexpected object: {exc}") from None


def _add_checkout_options(params: SessionCreateParams, request: CheckoutSessionRequest) -> None:
    """Tax, tax ids, billing address, card collection, discount and locale, when asked for."""
    customer_update: SessionCreateParamsCustomerUpdate = {}
    if request.automatic_tax:
        params["automatic_tax"] = {"enabled": True}
        customer_update["address"] = "auto"  # Stripe Tax needs the address on the customer
    if request.tax_id_collection:
        params["tax_id_collection"] = {"enabled": True}
        customer_update["name"] = "auto"  # required with tax ids and an existing customer
    if customer_update:
        params["customer_update"] = customer_update
    if request.billing_address_collection is not None:
        params["billing_address_collection"] = request.billing_address_collection
    if request.payment_method_collection is not None:
        params["payment_method_collection"] = request.payment_method_collection
    discount: SessionCreateParamsDiscount = {}
    if request.coupon is not None:
        discount["coupon"] = request.coupon
    if request.promotion_code is not None:
        discount["promotion_code"] = request.promotion_code
    if discount:
        params["discounts"] = [discount]
    if request.locale is not None:
        params["locale"] = request.locale


@contextmanager
def _translated(operation: str) -> Iterator[None]:
    """Re-raise any SDK exception inside the block as the matching ``GatewayError``."""
    try:
        yield
    except stripe.StripeError as exc:
        raise gateway_error(exc, operation) from None


def gateway_error(exc: stripe.StripeError, operation: str) -> GatewayError:
    """Translate one SDK exception into billingkit's ``GatewayError`` tree.

    The type is chosen from the exception class, Stripe's structured ``code`` and the HTTP
    status, never from message text: any 404 is ``GatewayNotFoundError`` (with or
    without Stripe's ``resource_missing`` code). An answer whose body is not Stripe's JSON
    error object (an HTML page from a proxy, a gateway's own JSON) is classified by its HTTP
    status alone (404 not found, 429 rate limit, 409 and 5xx retryable server errors, any
    other status a plain ``GatewayError``), and its message names the status and quotes
    a short excerpt of the body. Any API key or bearer token in a message (Stripe echoes a
    masked key on 401) is redacted.
    """
    status = exc.http_status
    if status is not None and exc.error is None and isinstance(exc, stripe.APIError):
        return _foreign_error(exc, status, operation)
    code = exc.code or (exc.error.code if exc.error is not None else None)
    detail = _redact(exc.user_message or type(exc).__name__)
    kind: type[GatewayError] = GatewayError
    retryable = False
    if isinstance(exc, stripe.AuthenticationError | stripe.PermissionError):
        kind = GatewayAuthenticationError
    elif isinstance(exc, stripe.CardError):
        kind = GatewayCardError
    elif isinstance(exc, stripe.InvalidRequestError) and (
        code == "resource_missing" or status == 404
    ):
        kind = GatewayNotFoundError
    elif isinstance(exc, stripe.InvalidRequestError | stripe.IdempotencyError):
        kind = GatewayInvalidRequestError
    elif isinstance(exc, stripe.RateLimitError):
        kind, retryable = GatewayRateLimitError, True
    elif isinstance(exc, stripe.APIConnectionError):
        kind, retryable = GatewayConnectionError, True
    elif isinstance(exc, stripe.APIError):
        kind = GatewayNotFoundError if status == 404 else GatewayServerError
        retryable = kind is GatewayServerError and (
            status is None or status >= 500 or status == 409
        )
    return kind(
        f"Stripe {operation} failed: {detail}",
        retryable=retryable,
        http_status=status,
        code=code,
        request_id=exc.request_id,
        user_message=detail if kind is GatewayCardError else None,
    )


def _foreign_error(exc: stripe.StripeError, status: int, operation: str) -> GatewayError:
    """An HTTP error whose body is not Stripe's JSON error object (e.g. a proxy's page)."""
    kind: type[GatewayError] = GatewayError
    retryable = False
    if status == 404:
        kind = GatewayNotFoundError
    elif status == 429:
        kind, retryable = GatewayRateLimitError, True
    elif status >= 500 or status == 409:
        kind, retryable = GatewayServerError, True
    body = exc.http_body
    return kind(
        f"Stripe {operation} failed: HTTP {status}, a body that is not Stripe's JSON: "
        f"{_excerpt(body if isinstance(body, str) else None)}",
        retryable=retryable,
        http_status=status,
        code=None,
        request_id=exc.request_id,
    )
