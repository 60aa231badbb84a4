"""The scheduling framework: extension points, statuses, cycle state, profiles and plugin registry.

Modelled on kube-scheduler's framework (``k8s.io/kubernetes/pkg/scheduler/framework``) with
Clusternet's extra points for replica division (spec §5.2):

    PreFilter → Filter → PostFilter → PrePredict → Predict → PreScore → Score (+NormalizeScore)
    → PreAssign → Assign → Reserve → Permit → PreBind → Bind → PostBind

A plugin is any object with a ``name`` and the methods of the points it implements; a profile
lists which plugins run at which point.  Points that only compute are synchronous (a filter
over 1,000 clusters must not pay for 1,000 task switches); points that may wait on the network
(Predict, Permit, PreBind, Bind, PostBind) are coroutines.

Out-of-tree plugins register a factory in a :class:`Registry` and are then enabled by name
from a profile, exactly as in-tree ones.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum
from typing import Any, Protocol, runtime_checkable

from clusternet.apis import known
from clusternet.apis.apps.v1alpha1 import FeedInventory, Subscription
from clusternet.apis.core import Taint

MAX_CLUSTER_SCORE = 100
MIN_CLUSTER_SCORE = 0

# CycleState keys the algorithm writes for plugins.
STATE_CLUSTERS = "clusternet.io/clusters"
"""dict[str, ClusterInfo]: every feasible cluster by key (after Filter)."""
STATE_PREDICTED = "clusternet.io/predicted"
"""dict[str, FeedReplicas]: per cluster key, the predicted capacity (after Predict)."""
STATE_PREVIOUS = "clusternet.io/previous"
"""PreviousPlacement: what the Subscription is bound to now."""
STATE_NOTES = "clusternet.io/notes"
"""list[str]: remarks for the Scheduled condition (e.g. capacity exhausted)."""


class Code(IntEnum):
    SUCCESS = 0
    ERROR = 1
    """Something broke (the API, a predictor): retried with backoff."""
    UNSCHEDULABLE = 2
    """The cluster does not fit now, but could after a change (e.g. capacity frees up)."""
    UNSCHEDULABLE_AND_UNRESOLVABLE = 3
    """The cluster does not fit and only a change of the cluster or the spec can fix that."""
    WAIT = 4
    """Permit: hold the binding until a plugin allows or rejects it."""
    SKIP = 5
    """The plugin has nothing to do for this Subscription (e.g. a static assigner on Dynamic)."""


@dataclass(frozen=True, slots=True)
class Status:
    code: Code = Code.SUCCESS
    reasons: tuple[str, ...] = ()
    plugin: str = ""
    """The plugin that returned it (filled in by the framework)."""

    @classmethod
    def unschedulable(cls, *reasons: str, resolvable: bool = True) -> Status:
        code = Code.UNSCHEDULABLE if resolvable else Code.UNSCHEDULABLE_AND_UNRESOLVABLE
        return cls(code, reasons)

    @classmethod
    def error(cls, reason: str) -> Status:
        return cls(Code.ERROR, (reason,))

    @property
    def is_success(self) -> bool:
        return self.code is Code.SUCCESS

    @property
    def is_skip(self) -> bool:
        return self.code is Code.SKIP

    @property
    def is_unschedulable(self) -> bool:
        return self.code in (Code.UNSCHEDULABLE, Code.UNSCHEDULABLE_AND_UNRESOLVABLE)

    @property
    def message(self) -> str:
        return ", ".join(self.reasons)

    def with_plugin(self, plugin: str) -> Status:
        return self if self.plugin else Status(self.code, self.reasons, plugin)


SUCCESS = Status()
SKIP = Status(Code.SKIP)


class CycleState:
    """Data plugins share within one scheduling cycle (PreFilter computes, Filter reads)."""

    def __init__(self) -> None:
        self._data: dict[str, Any] = {}

    def write(self, key: str, value: Any) -> None:
        self._data[key] = value

    def read(self, key: str) -> Any:
        """The value; KeyError if no plugin wrote it (a profile misconfiguration)."""
        return self._data[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self._data.get(key, default)


# --- what is scheduled onto -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ClusterInfo:
    """The scheduling-relevant view of one ManagedCluster, parsed once per change of it."""

    namespace: str
    name: str
    cluster_id: str
    labels: Mapping[str, str]
    taints: tuple[Taint, ...]
    ready: bool
    """The Ready condition is True."""
    predictor_enabled: bool = False
    predictor_address: str | None = None
    predictor_direct_access: bool = False
    key: str = ""
    """``<namespace>/<name>``: the form of ``status.bindingClusters`` (computed once)."""

    def __post_init__(self) -> None:
        if not self.key:
            object.__setattr__(self, "key", f"{self.namespace}/{self.name}")

    @classmethod
    def from_object(cls, obj: Mapping[str, Any]) -> ClusterInfo:
        """From a ManagedCluster as the API returns it (a dict: parsing the whole model for
        every heartbeat of 1,000 clusters would cost more than scheduling)."""
        metadata = obj["metadata"]
        spec = obj.get("spec") or {}
        status = obj.get("status") or {}
        ready = any(
            c.get("type") == known.CONDITION_READY and c.get("status") == "True"
            for c in status.get("conditions") or ()
        )
        return cls(
            namespace=metadata["namespace"],
            name=metadata["name"],
            cluster_id=spec.get("clusterId", ""),
            labels=dict(metadata.get("labels") or {}),
            taints=tuple(Taint.model_validate(t) for t in spec.get("taints") or ()),
            ready=ready,
            predictor_enabled=bool(status.get("predictorEnabled")),
            predictor_address=status.get("predictorAddress") or None,
            predictor_direct_access=bool(status.get("predictorDirectAccess")),
        )


FeedReplicas = dict[str, int]
"""Per feed key, a number of replicas (a prediction of capacity, or an assignment)."""


@dataclass
class TargetClusters:
    """The placement being built: clusters, and per feed key replicas aligned with them."""

    clusters: list[str] = field(default_factory=list)
    replicas: dict[str, list[int]] = field(default_factory=dict)

    def sorted(self) -> TargetClusters:
        """Clusters in alphabetical order, every replica list permuted along (what is bound)."""
        order = sorted(range(len(self.clusters)), key=lambda i: self.clusters[i])
        return TargetClusters(
            clusters=[self.clusters[i] for i in order],
            replicas={
                feed: ([values[i] for i in order] if values else [])
                for feed, values in self.replicas.items()
            },
        )


@dataclass(frozen=True, eq=False)
class PreviousPlacement:
    """What the Subscription is bound to now (its status), for incremental division."""

    clusters: tuple[str, ...] = ()
    replicas: Mapping[str, Sequence[int]] = field(default_factory=dict)

    @classmethod
    def of(cls, sub: Subscription) -> PreviousPlacement:
        return cls(tuple(sub.status.binding_clusters or ()), dict(sub.status.replicas or {}))

    @classmethod
    def of_object(cls, obj: Mapping[str, Any]) -> PreviousPlacement:
        status = obj.get("status") or {}
        return cls(tuple(status.get("bindingClusters") or ()), dict(status.get("replicas") or {}))

    def __eq__(self, other: object) -> bool:
        # Replica lists compare by value whatever their sequence type.
        if not isinstance(other, PreviousPlacement):
            return NotImplemented
        return self.clusters == other.clusters and _normalized(self.replicas) == _normalized(
            other.replicas
        )

    def __hash__(self) -> int:
        return hash(self.clusters)

    def replicas_on(self, feed: str, cluster: str) -> int:
        values = self.replicas.get(feed) or ()
        try:
            index = self.clusters.index(cluster)
        except ValueError:
            return 0
        return int(values[index]) if index < len(values) else 0


def _normalized(replicas: Mapping[str, Sequence[int]]) -> dict[str, list[int]]:
    return {feed: [int(v) for v in values] for feed, values in replicas.items()}


@dataclass(frozen=True, slots=True)
class ClusterScore:
    cluster: str
    score: int


# --- extension points -----------------------------------------------------------------------


@runtime_checkable
class Plugin(Protocol):
    @property
    def name(self) -> str: ...


@runtime_checkable
class PreFilterPlugin(Plugin, Protocol):
    def pre_filter(self, state: CycleState, sub: Subscription) -> Status: ...


@runtime_checkable
class FilterPlugin(Plugin, Protocol):
    def filter(self, state: CycleState, sub: Subscription, cluster: ClusterInfo) -> Status: ...


@runtime_checkable
class PostFilterPlugin(Plugin, Protocol):
    def post_filter(
        self, state: CycleState, sub: Subscription, statuses: Mapping[str, Status]
    ) -> Status:
        """Runs when no cluster passed Filter; ``statuses`` are the per-cluster failures."""
        ...


@runtime_checkable
class PrePredictPlugin(Plugin, Protocol):
    def pre_predict(
        self,
        state: CycleState,
        sub: Subscription,
        inventory: FeedInventory,
        clusters: Sequence[ClusterInfo],
    ) -> Status: ...


@runtime_checkable
class PredictPlugin(Plugin, Protocol):
    async def predict(
        self, state: CycleState, sub: Subscription, inventory: FeedInventory, cluster: ClusterInfo
    ) -> tuple[FeedReplicas, Status]:
        """The most replicas of each workload feed the cluster can take."""
        ...


@runtime_checkable
class PreScorePlugin(Plugin, Protocol):
    def pre_score(
        self, state: CycleState, sub: Subscription, clusters: Sequence[ClusterInfo]
    ) -> Status: ...


@runtime_checkable
class ScorePlugin(Plugin, Protocol):
    def score(
        self, state: CycleState, sub: Subscription, cluster: ClusterInfo
    ) -> tuple[int, Status]: ...


@runtime_checkable
class NormalizeScorePlugin(ScorePlugin, Protocol):
    def normalize_score(
        self, state: CycleState, sub: Subscription, scores: list[ClusterScore]
    ) -> tuple[list[ClusterScore], Status]:
        """Map raw scores to MIN_CLUSTER_SCORE..MAX_CLUSTER_SCORE."""
        ...


@runtime_checkable
class PreAssignPlugin(Plugin, Protocol):
    def pre_assign(
        self,
        state: CycleState,
        sub: Subscription,
        inventory: FeedInventory,
        targets: TargetClusters,
    ) -> Status: ...


@runtime_checkable
class AssignPlugin(Plugin, Protocol):
    def assign(
        self,
        state: CycleState,
        sub: Subscription,
        inventory: FeedInventory,
        targets: TargetClusters,
    ) -> tuple[TargetClusters, Status]:
        """Divide replicas; return SKIP for Subscriptions this assigner does not handle."""
        ...


@runtime_checkable
class ReservePlugin(Plugin, Protocol):
    def reserve(self, state: CycleState, sub: Subscription, targets: TargetClusters) -> Status: ...

    def unreserve(self, state: CycleState, sub: Subscription, targets: TargetClusters) -> None: ...


@runtime_checkable
class PermitPlugin(Plugin, Protocol):
    async def permit(self, state: CycleState, sub: Subscription, targets: TargetClusters) -> Status:
        """SUCCESS, an unschedulable status to reject, or WAIT: the coroutine itself waits
        (bounded by the plugin) and then returns SUCCESS or a rejection."""
        ...


@runtime_checkable
class PreBindPlugin(Plugin, Protocol):
    async def pre_bind(
        self, state: CycleState, sub: Subscription, targets: TargetClusters
    ) -> Status: ...


@runtime_checkable
class BindPlugin(Plugin, Protocol):
    async def bind(self, state: CycleState, sub: Subscription, targets: TargetClusters) -> Status:
        """Persist the placement; SKIP to let the next bind plugin do it."""
        ...


@runtime_checkable
class PostBindPlugin(Plugin, Protocol):
    async def post_bind(
        self, state: CycleState, sub: Subscription, targets: TargetClusters
    ) -> None: ...


class ExtensionPoint(StrEnum):
    PRE_FILTER = "preFilter"
    FILTER = "filter"
    POST_FILTER = "postFilter"
    PRE_PREDICT = "prePredict"
    PREDICT = "predict"
    PRE_SCORE = "preScore"
    SCORE = "score"
    PRE_ASSIGN = "preAssign"
    ASSIGN = "assign"
    RESERVE = "reserve"
    PERMIT = "permit"
    PRE_BIND = "preBind"
    BIND = "bind"
    POST_BIND = "postBind"


POINT_PROTOCOLS: Mapping[ExtensionPoint, Any] = {
    ExtensionPoint.PRE_FILTER: PreFilterPlugin,
    ExtensionPoint.FILTER: FilterPlugin,
    ExtensionPoint.POST_FILTER: PostFilterPlugin,
    ExtensionPoint.PRE_PREDICT: PrePredictPlugin,
    ExtensionPoint.PREDICT: PredictPlugin,
    ExtensionPoint.PRE_SCORE: PreScorePlugin,
    ExtensionPoint.SCORE: ScorePlugin,
    ExtensionPoint.PRE_ASSIGN: PreAssignPlugin,
    ExtensionPoint.ASSIGN: AssignPlugin,
    ExtensionPoint.RESERVE: ReservePlugin,
    ExtensionPoint.PERMIT: PermitPlugin,
    ExtensionPoint.PRE_BIND: PreBindPlugin,
    ExtensionPoint.BIND: BindPlugin,
    ExtensionPoint.POST_BIND: PostBindPlugin,
}


# --- registry and profiles ------------------------------------------------------------------


class Handle(Protocol):
    """What plugin factories may use from the running scheduler (None in pure tests)."""

    @property
    def client(self) -> Any: ...


PluginFactory = Callable[[Mapping[str, Any], "Handle | None"], Plugin]
"""``factory(args, handle)``: ``args`` from the profile's pluginConfig (``{}`` if none)."""


