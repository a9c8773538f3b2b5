"""Delivery services for notifications: Slack, PagerDuty (Events API v2), webhooks, email.

The notifications controller calls ``build_services(cm_data, secrets)`` with the
ConfigMap's data and the decoded Secret, renders a template into a
``Notification`` and calls ``services[name].send(notification, recipient)`` for
each subscription; a failure is a ``DeliveryError`` whose message holds no secret.
``secret_values`` gives the redactor the Secret's values. Imports common/ only.
"""

from notifications.services.base import (
    DEFAULT_DEADLINE_SECONDS,
    MAX_RESPONSE_BYTES,
    ConfigError,
    DeliveryError,
    Notification,
    Service,
)
from notifications.services.config import build_services, secret_values

__all__ = [
    "DEFAULT_DEADLINE_SECONDS",
    "MAX_RESPONSE_BYTES",
    "ConfigError",
    "DeliveryError",
    "Notification",
    "Service",
    "build_services",
    "secret_values",
]
