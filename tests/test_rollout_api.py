"""Rollout API models: YAML round-trips unchanged, bad input names object and field."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from rollouts.api import (
    ANNOTATION_ABORT,
    ANNOTATION_SCALE_DOWN_DEADLINE,
    ConditionReason,
    EventReason,
    RolloutPhase,
    SpecError,
    parse_rollout,
)

FIXTURES = Path(__file__).parent / "fixtures" / "rollouts"
SEED = Path(__file__).parent / "fixtures" / "seed" / "rollout-and-analysis.yaml"


def _rollouts() -> list[tuple[str, dict[str, Any]]]:
    found = []
    for path in [*sorted(FIXTURES.glob("*.yaml")), SEED]:
        if path.name.startswith("malformed"):
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") == "Rollout":
                found.append((path.stem, doc))
    return found


@pytest.mark.parametrize(("name", "doc"), _rollouts(), ids=[n for n, _ in _rollouts()])
def test_round_trip_is_identity(name: str, doc: dict[str, Any]) -> None:
    model = parse_rollout(copy.deepcopy(doc))
    assert model.model_dump(by_alias=True, exclude_unset=True, mode="json") == doc


def test_seed_fields_are_typed() -> None:
    doc = yaml.safe_load(SEED.read_text().split("---")[0])
    canary = parse_rollout(doc).spec.strategy.canary  # type: ignore[union-attr]
    assert canary is not None and canary.steps is not None
    assert canary.steps[0].set_weight == 10
    assert canary.steps[1].pause is not None and canary.steps[1].pause.duration == "5m"
    assert canary.traffic_routing is not None and canary.traffic_routing.istio is not None
    assert canary.traffic_routing.istio.virtual_service is not None
    assert canary.traffic_routing.istio.virtual_service.routes == ["primary"]


def test_status_keys_keep_argo_spelling() -> None:
    doc = yaml.safe_load((FIXTURES / "rich-basic.yaml").read_text())
    status = parse_rollout(doc).status
    assert status is not None
    assert status.hpa_replicas == 8 and status.stable_rs == "5f8d9c6b7d"
    assert status.observed_generation == "7"


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        pytest.param(
            lambda d: d["spec"]["strategy"]["canary"]["steps"][0].update(setWeight="ten"),
            "Rollout ml-serving/inference-rollout: spec.strategy.canary.steps[0].setWeight: "
            "Input should be a valid integer",
            id="string-weight",
        ),
        pytest.param(
            lambda d: d["spec"].update(replicas="3"),
            "Rollout ml-serving/inference-rollout: spec.replicas: Input should be a valid integer",
            id="quoted-replicas-not-coerced",
        ),
        pytest.param(
            lambda d: d["spec"]["strategy"]["canary"]["steps"][1]["pause"].update(duration=[1]),
            "Rollout ml-serving/inference-rollout: spec.strategy.canary.steps[1].pause.duration: "
            "Input should be a valid integer",
            id="list-duration",
        ),
    ],
)
def test_bad_input_names_object_and_field(mutate: Any, expected: str) -> None:
    doc = yaml.safe_load(SEED.read_text().split("---")[0])
    mutate(doc)
    with pytest.raises(SpecError) as err:
        parse_rollout(doc)
    assert str(err.value) == expected


def test_malformed_fixture() -> None:
    doc = yaml.safe_load((FIXTURES / "malformed-weight.yaml").read_text())
    with pytest.raises(SpecError, match=r"steps\[0\]\.setWeight"):
        parse_rollout(doc)


def test_constants_use_argo_strings() -> None:
    assert ANNOTATION_SCALE_DOWN_DEADLINE == "scale-down-deadline"
    assert ANNOTATION_ABORT == "tidegate.dev/abort"
    assert ConditionReason.ABORTED == "RolloutAborted"
    assert EventReason.STEP_COMPLETED == "RolloutStepCompleted"
    assert [p.value for p in RolloutPhase] == ["Progressing", "Paused", "Healthy", "Degraded"]
