"""StaticAssigner and DynamicAssigner: divide each workload feed's desired replicas over the
selected clusters (spec §5.4).  Each one Skips Subscriptions of the other dividing type."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from clusternet.apis.apps.v1alpha1 import (
    DynamicDividingStrategy,
    FeedInventory,
    ReplicaDividingType,
    Subscription,
)
from clusternet.scheduler import division
from clusternet.scheduler.framework import (
    SKIP,
    STATE_CLUSTERS,
    STATE_NOTES,
    STATE_PREDICTED,
    STATE_PREVIOUS,
    SUCCESS,
    ClusterInfo,
    CycleState,
    FeedReplicas,
    Handle,
    PreviousPlacement,
    Status,
    TargetClusters,
)
from clusternet.scheduler.selectors import compile_selector

STATIC: Final = "StaticAssigner"
DYNAMIC: Final = "DynamicAssigner"
_CURRENT_KEY: Final = f"{DYNAMIC}/current"


def _dividing_type(sub: Subscription) -> ReplicaDividingType | None:
    dividing = sub.spec.dividing_scheduling
    return dividing.type if dividing is not None else None


class StaticAssigner:
    name = STATIC

    def assign(
        self,
        state: CycleState,
        sub: Subscription,
        inventory: FeedInventory,
        targets: TargetClusters,
    ) -> tuple[TargetClusters, Status]:
        if _dividing_type(sub) is not ReplicaDividingType.STATIC:
            return targets, SKIP
        clusters: dict[str, ClusterInfo] = state.read(STATE_CLUSTERS)
        matchers = [
            (compile_selector(s.cluster_affinity), s.weight or 0) for s in sub.spec.subscribers
        ]
        # A cluster's weight is the sum of the weights of every subscriber selecting it.
        weights = [
            sum(weight for match, weight in matchers if match(clusters[key].labels))
            for key in targets.clusters
        ]
        if not any(weights):
            # Upstream assigned nothing and every cluster then ran the template's own replica
            # count (spec §12 item 9): a silent multiplication. Refuse instead.
            return targets, Status.unschedulable(
                "every selected cluster has weight 0 (the subscribers' weights are all 0 or "
                "unset): static dividing needs at least one positive weight"
            )
        replicas: dict[str, list[int]] = {}
        for order in inventory.spec.feeds:
            if order.desired_replicas is None:
                replicas[order.key] = []
            else:
                replicas[order.key] = division.static_divide(order.desired_replicas, weights)
        return TargetClusters(list(targets.clusters), replicas), SUCCESS


class DynamicAssigner:
    """Spread: incremental, so that a change of the desired count moves only the difference,
    and clusters that left (no longer feasible) give their replicas to the others."""

    name = DYNAMIC

    def pre_assign(
        self,
        state: CycleState,
        sub: Subscription,
        inventory: FeedInventory,
        targets: TargetClusters,
    ) -> Status:
        if _dividing_type(sub) is not ReplicaDividingType.DYNAMIC:
            return SKIP
        dividing = sub.spec.dividing_scheduling
        assert dividing is not None
        dynamic = dividing.dynamic_dividing
        if dynamic is not None and dynamic.strategy is DynamicDividingStrategy.BINPACK:
            return Status.unschedulable(
                "dynamicDividing.strategy Binpack is not supported; use Spread", resolvable=False
            )
        # Deviation per feed: what the still-selected clusters run now, from the status.
        previous: PreviousPlacement = state.get(STATE_PREVIOUS) or PreviousPlacement.of(sub)
        current = {
            order.key: [previous.replicas_on(order.key, key) for key in targets.clusters]
            for order in inventory.spec.feeds
            if order.desired_replicas is not None
        }
        state.write(_CURRENT_KEY, current)
        return SUCCESS

    def assign(
        self,
        state: CycleState,
        sub: Subscription,
        inventory: FeedInventory,
        targets: TargetClusters,
    ) -> tuple[TargetClusters, Status]:
        if _dividing_type(sub) is not ReplicaDividingType.DYNAMIC:
            return targets, SKIP
        current: dict[str, list[int]] | None = state.get(_CURRENT_KEY)
        if current is None:
            status = self.pre_assign(state, sub, inventory, targets)
            if not status.is_success:
                return targets, status
            current = state.read(_CURRENT_KEY)
        predicted: dict[str, FeedReplicas] = state.get(STATE_PREDICTED) or {}
        notes: list[str] = state.get(STATE_NOTES, [])
        replicas: dict[str, list[int]] = {}
        for order in inventory.spec.feeds:
            if order.desired_replicas is None:
                replicas[order.key] = []
                continue
            capacity = [predicted.get(key, {}).get(order.key, 0) for key in targets.clusters]
            placed = division.dynamic_divide(order.desired_replicas, current[order.key], capacity)
            if sum(placed) < order.desired_replicas:
                notes.append(
                    f"{order.key}: {sum(placed)} of {order.desired_replicas} replicas placed, "
                    "the clusters' predicted capacity is exhausted"
                )
            replicas[order.key] = placed
        # Every selected cluster stays bound, with 0 replicas if so (as upstream): it still
        # gets the non-workload feeds, and the next scale-up may use it.
        return TargetClusters(list(targets.clusters), replicas), SUCCESS


def new_static(_args: Mapping[str, Any], _handle: Handle | None) -> StaticAssigner:
    return StaticAssigner()


def new_dynamic(_args: Mapping[str, Any], _handle: Handle | None) -> DynamicAssigner:
    return DynamicAssigner()
