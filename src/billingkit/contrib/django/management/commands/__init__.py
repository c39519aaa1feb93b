"""``manage.py billingkit``."""
