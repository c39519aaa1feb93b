"""Adapters implementing the ports: Stripe SDK, in-memory and SQLAlchemy repositories."""
