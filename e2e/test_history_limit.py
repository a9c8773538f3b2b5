"""revisionHistoryLimit against the real cluster: old scaled-down ReplicaSets are deleted.

Given a Rollout with ``revisionHistoryLimit: 1`` in a fresh namespace and a
``tidegate controller`` watching only that namespace, When its image is updated
three times, each update promoted to Healthy, Then the cluster keeps only the
stable ReplicaSet and the one before it: the older ones are deleted, oldest
first, as Argo Rollouts' revision-history cleanup does (rollouts/engine/history.py
decides, rollouts/kube/apply.py deletes).
"""

from __future__ import annotations

import pytest

from e2e.conftest import wait_until
from e2e.kit import Cluster, Controller, rollout

pytestmark = pytest.mark.e2e

NAME = "model"
IMAGES = ("registry.local/model:v2", "registry.local/model:v3", "registry.local/model:v4")


def _healthy_on_new_hash(cluster: Cluster, previous: str) -> str:
    status = cluster.wait_status(
        NAME,
        lambda s: s.get("phase") == "Healthy" and s.get("stableRS") not in (None, previous)
        and s.get("stableRS") == s.get("currentPodHash"),
        timeout=90, message="Healthy on the new revision",
    )
    return str(status["stableRS"])


def _revisions(cluster: Cluster) -> dict[str, str]:
    """Pod-template hash -> revision annotation of every ReplicaSet the rollout has."""
    return {
        pod_hash: (rs.metadata.annotations or {}).get("rollout.argoproj.io/revision", "")
        for pod_hash, rs in cluster.replica_sets(NAME).items()
    }


def test_revision_history_limit_deletes_old_replica_sets(cluster: Cluster, controller: Controller) -> None:
    # Given a Rollout that keeps one old revision, healthy on v1
    manifest = rollout(NAME, replicas=2, steps=[{"setWeight": 50}], traffic=None)
    manifest["spec"]["revisionHistoryLimit"] = 1
    cluster.create(manifest)
    hashes = [_healthy_on_new_hash(cluster, previous="")]

    # When the image is updated three times, each update promoted to Healthy
    for image in IMAGES:
        cluster.set_image(NAME, image)
        hashes.append(_healthy_on_new_hash(cluster, previous=hashes[-1]))
        # Then only the stable ReplicaSet and the one before it are left (older ones deleted
        # once scaled down)
        kept = set(hashes[-2:])
        wait_until(lambda kept=kept: set(cluster.replica_sets(NAME)) == kept, timeout=30,
                   message=f"only {sorted(kept)} left, oldest deleted")

    assert len(set(hashes)) == 4
    assert _revisions(cluster) == {hashes[2]: "3", hashes[3]: "4"}
    status = cluster.rollout(NAME)["status"]
    assert status["phase"] == "Healthy" and status["stableRS"] == hashes[3]
