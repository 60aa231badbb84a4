"""The scheduling half of a cycle (spec §5.2, steps 1-6) over in-memory data.

``await schedule(framework, sub, inventory, clusters, state)`` either returns a
:class:`ScheduleResult` (the placement to bind) or raises :class:`FitError` (no placement, with
the reason of every rejected cluster).  Nothing here touches the API: the caller feeds it
clusters from informers and binds the result, so the whole decision is testable with plain
values and measurable in-process (bench/bench_scheduler.py).
"""

from __future__ import annotations

import asyncio
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from clusternet.apis.apps.v1alpha1 import (
    FeedInventory,
    ReplicaDividingType,
    SchedulingStrategy,
    Subscription,
)
from clusternet.scheduler.framework import (
    MAX_CLUSTER_SCORE,
    STATE_CLUSTERS,
    STATE_NOTES,
    STATE_PREDICTED,
    STATE_PREVIOUS,
    ClusterInfo,
    ClusterScore,
    Code,
    CycleState,
    FeedReplicas,
    Framework,
    PreviousPlacement,
    Status,
    TargetClusters,
)
from clusternet.scheduler.plugins.subgroup import select_by_subgroup

# Below this many clusters every cluster is searched (kube-scheduler's minFeasibleNodesToFind).
MIN_FEASIBLE_CLUSTERS_TO_FIND = 100
MIN_FEASIBLE_CLUSTERS_PERCENTAGE = 5


class SchedulingError(Exception):
    """A plugin failed (Code.ERROR): retry with backoff, keep the current placement."""


class FitError(Exception):
    """No placement: ``histogram`` counts the reasons clusters were rejected for."""

    def __init__(self, num_clusters: int, histogram: Mapping[str, int], reason: str = "") -> None:
        self.num_clusters = num_clusters
        self.histogram = dict(histogram)
        self.reason = reason
        super().__init__(self.message)

    @property
    def message(self) -> str:
        """kube-scheduler's format: ``0/3 clusters are available: 1 ..., 2 ....``; reasons in
        alphabetical order so that the same situation always reads the same."""
        if self.reason and not self.histogram:
            return f"0/{self.num_clusters} clusters are available: {self.reason}."
        parts = [f"{count} {reason}" for reason, count in sorted(self.histogram.items())]
        text = f"0/{self.num_clusters} clusters are available: {', '.join(parts)}."
        return f"{text} {self.reason}." if self.reason else text


@dataclass
class ScheduleResult:
    targets: TargetClusters
    evaluated: int
    """Clusters that went through Filter."""
    feasible: int
    """Clusters that passed Filter (and Predict, when it ran)."""
    notes: list[str] = field(default_factory=list)


def is_dividing(sub: Subscription) -> bool:
    return sub.spec.scheduling_strategy is SchedulingStrategy.DIVIDING


def is_dynamic(sub: Subscription) -> bool:
    dividing = sub.spec.dividing_scheduling
    return (
        is_dividing(sub) and dividing is not None and dividing.type is ReplicaDividingType.DYNAMIC
    )


