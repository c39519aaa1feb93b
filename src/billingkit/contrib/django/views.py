"""The webhook view: Stripe's events to ``WebhookProcessor.handle_http``.

POST only and CSRF-exempt (Stripe signs its requests instead), and outside
``ATOMIC_REQUESTS``: each event commits in its own unit of work, as the processor expects. A
body over ``BillingConfig.webhook_max_body_bytes`` is refused with 400 without being
buffered: on its ``Content-Length`` before anything is read, else while the raw body is read
from the request stream in chunks. The raw bytes (never a re-serialised JSON) and the
``Stripe-Signature`` header go to ``handle_http``, whose answer is returned as is: 400 bad
signature or payload, 200 processed/duplicate/ignored/stale, 500 a failure (Stripe retries).
"""

from __future__ import annotations

from billingkit._optional import requires_extra
from billingkit.contrib import BodyTooLarge, declared_too_large, read_capped, too_large
from billingkit.contrib.django.conf import get_billing

with requires_extra("django"):
    from django.db import transaction
    from django.http import HttpRequest, HttpResponse
    from django.views.decorators.csrf import csrf_exempt
    from django.views.decorators.http import require_POST

__all__ = ["stripe_webhook"]


@csrf_exempt
@transaction.non_atomic_requests
@require_POST
def stripe_webhook(request: HttpRequest) -> HttpResponse:
    """Stripe's webhook endpoint (see the module docstring)."""
    billing = get_billing()
    cap = billing.config.webhook_max_body_bytes
    try:
        if declared_too_large(request.META.get("CONTENT_LENGTH"), cap):
            raise BodyTooLarge
        body = read_capped(request.read, cap)
    except BodyTooLarge:
        refused = too_large(cap)
        response = HttpResponse(
            refused.body, status=refused.status, content_type=refused.content_type
        )
        response["Connection"] = "close"  # the rest of the body is left unread
        return response
    answer = billing.webhooks.handle_http(body, request.headers.get("Stripe-Signature"))
    return HttpResponse(answer.body, status=answer.status, content_type=answer.content_type)