class Registry:
    """Plugin factories by name; in-tree plugins are registered by default, out-of-tree
    ones with :meth:`register` before the scheduler starts (kube-scheduler's WithPlugin)."""

    def __init__(self, factories: Mapping[str, PluginFactory] | None = None) -> None:
        self._factories: dict[str, PluginFactory] = dict(factories or {})

    def register(self, name: str, factory: PluginFactory) -> None:
        if name in self._factories:
            raise ValueError(f"a plugin named {name!r} is registered already")
        self._factories[name] = factory

    def __contains__(self, name: object) -> bool:
        return name in self._factories

    def names(self) -> list[str]:
        return sorted(self._factories)

    def create(self, name: str, args: Mapping[str, Any], handle: Handle | None) -> Plugin:
        try:
            factory = self._factories[name]
        except KeyError:
            raise ValueError(f"no plugin named {name!r} is registered") from None
        return factory(args, handle)


@dataclass(frozen=True)
class PluginRef:
    name: str
    weight: int | None = None
    """Score plugins only; 1 when unset."""


@dataclass(frozen=True)
class Profile:
    """Which plugins run at each point of one scheduler name (after merging with defaults)."""

    scheduler_name: str
    plugins: Mapping[ExtensionPoint, tuple[PluginRef, ...]]
    plugin_config: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    percentage_of_clusters_to_score: int = 0
    """Dividing/Dynamic only: share of clusters to search for feasible ones; 0 = adaptive."""
    percentage_of_clusters_to_tolerate: int = 10
    """Dividing/Dynamic with FeasibleClustersToleration: predictor failures tolerated, in %."""


