"""TaintToleration: Filter out clusters with an untolerated NoSchedule/NoExecute taint; Score
clusters by how few untolerated PreferNoSchedule taints they have."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from clusternet.apis.apps.v1alpha1 import Subscription
from clusternet.scheduler.framework import (
    MAX_CLUSTER_SCORE,
    SUCCESS,
    ClusterInfo,
    ClusterScore,
    CycleState,
    Handle,
    Status,
)
from clusternet.scheduler.selectors import describe_taint, untolerated

NAME: Final = "TaintToleration"
_HARD: Final = frozenset({"NoSchedule", "NoExecute"})
_SOFT: Final = frozenset({"PreferNoSchedule"})


class TaintToleration:
    name = NAME

    def filter(self, state: CycleState, sub: Subscription, cluster: ClusterInfo) -> Status:
        if not cluster.taints:
            return SUCCESS
        bad = untolerated(cluster.taints, sub.spec.cluster_tolerations or (), _HARD)
        if not bad:
            return SUCCESS
        return Status.unschedulable(
            f"cluster(s) had taint {describe_taint(bad[0])}, that the subscription didn't tolerate",
            resolvable=False,
        )

    def score(
        self, state: CycleState, sub: Subscription, cluster: ClusterInfo
    ) -> tuple[int, Status]:
        if not cluster.taints:
            return 0, SUCCESS
        # Only tolerations that can apply to PreferNoSchedule count (empty effect or that one).
        tolerations = [
            t
            for t in sub.spec.cluster_tolerations or ()
            if not t.effect or t.effect == "PreferNoSchedule"
        ]
        return len(untolerated(cluster.taints, tolerations, _SOFT)), SUCCESS

    def normalize_score(
        self, state: CycleState, sub: Subscription, scores: list[ClusterScore]
    ) -> tuple[list[ClusterScore], Status]:
        """Reverse: the fewest intolerable taints scores 100; all equal to zero → all 100."""
        highest = max((s.score for s in scores), default=0)
        if highest == 0:
            return [ClusterScore(s.cluster, MAX_CLUSTER_SCORE) for s in scores], SUCCESS
        return [
            ClusterScore(s.cluster, MAX_CLUSTER_SCORE - s.score * MAX_CLUSTER_SCORE // highest)
            for s in scores
        ], SUCCESS


def new(_args: Mapping[str, Any], _handle: Handle | None) -> TaintToleration:
    return TaintToleration()
