"""The scheduling cycle over in-memory clusters: filters, scores, subgroups, division and
the reasons reported when nothing fits."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from clusternet.apis.apps.v1alpha1 import FeedInventory, Subscription
from clusternet.scheduler.algorithm import FitError, SchedulingError, schedule
from clusternet.scheduler.framework import (
    SUCCESS,
    ClusterInfo,
    CycleState,
    ExtensionPoint,
    FeedReplicas,
    Framework,
    Handle,
    PluginRef,
    Profile,
    Status,
)
from clusternet.scheduler.plugins import DEFAULT_PLUGINS, in_tree_registry

DEPLOY = "apps/v1/Deployment/shop/web"
NS_FEED = "v1/Namespace/shop"


def cluster(
    name: str,
    labels: Mapping[str, str] | None = None,
    *,
    taints: list[dict[str, str]] | None = None,
    ready: bool = True,
    predictor: bool = False,
) -> ClusterInfo:
    return ClusterInfo.from_object(
        {
            "metadata": {"name": name, "namespace": f"ns-{name}", "labels": dict(labels or {})},
            "spec": {"clusterId": f"id-{name}", "taints": taints or []},
            "status": {
                "conditions": [{"type": "Ready", "status": "True" if ready else "Unknown"}],
                "predictorEnabled": predictor,
                "predictorAddress": "http://predictor" if predictor else None,
                "predictorDirectAccess": predictor,
            },
        }
    )


def subscription(**spec: Any) -> Subscription:
    spec.setdefault("subscribers", [{"clusterAffinity": {}}])
    spec.setdefault(
        "feeds",
        [
            {"apiVersion": "v1", "kind": "Namespace", "name": "shop"},
            {"apiVersion": "apps/v1", "kind": "Deployment", "namespace": "shop", "name": "web"},
        ],
    )
    status = spec.pop("status", {})
    return Subscription.model_validate(
        {"metadata": {"name": "s", "namespace": "team"}, "spec": spec, "status": status}
    )


def inventory(desired: int | None = 6) -> FeedInventory:
    return FeedInventory.model_validate(
        {
            "metadata": {"name": "s", "namespace": "team"},
            "spec": {
                "feeds": [
                    {"apiVersion": "v1", "kind": "Namespace", "name": "shop"},
                    {
                        "apiVersion": "apps/v1",
                        "kind": "Deployment",
                        "namespace": "shop",
                        "name": "web",
                        "desiredReplicas": desired,
                        "replicaJsonPath": "/spec/replicas",
                    },
                ]
            },
        }
    )


class FakePredictor:
    """Capacity per cluster name; a missing name fails like an unreachable predictor."""

    name = "FakePredictor"

    def __init__(self, capacity: Mapping[str, int]) -> None:
        self.capacity = capacity
        self.calls = 0

    async def predict(
        self, state: CycleState, sub: Subscription, inv: FeedInventory, c: ClusterInfo
    ) -> tuple[FeedReplicas, Status]:
        self.calls += 1
        if c.name not in self.capacity:
            return {}, Status.error("connection refused")
        return {DEPLOY: self.capacity[c.name]}, SUCCESS


def framework(
    *, predictor: FakePredictor | None = None, tolerate: bool = False, **overrides: Any
) -> Framework:
    registry = in_tree_registry()
    plugins = {p: refs for p, refs in DEFAULT_PLUGINS.items() if p is not ExtensionPoint.BIND}
    plugins[ExtensionPoint.PREDICT] = ()
    if predictor is not None:
        registry.register(predictor.name, lambda _a, _h: predictor)
        plugins[ExtensionPoint.PREDICT] = (PluginRef(predictor.name),)
    plugins.update(overrides)
    profile = Profile("default", plugins, percentage_of_clusters_to_tolerate=50)
    return Framework(profile, registry, tolerate_predictor_failures=tolerate)


async def test_replication_binds_every_matching_ready_untainted_cluster() -> None:
    clusters = [
        cluster("a", {"env": "prod"}),
        cluster("b", {"env": "prod"}, taints=[{"key": "maint", "effect": "NoSchedule"}]),
        cluster("c", {"env": "dev"}),
        cluster("d", {"env": "prod"}, ready=False),
        cluster("e", {"env": "prod"}),
    ]
    sub = subscription(subscribers=[{"clusterAffinity": {"matchLabels": {"env": "prod"}}}])
    result = await schedule(framework(), sub, None, clusters)
    assert result.targets.clusters == ["ns-a/a", "ns-e/e"]
    assert result.targets.replicas == {}
    assert (result.evaluated, result.feasible) == (5, 2)


async def test_tolerations_and_match_expressions() -> None:
    clusters = [
        cluster("a", {"region": "west"}, taints=[{"key": "maint", "effect": "NoSchedule"}]),
        cluster("b", {"region": "east"}),
        cluster("c", {}),
    ]
    sub = subscription(
        subscribers=[
            {
                "clusterAffinity": {
                    "matchExpressions": [
                        {"key": "region", "operator": "In", "values": ["west", "east"]}
                    ]
                }
            }
        ],
        clusterTolerations=[{"key": "maint", "operator": "Exists"}],
    )
    result = await schedule(framework(), sub, None, clusters)
    assert result.targets.clusters == ["ns-a/a", "ns-b/b"]


async def test_fit_error_counts_every_reason() -> None:
    clusters = [
        cluster(
            "a", {"env": "prod"}, taints=[{"key": "maint", "value": "x", "effect": "NoSchedule"}]
        ),
        cluster(
            "b", {"env": "prod"}, taints=[{"key": "maint", "value": "x", "effect": "NoExecute"}]
        ),
        cluster("c", {"env": "dev"}),
        cluster("d", {"env": "prod"}, ready=False),
    ]
    sub = subscription(subscribers=[{"clusterAffinity": {"matchLabels": {"env": "prod"}}}])
    with pytest.raises(FitError) as caught:
        await schedule(framework(), sub, None, clusters)
    assert caught.value.message == (
        "0/4 clusters are available: "
        "1 cluster(s) didn't match the subscribers' cluster affinity, "
        "2 cluster(s) had taint {maint: x}, that the subscription didn't tolerate, "
        "1 cluster(s) were not ready."
    )


async def test_no_clusters_at_all() -> None:
    with pytest.raises(FitError, match="0/0 clusters are available: no clusters are registered"):
        await schedule(framework(), subscription(), None, [])


async def test_unready_cluster_kept_when_its_taint_is_tolerated() -> None:
    sub = subscription(
        clusterTolerations=[
            {
                "key": "clusters.clusternet.io/unschedulable",
                "operator": "Exists",
                "effect": "NoSchedule",
            }
        ]
    )
    result = await schedule(framework(), sub, None, [cluster("a", ready=False)])
    assert result.targets.clusters == ["ns-a/a"]


async def test_prefer_no_schedule_taints_order_subgroup_choice() -> None:
    soft = [{"key": "busy", "effect": "PreferNoSchedule"}]
    clusters = [
        cluster("a", {"region": "sh"}, taints=soft),
        cluster("b", {"region": "sh"}),
        cluster("c", {"region": "bj"}),
        cluster("d", {"region": "bj"}),
    ]
    sub = subscription(
        schedulingBySubGroup=True,
        subscribers=[
            {
                "clusterAffinity": {"matchLabels": {"region": "sh"}},
                "subGroupStrategy": {"minClusters": 1},
            },
            {
                "clusterAffinity": {"matchLabels": {"region": "bj"}},
                "subGroupStrategy": {"minClusters": 5},
            },
        ],
    )
    result = await schedule(framework(), sub, None, clusters)
    # Shanghai: the untainted one scores best; Beijing: fewer than 5, so all of them.
    assert result.targets.clusters == ["ns-b/b", "ns-c/c", "ns-d/d"]


async def test_subgroup_without_strategy_is_reported() -> None:
    sub = subscription(schedulingBySubGroup=True)
    with pytest.raises(FitError, match="subscriber 0 has no subGroupStrategy"):
        await schedule(framework(), sub, None, [cluster("a")])


async def test_static_dividing_by_subscriber_weights() -> None:
    clusters = [cluster("a", {"w": "1"}), cluster("b", {"w": "2"})]
    sub = subscription(
        schedulingStrategy="Dividing",
        dividingScheduling={"type": "Static"},
        subscribers=[
            {"clusterAffinity": {"matchLabels": {"w": "1"}}, "weight": 1},
            {"clusterAffinity": {"matchLabels": {"w": "2"}}, "weight": 2},
        ],
    )
    result = await schedule(framework(), sub, inventory(6), clusters)
    assert result.targets.clusters == ["ns-a/a", "ns-b/b"]
    assert result.targets.replicas == {NS_FEED: [], DEPLOY: [2, 4]}


async def test_static_dividing_with_subgroups() -> None:
    clusters = [
        cluster("sh1", {"r": "sh"}),
        cluster("sh2", {"r": "sh"}),
        cluster("bj", {"r": "bj"}),
    ]
    sub = subscription(
        schedulingStrategy="Dividing",
        dividingScheduling={"type": "Static"},
        schedulingBySubGroup=True,
        subscribers=[
            {
                "clusterAffinity": {"matchLabels": {"r": "sh"}},
                "weight": 2,
                "subGroupStrategy": {"minClusters": 1},
            },
            {
                "clusterAffinity": {"matchLabels": {"r": "bj"}},
                "weight": 1,
                "subGroupStrategy": {"minClusters": 1},
            },
        ],
    )
    bound = (await schedule(framework(), sub, inventory(6), clusters)).targets.sorted()
    assert bound.clusters == ["ns-bj/bj", "ns-sh1/sh1"]
    assert bound.replicas[DEPLOY] == [2, 4]


async def test_static_dividing_with_only_zero_weights_is_unschedulable() -> None:
    sub = subscription(schedulingStrategy="Dividing", dividingScheduling={"type": "Static"})
    with pytest.raises(FitError, match="static dividing needs at least one positive weight"):
        await schedule(framework(), sub, inventory(6), [cluster("a"), cluster("b")])


async def test_dividing_without_inventory_is_an_error_to_retry() -> None:
    sub = subscription(schedulingStrategy="Dividing", dividingScheduling={"type": "Static"})
    with pytest.raises(SchedulingError, match="FeedInventory"):
        await schedule(framework(), sub, None, [cluster("a")])


def dynamic_sub(**status: Any) -> Subscription:
    return subscription(
        schedulingStrategy="Dividing",
        dividingScheduling={"type": "Dynamic", "dynamicDividing": {"strategy": "Spread"}},
        status=status,
    )


async def test_dynamic_dividing_is_proportional_to_predicted_capacity() -> None:
    predictor = FakePredictor({"a": 10, "b": 20, "c": 30})
    clusters = [cluster(n) for n in "abc"]
    result = await schedule(framework(predictor=predictor), dynamic_sub(), inventory(12), clusters)
    assert result.targets.replicas[DEPLOY] == [2, 4, 6]


async def test_dynamic_dividing_changes_only_by_the_delta() -> None:
    predictor = FakePredictor({"a": 10, "b": 10, "c": 10})
    clusters = [cluster(n) for n in "abc"]
    bound = {"bindingClusters": ["ns-a/a", "ns-b/b", "ns-c/c"], "replicas": {DEPLOY: [1, 3, 0]}}
    result = await schedule(
        framework(predictor=predictor), dynamic_sub(**bound), inventory(8), clusters
    )
    assert result.targets.replicas[DEPLOY] == [3, 4, 1]


async def test_dynamic_dividing_skips_predictors_when_nothing_moves() -> None:
    predictor = FakePredictor({"a": 10, "b": 10})
    bound = {"bindingClusters": ["ns-a/a", "ns-b/b"], "replicas": {DEPLOY: [3, 3], NS_FEED: []}}
    result = await schedule(
        framework(predictor=predictor),
        dynamic_sub(**bound),
        inventory(6),
        [cluster("a"), cluster("b")],
    )
    assert predictor.calls == 0
    assert result.targets.replicas[DEPLOY] == [3, 3]


async def test_dynamic_dividing_moves_replicas_off_a_failed_cluster() -> None:
    predictor = FakePredictor({"a": 10, "b": 10, "c": 10})
    clusters = [cluster("a"), cluster("b", ready=False), cluster("c")]
    bound = {"bindingClusters": ["ns-a/a", "ns-b/b", "ns-c/c"], "replicas": {DEPLOY: [2, 2, 2]}}
    result = await schedule(
        framework(predictor=predictor), dynamic_sub(**bound), inventory(6), clusters
    )
    assert result.targets.clusters == ["ns-a/a", "ns-c/c"]
    assert result.targets.replicas[DEPLOY] == [3, 3]


async def test_predictor_failure_aborts_unless_tolerated() -> None:
    predictor = FakePredictor({"a": 10, "b": 10})  # c fails
    clusters = [cluster(n) for n in "abc"]
    with pytest.raises(SchedulingError, match="ns-c/c: connection refused"):
        await schedule(framework(predictor=predictor), dynamic_sub(), inventory(4), clusters)
    result = await schedule(
        framework(predictor=predictor, tolerate=True), dynamic_sub(), inventory(4), clusters
    )
    assert result.targets.clusters == ["ns-a/a", "ns-b/b"]
    assert result.targets.replicas[DEPLOY] == [2, 2]
    assert result.notes == ["left out 1 cluster(s) whose predictor failed"]


async def test_capacity_exhaustion_is_noted() -> None:
    predictor = FakePredictor({"a": 1, "b": 2})
    result = await schedule(
        framework(predictor=predictor), dynamic_sub(), inventory(5), [cluster("a"), cluster("b")]
    )
    assert result.targets.replicas[DEPLOY] == [1, 2]
    assert result.notes == [
        f"{DEPLOY}: 3 of 5 replicas placed, the clusters' predicted capacity is exhausted"
    ]


async def test_out_of_tree_filter_plugin() -> None:
    class OnlyEven:
        name = "OnlyEven"

        def filter(self, state: CycleState, sub: Subscription, c: ClusterInfo) -> Status:
            if int(c.labels["n"]) % 2 == 0:
                return SUCCESS
            return Status.unschedulable("cluster(s) were odd")

    registry = in_tree_registry()
    registry.register("OnlyEven", lambda _args, _handle: OnlyEven())
    with pytest.raises(ValueError, match="registered already"):
        registry.register("OnlyEven", lambda _args, _handle: OnlyEven())
    plugins = dict(DEFAULT_PLUGINS)
    plugins.pop(ExtensionPoint.BIND)
    plugins[ExtensionPoint.FILTER] = (*plugins[ExtensionPoint.FILTER], PluginRef("OnlyEven"))
    fwk = Framework(Profile("default", plugins), registry)
    result = await schedule(
        fwk, subscription(), None, [cluster(str(i), {"n": str(i)}) for i in range(4)]
    )
    assert result.targets.clusters == ["ns-0/0", "ns-2/2"]


def test_a_plugin_at_a_point_it_does_not_implement_is_rejected() -> None:
    plugins = {ExtensionPoint.SCORE: (PluginRef("ClusterReady"),)}
    with pytest.raises(ValueError, match="does not implement the score extension point"):
        Framework(Profile("default", plugins), in_tree_registry())


def test_default_binder_needs_a_handle() -> None:
    handle: Handle | None = None
    with pytest.raises(ValueError, match="API client"):
        Framework(Profile("default", dict(DEFAULT_PLUGINS)), in_tree_registry(), handle)