class Framework:
    """One profile instantiated: the plugins of every point, in order, ready to run.

    A plugin enabled at several points is one instance (its PreFilter and Filter share
    state through the CycleState, and its fields if it likes).
    """

    def __init__(
        self,
        profile: Profile,
        registry: Registry,
        handle: Handle | None = None,
        *,
        tolerate_predictor_failures: bool = False,
    ) -> None:
        self.profile = profile
        self.tolerate_predictor_failures = tolerate_predictor_failures
        instances: dict[str, Plugin] = {}
        self.score_weights: dict[str, int] = {}
        points: dict[ExtensionPoint, list[Any]] = {point: [] for point in ExtensionPoint}
        for point, refs in profile.plugins.items():
            for ref in refs:
                plugin = instances.get(ref.name)
                if plugin is None:
                    args = profile.plugin_config.get(ref.name, {})
                    plugin = instances[ref.name] = registry.create(ref.name, args, handle)
                protocol = POINT_PROTOCOLS[point]
                if not isinstance(plugin, protocol):
                    raise ValueError(
                        f"plugin {ref.name!r} does not implement the {point.value} extension "
                        f"point (profile {profile.scheduler_name!r})"
                    )
                points[point].append(plugin)
                if point is ExtensionPoint.SCORE:
                    self.score_weights[ref.name] = ref.weight or 1
        self.plugins = instances
        self.pre_filter: list[PreFilterPlugin] = points[ExtensionPoint.PRE_FILTER]
        self.filter: list[FilterPlugin] = points[ExtensionPoint.FILTER]
        self.post_filter: list[PostFilterPlugin] = points[ExtensionPoint.POST_FILTER]
        self.pre_predict: list[PrePredictPlugin] = points[ExtensionPoint.PRE_PREDICT]
        self.predict: list[PredictPlugin] = points[ExtensionPoint.PREDICT]
        self.pre_score: list[PreScorePlugin] = points[ExtensionPoint.PRE_SCORE]
        self.score: list[ScorePlugin] = points[ExtensionPoint.SCORE]
        self.pre_assign: list[PreAssignPlugin] = points[ExtensionPoint.PRE_ASSIGN]
        self.assign: list[AssignPlugin] = points[ExtensionPoint.ASSIGN]
        self.reserve: list[ReservePlugin] = points[ExtensionPoint.RESERVE]
        self.permit: list[PermitPlugin] = points[ExtensionPoint.PERMIT]
        self.pre_bind: list[PreBindPlugin] = points[ExtensionPoint.PRE_BIND]
        self.bind: list[BindPlugin] = points[ExtensionPoint.BIND]
        self.post_bind: list[PostBindPlugin] = points[ExtensionPoint.POST_BIND]

    @property
    def scheduler_name(self) -> str:
        return self.profile.scheduler_name

    async def close(self) -> None:
        """Release what plugins hold (HTTP sessions); plugins opt in with ``aclose()``."""
        for plugin in self.plugins.values():
            aclose = getattr(plugin, "aclose", None)
            if aclose is not None:
                await aclose()

    # -- the binding half of the cycle (the scheduling half is in algorithm.py) ------------

    def run_reserve(self, state: CycleState, sub: Subscription, targets: TargetClusters) -> Status:
        for index, plugin in enumerate(self.reserve):
            status = plugin.reserve(state, sub, targets)
            if not status.is_success:
                # Only the plugins that reserved are told to roll back, in reverse order.
                for done in reversed(self.reserve[:index]):
                    done.unreserve(state, sub, targets)
                return status.with_plugin(plugin.name)
        return SUCCESS

    def run_unreserve(self, state: CycleState, sub: Subscription, targets: TargetClusters) -> None:
        for plugin in reversed(self.reserve):
            plugin.unreserve(state, sub, targets)

    async def run_permit(
        self, state: CycleState, sub: Subscription, targets: TargetClusters
    ) -> Status:
        """All permit plugins concurrently (a waiting one does not delay the others'
        verdicts); the first rejection, in profile order, wins."""
        if not self.permit:
            return SUCCESS
        results = await asyncio.gather(*(p.permit(state, sub, targets) for p in self.permit))
        for plugin, status in zip(self.permit, results, strict=True):
            if not status.is_success:
                return status.with_plugin(plugin.name)
        return SUCCESS

    async def run_pre_bind(
        self, state: CycleState, sub: Subscription, targets: TargetClusters
    ) -> Status:
        for plugin in self.pre_bind:
            status = await plugin.pre_bind(state, sub, targets)
            if not status.is_success:
                return status.with_plugin(plugin.name)
        return SUCCESS

    async def run_bind(
        self, state: CycleState, sub: Subscription, targets: TargetClusters
    ) -> Status:
        for plugin in self.bind:
            status = await plugin.bind(state, sub, targets)
            if status.is_skip:
                continue
            return status.with_plugin(plugin.name)
        return Status.error("no bind plugin bound the Subscription (all skipped)")

    async def run_post_bind(
        self, state: CycleState, sub: Subscription, targets: TargetClusters
    ) -> None:
        for plugin in self.post_bind:
            await plugin.post_bind(state, sub, targets)


def plugin_names(plugins: Iterable[Plugin]) -> list[str]:
    return [p.name for p in plugins]
