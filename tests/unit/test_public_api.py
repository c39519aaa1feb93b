"""The public API is pinned, documented and cheap to import; the layering rules hold."""

from __future__ import annotations

import ast
import inspect
import subprocess
import sys
from pathlib import Path

import billingkit

SRC = Path(billingkit.__file__).parent

PUBLIC_API = [
    "AccessPolicy",
    "AlreadySubscribedError",
    "AmbiguousSubscriptionError",
    "Billing",
    "BillingConfig",
    "BillingDetails",
    "BillingError",
    "CancelScheduled",
    "CancelUndone",
    "ChangePreview",
    "ChargeRecord",
    "CheckoutCompleted",
    "CheckoutConfirmation",
    "CheckoutDefaults",
    "CheckoutOwnershipError",
    "CheckoutRecord",
    "CheckoutService",
    "CheckoutStart",
    "ConfigurationError",
    "ConflictError",
    "CustomerDetails",
    "CustomerLink",
    "Dispute",
    "DisputeClosed",
    "DisputeOpened",
    "DomainError",
    "EventRecord",
    "EventStatus",
    "FlushResult",
    "GatewayAuthenticationError",
    "GatewayCardError",
    "GatewayConnectionError",
    "GatewayError",
    "GatewayInvalidRequestError",
    "GatewayNotFoundError",
    "GatewayRateLimitError",
    "GatewayServerError",
    "HookEvent",
    "HookKind",
    "InMemoryRepository",
    "Interval",
    "InvalidInputError",
    "InvalidPromotionCodeError",
    "InvoiceStatus",
    "InvoiceSummary",
    "Money",
    "NoCustomerError",
    "NoSubscriptionError",
    "PaymentActionRequired",
    "PaymentFailed",
    "Plan",
    "PlanCatalog",
    "PlanChangeScheduled",
    "PlanChanged",
    "PlanDefinition",
    "Price",
    "PriceRef",
    "PricesUnavailableError",
    "Purchase",
    "PurchaseCompleted",
    "PurchaseRefunded",
    "PurchaseStatus",
    "QuantityChanged",
    "Repository",
    "RepositoryError",
    "RepositoryUnavailableError",
    "SqlAlchemyRepository",
    "StripeGateway",
    "StripeSdkGateway",
    "Subscription",
    "SubscriptionActivated",
    "SubscriptionCanceled",
    "SubscriptionOwnershipError",
    "SubscriptionPlanUnknown",
    "SubscriptionRecovered",
    "SubscriptionResult",
    "SubscriptionService",
    "SubscriptionStateError",
    "SubscriptionStatus",
    "TrialWillEnd",
    "UnitOfWork",
    "UnitOfWorkBase",
    "UnknownPlanError",
    "UsageRecord",
    "UsageService",
    "UsageStatus",
    "UsageTotal",
    "WebhookError",
    "WebhookOutcome",
    "WebhookPayloadError",
    "WebhookProcessor",
    "WebhookResponse",
    "WebhookResult",
    "WebhookVerificationError",
    "__version__",
]


def test_all_is_pinned() -> None:
    assert billingkit.__all__ == PUBLIC_API


def test_every_public_name_resolves_and_is_documented() -> None:
    for name in billingkit.__all__:
        value = getattr(billingkit, name)
        if name == "__version__":
            assert isinstance(value, str)
            continue
        assert inspect.getdoc(value), f"{name} has no docstring"
        if inspect.isclass(value):
            for attr, member in vars(value).items():
                if attr.startswith("_") or not callable(member):
                    continue
                assert inspect.getdoc(member), f"{name}.{attr} has no docstring"


def test_unknown_attribute_raises_attribute_error() -> None:
    try:
        billingkit.NoSuchThing  # noqa: B018
    except AttributeError as exc:
        assert "NoSuchThing" in str(exc)
    else:
        raise AssertionError("expected AttributeError")


def test_import_does_no_heavy_work() -> None:
    code = (
        "import sys, billingkit, billingkit.testing;"
        "print(sorted(m for m in ('stripe', 'sqlalchemy', 'alembic', 'flask', 'django',"
        " 'celery', 'rq', 'redis')"
        " if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


def _imported_roots(path: Path) -> set[str]:
    roots: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


def test_only_the_sdk_adapter_imports_stripe_and_only_its_package_sqlalchemy() -> None:
    for path in SRC.rglob("*.py"):
        relative = path.relative_to(SRC).as_posix()
        roots = _imported_roots(path)
        if "stripe" in roots:
            assert relative == "adapters/stripe_sdk.py", relative
        if roots & {"sqlalchemy", "alembic"}:
            # `billingkit migrate --check/--sql` reads revisions through Alembic's API.
            cli_alembic = relative == "cli/migrate.py" and "sqlalchemy" not in roots
            assert relative.startswith("adapters/sqlalchemy/") or cli_alembic, relative
        # Only contrib/<x> imports framework <x> (werkzeug is Flask's, starlette FastAPI's).
        for framework, owner in _FRAMEWORKS.items():
            if framework in roots:
                assert relative.startswith((f"contrib/{owner}.py", f"contrib/{owner}/")), relative


_FRAMEWORKS = {
    "flask": "flask",
    "werkzeug": "flask",
    "django": "django",
    "fastapi": "fastapi",
    "starlette": "fastapi",
    "celery": "celery",
    "kombu": "celery",
    "rq": "rq",
    "redis": "rq",
}


def test_domain_imports_no_adapter_port_or_service() -> None:
    for path in (SRC / "domain").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module:
                assert not node.module.startswith(
                    ("billingkit.adapters", "billingkit.services", "billingkit.ports")
                ), f"{path.name} imports {node.module}"
