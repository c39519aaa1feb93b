"""Webhook tests, one module per handler family plus the processor and the event."""
