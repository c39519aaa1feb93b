"""The ``billingkit`` template library (``{% load billingkit %}``)."""
