"""From the notifications ConfigMap and Secret to ready services.

Called by the notifications controller whenever ``argocd-notifications-cm`` /
``argo-rollouts-notification-configmap`` or their Secrets change, and by the
``tidegate notifications`` commands. Each ``service.<type>[.<name>]`` key holds
YAML; ``$key`` anywhere in its string values is replaced by that key of the
Secret's data. The references are replaced after the YAML is parsed, so a secret
holding ``:`` or a newline cannot change the entry's structure (Argo substitutes in
the raw text). A reference to a key the Secret lacks is a ConfigError naming the
service and the key.

The returned dict is keyed by the name a subscription uses: the custom name when
there is one (``service.webhook.github`` -> ``github``, ``service.slack.ws1`` ->
``ws1``), else the type (``slack``), as Argo. ``Service.name`` is the key without
``service.`` (``webhook.github``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

import yaml

from notifications.services import mail, pagerduty, slack, webhook
from notifications.services.base import ConfigError, Scrubber, Service
from notifications.services.options import Options

SERVICE_PREFIX = "service."
# Kubernetes Secret keys: letters, digits, '-', '_' and '.'.
_REFERENCE = re.compile(r"\$([A-Za-z0-9_.-]+)")

MSG_BAD_YAML = "{key}: not valid YAML: {error}"
MSG_NOT_MAPPING = "{key}: must be a YAML mapping of options"
MSG_MISSING_SECRET = '{key}: {field}: references "${secret}", which the notifications Secret does not hold'
MSG_UNSUPPORTED = "{key}: service type \"{type}\" is not supported (supported: {supported})"
MSG_DUPLICATE = '{key}: the name "{name}" is already used by {other}; subscriptions could not tell them apart'

Builder = Callable[[str, str, Options, Scrubber], Service]


def _build_slack(key: str, name: str, options: Options, scrub: Scrubber) -> Service:
    return slack.build(key=key, name=name, options=options, scrub=scrub)


def _build_pagerduty(key: str, name: str, options: Options, scrub: Scrubber) -> Service:
    return pagerduty.build(key=key, name=name, options=options, scrub=scrub)


def _build_webhook(key: str, name: str, options: Options, scrub: Scrubber) -> Service:
    part_name = name.split(".", 1)[1] if "." in name else name
    return webhook.build(key=key, name=name, part_name=part_name, options=options, scrub=scrub)


def _build_email(key: str, name: str, options: Options, scrub: Scrubber) -> Service:
    return mail.build(key=key, name=name, options=options, scrub=scrub)


BUILDERS: dict[str, Builder] = {
    slack.TYPE: _build_slack,
    pagerduty.TYPE: _build_pagerduty,
    webhook.TYPE: _build_webhook,
    mail.TYPE: _build_email,
}
# Option values that are credentials even when written in the ConfigMap itself.
_SENSITIVE_FIELDS = ("token", "password", "signingSecret", "webhookURL")


def secret_values(secrets: Mapping[str, str]) -> list[str]:
    """Every value of the notifications Secret, for the redactor (ActiveSecrets)."""
    return sorted({value for value in secrets.values() if value})


def build_services(cm_data: Mapping[str, str],
                   secrets: Mapping[str, str]) -> tuple[dict[str, Service], list[ConfigError]]:
    """The services the ConfigMap configures, by subscription name, and one error per
    entry that cannot be used (one bad entry never hides the others)."""
    services: dict[str, Service] = {}
    owners: dict[str, str] = {}
    errors: list[ConfigError] = []
    for key in sorted(k for k in cm_data if k.startswith(SERVICE_PREFIX)):
        try:
            name = key[len(SERVICE_PREFIX):]
            service_type, _, custom = name.partition(".")
            subscription = custom or service_type
            if subscription in owners:
                raise ConfigError(MSG_DUPLICATE.format(key=key, name=subscription,
                                                       other=owners[subscription]),
                                  service_key=key)
            service = _build_one(key=key, name=name, service_type=service_type,
                                 text=cm_data[key], secrets=secrets)
        except ConfigError as exc:
            errors.append(exc)
            continue
        services[subscription] = service
        owners[subscription] = key
    return services, errors


def _build_one(*, key: str, name: str, service_type: str, text: str,
               secrets: Mapping[str, str]) -> Service:
    builder = BUILDERS.get(service_type)
    if builder is None:
        raise ConfigError(MSG_UNSUPPORTED.format(key=key, type=service_type,
                                                 supported=", ".join(sorted(BUILDERS))),
                          service_key=key, field="")
    try:
        raw = yaml.safe_load(text or "") or {}
    except yaml.YAMLError as exc:
        # The parser's message quotes the offending line, which may hold a literal token.
        where = getattr(exc, "problem_mark", None)
        error = f"line {where.line + 1}, column {where.column + 1}" if where else "syntax error"
        raise ConfigError(MSG_BAD_YAML.format(key=key, error=error), service_key=key) from None
    if not isinstance(raw, Mapping):
        raise ConfigError(MSG_NOT_MAPPING.format(key=key), service_key=key)
    used: set[str] = set()
    data = {str(k): _substitute(v, key=key, field=str(k), secrets=secrets, used=used)
            for k, v in raw.items()}
    sensitive = used | _literal_credentials(data)
    return builder(key, name, Options(key, data), Scrubber(sensitive))


def _substitute(value: Any, *, key: str, field: str, secrets: Mapping[str, str],
                used: set[str]) -> Any:
    """``value`` with every ``$name`` in its strings replaced from ``secrets``."""
    if isinstance(value, str):
        def replace(match: re.Match[str]) -> str:
            ref = match.group(1)
            # The longest key the reference starts with: "$token-suffix" is the key
            # "token" followed by text when the Secret has no "token-suffix".
            known = next((ref[:end] for end in range(len(ref), 0, -1) if ref[:end] in secrets),
                         None)
            if known is None:
                raise ConfigError(MSG_MISSING_SECRET.format(key=key, field=field, secret=ref),
                                  service_key=key, field=field)
            used.add(secrets[known])
            return secrets[known] + ref[len(known):]
        return _REFERENCE.sub(replace, value)
    if isinstance(value, Mapping):
        return {str(k): _substitute(v, key=key, field=f"{field}.{k}", secrets=secrets, used=used)
                for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, key=key, field=f"{field}[{i}]", secrets=secrets, used=used)
                for i, v in enumerate(value)]
    return value


def _literal_credentials(data: Mapping[str, Any]) -> set[str]:
    """Credentials written in the ConfigMap itself (no ``$``): still never shown."""
    found = {str(data[f]) for f in _SENSITIVE_FIELDS if isinstance(data.get(f), str)}
    keys = data.get("serviceKeys")
    if isinstance(keys, Mapping):
        found |= {v for v in keys.values() if isinstance(v, str)}
    auth = data.get("basicAuth")
    if isinstance(auth, Mapping) and isinstance(auth.get("password"), str):
        found.add(auth["password"])
    headers = data.get("headers")
    if isinstance(headers, list):
        found |= {str(h["value"]) for h in headers
                  if isinstance(h, Mapping) and isinstance(h.get("value"), str)}
    return {value for value in found if value}
