"""ClusterReady: only clusters whose Ready condition is True are feasible.

A Subscription that tolerates the ``clusters.clusternet.io/unschedulable`` NoSchedule taint
(the taint the lifecycle controller puts on unready clusters) keeps unready clusters, as the
taint alone would let it upstream: tolerating it is the documented way to say "do not move my
workloads away when a cluster loses contact".
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from clusternet.apis import known
from clusternet.apis.apps.v1alpha1 import Subscription
from clusternet.apis.core import Taint
from clusternet.scheduler.framework import SUCCESS, ClusterInfo, CycleState, Handle, Status
from clusternet.scheduler.selectors import tolerates

NAME: Final = "ClusterReady"
REASON: Final = "cluster(s) were not ready"
_REJECTED: Final = Status.unschedulable(REASON)
_UNSCHEDULABLE = Taint(key=known.TAINT_CLUSTER_UNSCHEDULABLE, effect="NoSchedule")


class ClusterReady:
    name = NAME

    def filter(self, state: CycleState, sub: Subscription, cluster: ClusterInfo) -> Status:
        if cluster.ready:
            return SUCCESS
        if any(tolerates(t, _UNSCHEDULABLE) for t in sub.spec.cluster_tolerations or ()):
            return SUCCESS
        return _REJECTED


def new(_args: Mapping[str, Any], _handle: Handle | None) -> ClusterReady:
    return ClusterReady()
