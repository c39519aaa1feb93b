"""The four services: PlanCatalog, CheckoutService, WebhookProcessor, CustomerDetails."""
