"""views/appdiff.py's Secret masking: an Application's diff (tidegate app diff, the dashboard)
shows which keys of a Secret differ, never their values."""

from __future__ import annotations

import json
from typing import Any

import pytest

from views.appdiff import LAST_APPLIED, SECRET_CHANGED, SECRET_SAME, masked_secrets

VALUE_LIVE, VALUE_GIT = "aHVudGVyMg==", "Y29ycmVjdC1ob3JzZQ=="


def secret(data: dict[str, str], **extra: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db", **extra}, "data": data}


@pytest.mark.parametrize(("live", "git", "expected_live", "expected_git"), [
    pytest.param({"user": "YQ==", "password": VALUE_LIVE}, {"user": "YQ==", "password": VALUE_GIT},
                 {"user": SECRET_SAME, "password": SECRET_SAME}, {"user": SECRET_SAME, "password": SECRET_CHANGED},
                 id="one-key-changed"),
    pytest.param({"password": VALUE_LIVE}, {"password": VALUE_LIVE, "token": VALUE_GIT},
                 {"password": SECRET_SAME}, {"password": SECRET_SAME, "token": SECRET_CHANGED}, id="key-added"),
    pytest.param({"password": VALUE_LIVE, "old": VALUE_GIT}, {"password": VALUE_LIVE},
                 {"password": SECRET_SAME, "old": SECRET_SAME}, {"password": SECRET_SAME}, id="key-removed"),
])
def test_a_secret_diff_names_keys_not_values(live: dict[str, str], git: dict[str, str],
                                             expected_live: dict[str, str], expected_git: dict[str, str]) -> None:
    shown_live, shown_git = masked_secrets(secret(live), secret(git))
    assert shown_live is not None and shown_git is not None
    assert (shown_live["data"], shown_git["data"]) == (expected_live, expected_git)
    assert VALUE_LIVE not in repr((shown_live, shown_git)) and VALUE_GIT not in repr((shown_live, shown_git))


def test_string_data_and_the_last_applied_copy_are_masked_and_the_inputs_untouched() -> None:
    live = secret({}, annotations={LAST_APPLIED: json.dumps({"data": {"password": VALUE_LIVE}})})
    git = {**secret({}), "stringData": {"password": "correct-horse"}}
    shown_live, shown_git = masked_secrets(live, git)
    assert shown_git is not None and shown_git["stringData"] == {"password": SECRET_CHANGED}
    assert shown_live is not None and shown_live["metadata"]["annotations"][LAST_APPLIED] == SECRET_SAME
    assert git["stringData"] == {"password": "correct-horse"}  # a copy was masked, not the caller's object
    assert VALUE_LIVE in live["metadata"]["annotations"][LAST_APPLIED]


def test_a_missing_secret_shows_only_masked_values() -> None:
    _, shown_git = masked_secrets(None, secret({"password": VALUE_GIT}))
    assert shown_git is not None and shown_git["data"] == {"password": SECRET_CHANGED}


def test_other_kinds_are_shown_as_they_are() -> None:
    config = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"mode": "a"}}
    assert masked_secrets(config, config) == (config, config)
