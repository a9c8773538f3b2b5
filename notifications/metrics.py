"""Prometheus metrics of the notifications controller, named as Argo names them.

Updated by notifications/delivery.py after each send; served on the shared
metrics port that the composition root (cli/controller.py) starts.
``notification_deliveries_total{trigger,service,succeeded}`` counts every send
attempt by its outcome (Argo CD's ``argocd_notifications_deliveries_total``,
without the Argo CD prefix, since Rollouts' notifications count here too).
"""

from __future__ import annotations

from prometheus_client import Counter

DELIVERIES = Counter(
    "notification_deliveries", "Notification sends, by trigger, service and outcome.",
    ["trigger", "service", "succeeded"],
)
CONFIG_ERRORS = Counter(
    "notification_config_errors", "Errors found reading a notification ConfigMap or Secret.",
    ["namespace", "configmap"],
)


def count_delivery(*, trigger: str, service: str, succeeded: bool) -> None:
    DELIVERIES.labels(trigger=trigger, service=service, succeeded=str(succeeded).lower()).inc()


def count_config_errors(*, namespace: str, configmap: str, errors: int) -> None:
    if errors:
        CONFIG_ERRORS.labels(namespace=namespace, configmap=configmap).inc(errors)
