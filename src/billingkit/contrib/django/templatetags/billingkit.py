"""``{% load billingkit %}``: the ``has_feature`` filter and the ``billing_details`` tag.

::

    {% load billingkit %}
    {% if request|has_feature:"exports" %}<a href="/export">Export</a>{% endif %}
    {% billing_details request as billing %}{{ billing.plan.name }}

The value of ``has_feature`` is the request (its user found as
``user_id_for`` does), a user object (its ``pk`` when
authenticated) or a billing user id string. Both answer from the repository: no Stripe call.
"""

from __future__ import annotations

from billingkit._optional import requires_extra
from billingkit.contrib.django.conf import get_billing, user_id_for
from billingkit.contrib.django.decorators import billing_details as _details_for
from billingkit.services.customers import BillingDetails

with requires_extra("django"):
    from django import template
    from django.http import HttpRequest

__all__ = ["billing_details", "has_feature", "register"]

register = template.Library()


def _user_id(value: object) -> str | None:
    if isinstance(value, HttpRequest):
        return user_id_for(value)
    if isinstance(value, str):
        return value or None
    if hasattr(value, "is_authenticated"):  # a user object (possibly anonymous)
        return str(getattr(value, "pk", None)) if value.is_authenticated else None
    return None


@register.filter
def has_feature(value: object, feature: str) -> bool:
    """Whether the user (request, user object or user id) has ``feature`` now."""
    user_id = _user_id(value)
    if user_id is None:
        return False
    return get_billing().customers.for_user(user_id).has_feature(feature)


@register.simple_tag
def billing_details(request: HttpRequest) -> BillingDetails | None:
    """The request user's ``BillingDetails``, or ``None`` when logged out."""
    return _details_for(request)
