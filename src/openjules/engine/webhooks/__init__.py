"""Webhook deliveries: the sender that works the outbox, and one signed attempt."""

from openjules.engine.webhooks.sender import WebhookSender

__all__ = ["WebhookSender"]
