"""Django management commands of billingkit."""
