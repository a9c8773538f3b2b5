"""Application and AppProject models: the seed round-trips unchanged; errors name the field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from common.api import SpecError
from gitops.api import (
    parse_app_project,
    parse_application,
)

SEED = Path(__file__).parent / "fixtures" / "seed" / "application-and-project.yaml"


def _docs() -> dict[str, dict[str, Any]]:
    return {d["kind"]: d for d in yaml.safe_load_all(SEED.read_text()) if d}


def test_seed_application_round_trips_without_losing_a_field() -> None:
    doc = _docs()["Application"]
    app = parse_application(doc)
    assert app.to_json() == doc
    assert app.spec.sync_policy is not None and app.spec.sync_policy.automated is not None
    assert app.spec.sync_policy.automated.self_heal is True
    assert app.spec.source is not None and app.spec.source.repo_url == "https://github.com/org/ml-platform-config"


def test_seed_app_project_round_trips_without_losing_a_field() -> None:
    doc = _docs()["AppProject"]
    project = parse_app_project(doc)
    assert project.to_json() == doc
    assert [(g.group, g.kind) for g in project.spec.cluster_resource_whitelist or []] == [
        ("", "Namespace"), ("apiextensions.k8s.io", "CustomResourceDefinition"),
    ]


def test_unknown_fields_survive() -> None:
    doc = _docs()["Application"]
    doc = {**doc, "spec": {**doc["spec"], "futureField": {"x": 1}}}
    assert parse_application(doc).to_json()["spec"]["futureField"] == {"x": 1}


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d["spec"].pop("project"), "Application argocd/ml-platform: spec.project: Field required"),
        (lambda d: d["spec"]["syncPolicy"]["retry"].update(limit="five"),
         "Application argocd/ml-platform: spec.syncPolicy.retry.limit: Input should be a valid integer"),
    ],
    ids=["missing-project", "retry-limit-not-int"],
)
def test_bad_application_names_object_and_field(mutate: Any, message: str) -> None:
    doc = _docs()["Application"]
    mutate(doc)
    with pytest.raises(SpecError) as err:
        parse_application(doc)
    assert str(err.value) == message
