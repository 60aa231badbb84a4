"""Property: any Subscription the API accepts, against any set of clusters, is either placed
or refused with FitError/SchedulingError and a message, never another exception; the same
input gives the same placement; a placement only names feasible clusters and, when dividing,
never places more replicas than desired (scheduler/algorithm.py)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pydantic
from hypothesis import assume, event, given, settings
from hypothesis import strategies as st

from clusternet.apis.apps.v1alpha1 import FeedInventory, Subscription
from clusternet.scheduler.algorithm import FitError, SchedulingError, schedule
from clusternet.scheduler.framework import (
    ClusterInfo,
    ExtensionPoint,
    Framework,
    PluginRef,
    Profile,
)
from clusternet.scheduler.plugins import DEFAULT_PLUGINS, in_tree_registry
from clusternet.scheduler.scheduler import parse_subscription

LABEL_KEYS = st.sampled_from(["env", "region", "tier"])
LABEL_VALUES = st.sampled_from(["a", "b", "c"])
LABELS = st.dictionaries(LABEL_KEYS, LABEL_VALUES, max_size=3)
EXPRESSION = st.fixed_dictionaries(
    {
        "key": LABEL_KEYS,
        "operator": st.sampled_from(["In", "NotIn", "Exists", "DoesNotExist", "Bogus"]),
    },
    optional={"values": st.lists(LABEL_VALUES, max_size=2)},
)
SELECTOR = st.fixed_dictionaries(
    {},
    optional={"matchLabels": LABELS, "matchExpressions": st.lists(EXPRESSION, max_size=2)},
)
SUBSCRIBER = st.fixed_dictionaries(
    {"clusterAffinity": SELECTOR},
    optional={
        "weight": st.integers(0, 5),
        "subGroupStrategy": st.fixed_dictionaries({}, optional={"minClusters": st.integers(0, 4)}),
    },
)
TAINT = st.fixed_dictionaries(
    {
        "key": st.sampled_from(["maint", "gpu"]),
        "effect": st.sampled_from(["NoSchedule", "NoExecute", "PreferNoSchedule"]),
    },
    optional={"value": LABEL_VALUES},
)
TOLERATION = st.fixed_dictionaries(
    {},
    optional={
        "key": st.sampled_from(["maint", "gpu", ""]),
        "operator": st.sampled_from(["Exists", "Equal"]),
        "value": LABEL_VALUES,
        "effect": st.sampled_from(["NoSchedule", "NoExecute", ""]),
    },
)
DEPLOY = {"apiVersion": "apps/v1", "kind": "Deployment", "namespace": "shop", "name": "web"}
SPEC = st.fixed_dictionaries(
    {
        "subscribers": st.lists(SUBSCRIBER, min_size=1, max_size=3),
        "feeds": st.just([DEPLOY]),
    },
    optional={
        "schedulingStrategy": st.sampled_from(["Replication", "Dividing", "Other"]),
        "dividingScheduling": st.fixed_dictionaries(
            {"type": st.sampled_from(["Static", "Dynamic"])},
            optional={
                "dynamicDividing": st.fixed_dictionaries(
                    {},
                    optional={
                        "strategy": st.sampled_from(["Spread", "Binpack"]),
                        "minClusters": st.integers(-1, 4),
                        "maxClusters": st.integers(-1, 4),
                    },
                )
            },
        ),
        "schedulingBySubGroup": st.booleans(),
        "clusterTolerations": st.lists(TOLERATION, max_size=2),
    },
)
CLUSTER = st.fixed_dictionaries(
    {
        "labels": LABELS,
        "taints": st.lists(TAINT, max_size=2),
        "ready": st.booleans(),
    }
)


def cluster(index: int, c: dict[str, Any]) -> ClusterInfo:
    name = f"c{index}"
    return ClusterInfo.from_object(
        {
            "metadata": {"name": name, "namespace": f"ns-{name}", "labels": c["labels"]},
            "spec": {"clusterId": f"id-{name}", "taints": c["taints"]},
            "status": {
                "conditions": [{"type": "Ready", "status": "True" if c["ready"] else "Unknown"}]
            },
        }
    )


def framework() -> Framework:
    plugins: dict[ExtensionPoint, tuple[PluginRef, ...]] = {
        p: refs for p, refs in DEFAULT_PLUGINS.items() if p is not ExtensionPoint.BIND
    }
    plugins[ExtensionPoint.PREDICT] = ()  # no predictor: dynamic dividing has no capacity
    profile = Profile("default", plugins, percentage_of_clusters_to_tolerate=50)
    return Framework(profile, in_tree_registry())


def inventory(desired: int) -> FeedInventory:
    feed = {**DEPLOY, "desiredReplicas": desired, "replicaJsonPath": "/spec/replicas"}
    return FeedInventory.model_validate(
        {"metadata": {"name": "s", "namespace": "team"}, "spec": {"feeds": [feed]}}
    )


def outcome(sub: Subscription, inv: FeedInventory | None, clusters: list[ClusterInfo]) -> Any:
    try:
        result = asyncio.run(schedule(framework(), sub, inv, clusters))
    except (FitError, SchedulingError) as err:
        return ("refused", type(err).__name__, str(err))
    return ("placed", result.targets.clusters, result.targets.replicas, result.feasible)


@settings(max_examples=200, deadline=None)
@given(
    spec=SPEC,
    clusters=st.lists(CLUSTER, max_size=5),
    desired=st.integers(0, 12),
    with_inventory=st.booleans(),
)
def test_any_subscription_is_placed_or_refused_with_a_reason(
    spec: dict[str, Any], clusters: list[dict[str, Any]], desired: int, with_inventory: bool
) -> None:
    obj = {"metadata": {"name": "s", "namespace": "team"}, "spec": spec}
    try:
        sub = parse_subscription(obj)
    except pydantic.ValidationError:
        sub = None  # the CRD schema refuses it before it reaches the scheduler
    assume(sub is not None)
    assert sub is not None
    infos = [cluster(i, c) for i, c in enumerate(clusters)]
    inv = inventory(desired) if with_inventory else None
    first = outcome(sub, inv, infos)
    assert outcome(sub, inv, infos) == first, "deterministic"
    event(first[0])
    if first[0] == "refused":
        assert first[2], "a refusal always says why"
        return
    _, placed, replicas, _feasible = first
    names = {c.key for c in infos}
    assert set(placed) <= names
    assert len(set(placed)) == len(placed), "a cluster is placed once"
    for counts in replicas.values():
        assert all(n >= 0 for n in counts)
        assert sum(counts) <= desired


@settings(max_examples=200, deadline=None)
@given(
    spec=st.dictionaries(
        st.sampled_from(["subscribers", "feeds", "schedulingStrategy", "priority", "x"]),
        st.recursive(
            st.none() | st.integers() | st.text(max_size=4),
            lambda inner: (
                st.lists(inner, max_size=3)
                | st.dictionaries(st.text(max_size=4), inner, max_size=3)
            ),
            max_leaves=8,
        ),
    )
)
def test_malformed_subscriptions_fail_validation_only(spec: dict[str, Any]) -> None:
    with contextlib.suppress(pydantic.ValidationError):
        parse_subscription({"metadata": {"name": "s", "namespace": "team"}, "spec": spec})
