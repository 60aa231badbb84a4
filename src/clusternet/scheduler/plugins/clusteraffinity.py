"""ClusterAffinity: a cluster is feasible if any subscriber's ``clusterAffinity`` selects it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from clusternet.apis.apps.v1alpha1 import Subscription
from clusternet.scheduler.framework import SUCCESS, ClusterInfo, CycleState, Handle, Status
from clusternet.scheduler.selectors import LabelMatcher, compile_selector

NAME: Final = "ClusterAffinity"
REASON: Final = "cluster(s) didn't match the subscribers' cluster affinity"
_REJECTED: Final = Status.unschedulable(REASON, resolvable=False)
_STATE_KEY: Final = f"{NAME}/matchers"


class ClusterAffinity:
    name = NAME

    def pre_filter(self, state: CycleState, sub: Subscription) -> Status:
        # Compiled once per cycle, evaluated once per cluster.
        matchers = [compile_selector(s.cluster_affinity) for s in sub.spec.subscribers]
        state.write(_STATE_KEY, matchers)
        return SUCCESS

    def filter(self, state: CycleState, sub: Subscription, cluster: ClusterInfo) -> Status:
        matchers: list[LabelMatcher] | None = state.get(_STATE_KEY)
        if matchers is None:  # enabled at Filter only: compile here (slower, still correct)
            self.pre_filter(state, sub)
            matchers = state.read(_STATE_KEY)
        labels = cluster.labels
        for match in matchers:
            if match(labels):
                return SUCCESS
        return _REJECTED


def new(_args: Mapping[str, Any], _handle: Handle | None) -> ClusterAffinity:
    return ClusterAffinity()
