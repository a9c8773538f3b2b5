"""Revision history: which old ReplicaSets ``revisionHistoryLimit`` says to delete, pure.

Called by ``rollouts.engine.reconcile.progress_plan`` once per reconcile of a valid
Rollout whose template and steps did not just change (where Argo's rolloutCanary
runs ``cleanupRollouts``, semantics reference §6 step 8.4); the names land in
``Plan.replica_sets_to_delete`` and rollouts/kube/apply.py deletes them.

Argo's rule, kept as it is: the candidates are the Rollout's ReplicaSets other than
the new (canary) and the stable one, without those already being deleted. If
there are more of them than the limit (default 10), the oldest ``excess`` of them
(by revision, then creation time) are looked at, and each is deleted only when it
is fully scaled down: ``spec.replicas`` 0, no pods left (``status.replicas`` 0) and
its controller has seen its last spec (``observedGeneration``). One still scaling
down is skipped, not replaced by a newer one; it goes on a later reconcile.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rollouts.api.constants import DEFAULT_REVISION_HISTORY_LIMIT
from rollouts.engine.observe import RSInfo, View


def history_limit(view: View) -> int:
    """``spec.revisionHistoryLimit``, default 10 (validation rejects a negative one)."""
    limit = view.rollout.spec.revision_history_limit
    return DEFAULT_REVISION_HISTORY_LIMIT if limit is None else max(limit, 0)


def replica_sets_to_delete(view: View) -> tuple[str, ...]:
    """Names of the old ReplicaSets to delete now, oldest revision first."""
    docs = {_name(doc): doc for doc in view.ctx.replica_sets}
    protected = {rs.name for rs in (view.new_rs, view.stable_rs) if rs is not None}
    cleanable = [
        rs
        for rs in view.others
        if rs.name not in protected and not _being_deleted(docs.get(rs.name))
    ]
    excess = len(cleanable) - history_limit(view)
    if excess <= 0:
        return ()
    oldest = sorted(cleanable, key=lambda rs: (rs.revision, _created(docs.get(rs.name)), rs.name))
    return tuple(rs.name for rs in oldest[:excess] if _scaled_down(rs, docs.get(rs.name)))


def _name(doc: Mapping[str, Any]) -> str:
    return str((doc.get("metadata") or {}).get("name", ""))


def _being_deleted(doc: Mapping[str, Any] | None) -> bool:
    return doc is not None and bool((doc.get("metadata") or {}).get("deletionTimestamp"))


def _created(doc: Mapping[str, Any] | None) -> str:
    # RFC 3339 in UTC ("...Z") as the API server writes it sorts as text.
    return str(((doc or {}).get("metadata") or {}).get("creationTimestamp") or "")


def _scaled_down(rs: RSInfo, doc: Mapping[str, Any] | None) -> bool:
    if rs.spec != 0 or rs.pods != 0:
        return False
    metadata = (doc or {}).get("metadata") or {}
    generation = metadata.get("generation")
    observed = ((doc or {}).get("status") or {}).get("observedGeneration")
    if isinstance(generation, int) and isinstance(observed, int):
        return observed >= generation
    # A fake or partial object without generations: nothing says it is behind.
    return not isinstance(generation, int)
