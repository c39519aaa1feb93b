"""Alembic migrations of the billingkit tables (run them with ``upgrade()``)."""
