"""billing_demo: the demo's pages (pricing, checkout, account, the Stripe webhook)."""