def num_clusters_to_find(percentage: int, num_all: int) -> int:
    """kube-scheduler's adaptive search size: 50% - N/125 of the clusters, at least 5% and at
    least 100; every cluster below 100."""
    if num_all < MIN_FEASIBLE_CLUSTERS_TO_FIND or percentage >= 100:
        return num_all
    if percentage <= 0:
        percentage = max(50 - num_all // 125, MIN_FEASIBLE_CLUSTERS_PERCENTAGE)
    return max(num_all * percentage // 100, MIN_FEASIBLE_CLUSTERS_TO_FIND)


async def schedule(
    framework: Framework,
    sub: Subscription,
    inventory: FeedInventory | None,
    clusters: Sequence[ClusterInfo],
    state: CycleState | None = None,
) -> ScheduleResult:
    """One scheduling attempt; raises FitError (no placement) or SchedulingError (retry)."""
    state = state if state is not None else CycleState()
    state.write(STATE_NOTES, [])
    previous = PreviousPlacement.of(sub)
    state.write(STATE_PREVIOUS, previous)
    if not clusters:
        raise FitError(0, {}, "no clusters are registered")
    if is_dividing(sub) and inventory is None:
        raise SchedulingError("the FeedInventory of this Dividing Subscription does not exist yet")

    feasible, evaluated = _filter(framework, state, sub, clusters)
    state.write(STATE_CLUSTERS, {c.key: c for c in feasible})

    if is_dynamic(sub) and framework.predict and inventory is not None:
        if _needs_prediction(inventory, feasible, previous):
            feasible = await _predict(framework, state, sub, inventory, feasible)
        else:
            state.write(STATE_PREDICTED, {})

    ranked = _score(framework, state, sub, feasible)
    if sub.spec.scheduling_by_sub_group:
        selected, missing = select_by_subgroup(sub, ranked)
        if missing:
            raise FitError(len(clusters), {}, "; ".join(missing))
    else:
        selected = [c.key for c in ranked]

    targets = TargetClusters(clusters=selected)
    if is_dividing(sub):
        assert inventory is not None
        targets = _assign(framework, state, sub, inventory, targets)
    return ScheduleResult(
        targets=targets,
        evaluated=evaluated,
        feasible=len(feasible),
        notes=list(state.get(STATE_NOTES, [])),
    )


def _filter(
    framework: Framework, state: CycleState, sub: Subscription, clusters: Sequence[ClusterInfo]
) -> tuple[list[ClusterInfo], int]:
    for pre in framework.pre_filter:
        status = pre.pre_filter(state, sub)
        if status.code is Code.ERROR:
            raise SchedulingError(f"{pre.name}: {status.message}")
        if not status.is_success:
            raise FitError(len(clusters), {}, f"{pre.name}: {status.message}")

    # Replication must reach every matching cluster; only dynamic dividing, where using a
    # subset of good clusters is fine, may stop searching early.
    wanted = len(clusters)
    if is_dynamic(sub):
        wanted = num_clusters_to_find(framework.profile.percentage_of_clusters_to_score, wanted)
    feasible: list[ClusterInfo] = []
    failures: dict[str, Status] = {}  # the rejecting plugin's status, per cluster
    rejected_by: dict[str, str] = {}
    evaluated = 0
    # Bound methods looked up once: this loop runs clusters x filters times per cycle.
    filters = [(plugin.name, plugin.filter) for plugin in framework.filter]
    success = Code.SUCCESS
    for cluster in clusters:
        if len(feasible) >= wanted:
            break
        evaluated += 1
        for name, run_filter in filters:
            status = run_filter(state, sub, cluster)
            if status.code is success:
                continue
            if status.code is Code.ERROR:
                raise SchedulingError(f"{name} on {cluster.key}: {status.message}")
            failures[cluster.key] = status
            rejected_by[cluster.key] = name
            break  # the first failing filter decides, as upstream
        else:
            feasible.append(cluster)
    if not feasible:
        if framework.post_filter:
            labelled = {k: s.with_plugin(rejected_by[k]) for k, s in failures.items()}
            for post in framework.post_filter:
                post.post_filter(state, sub, labelled)
        raise FitError(len(clusters), _histogram(failures.values()))
    return feasible, evaluated


def _histogram(statuses: Iterable[Status]) -> Counter[str]:
    histogram: Counter[str] = Counter()
    for status in statuses:
        for reason in status.reasons:
            histogram[reason] += 1
    return histogram


def _needs_prediction(
    inventory: FeedInventory, feasible: Sequence[ClusterInfo], previous: PreviousPlacement
) -> bool:
    """Whether any workload's replicas must move: its desired count differs from what the
    still-feasible clusters run.  If not, asking every predictor would change nothing."""
    keys = [c.key for c in feasible]
    for order in inventory.spec.feeds:
        if order.desired_replicas is None:
            continue
        running = sum(previous.replicas_on(order.key, key) for key in keys)
        if running != order.desired_replicas or order.key not in previous.replicas:
            return True
    return False


async def _predict(
    framework: Framework,
    state: CycleState,
    sub: Subscription,
    inventory: FeedInventory,
    feasible: list[ClusterInfo],
) -> list[ClusterInfo]:
    for pre in framework.pre_predict:
        status = pre.pre_predict(state, sub, inventory, feasible)
        if status.code is Code.ERROR:
            raise SchedulingError(f"{pre.name}: {status.message}")
        if not status.is_success:
            raise FitError(len(feasible), {}, f"{pre.name}: {status.message}")

    async def one(cluster: ClusterInfo) -> tuple[FeedReplicas | None, Status]:
        merged: FeedReplicas | None = None
        for plugin in framework.predict:
            replicas, status = await plugin.predict(state, sub, inventory, cluster)
            if not status.is_success:
                return None, status.with_plugin(plugin.name)
            # Several predictors: a cluster can take what every one of them allows.
            merged = (
                dict(replicas)
                if merged is None
                else {k: min(v, replicas.get(k, v)) for k, v in merged.items()}
            )
        return merged or {}, Status()

    results = await asyncio.gather(*(one(c) for c in feasible))
    predicted: dict[str, FeedReplicas] = {}
    failed: dict[str, Status] = {}
    for cluster, (replicas, status) in zip(feasible, results, strict=True):
        if replicas is None:
            failed[cluster.key] = status
        else:
            predicted[cluster.key] = replicas
    if failed:
        # FeasibleClustersToleration: up to percentageOfClustersToTolerate % of the clusters
        # may fail; they are left out of the division (upstream multiplied instead of
        # dividing by 100, and then failed the assignment anyway: spec §12 item 4).
        tolerated = math.floor(
            len(feasible) * framework.profile.percentage_of_clusters_to_tolerate / 100
        )
        if not framework.tolerate_predictor_failures or len(failed) > tolerated:
            if all(s.is_unschedulable for s in failed.values()) and not predicted:
                raise FitError(len(feasible), _histogram(list(failed.values())))
            detail = "; ".join(f"{k}: {s.message}" for k, s in sorted(failed.items()))
            raise SchedulingError(
                f"predicting replicas failed on {len(failed)} cluster(s): {detail}"
            )
        notes: list[str] = state.read(STATE_NOTES)
        notes.append(f"left out {len(failed)} cluster(s) whose predictor failed")
        feasible = [c for c in feasible if c.key in predicted]
        state.write(STATE_CLUSTERS, {c.key: c for c in feasible})
    state.write(STATE_PREDICTED, predicted)
    return feasible


def _score(
    framework: Framework, state: CycleState, sub: Subscription, clusters: list[ClusterInfo]
) -> list[ClusterInfo]:
    """Clusters by weighted score, best first; equal scores by key (stable placements)."""
    if not framework.score:
        return sorted(clusters, key=lambda c: c.key)
    for pre in framework.pre_score:
        status = pre.pre_score(state, sub, clusters)
        if not status.is_success:
            raise SchedulingError(f"{pre.name}: {status.message}")
    totals = dict.fromkeys((c.key for c in clusters), 0)
    for plugin in framework.score:
        scores: list[ClusterScore] = []
        for cluster in clusters:
            value, status = plugin.score(state, sub, cluster)
            if not status.is_success:
                raise SchedulingError(f"{plugin.name} on {cluster.key}: {status.message}")
            scores.append(ClusterScore(cluster.key, value))
        normalize = getattr(plugin, "normalize_score", None)
        if normalize is not None:
            scores, status = normalize(state, sub, scores)
            if not status.is_success:
                raise SchedulingError(f"{plugin.name}: {status.message}")
        weight = framework.score_weights[plugin.name]
        for item in scores:
            if not 0 <= item.score <= MAX_CLUSTER_SCORE:
                raise SchedulingError(
                    f"{plugin.name} scored {item.cluster} {item.score}, outside 0..100"
                )
            totals[item.cluster] += item.score * weight
    return sorted(clusters, key=lambda c: (-totals[c.key], c.key))


def _assign(
    framework: Framework,
    state: CycleState,
    sub: Subscription,
    inventory: FeedInventory,
    targets: TargetClusters,
) -> TargetClusters:
    for pre in framework.pre_assign:
        status = pre.pre_assign(state, sub, inventory, targets)
        if status.is_skip:
            continue
        _raise_for(status, pre.name, len(targets.clusters))
    for plugin in framework.assign:
        assigned, status = plugin.assign(state, sub, inventory, targets)
        if status.is_skip:
            continue
        _raise_for(status, plugin.name, len(targets.clusters))
        return assigned
    raise FitError(
        len(targets.clusters),
        {},
        "no assign plugin handles this Subscription (is spec.dividingScheduling set?)",
    )


def _raise_for(status: Status, plugin: str, num_clusters: int) -> None:
    if status.is_success:
        return
    if status.code is Code.ERROR:
        raise SchedulingError(f"{plugin}: {status.message}")
    raise FitError(num_clusters, {}, status.message)
