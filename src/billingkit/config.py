"""Explicit, frozen configuration, validated when it is built.

Nothing here reads the environment: the app builds a ``BillingConfig`` in its
composition root (from its own settings) and hands it to the services.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from pydantic import (
    Field,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from billingkit.domain import PlanDefinition, Value
from billingkit.domain.access import AccessPolicy
from billingkit.errors import ConfigurationError

__all__ = ["AccessPolicy", "BillingConfig", "CheckoutDefaults"]


#: The locales Stripe Checkout offers (``auto``: the browser's).
CHECKOUT_LOCALES = frozenset(
    {
        "auto", "bg", "cs", "da", "de", "el", "en", "en-GB", "es", "es-419", "et", "fi",
        "fil", "fr", "fr-CA", "hi-IN", "hr", "hu", "id", "it", "ja", "ko", "lt", "lv", "ms", "mt",
        "nb", "nl", "pl", "pt", "pt-BR", "ro", "ru", "sk", "sl", "sv", "th", "tr", "vi",
        "zh", "zh-HK", "zh-TW",
    }
)  # fmt: skip


class CheckoutDefaults(Value):
    """Checkout options every ``start_checkout`` uses unless the call gives its own.

    Attributes:
        automatic_tax: compute tax with Stripe Tax (Checkout then saves the address the
            customer enters on their customer: ``customer_update.address=auto``).
        tax_id_collection: let business customers enter a tax id (VAT number); their name
            is saved on the customer too (``customer_update.name=auto``).
        billing_address_collection: ``required`` always asks for the full billing address;
            ``auto`` (Stripe's default) only when tax or the payment method needs it.
        trial_requires_payment_method: ``False`` lets a subscription trial start without a
            card (``payment_method_collection=if_required``); used with ``trial_days``.
        trial_end_without_payment_method: what happens when such a trial ends and no card
            was added: ``cancel`` the subscription or ``pause`` it (resumed once paid).
        locale: the Checkout page's language (``auto``: the browser's; ``None``: Stripe's
            default). One of Stripe's supported locales.
    """

    automatic_tax: bool = False
    tax_id_collection: bool = False
    billing_address_collection: Literal["auto", "required"] = "auto"
    trial_requires_payment_method: bool = True
    trial_end_without_payment_method: Literal["cancel", "pause"] = "cancel"
    locale: str | None = None

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise ConfigurationError(f"invalid checkout defaults: {_describe(exc)}") from None

    @field_validator("locale")
    @classmethod
    def _known_locale(cls, value: str | None) -> str | None:
        if value is not None and value not in CHECKOUT_LOCALES:
            raise ValueError(f"locale must be one of Stripe Checkout's: {sorted(CHECKOUT_LOCALES)}")
        return value


class BillingConfig(Value):
    """Everything the four services need to know about the app's billing.

    Build it with keyword arguments; invalid values raise ``ConfigurationError``.

    Attributes:
        plans: the plans the app sells (keys unique).
        free_plan: key of the plan a user without a subscription is on (must have no price),
            or ``None``.
        webhook_secrets: endpoint signing secrets (``whsec_...``); several during rotation.
        livemode: whether this deployment handles live-mode events (test mode otherwise).
        webhook_tolerance_seconds: how old a signature timestamp may be.
        webhook_max_body_bytes: larger webhook bodies are refused before parsing.
        price_cache_ttl_seconds: how long catalog prices are served from memory.
        access: the ``AccessPolicy``.
        allow_multiple_subscriptions: let a user with a live subscription start another
            checkout (apps that sell add-ons).
        checkout_dedupe_seconds: a repeated ``start_checkout`` with the same inputs within this
            window returns the same session.
        webhook_max_attempts: a deferred event that failed this many times is ``dead``: never
            retried automatically, kept for ``replay``.
        webhook_retry_base_seconds: the delay before the first retry of a failed deferred
            event; it doubles with each further failure...
        webhook_retry_max_seconds: ...up to this ceiling.
        webhook_retry_jitter: the fraction (0 to 1) of each delay taken off at random, so
            events that failed together are not retried together.
        checkout: the ``CheckoutDefaults`` (tax, tax ids, billing address, trials
            without a card, locale); ``start_checkout`` arguments override them per call.
        next_invoice_cache_seconds: how long ``CustomerDetails.next_invoice`` answers a
            user's upcoming invoice from memory before asking Stripe again (0: every time).
        features_source: where ``BillingDetails.has_feature`` reads a subscriber's features
            from: ``"plans"`` (the plan definitions' ``features``) or
            ``"stripe_entitlements"`` (the customer's active Stripe Entitlements, stored from
            ``entitlements.active_entitlement_summary.updated``). Limits always come from
            the plan definitions. See ``docs/entitlements.md``.
    """

    plans: tuple[PlanDefinition, ...] = ()
    free_plan: str | None = None
    webhook_secrets: tuple[SecretStr, ...] = ()
    livemode: bool = False
    webhook_tolerance_seconds: PositiveInt = 300
    webhook_max_body_bytes: PositiveInt = 1024 * 1024
    price_cache_ttl_seconds: NonNegativeInt = 300
    access: AccessPolicy = Field(default_factory=AccessPolicy)
    allow_multiple_subscriptions: bool = False
    checkout_dedupe_seconds: NonNegativeInt = 60
    webhook_max_attempts: PositiveInt = 8
    webhook_retry_base_seconds: PositiveFloat = 30.0
    webhook_retry_max_seconds: PositiveFloat = 3600.0
    webhook_retry_jitter: float = Field(default=0.2, ge=0.0, le=1.0)
    checkout: CheckoutDefaults = Field(default_factory=CheckoutDefaults)
    next_invoice_cache_seconds: NonNegativeInt = 60
    features_source: Literal["plans", "stripe_entitlements"] = "plans"

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise ConfigurationError(f"invalid billing configuration: {_describe(exc)}") from None

    @field_validator("webhook_secrets", mode="before")
    @classmethod
    def _one_secret_is_a_tuple(cls, value: Any) -> Any:
        if isinstance(value, (str, SecretStr)):
            return (value,)
        return value

    @field_validator("webhook_secrets")
    @classmethod
    def _secrets_not_blank(cls, value: tuple[SecretStr, ...]) -> tuple[SecretStr, ...]:
        if any(not secret.get_secret_value().strip() for secret in value):
            raise ValueError("webhook secrets must not be blank")
        return value

    @model_validator(mode="after")
    def _plans_consistent(self) -> BillingConfig:
        keys = [plan.key for plan in self.plans]
        duplicates = sorted({key for key in keys if keys.count(key) > 1})
        if duplicates:
            raise ValueError(f"duplicate plan keys: {duplicates}")
        if self.free_plan is not None:
            free = next((p for p in self.plans if p.key == self.free_plan), None)
            if free is None:
                raise ValueError(f"free_plan {self.free_plan!r} is not one of the plans")
            if not free.is_free:
                raise ValueError(f"free_plan {self.free_plan!r} must not have prices")
        _prices_have_one_plan(self.plans)
        if self.webhook_retry_max_seconds < self.webhook_retry_base_seconds:
            raise ValueError("webhook_retry_max_seconds must not be below the base delay")
        return self

    def plan_definition(self, key: str) -> PlanDefinition | None:
        """The plan definition with ``key``, or ``None``."""
        return next((plan for plan in self.plans if plan.key == key), None)

    def secret_values(self) -> Sequence[str]:
        """The webhook secrets in clear text, for the verifier only."""
        return [secret.get_secret_value() for secret in self.webhook_secrets]


def _prices_have_one_plan(plans: Sequence[PlanDefinition]) -> None:
    """A price id (or lookup key) belongs to one plan: else its events could not be told apart."""
    owners: dict[tuple[str, str], str] = {}
    for plan in plans:
        for ref in plan.prices.values():
            name = ("id", ref.price_id) if ref.price_id is not None else ("key", ref.lookup_key)
            assert name[1] is not None  # PriceRef guarantees one of the two
            owner = owners.setdefault((name[0], name[1]), plan.key)
            if owner != plan.key:
                raise ValueError(
                    f"price {name[1]!r} is used by both plans {owner!r} and {plan.key!r}"
                )


def _describe(exc: ValidationError) -> str:
    """The validation errors without the offending input values (they may be secrets)."""
    problems = []
    for error in exc.errors(include_url=False, include_input=False, include_context=False):
        where = ".".join(str(part) for part in error["loc"]) or "config"
        problems.append(f"{where}: {error['msg']}")
    return "; ".join(problems)
