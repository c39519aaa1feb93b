"""A small FastAPI billing API on billingkit: pricing, Checkout, account, webhooks.

Build it with :func:`create_app`; see ``docs/fastapi.md``.
"""

from examples.fastapi_app.app import create_app

__all__ = ["create_app"]
