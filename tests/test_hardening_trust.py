"""Issue 7, defect 1: state read back from a status never steers a write to someone else's object.

An AnalysisRun has no status subresource, so whoever may update a run may rewrite
its measurements' metadata. These tests give the job provider such metadata (a Job
in another namespace, a Job of the same namespace that the run did not create, a
Job carrying the run's label but no ownerReference) and check that it reads,
deletes and adopts none of them, and says so in an Error measurement. The last
tests check the rollout side: only ReplicaSets and AnalysisRuns whose controller
ownerReference is the Rollout itself are in the reconcile's view, so nothing a
status names can make the controller scale, annotate or terminate another object.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from analysis.api.phases import AnalysisPhase
from analysis.providers.base import MeasurementContext
from analysis.providers.job import (
    METRIC_NAME_ANNOTATION,
    RUN_UID_LABEL,
    JobProvider,
    build_job,
    job_name,
)
from rollouts.kube import observe

NOW = datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)
RUN_UID = "3f2a9c1e-8b7d-4e5f-a1b2-c3d4e5f60718"
RUN = "inference-rollout-abc-2"
NAMESPACE = "ml-serving"
VICTIM_NAMESPACE = "payments"
METRIC = "smoke-test"
JOB_SPEC = {
    "backoffLimit": 0,
    "template": {
        "spec": {
            "restartPolicy": "Never",
            "containers": [{"name": "check", "image": "busybox", "command": ["true"]}],
        }
    },
}


def _ctx(metric: str = METRIC) -> MeasurementContext:
    return MeasurementContext(
        namespace=NAMESPACE,
        run_name=RUN,
        run_uid=RUN_UID,
        metric={"name": metric, "provider": {"job": {"spec": JOB_SPEC}}},
        now=NOW,
    )


def _not_found() -> ApiException:
    exc = ApiException(status=404, reason="Not Found")
    exc.body = json.dumps({"message": "not found"})
    return exc


class RecordingBatch:
    """Jobs by (namespace, name), as raw camelCase dicts; every call is recorded."""

    def __init__(self) -> None:
        self.jobs: dict[tuple[str, str], dict[str, Any]] = {}
        self.calls: list[tuple[str, str, str]] = []

    def create_namespaced_job(self, *, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        name = body["metadata"]["name"]
        self.calls.append(("create", namespace, name))
        stored = json.loads(json.dumps(body))
        stored["metadata"]["creationTimestamp"] = f"2023-11-14T22:{len(self.jobs):02d}:00Z"
        self.jobs[(namespace, name)] = stored
        return stored

    def read_namespaced_job(self, *, name: str, namespace: str) -> dict[str, Any]:
        self.calls.append(("read", namespace, name))
        if (namespace, name) not in self.jobs:
            raise _not_found()
        return self.jobs[(namespace, name)]

    def list_namespaced_job(self, *, namespace: str, label_selector: str) -> dict[str, Any]:
        self.calls.append(("list", namespace, label_selector))
        key, _, value = label_selector.partition("=")
        return {
            "items": [
                job
                for (ns, _), job in self.jobs.items()
                if ns == namespace and (job["metadata"].get("labels") or {}).get(key) == value
            ]
        }

    def delete_namespaced_job(self, *, name: str, namespace: str, propagation_policy: str) -> None:
        self.calls.append(("delete", namespace, name))
        if self.jobs.pop((namespace, name), None) is None:
            raise _not_found()

    def touched(self, namespace: str) -> list[tuple[str, str, str]]:
        return [call for call in self.calls if call[1] == namespace]

    def deletes(self) -> list[tuple[str, str, str]]:
        return [call for call in self.calls if call[0] == "delete"]


def _own_job(index: int, *, metric: str = METRIC) -> dict[str, Any]:
    """The Job the provider itself would create for measurement ``index``."""
    name = job_name(run_uid=RUN_UID, metric=metric, index=index)
    body = build_job(ctx=_ctx(metric), config={"spec": JOB_SPEC}, name=name, index=index)
    body["metadata"]["creationTimestamp"] = f"2023-11-14T22:0{index}:00Z"
    return body


def _impostor(index: int, *, owner: bool, label: bool, annotation: bool) -> dict[str, Any]:
    """A Job in the run's namespace with the derived name, missing some of the run's marks."""
    job = _own_job(index)
    meta = job["metadata"]
    if not owner:
        meta["ownerReferences"] = [
            {"apiVersion": "batch/v1", "kind": "CronJob", "name": "nightly", "uid": "cron-uid"}
        ]
    if not label:
        meta["labels"].pop(RUN_UID_LABEL)
    if not annotation:
        meta["annotations"][METRIC_NAME_ANNOTATION] = "some-other-metric"
    return job


def _victim(batch: RecordingBatch, namespace: str, name: str) -> None:
    batch.jobs[(namespace, name)] = {
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": "billing"}},
        "spec": JOB_SPEC,
    }


DERIVED_1 = job_name(run_uid=RUN_UID, metric=METRIC, index=1)


# -- resume / terminate with metadata pointing elsewhere ---------------------------

POINTED_ELSEWHERE = [
    pytest.param(
        {"job-name": "db-migrate", "job-namespace": VICTIM_NAMESPACE},
        (VICTIM_NAMESPACE, "db-migrate"),
        id="another-namespace-another-name",
    ),
    pytest.param(
        {"job-name": DERIVED_1, "job-namespace": VICTIM_NAMESPACE},
        (VICTIM_NAMESPACE, DERIVED_1),
        id="another-namespace-derived-name",
    ),
    pytest.param(
        {"job-name": "db-migrate", "job-namespace": NAMESPACE},
        (NAMESPACE, "db-migrate"),
        id="same-namespace-not-a-name-of-this-run",
    ),
    pytest.param(
        {"job-name": "db-migrate"},
        (NAMESPACE, "db-migrate"),
        id="no-namespace-not-a-name-of-this-run",
    ),
    pytest.param(
        {"job-name": job_name(run_uid=RUN_UID, metric="other-metric", index=1)},
        (NAMESPACE, job_name(run_uid=RUN_UID, metric="other-metric", index=1)),
        id="a-job-of-another-metric-of-this-run",
    ),
    pytest.param(
        {"job-name": job_name(run_uid="0000-other-run", metric=METRIC, index=1)},
        (NAMESPACE, job_name(run_uid="0000-other-run", metric=METRIC, index=1)),
        id="a-job-of-another-run",
    ),
]


@pytest.mark.parametrize(("metadata", "victim"), POINTED_ELSEWHERE)
def test_resume_never_reads_a_job_the_metadata_points_at_elsewhere(
    metadata: dict[str, str], victim: tuple[str, str]
) -> None:
    batch = RecordingBatch()
    _victim(batch, *victim)
    observation = JobProvider(batch).resume(_ctx(), metadata)
    assert observation.phase is AnalysisPhase.ERROR
    assert f"AnalysisRun {NAMESPACE}/{RUN}" in observation.message
    assert f'metric "{METRIC}"' in observation.message
    assert f"Job {victim[0]}/{victim[1]}" in observation.message
    assert "refusing" in observation.message
    assert batch.calls == []
    # The refusal does not carry the pointer on into the status.
    assert observation.metadata == {}


@pytest.mark.parametrize(("metadata", "victim"), POINTED_ELSEWHERE)
def test_terminate_never_deletes_a_job_the_metadata_points_at_elsewhere(
    metadata: dict[str, str], victim: tuple[str, str]
) -> None:
    batch = RecordingBatch()
    _victim(batch, *victim)
    observation = JobProvider(batch).terminate(_ctx(), metadata)
    assert observation.phase is AnalysisPhase.ERROR
    assert f"AnalysisRun {NAMESPACE}/{RUN}" in observation.message
    assert f"Job {victim[0]}/{victim[1]}" in observation.message
    assert batch.calls == []
    assert victim in batch.jobs


IMPOSTORS = [
    pytest.param(dict(owner=False, label=True, annotation=True), id="no-owner-reference"),
    pytest.param(dict(owner=True, label=False, annotation=True), id="no-run-uid-label"),
    pytest.param(dict(owner=True, label=True, annotation=False), id="another-metric-annotation"),
]


@pytest.mark.parametrize("marks", IMPOSTORS)
def test_resume_refuses_a_derived_name_job_the_run_does_not_own(marks: dict[str, bool]) -> None:
    batch = RecordingBatch()
    batch.jobs[(NAMESPACE, DERIVED_1)] = _impostor(1, **marks)
    observation = JobProvider(batch).resume(
        _ctx(), {"job-name": DERIVED_1, "job-namespace": NAMESPACE}
    )
    assert observation.phase is AnalysisPhase.ERROR
    assert "not owned by this AnalysisRun" in observation.message
    assert f"AnalysisRun {NAMESPACE}/{RUN}" in observation.message
    assert batch.deletes() == []


def test_resume_does_not_delete_an_impostor_stuck_pulling_its_image() -> None:
    class StuckPods:
        def list_namespaced_pod(self, *, namespace: str, label_selector: str) -> dict[str, Any]:
            waiting = {"reason": "ImagePullBackOff", "message": "nope"}
            state = {"containerStatuses": [{"name": "c", "state": {"waiting": waiting}}]}
            return {"items": [{"status": state}]}

    batch = RecordingBatch()
    batch.jobs[(NAMESPACE, DERIVED_1)] = _impostor(1, owner=False, label=True, annotation=True)
    observation = JobProvider(batch, core_api=StuckPods()).resume(
        _ctx(), {"job-name": DERIVED_1, "job-namespace": NAMESPACE}
    )
    assert observation.phase is AnalysisPhase.ERROR
    assert batch.deletes() == []


@pytest.mark.parametrize("marks", IMPOSTORS)
def test_terminate_refuses_a_derived_name_job_the_run_does_not_own(marks: dict[str, bool]) -> None:
    batch = RecordingBatch()
    batch.jobs[(NAMESPACE, DERIVED_1)] = _impostor(1, **marks)
    observation = JobProvider(batch).terminate(
        _ctx(), {"job-name": DERIVED_1, "job-namespace": NAMESPACE}
    )
    assert observation.phase is AnalysisPhase.ERROR
    assert "not owned by this AnalysisRun" in observation.message
    assert batch.deletes() == []
    assert (NAMESPACE, DERIVED_1) in batch.jobs


# -- our own Jobs still work --------------------------------------------------------


def test_terminate_deletes_the_runs_own_job_and_tolerates_it_gone() -> None:
    batch = RecordingBatch()
    provider = JobProvider(batch)
    started = provider.run(_ctx())
    assert started.metadata == {"job-name": DERIVED_1, "job-namespace": NAMESPACE}
    observation = provider.terminate(_ctx(), started.metadata)
    assert observation.phase is AnalysisPhase.INCONCLUSIVE
    assert batch.deletes() == [("delete", NAMESPACE, DERIVED_1)]
    again = provider.terminate(_ctx(), started.metadata)
    assert again.phase is AnalysisPhase.INCONCLUSIVE
    assert batch.deletes() == [("delete", NAMESPACE, DERIVED_1)]


def test_resume_reads_the_runs_own_job_as_a_client_model() -> None:
    """The typed client's snake_case models carry the same marks."""

    class ModelBatch(RecordingBatch):
        def read_namespaced_job(self, *, name: str, namespace: str) -> Any:
            self.calls.append(("read", namespace, name))
            return k8s.V1Job(
                metadata=k8s.V1ObjectMeta(
                    name=name,
                    namespace=namespace,
                    labels={RUN_UID_LABEL: RUN_UID},
                    annotations={METRIC_NAME_ANNOTATION: METRIC},
                    owner_references=[
                        k8s.V1OwnerReference(
                            api_version="argoproj.io/v1alpha1",
                            kind="AnalysisRun",
                            name=RUN,
                            uid=RUN_UID,
                        )
                    ],
                ),
                status=k8s.V1JobStatus(
                    conditions=[k8s.V1JobCondition(type="Complete", status="True")]
                ),
            )

    observation = JobProvider(ModelBatch()).resume(_ctx(), {"job-name": DERIVED_1})
    assert observation.phase is AnalysisPhase.SUCCESSFUL


