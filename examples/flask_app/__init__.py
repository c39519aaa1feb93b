"""A small Flask shop on billingkit: pricing, Stripe Checkout, account page, webhooks.

Run it with ``python -m examples.flask_app`` (see README.md); build it with
:func:`create_app`.
"""

from examples.flask_app.app import create_app

__all__ = ["create_app"]
