"""Alembic revisions of the billingkit tables (branch label ``billingkit``)."""
