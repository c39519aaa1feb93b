"""The Django project of the billingkit demo: settings, URLs, WSGI entry point."""
