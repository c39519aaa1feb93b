"""``@requires_feature("exports")``: a view runs only for a user whose plan grants it now."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar, cast

from billingkit._optional import requires_extra
from billingkit.contrib.django.conf import get_billing, user_id_for
from billingkit.services.customers import BillingDetails

with requires_extra("django"):
    from django.core.exceptions import PermissionDenied
    from django.http import HttpRequest, HttpResponse, HttpResponseBase

__all__ = ["DeniedHandler", "billing_details", "requires_feature"]

F = TypeVar("F", bound=Callable[..., HttpResponseBase])
#: Answers a refused request: ``(request, feature, details)`` -> response; ``details`` is
#: ``None`` when nobody is logged in.
DeniedHandler = Callable[[HttpRequest, str, "BillingDetails | None"], HttpResponseBase]


def billing_details(request: HttpRequest) -> BillingDetails | None:
    """The request user's ``BillingDetails`` (no Stripe call), or ``None``.

    The user is found by the ``USER_ID`` key of ``settings.BILLINGKIT`` (default: the
    authenticated user's primary key).
    """
    user_id = user_id_for(request)
    if user_id is None:
        return None
    return get_billing().customers.for_user(user_id)


def requires_feature(feature: str, *, denied: DeniedHandler | None = None) -> Callable[[F], F]:
    """Let the view run only for a logged-in user whose plan grants ``feature`` now.

    Access follows ``has_feature`` (status, grace period).
    Otherwise ``denied(request, feature, details)`` answers, by default 401 when logged out
    and ``PermissionDenied`` (403) without the feature.
    """

    def decorate(view: F) -> F:
        @wraps(view)
        def guarded(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
            details = billing_details(request)
            if details is not None and details.has_feature(feature):
                return view(request, *args, **kwargs)
            if denied is not None:
                return denied(request, feature, details)
            if details is None:
                return HttpResponse("Log in to use this page.", status=401)
            raise PermissionDenied(f"Your plan does not include {feature!r}.")

        return cast(F, guarded)

    return decorate
