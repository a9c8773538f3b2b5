"""Phase/message order (Argo's CalculateRolloutPhase) and condition timestamps."""

from __future__ import annotations

from typing import Any

import pytest

from rollouts.api.constants import ConditionType
from rollouts.engine.status import Cond, PhaseInputs, phase_and_message, set_condition

BASE: dict[str, Any] = dict(
    conditions=[],
    spec_paused=False,
    pause_reasons=[],
    controller_pause=False,
    restarting=False,
    spec_replicas=4,
    replicas=4,
    updated=4,
    available=4,
    basic_canary=True,
    stable_hash="a",
    current_hash="a",
)
INVALID = {"type": "InvalidSpec", "status": "True", "reason": "InvalidSpec", "message": "bad"}
ABORTED = {"type": "Progressing", "status": "False", "reason": "RolloutAborted", "message": "Rollout aborted update to revision 2"}


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        pytest.param({}, ("Healthy", ""), id="healthy"),
        pytest.param({"conditions": [INVALID], "spec_paused": True}, ("Degraded", "InvalidSpec: bad"), id="invalid-first"),
        pytest.param({"conditions": [ABORTED], "spec_paused": True}, ("Degraded", "RolloutAborted: Rollout aborted update to revision 2"), id="aborted-before-paused"),
        pytest.param({"spec_paused": True, "pause_reasons": ["CanaryPauseStep"]}, ("Paused", "manually paused"), id="manual-pause-first"),
        pytest.param({"pause_reasons": ["InconclusiveAnalysisRun", "CanaryPauseStep"]}, ("Paused", "InconclusiveAnalysisRun"), id="first-pause-reason"),
        pytest.param({"controller_pause": True}, ("Progressing", "waiting for rollout to unpause"), id="unpausing"),
        pytest.param({"restarting": True, "updated": 1}, ("Progressing", "rollout is restarting"), id="restarting"),
        pytest.param({"updated": 1}, ("Progressing", "more replicas need to be updated"), id="more-replicas"),
        pytest.param({"available": 3}, ("Progressing", "updated replicas are still becoming available"), id="becoming-available"),
        pytest.param({"replicas": 5}, ("Progressing", "old replicas are pending termination"), id="old-pending-basic"),
        pytest.param({"replicas": 5, "basic_canary": False}, ("Healthy", ""), id="old-pods-fine-with-traffic-routing"),
        pytest.param({"stable_hash": "b"}, ("Progressing", "waiting for all steps to complete"), id="waiting-steps"),
    ],
)
def test_phase_order(changes: dict[str, Any], expected: tuple[str, str]) -> None:
    phase, message = phase_and_message(PhaseInputs(**{**BASE, **changes}))
    assert (str(phase), message) == expected


def test_condition_timestamps_kept_unless_changed() -> None:
    conditions: list[dict[str, Any]] = []
    cond = Cond(ConditionType.AVAILABLE, "True", "AvailableReason", "ok")
    set_condition(conditions, cond, "t1")
    set_condition(conditions, cond, "t2")
    assert conditions == [{"type": "Available", "status": "True", "reason": "AvailableReason", "message": "ok", "lastTransitionTime": "t1", "lastUpdateTime": "t1"}]
    set_condition(conditions, Cond(ConditionType.AVAILABLE, "True", "AvailableReason", "changed"), "t3")
    assert (conditions[0]["lastTransitionTime"], conditions[0]["lastUpdateTime"]) == ("t1", "t3")
    set_condition(conditions, Cond(ConditionType.AVAILABLE, "False", "AvailableReason", "changed"), "t4")
    assert (conditions[0]["lastTransitionTime"], conditions[0]["lastUpdateTime"]) == ("t4", "t4")
    set_condition(conditions, Cond(ConditionType.AVAILABLE, "False", "AvailableReason", "changed"), "t5", touch=True)
    assert (conditions[0]["lastTransitionTime"], conditions[0]["lastUpdateTime"]) == ("t4", "t5")