# -- run and garbage_collect select by label AND owner reference --------------------


def test_run_does_not_adopt_an_active_labelled_job_without_our_owner_reference() -> None:
    batch = RecordingBatch()
    impostor = _impostor(7, owner=False, label=True, annotation=True)
    batch.jobs[(NAMESPACE, impostor["metadata"]["name"])] = impostor
    observation = JobProvider(batch).run(_ctx())
    assert observation.phase is AnalysisPhase.RUNNING
    assert observation.metadata["job-name"] == DERIVED_1
    assert ("create", NAMESPACE, DERIVED_1) in batch.calls


def test_run_refuses_to_adopt_a_same_named_job_without_our_owner_reference() -> None:
    class Conflict(RecordingBatch):
        def create_namespaced_job(self, *, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
            self.calls.append(("create", namespace, body["metadata"]["name"]))
            exc = ApiException(status=409, reason="Conflict")
            exc.body = json.dumps({"message": "jobs.batch already exists"})
            raise exc

    batch = Conflict()
    # The run's label but someone else's owner: the create collides, the read refuses it.
    batch.jobs[(NAMESPACE, DERIVED_1)] = _impostor(1, owner=False, label=True, annotation=True)
    observation = JobProvider(batch).run(_ctx())
    assert observation.phase is AnalysisPhase.ERROR
    assert "belongs to something else" in observation.message
    assert batch.deletes() == []


def test_garbage_collect_deletes_only_jobs_with_the_label_and_our_owner_reference() -> None:
    batch = RecordingBatch()
    for index in (1, 2, 3):
        job = _own_job(index)
        batch.jobs[(NAMESPACE, job["metadata"]["name"])] = job
    impostor = _impostor(4, owner=False, label=True, annotation=True)
    impostor["metadata"]["name"] = "billing-report"
    batch.jobs[(NAMESPACE, "billing-report")] = impostor
    JobProvider(batch).garbage_collect(_ctx(), limit=1)
    assert sorted(batch.deletes()) == [
        ("delete", NAMESPACE, job_name(run_uid=RUN_UID, metric=METRIC, index=1)),
        ("delete", NAMESPACE, job_name(run_uid=RUN_UID, metric=METRIC, index=2)),
    ]
    assert (NAMESPACE, "billing-report") in batch.jobs


# -- the rollout side: only children the Rollout controls are in the view -----------


def _child(name: str, refs: list[dict[str, Any]]) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": NAMESPACE, "ownerReferences": refs}}


ROLLOUT_UID = "rollout-uid-1"
CONTROLLER_REF = {"kind": "Rollout", "name": "web", "uid": ROLLOUT_UID, "controller": True}


@pytest.mark.parametrize(
    ("refs", "owned"),
    [
        pytest.param([CONTROLLER_REF], True, id="controller-ref-to-this-rollout"),
        pytest.param(
            [{**CONTROLLER_REF, "controller": False}], False, id="non-controller-ref-is-not-enough"
        ),
        pytest.param(
            [
                {"kind": "Deployment", "name": "web", "uid": "dep-uid", "controller": True},
                {**CONTROLLER_REF, "controller": False},
            ],
            False,
            id="controlled-by-something-else",
        ),
        pytest.param([{**CONTROLLER_REF, "uid": "older-namesake"}], False, id="older-namesake"),
    ],
)
def test_only_children_this_rollout_controls_are_observed(
    refs: list[dict[str, Any]], owned: bool
) -> None:
    children = observe._owned([_child("web-abc", refs)], ROLLOUT_UID)
    assert bool(children) is owned


def test_a_rollout_without_a_uid_owns_nothing() -> None:
    assert observe._owned([_child("web-abc", [CONTROLLER_REF])], None) == ()
