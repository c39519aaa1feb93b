from __future__ import annotations

from typing import Any

import pytest
from pydantic import SecretStr, ValidationError

from billingkit.config import AccessPolicy, BillingConfig
from billingkit.domain import PlanDefinition, PriceRef, SubscriptionStatus
from billingkit.errors import BillingError, ConfigurationError

SECRET = "whsec_do_not_leak_7f3a9c"

FREE = PlanDefinition(key="free", name="Free")
PRO = PlanDefinition(key="pro", name="Pro", prices={"month": "price_pro_m"})


def build(**overrides: Any) -> BillingConfig:
    values: dict[str, Any] = {
        "plans": (FREE, PRO),
        "free_plan": "free",
        "webhook_secrets": [SECRET],
    }
    values.update(overrides)
    return BillingConfig(**values)


def test_defaults_are_safe() -> None:
    config = BillingConfig()
    assert config.plans == ()
    assert config.free_plan is None
    assert config.webhook_secrets == ()
    assert config.livemode is False
    assert config.access.granting_statuses == {
        SubscriptionStatus.ACTIVE,
        SubscriptionStatus.TRIALING,
    }
    assert config.access.past_due_grace_days == 0


def test_valid_config_looks_up_plans_and_exposes_secrets_only_on_request() -> None:
    config = build(webhook_secrets=[SECRET, "whsec_second"])
    assert config.plan_definition("pro") == PRO
    assert config.plan_definition("missing") is None
    assert list(config.secret_values()) == [SECRET, "whsec_second"]


def test_a_single_secret_string_is_accepted() -> None:
    assert list(build(webhook_secrets=SECRET).secret_values()) == [SECRET]
    assert list(build(webhook_secrets=SecretStr(SECRET)).secret_values()) == [SECRET]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"plans": (FREE, PRO, PlanDefinition(key="pro", name="Pro again"))},
            "duplicate plan keys",
        ),
        ({"free_plan": "pro"}, "must not have prices"),
        ({"free_plan": "gold"}, "not one of the plans"),
        (
            {
                "plans": (
                    FREE,
                    PRO,
                    PlanDefinition(key="max", name="Max", prices={"year": "price_pro_m"}),
                )
            },
            "price 'price_pro_m' is used by both plans 'pro' and 'max'",
        ),
        ({"webhook_secrets": ["  "]}, "must not be blank"),
        ({"webhook_secrets": [SECRET, ""]}, "must not be blank"),
        ({"price_cache_ttl_seconds": -1}, "price_cache_ttl_seconds"),
        ({"webhook_tolerance_seconds": 0}, "webhook_tolerance_seconds"),
        ({"access": {"past_due_grace_days": -3}}, "past_due_grace_days"),
        ({"unknown_option": True}, "unknown_option"),
    ],
)
def test_invalid_config_raises_configuration_error(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message) as caught:
        build(**overrides)
    assert isinstance(caught.value, ValueError)
    assert isinstance(caught.value, BillingError)


def test_a_lookup_key_shared_by_two_plans_is_refused_but_ids_and_keys_are_apart() -> None:
    by_key = PlanDefinition(key="a", name="A", prices={"month": PriceRef(lookup_key="pro_monthly")})
    same_key = PlanDefinition(
        key="b", name="B", prices={"year": PriceRef(lookup_key="pro_monthly")}
    )
    with pytest.raises(ConfigurationError, match="'pro_monthly' is used by both plans"):
        build(plans=(FREE, by_key, same_key))
    # A price id and a lookup key are different namespaces: the same string is no clash.
    by_id = PlanDefinition(key="b", name="B", prices={"year": PriceRef(price_id="pro_monthly")})
    assert [p.key for p in build(plans=(FREE, by_key, by_id)).plans] == ["free", "a", "b"]


def test_secrets_never_appear_in_repr_str_or_dump() -> None:
    config = build(webhook_secrets=[SECRET, "whsec_second_secret"])
    for text in (repr(config), str(config), str(config.model_dump()), config.model_dump_json()):
        assert SECRET not in text
        assert "whsec_second_secret" not in text


def test_secrets_never_appear_in_configuration_errors() -> None:
    with pytest.raises(ConfigurationError) as caught:
        build(webhook_secrets=[SECRET, " "], free_plan="pro")
    for text in (str(caught.value), repr(caught.value)):
        assert SECRET not in text
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__


def test_config_is_frozen() -> None:
    config = build()
    with pytest.raises(ValidationError, match="frozen"):
        config.livemode = True  # type: ignore[misc]
    assert config.livemode is False


def test_access_policy_is_configurable() -> None:
    policy = AccessPolicy(
        granting_statuses=frozenset({SubscriptionStatus.ACTIVE}), past_due_grace_days=7
    )
    config = build(access=policy)
    assert config.access.granting_statuses == {SubscriptionStatus.ACTIVE}
    assert config.access.past_due_grace_days == 7
    assert build(access={"granting_statuses": ["active", "past_due"]}).access.granting_statuses == {
        SubscriptionStatus.ACTIVE,
        SubscriptionStatus.PAST_DUE,
    }
    with pytest.raises(ConfigurationError):
        build(access={"granting_statuses": ["happy"]})
