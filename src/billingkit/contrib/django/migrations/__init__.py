"""The Django migrations of billingkit's tables."""
