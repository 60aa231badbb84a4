"""Subscription → Bases and replica Localizations (spec §2.3, §4.3, §4.4), table-driven."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from clusternet.apis import known
from clusternet.controllermanager.bases import (
    REPLICA_LOCALIZATION_PRIORITY,
    base_update,
    bound_namespaces,
    desired_base,
    divides_replicas,
    localization_update,
    missing_replica_localizations,
    plan_bases,
    replica_localization_name,
    replica_localizations,
    replica_localizations_annotation,
)

DEPLOY = {"apiVersion": "apps/v1", "kind": "Deployment", "namespace": "shop", "name": "web"}
NS_FEED = {"apiVersion": "v1", "kind": "Namespace", "name": "shop"}
CLUSTER_NS = {
    "clusternet-a": {known.CLUSTER_ID_LABEL: "id-a", known.CLUSTER_NAME_LABEL: "child1"},
    "clusternet-b": {known.CLUSTER_ID_LABEL: "id-b", known.CLUSTER_NAME_LABEL: "child2"},
}


def subscription(**overrides: Any) -> dict[str, Any]:
    sub: dict[str, Any] = {
        "apiVersion": "apps.clusternet.io/v1alpha1",
        "kind": "Subscription",
        "metadata": {"name": "web", "namespace": "team", "uid": "sub-uid"},
        "spec": {"feeds": [NS_FEED, DEPLOY], "subscribers": []},
        "status": {"bindingClusters": ["clusternet-a/child1", "clusternet-b/child2"]},
    }
    for key, value in overrides.items():
        section, _, field = key.partition("__")
        sub[section][field] = value
    return sub


def existing_base(
    namespace: str, name: str, created: str, sub: dict[str, Any] | None = None
) -> dict[str, Any]:
    base = desired_base(sub or subscription(), namespace, CLUSTER_NS.get(namespace, {}))
    base["metadata"] |= {"name": name, "uid": f"uid-{name}", "creationTimestamp": created}
    del base["metadata"]["generateName"]
    return base


def test_a_base_has_the_labels_finalizer_and_feeds_of_its_subscription() -> None:
    sub = subscription(metadata__annotations={known.IS_DEFAULT_CLUSTER_INIT_ANNOTATION: "true"})
    base = desired_base(sub, "clusternet-a", CLUSTER_NS["clusternet-a"])
    meta = base["metadata"]
    assert meta["generateName"] == "web-"  # the API server appends 5 random characters
    assert "name" not in meta
    assert "ownerReferences" not in meta
    assert meta["namespace"] == "clusternet-a"
    assert meta["finalizers"] == [known.APP_FINALIZER]
    assert meta["annotations"] == {known.IS_DEFAULT_CLUSTER_INIT_ANNOTATION: "true"}
    assert meta["labels"] == {
        known.OBJECT_CREATED_BY_LABEL: known.CLUSTERNET_CONTROLLER_MANAGER_NAME,
        known.CONFIG_KIND_LABEL: "Subscription",
        known.CONFIG_NAME_LABEL: "web",
        known.CONFIG_NAMESPACE_LABEL: "team",
        known.CONFIG_UID_LABEL: "sub-uid",
        known.CONFIG_SUBSCRIPTION_NAME_LABEL: "web",
        known.CONFIG_SUBSCRIPTION_NAMESPACE_LABEL: "team",
        known.CONFIG_SUBSCRIPTION_UID_LABEL: "sub-uid",
        known.CLUSTER_ID_LABEL: "id-a",
        known.CLUSTER_NAME_LABEL: "child1",
    }
    assert base["spec"] == {"feeds": [NS_FEED, DEPLOY]}
    assert "annotations" not in desired_base(subscription(), "clusternet-a", {})["metadata"]


def test_bound_namespaces_are_the_namespace_half_of_binding_clusters() -> None:
    assert bound_namespaces(subscription()) == ["clusternet-a", "clusternet-b"]
    assert bound_namespaces(subscription(status__bindingClusters=None)) == []


def names(objs: list[dict[str, Any]]) -> list[str]:
    return [o["metadata"].get("name") or o["metadata"]["namespace"] for o in objs]


@pytest.mark.parametrize(
    ("case", "existing", "namespaces", "pending", "create", "duplicates", "unbound", "missing"),
    [
        ("fresh", [], CLUSTER_NS, [], ["clusternet-a", "clusternet-b"], [], [], []),
        (
            "one exists",
            [("clusternet-a", "web-aaaaa", "2026-01-01T00:00:00Z")],
            CLUSTER_NS,
            [],
            ["clusternet-b"],
            [],
            [],
            [],
        ),
        (
            "namespace missing: skipped",
            [],
            {"clusternet-a": CLUSTER_NS["clusternet-a"]},
            [],
            ["clusternet-a"],
            [],
            [],
            ["clusternet-b"],
        ),
        (
            "just created, not cached yet",
            [],
            CLUSTER_NS,
            ["clusternet-b"],
            ["clusternet-a"],
            [],
            [],
            [],
        ),
        (
            "duplicates: the oldest stays",
            [
                ("clusternet-a", "web-new01", "2026-01-01T00:00:09Z"),
                ("clusternet-a", "web-old01", "2026-01-01T00:00:01Z"),
                ("clusternet-b", "web-bbbbb", "2026-01-01T00:00:00Z"),
            ],
            CLUSTER_NS,
            [],
            [],
            ["web-new01"],
            [],
            [],
        ),
        (
            "unbound cluster",
            [
                ("clusternet-a", "web-aaaaa", "2026-01-01T00:00:00Z"),
                ("clusternet-b", "web-bbbbb", "2026-01-01T00:00:00Z"),
                ("clusternet-c", "web-ccccc", "2026-01-01T00:00:00Z"),
            ],
            CLUSTER_NS,
            [],
            [],
            [],
            ["web-ccccc"],
            [],
        ),
    ],
)
def test_plan_bases(
    case: str,
    existing: list[tuple[str, str, str]],
    namespaces: dict[str, dict[str, str]],
    pending: list[str],
    create: list[str],
    duplicates: list[str],
    unbound: list[str],
    missing: list[str],
) -> None:
    bases = [existing_base(*args) for args in existing]
    plan = plan_bases(subscription(), bases, namespaces, pending)
    assert names(plan.create) == create, case
    assert names(plan.duplicates) == duplicates, case
    assert names(plan.unbound) == unbound, case
    assert plan.missing_namespaces == missing, case
    assert plan.update == [], case  # every existing Base is up to date


def test_bases_being_deleted_are_neither_kept_nor_deleted_again() -> None:
    going = existing_base("clusternet-a", "web-aaaaa", "2026-01-01T00:00:00Z")
    going["metadata"]["deletionTimestamp"] = "2026-01-02T00:00:00Z"
    plan = plan_bases(subscription(), [going], CLUSTER_NS)
    assert names(plan.create) == ["clusternet-a", "clusternet-b"]
    assert plan.duplicates == []
    assert plan.unbound == []


@pytest.mark.parametrize(
    ("case", "change", "expect_update"),
    [
        ("same", lambda b: None, False),
        ("extra label kept", lambda b: b["metadata"]["labels"].update({"x": "y"}), False),
        ("feeds changed", lambda b: b["spec"].update({"feeds": [NS_FEED]}), True),
        (
            "label drifted",
            lambda b: b["metadata"]["labels"].update({known.CONFIG_UID_LABEL: "?"}),
            True,
        ),
        ("finalizer removed", lambda b: b["metadata"].update({"finalizers": []}), True),
        (
            "init annotation added",
            lambda b: b["metadata"].update(
                {"annotations": {known.IS_DEFAULT_CLUSTER_INIT_ANNOTATION: "true"}}
            ),
            True,
        ),
    ],
)
def test_a_base_is_written_only_when_something_differs(
    case: str, change: Any, expect_update: bool
) -> None:
    sub = subscription()
    current = existing_base("clusternet-a", "web-aaaaa", "t")
    change(current)
    desired = desired_base(sub, "clusternet-a", CLUSTER_NS["clusternet-a"])
    updated = base_update(current, desired)
    assert (updated is not None) == expect_update, case
    if updated is not None:
        assert updated["spec"] == desired["spec"]
        assert desired["metadata"]["labels"].items() <= updated["metadata"]["labels"].items()
        assert known.APP_FINALIZER in updated["metadata"]["finalizers"]
        assert updated["metadata"]["name"] == "web-aaaaa"
        assert base_update(updated, desired) is None  # converged


# --- replica Localizations ------------------------------------------------------------------

DEPLOY_KEY = "apps/v1/Deployment/shop/web"
INVENTORY = {
    "spec": {
        "feeds": [
            {**NS_FEED},
            {**DEPLOY, "desiredReplicas": 6, "replicaJsonPath": "/spec/replicas"},
        ]
    }
}
BASES = {ns: existing_base(ns, f"web-{ns[-1] * 5}", "t") for ns in ("clusternet-a", "clusternet-b")}


def dividing(replicas: dict[str, list[int]]) -> dict[str, Any]:
    sub = subscription()
    sub["spec"]["schedulingStrategy"] = "Dividing"
    sub["status"]["replicas"] = replicas
    return sub


def test_replica_localizations_patch_each_clusters_share() -> None:
    locs, errors = replica_localizations(
        dividing({DEPLOY_KEY: [2, 4], "v1/Namespace/shop": []}), BASES, INVENTORY
    )
    assert errors == []
    assert [loc["metadata"]["namespace"] for loc in locs] == ["clusternet-a", "clusternet-b"]
    first = locs[0]
    assert first["metadata"]["name"] == replica_localization_name("web-aaaaa", DEPLOY)
    assert first["metadata"]["labels"] == {
        known.OBJECT_CREATED_BY_LABEL: known.CLUSTERNET_CONTROLLER_MANAGER_NAME,
        "sub-uid": "Subscription",
    }
    (owner,) = first["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["name"], owner["uid"], owner["controller"]) == (
        "Base",
        "web-aaaaa",
        "uid-web-aaaaa",
        True,
    )
    spec = first["spec"]
    assert (spec["overridePolicy"], spec["priority"], spec["feed"]) == (
        "ApplyNow",
        REPLICA_LOCALIZATION_PRIORITY,
        DEPLOY,
    )
    (override,) = spec["overrides"]
    assert override["type"] == "JSONPatch"
    assert json.loads(override["value"]) == [
        {"op": "replace", "path": "/spec/replicas", "value": 2}
    ]
    assert json.loads(locs[1]["spec"]["overrides"][0]["value"])[0]["value"] == 4


@pytest.mark.parametrize(
    ("case", "sub", "inventory", "bases", "count", "reasons"),
    [
        ("replication: none", subscription(), INVENTORY, BASES, 0, []),
        ("no replicas yet", dividing({}), INVENTORY, BASES, 0, []),
        ("short array", dividing({DEPLOY_KEY: [3]}), INVENTORY, BASES, 0, ["BadSchedulingResult"]),
        (
            "no replicaJsonPath",
            dividing({DEPLOY_KEY: [1, 2]}),
            {"spec": {"feeds": [DEPLOY]}},
            BASES,
            0,
            ["ReplicaJsonPathUnset"],
        ),
        ("no inventory", dividing({DEPLOY_KEY: [1, 2]}), None, BASES, 0, ["ReplicaJsonPathUnset"]),
        (
            "a Base not created yet",
            dividing({DEPLOY_KEY: [1, 2]}),
            INVENTORY,
            {"clusternet-a": BASES["clusternet-a"]},
            1,
            [],
        ),
    ],
)
def test_replica_localization_errors(
    case: str,
    sub: dict[str, Any],
    inventory: dict[str, Any] | None,
    bases: dict[str, dict[str, Any]],
    count: int,
    reasons: list[str],
) -> None:
    locs, errors = replica_localizations(sub, bases, inventory)
    assert len(locs) == count, case
    assert [e.reason for e in errors] == reasons, case
    assert all(e.feed_key == DEPLOY_KEY for e in errors), case


def test_a_replica_localization_is_updated_only_when_it_differs() -> None:
    (desired, _), _ = replica_localizations(dividing({DEPLOY_KEY: [2, 4]}), BASES, INVENTORY)
    current = copy.deepcopy(desired) | {"status": {}}
    current["metadata"]["resourceVersion"] = "7"
    assert localization_update(current, desired) is None
    (changed, _), _ = replica_localizations(dividing({DEPLOY_KEY: [5, 1]}), BASES, INVENTORY)
    updated = localization_update(current, changed)
    assert updated is not None
    assert updated["spec"] == changed["spec"]
    assert updated["metadata"]["resourceVersion"] == "7"


# -- a Dividing Base waits for its replica Localizations ---------------------------------


def test_a_new_base_of_a_dividing_subscription_waits_for_its_replica_localizations() -> None:
    dividing = subscription(spec__schedulingStrategy="Dividing")
    annotations = desired_base(dividing, "clusternet-a", {})["metadata"]["annotations"]
    assert annotations[known.REPLICA_LOCALIZATIONS_ANNOTATION] == "pending"
    replicated = desired_base(subscription(), "clusternet-a", {})["metadata"]
    assert known.REPLICA_LOCALIZATIONS_ANNOTATION not in (replicated.get("annotations") or {})


@pytest.mark.parametrize(
    ("value", "in_cache", "missing"),
    [
        (None, set(), None),  # not Dividing (or created before this annotation): render
        ("pending", set(), ["pending"]),  # the Subscription controller has not written them
        ("", set(), None),  # Dividing, but nothing to divide (no workload feeds)
        ("web-a-1,web-a-2", {"clusternet-a/web-a-1"}, ["clusternet-a/web-a-2"]),
        ("web-a-1,web-a-2", {"clusternet-a/web-a-1", "clusternet-a/web-a-2"}, None),
    ],
)
def test_missing_replica_localizations(
    value: str | None, in_cache: set[str], missing: list[str] | None
) -> None:
    base = existing_base("clusternet-a", "web-a", "2026-01-01T00:00:00Z")
    base["metadata"]["annotations"] = (
        {} if value is None else {known.REPLICA_LOCALIZATIONS_ANNOTATION: value}
    )
    assert missing_replica_localizations(base, in_cache.__contains__) == missing


def test_the_annotation_lists_the_bases_own_localizations_sorted() -> None:
    base = existing_base("clusternet-a", "web-a", "2026-01-01T00:00:00Z")
    locs = [
        {"metadata": {"namespace": "clusternet-a", "name": "web-a-2"}},
        {"metadata": {"namespace": "clusternet-b", "name": "web-b-1"}},
        {"metadata": {"namespace": "clusternet-a", "name": "web-a-1"}},
    ]
    assert replica_localizations_annotation(base, locs, dividing=True) == "web-a-1,web-a-2"
    assert replica_localizations_annotation(base, locs, dividing=False) is None


@pytest.mark.parametrize(
    ("strategy", "replicas", "divides"),
    [
        ("Dividing", {"apps/v1/Deployment/shop/web": [2, 4], "v1/Namespace/shop": []}, True),
        ("Dividing", {"v1/Namespace/shop": []}, False),
        ("Dividing", {}, False),
        ("Replication", {"apps/v1/Deployment/shop/web": [2, 4]}, False),
    ],
)
def test_divides_replicas(strategy: str, replicas: dict[str, list[int]], divides: bool) -> None:
    sub = subscription(spec__schedulingStrategy=strategy)
    sub["status"]["replicas"] = replicas
    assert divides_replicas(sub) is divides
