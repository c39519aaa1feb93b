"""WebhookProcessor: verification, ledger, HTTP mapping, hooks, replay, interop."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
import stripe
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from billingkit.domain import EventStatus, SubscriptionStatus
from billingkit.errors import (
    ConfigurationError,
    GatewayServerError,
    InvalidInputError,
    WebhookError,
    WebhookPayloadError,
    WebhookVerificationError,
)
from billingkit.services.hooks import (
    CheckoutCompleted,
    HookKind,
    HookRegistry,
    SubscriptionActivated,
)
from billingkit.services.webhooks import WebhookOutcome, WebhookProcessor
from billingkit.services.webhooks import processor as processor_module
from billingkit.services.webhooks.event import usable_event_id
from billingkit.services.webhooks.handlers import HandlerContext
from billingkit.signature import signature_header
from billingkit.testing import sign_payload

from .webhook_support import OTHER_SECRET, SECRET, Harness, load

SUB = load("openapi/2026-07-29_f0758b15/subscription.json")


def sub_event(h: Harness, evt: str | None = None, **changes: Any) -> dict[str, Any]:
    return h.event("customer.subscription.updated", {**SUB, **changes}, event_id=evt)


def payload_of(event: dict[str, Any]) -> bytes:
    return json.dumps(event).encode()


# --------------------------------------------------------------------------- construction


def test_no_secret_is_a_configuration_error() -> None:
    h = Harness()
    config = h.config.model_copy(update={"webhook_secrets": ()})
    with pytest.raises(ConfigurationError):
        WebhookProcessor(config, gateway=h.gateway, repository=h.repository, catalog=h.catalog)


def test_repr_hides_secrets() -> None:
    h = Harness()
    assert SECRET not in repr(h.processor)
    assert "whsec" not in repr(h.processor)


# --------------------------------------------------------------------------- happy path + ledger


def test_processed_event_is_recorded_with_raw_payload_and_state_applied() -> None:
    h = Harness()
    event = sub_event(h)
    payload = payload_of(event)
    result = h.processor.handle(payload, h.sign(payload))
    assert result.outcome is WebhookOutcome.PROCESSED
    assert (result.event_id, result.event_type) == (event["id"], event["type"])
    record = h.stored_event(event["id"])
    assert record.status is EventStatus.PROCESSED
    assert record.payload == payload
    assert record.attempts == 1
    stored = h.stored_subscription(SUB["id"])
    assert stored is not None and stored.status is SubscriptionStatus.ACTIVE
    assert stored.watermark == event["created"]


def test_duplicate_is_an_outcome_and_changes_nothing() -> None:
    h = Harness()
    event = sub_event(h)
    h.deliver(event)
    before = h.snapshot()
    again = h.deliver(event)
    assert again.outcome is WebhookOutcome.DUPLICATE
    assert h.snapshot() == before


def test_unknown_type_is_ignored_and_recorded() -> None:
    h = Harness()
    event = h.event("payout.paid", {"id": "po_unknown", "object": "payout"})
    result = h.deliver(event)
    assert result.outcome is WebhookOutcome.IGNORED
    assert h.stored_event(event["id"]).status is EventStatus.IGNORED
    assert h.deliver(event).outcome is WebhookOutcome.DUPLICATE


def test_older_event_is_stale() -> None:
    h = Harness()
    created = h.clock.seconds - 10
    h.deliver(h.event("customer.subscription.updated", SUB, created=created))
    old = {**SUB, "status": "past_due"}
    result = h.deliver(h.event("customer.subscription.updated", old, created=created - 1))
    assert result.outcome is WebhookOutcome.STALE
    stored = h.stored_subscription(SUB["id"])
    assert stored is not None and stored.status is SubscriptionStatus.ACTIVE


# --------------------------------------------------------------------------- HTTP mapping


def test_http_mapping_200_400_500() -> None:
    h = Harness()
    event = sub_event(h)
    payload = payload_of(event)
    ok = h.processor.handle_http(payload, h.sign(payload))
    assert ok.status == 200
    assert json.loads(ok.body) == {
        "outcome": "processed",
        "event_id": event["id"],
        "event_type": event["type"],
    }
    assert json.loads(h.processor.handle_http(payload, h.sign(payload)).body)["outcome"] == (
        "duplicate"
    )
    bad = h.processor.handle_http(payload, h.sign(payload, OTHER_SECRET))
    assert bad.status == 400 and "error" in json.loads(bad.body)
    assert h.processor.handle_http(b"", None).status == 400

    def boom(_: object) -> None:
        raise RuntimeError("app bug with a detail")

    h.processor.on(HookKind.SUBSCRIPTION_ACTIVATED, boom)
    created = h.event("customer.subscription.created", {**SUB, "id": "sub_new"})
    failing = payload_of(created)
    response = h.processor.handle_http(failing, h.sign(failing))
    assert response.status == 500
    assert "detail" not in response.body


# --------------------------------------------------------------------------- verification


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "garbage",
        "t=notanumber,v1=abc",
        "t=123",
        "v1=abc",
    ],
)
def test_malformed_headers_are_rejected(header: str | None) -> None:
    h = Harness()
    payload = payload_of(sub_event(h))
    with pytest.raises(WebhookVerificationError):
        h.processor.handle(payload, header)
    assert h.snapshot() == Harness().snapshot()


def test_tampered_body_and_wrong_secret_are_rejected() -> None:
    h = Harness()
    payload = payload_of(sub_event(h))
    header = h.sign(payload)
    with pytest.raises(WebhookVerificationError):
        h.processor.handle(payload.replace(b"active", b"canceled"), header)
    with pytest.raises(WebhookVerificationError):
        h.processor.handle(payload, h.sign(payload, OTHER_SECRET))


def test_tolerance_is_configurable_and_applies_both_ways() -> None:
    h = Harness(webhook_tolerance_seconds=10)
    payload = payload_of(sub_event(h))
    now = h.clock.seconds
    with pytest.raises(WebhookVerificationError):
        h.processor.handle(payload, sign_payload(payload, SECRET, now - 11))
    with pytest.raises(WebhookVerificationError):
        h.processor.handle(payload, sign_payload(payload, SECRET, now + 11))
    assert h.processor.handle(payload, sign_payload(payload, SECRET, now - 10)).outcome is (
        WebhookOutcome.PROCESSED
    )


def test_default_tolerance_is_300_seconds() -> None:
    h = Harness()
    payload = payload_of(sub_event(h))
    with pytest.raises(WebhookVerificationError):
        h.processor.handle(payload, sign_payload(payload, SECRET, h.clock.seconds - 301))
    h.processor.handle(payload, sign_payload(payload, SECRET, h.clock.seconds - 300))


def test_secret_rotation() -> None:
    old, new = "whsec_old_secret", "whsec_new_secret"
    during = Harness(secrets=(old, new))
    for secret in (old, new):
        event = sub_event(during, evt=f"evt_{secret}")
        assert during.deliver(event, secret).outcome is WebhookOutcome.PROCESSED
    # Stripe signs with both secrets while rolling: one v1 per secret, any match is enough.
    after = Harness(secrets=(new,))
    payload = payload_of(sub_event(after))
    both = signature_header(payload, ["whsec_unknown", new], after.clock.seconds)
    assert after.processor.handle(payload, both).outcome is WebhookOutcome.PROCESSED
    # Once rotated out, the old secret is refused.
    payload = payload_of(sub_event(after, evt="evt_after_rotation"))
    with pytest.raises(WebhookVerificationError):
        after.processor.handle(payload, after.sign(payload, old))


# --------------------------------------------------------------------------- payload errors


def test_size_limit_is_checked_before_the_signature() -> None:
    h = Harness(webhook_max_body_bytes=2000)
    payload = b"{" + b" " * 2000 + b"}"
    with pytest.raises(WebhookPayloadError, match="larger"):
        h.processor.handle(payload, "not even a header")
    with pytest.raises(WebhookPayloadError, match="empty"):
        h.processor.handle(b"", h.sign(b""))
    assert h.snapshot() == Harness().snapshot()


def test_default_body_limit_is_one_mebibyte() -> None:
    h = Harness()
    assert h.config.webhook_max_body_bytes == 1024 * 1024
    with pytest.raises(WebhookPayloadError, match="larger"):
        h.processor.handle(b"{" + b" " * (1024 * 1024) + b"}", None)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    body=st.one_of(
        st.binary(max_size=300),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.text(max_size=10),
            lambda inner: (
                st.lists(inner, max_size=3)
                | st.dictionaries(
                    st.sampled_from(["id", "type", "created", "data", "object", "livemode", "x"]),
                    inner,
                    max_size=5,
                )
            ),
            max_leaves=12,
        ).map(lambda value: json.dumps(value).encode()),
    ),
    header=st.one_of(st.none(), st.text(max_size=80)),
    signed=st.booleans(),
)
def test_fuzz_only_typed_errors_and_nothing_stored(
    body: bytes, header: str | None, signed: bool
) -> None:
    h = Harness()
    before = h.snapshot()
    signature = h.sign(body) if signed else header
    try:
        result = h.processor.handle(body, signature)
    except WebhookVerificationError:
        assert h.snapshot() == before
    except WebhookPayloadError:
        after = h.snapshot()
        recorded = after.pop("events")
        before.pop("events")
        assert after == before
        # A verified body with a usable event id is recorded as failed; nothing else is.
        try:
            parsed = json.loads(body)
        except ValueError:
            parsed = None
        event_id = usable_event_id(parsed.get("id")) if isinstance(parsed, dict) else None
        expected = {event_id} if signed and event_id is not None else set()
        assert set(recorded) == expected
        assert all(record.status.value == "failed" for record in recorded.values())
    else:  # a well-formed signed event of an unknown type: recorded as ignored, nothing else
        assert signed and result.outcome is WebhookOutcome.IGNORED


# --------------------------------------------------------------------------- interop with stripe


def test_headers_built_by_the_stripe_package_are_accepted() -> None:
    h = Harness()
    payload = payload_of(sub_event(h))
    header = stripe.WebhookSignature.generate_signature_header(
        payload.decode(), SECRET, timestamp=h.clock.seconds
    )
    assert h.processor.handle(payload, header).outcome is WebhookOutcome.PROCESSED


def test_our_headers_pass_stripe_construct_event() -> None:
    h = Harness()
    event = sub_event(h)
    payload = payload_of(event)
    header = sign_payload(payload, SECRET, int(time.time()))
    constructed = stripe.Webhook.construct_event(payload, header, SECRET)
    assert constructed.id == event["id"]
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(payload, header, OTHER_SECRET)


# ----------------------------------------------------------------------- failures, hooks, replay


def test_hook_failure_rolls_back_and_redelivery_succeeds() -> None:
    h = Harness()
    seen: list[SubscriptionActivated] = []
    fail = [True]

    def on_activated(event: SubscriptionActivated) -> None:
        seen.append(event)
        if fail[0]:
            raise RuntimeError("mailer down")

    h.processor.on(HookKind.SUBSCRIPTION_ACTIVATED, on_activated)
    event = h.event("customer.subscription.created", SUB)
    with pytest.raises(RuntimeError, match="mailer down"):
        h.deliver(event)
    assert h.stored_subscription(SUB["id"]) is None  # rolled back
    failed = h.stored_event(event["id"])
    assert failed.status is EventStatus.FAILED
    assert failed.attempts == 1
    assert "mailer down" in (failed.last_error or "")

    fail[0] = False
    assert h.deliver(event).outcome is WebhookOutcome.PROCESSED
    stored = h.stored_subscription(SUB["id"])
    assert stored is not None and stored.status is SubscriptionStatus.ACTIVE
    record = h.stored_event(event["id"])
    assert record.status is EventStatus.PROCESSED and record.attempts == 2
    assert [e.event_id for e in seen] == [event["id"], event["id"]]
    assert seen[-1].subscription == stored
    assert h.deliver(event).outcome is WebhookOutcome.DUPLICATE
    assert len(seen) == 2


def test_gateway_failure_on_a_tie_is_a_failure_not_a_200() -> None:
    h = Harness()
    created = h.clock.seconds - 5

    def down(_: str) -> Any:
        raise GatewayServerError("stripe 503", retryable=True, http_status=503)

    h.gateway.truth = down
    h.deliver(h.event("customer.subscription.updated", SUB, created=created))
    tied = h.event("customer.subscription.updated", {**SUB, "status": "past_due"}, created=created)
    payload = payload_of(tied)
    assert h.processor.handle_http(payload, h.sign(payload)).status == 500
    assert h.stored_event(tied["id"]).status is EventStatus.FAILED
    stored = h.stored_subscription(SUB["id"])
    assert stored is not None and stored.status is SubscriptionStatus.ACTIVE


def test_replay_applies_a_failed_event_from_the_ledger() -> None:
    h = Harness()
    broken = [True]

    def on_done(_: CheckoutCompleted) -> None:
        if broken[0]:
            raise RuntimeError("not yet")

    h.processor.on(CheckoutCompleted, on_done)
    event = h.event(
        "checkout.session.completed", load("pay/checkout.session.completed.json")["object"]
    )
    with pytest.raises(RuntimeError):
        h.deliver(event)
    broken[0] = False
    h.clock.advance(3600)  # far beyond the signature tolerance: replay needs no signature
    result = h.processor.replay(event["id"])
    assert result.outcome is WebhookOutcome.PROCESSED
    assert h.stored_event(event["id"]).status is EventStatus.PROCESSED
    assert h.processor.replay(event["id"]).outcome is WebhookOutcome.DUPLICATE
    with pytest.raises(InvalidInputError):
        h.processor.replay("evt_unknown")


def test_payload_error_inside_a_handler_is_recorded_failed_and_answered_400() -> None:
    h = Harness()
    event = h.event("customer.subscription.updated", {**SUB, "status": "frozen"})
    payload = payload_of(event)
    response = h.processor.handle_http(payload, h.sign(payload))
    assert response.status == 400
    record = h.stored_event(event["id"])
    assert record.status is EventStatus.FAILED and "frozen" in (record.last_error or "")
    assert h.stored_subscription(SUB["id"]) is None


def test_hook_registration_by_kind_value_and_class() -> None:
    h = Harness()
    calls: list[str] = []
    h.processor.on("subscription_activated", lambda e: calls.append("value"))
    h.processor.on(SubscriptionActivated, lambda e: calls.append("class"))
    h.processor.on(HookKind.SUBSCRIPTION_ACTIVATED, lambda e: calls.append("kind"))
    with pytest.raises(InvalidInputError):
        h.processor.on("subscription_exploded", lambda e: None)
    with pytest.raises(InvalidInputError):
        h.processor.on(HookKind.PLAN_CHANGED, "not callable")  # type: ignore[call-overload]
    h.deliver(h.event("customer.subscription.created", SUB))
    assert calls == ["value", "class", "kind"]


def test_the_processor_has_a_hook_registry_and_hands_it_to_handlers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    h = Harness()
    assert not isinstance(h.processor, HookRegistry)
    assert isinstance(h.processor.hooks, HookRegistry)
    on_activated = h.processor.on(SubscriptionActivated, lambda e: None)
    assert h.processor.hooks.wants(HookKind.SUBSCRIPTION_ACTIVATED)
    assert not h.processor.hooks.wants(HookKind.PLAN_CHANGED)
    assert callable(on_activated)
    contexts: list[HandlerContext] = []

    def spy(context: HandlerContext) -> EventStatus:
        contexts.append(context)
        return EventStatus.PROCESSED

    monkeypatch.setattr(processor_module, "HANDLERS", {"customer.subscription.updated": spy})
    h.deliver(sub_event(h))
    assert len(contexts) == 1
    assert contexts[0].hooks is h.processor.hooks
    assert contexts[0].access == h.config.access


def test_webhook_errors_share_a_root() -> None:
    assert issubclass(WebhookVerificationError, WebhookError)
    assert issubclass(WebhookPayloadError, WebhookError)
