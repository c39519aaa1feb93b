"""The optional one-line composition root: ``Billing`` wires the five services.

An app needs one ``PlanCatalog`` (one price cache), one
``CheckoutService``, one
``SubscriptionService``, one
``WebhookProcessor`` and one
``CustomerDetails``, all over the same config, gateway,
repository and clock (and one hook registry). ``Billing.build`` does exactly that::

    billing = Billing.build(config, gateway, repository)
    billing.webhooks.on(SubscriptionActivated, welcome)
    billing.checkout.start_checkout(...)
    billing.close()  # at shutdown: releases the repository

Using it is optional: the services are public and an app may still construct them by hand
(e.g. to pass ``PlanCatalog(failure_backoff_seconds=...)``); ``Billing`` only saves
writing the same wiring in every app, example and test.
"""

from __future__ import annotations

from dataclasses import dataclass

from billingkit.config import BillingConfig
from billingkit.ports import Clock, Repository, StripeGateway, require_aware_clock, system_clock
from billingkit.services.catalog import PlanCatalog
from billingkit.services.checkout import CheckoutService
from billingkit.services.customers import CustomerDetails
from billingkit.services.subscriptions import SubscriptionService
from billingkit.services.usage import UsageService
from billingkit.services.webhooks import WebhookProcessor

__all__ = ["Billing"]


@dataclass(frozen=True, repr=False, eq=False)
class Billing:
    """billingkit's services, wired once over one config, gateway, repository and clock.

    Build it with ``build`` in the app's composition root (at startup, never at import
    time) and share it: every service is thread-safe. Register webhook hooks on
    ``webhooks`` before serving requests. Constructing it directly is allowed (e.g. to
    hold services wired by hand), but ``build`` is what guarantees they share one catalog
    and one clock. It compares and hashes by identity, like the services it holds.

    Attributes:
        config: the app's ``BillingConfig``.
        gateway: the ``StripeGateway`` every service talks to.
        repository: the ``Repository`` every service stores into.
        catalog: the one ``PlanCatalog`` (price cache).
        checkout: ``CheckoutService``.
        webhooks: ``WebhookProcessor``.
        customers: ``CustomerDetails``.
        subscriptions: ``SubscriptionService``,
            firing its hooks into ``webhooks``' registry.
        usage: ``UsageService`` (the metered usage outbox).
        clock: the clock every service was built with (for tools acting on their behalf,
            such as ``billingkit reconcile``).
    """

    config: BillingConfig
    gateway: StripeGateway
    repository: Repository
    catalog: PlanCatalog
    checkout: CheckoutService
    webhooks: WebhookProcessor
    customers: CustomerDetails
    subscriptions: SubscriptionService
    usage: UsageService
    clock: Clock = system_clock

    @classmethod
    def build(
        cls,
        config: BillingConfig,
        gateway: StripeGateway,
        repository: Repository,
        *,
        clock: Clock = system_clock,
    ) -> Billing:
        """Wire the services over ``gateway`` and ``repository``, all on ``clock``.

        One ``PlanCatalog`` is shared by the other three
        services, so the app has a single price cache that ``price.*``/``product.*`` webhooks
        invalidate; ``subscriptions`` fires into ``webhooks.hooks``, so a hook registered
        once hears a transition whichever of the API answer and the webhook stores it. Pass
        ``clock=fake.now`` with
        ``FakeStripeGateway`` so the events it signs verify and
        moving its time moves the services' time.

        Raises ``ConfigurationError`` when ``clock`` does not return
        a timezone-aware ``datetime`` (it is called once, here) or ``config`` has no webhook
        secret (from ``WebhookProcessor``).
        """
        require_aware_clock(clock)
        catalog = PlanCatalog(config, gateway=gateway, clock=clock)
        webhooks = WebhookProcessor(
            config, gateway=gateway, repository=repository, catalog=catalog, clock=clock
        )
        return cls(
            config=config,
            gateway=gateway,
            repository=repository,
            catalog=catalog,
            checkout=CheckoutService(
                config, gateway=gateway, repository=repository, catalog=catalog, clock=clock
            ),
            webhooks=webhooks,
            customers=CustomerDetails(
                config, repository=repository, catalog=catalog, clock=clock, gateway=gateway
            ),
            subscriptions=SubscriptionService(
                config,
                gateway=gateway,
                repository=repository,
                catalog=catalog,
                hooks=webhooks.hooks,
                clock=clock,
            ),
            usage=UsageService(config, gateway=gateway, repository=repository, clock=clock),
            clock=clock,
        )

    def close(self) -> None:
        """Release the repository's resources (e.g. database connections); call at shutdown."""
        self.repository.close()

    def __repr__(self) -> str:
        # Names only: the config's plans are long and adapters' state is not ours to print.
        return (
            f"Billing(gateway={type(self.gateway).__name__}, "
            f"repository={type(self.repository).__name__})"
        )
