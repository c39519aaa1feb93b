"""Admin pages: the event ledger (filters, pretty payload, "replay"), subscriptions, customers.

Every page is read-only: billingkit's tables change only through its services. The ledger's
"Replay" action applies the selected events again from their stored payloads with
``replay`` (no Stripe call, no signature check: the payload
was verified when it arrived) and reports each outcome.
"""

from __future__ import annotations

import json
from typing import Any

from billingkit._optional import requires_extra
from billingkit.contrib.django.conf import get_billing
from billingkit.contrib.django.models import StoredCustomer, StoredEvent, StoredSubscription
from billingkit.errors import BillingError

with requires_extra("django"):
    from django.contrib import admin, messages
    from django.db.models import Model, QuerySet
    from django.http import HttpRequest
    from django.utils.html import format_html

__all__ = ["CustomerAdmin", "EventAdmin", "ReadOnlyAdmin", "SubscriptionAdmin"]


class ReadOnlyAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """An admin page that shows rows and changes none."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        """Rows are written by billingkit's services only."""
        return False

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        """Read-only: the change view only shows the row."""
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        """Deleting billing state would lose it: never."""
        return False


@admin.register(StoredEvent)
class EventAdmin(ReadOnlyAdmin):
    """The event ledger: filter by status and type, read the payload, replay events."""

    list_display = ("id", "type", "status", "attempts", "created", "received_at", "processed_at")
    list_filter = ("status", "type", "livemode")
    search_fields = ("id", "type")
    date_hierarchy = "received_at"
    ordering = ("-received_at", "-id")
    exclude = ("payload",)
    readonly_fields = ("pretty_payload",)
    actions = ("replay",)

    @admin.display(description="payload")
    def pretty_payload(self, event: StoredEvent) -> str:
        """The raw payload, indented (shown as stored when it is not JSON)."""
        raw = bytes(event.payload)
        try:
            text = json.dumps(json.loads(raw), indent=2, sort_keys=True)
        except ValueError:
            text = raw.decode("utf-8", "replace")
        return format_html('<pre style="white-space: pre-wrap">{}</pre>', text)

    @admin.action(description="Replay the selected events from their stored payloads")
    def replay(self, request: HttpRequest, queryset: QuerySet[StoredEvent]) -> None:
        """Apply each selected event again (``WebhookProcessor.replay``); report outcomes."""
        webhooks = get_billing().webhooks
        for event_id in queryset.order_by("created", "id").values_list("id", flat=True):
            try:
                result = webhooks.replay(event_id)
            except BillingError as exc:
                self.message_user(request, f"{event_id}: {exc}", messages.ERROR)
            else:
                self.message_user(request, f"{event_id}: {result.outcome.value}", messages.INFO)

    def has_replay_permission(self, request: HttpRequest) -> bool:
        """Replaying needs the ledger's view permission (it changes nothing by hand)."""
        return self.has_view_permission(request)


EventAdmin.replay.allowed_permissions = ("replay",)  # type: ignore[attr-defined]


@admin.register(StoredSubscription)
class SubscriptionAdmin(ReadOnlyAdmin):
    """Subscriptions as Stripe last reported them."""

    list_display = ("id", "user_id", "plan_key", "status", "quantity", "current_period_end")
    list_filter = ("status", "plan_key", "cancel_at_period_end", "livemode")
    search_fields = ("id", "user_id", "customer_id")


@admin.register(StoredCustomer)
class CustomerAdmin(ReadOnlyAdmin):
    """Users of the app and their Stripe customers."""

    list_display = ("user_id", "customer_id", "email", "deleted")
    list_filter = ("deleted",)
    search_fields = ("user_id", "customer_id", "email")
