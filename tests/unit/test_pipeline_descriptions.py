"""Base → Descriptions (spec §4.5, §4.6, §12 items 1 and 8), table-driven."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from clusternet.apis import known
from clusternet.controllermanager.descriptions import (
    FeedInput,
    decode,
    description_update,
    override_sources,
    render_generic,
    render_helm_description,
    rendered_objects,
    selector_matches,
)
from clusternet.controllermanager.overrides import OverrideSource

APPS = "apps.clusternet.io/v1alpha1"
DEPLOY = {"apiVersion": "apps/v1", "kind": "Deployment", "namespace": "shop", "name": "web"}
CHART = {"apiVersion": APPS, "kind": "HelmChart", "namespace": "default", "name": "redis"}
TEMPLATE = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "web", "namespace": "shop", "uid": "parent-uid"},
    "spec": {"replicas": 3, "template": {"spec": {"containers": [{"name": "c"}]}}},
    "status": {"replicas": 3},
}
HELM_CHART = {
    "apiVersion": APPS,
    "kind": "HelmChart",
    "metadata": {
        "name": "redis",
        "namespace": "default",
        "uid": "chart-uid",
        "resourceVersion": "42",
        "labels": {"team": "cache", "some-base-uid": "Base"},
    },
    "spec": {"repo": "https://charts.example.org", "chart": "redis", "targetNamespace": "cache"},
    "status": {"phase": "Found"},
}
BASE = {
    "apiVersion": APPS,
    "kind": "Base",
    "metadata": {
        "name": "web-k3p9z",
        "namespace": "clusternet-a",
        "uid": "base-uid",
        "labels": {
            known.CONFIG_SUBSCRIPTION_NAME_LABEL: "web",
            known.CONFIG_SUBSCRIPTION_NAMESPACE_LABEL: "team",
            known.CONFIG_SUBSCRIPTION_UID_LABEL: "sub-uid",
            known.CLUSTER_ID_LABEL: "id-a",
            known.CLUSTER_NAME_LABEL: "child1",
        },
    },
    "spec": {"feeds": [DEPLOY, CHART]},
}


def override(
    kind: str,
    name: str,
    priority: int,
    created: str,
    patch: str,
    *,
    type: str = "MergePatch",
    namespace: str = "clusternet-a",
    feed: dict[str, Any] = DEPLOY,
    affinity: dict[str, Any] | None = None,
    deleting: bool = False,
    policy: str = "ApplyNow",
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "creationTimestamp": created}
    if kind == "Localization":
        meta["namespace"] = namespace
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    spec: dict[str, Any] = {
        "priority": priority,
        "overridePolicy": policy,
        "feed": feed,
        "overrides": [{"name": name, "type": type, "value": patch}],
    }
    if affinity is not None:
        spec["clusterAffinity"] = affinity
    return {"apiVersion": APPS, "kind": kind, "metadata": meta, "spec": spec}


def replicas_of(patch: int) -> str:
    return f'{{"spec": {{"replicas": {patch}}}}}'


@pytest.mark.parametrize(
    ("selector", "labels", "matches"),
    [
        (None, {}, True),
        ({}, {"a": "1"}, True),
        ({"matchLabels": {"a": "1"}}, {"a": "1", "b": "2"}, True),
        ({"matchLabels": {"a": "1"}}, {"a": "2"}, False),
        (
            {"matchExpressions": [{"key": "a", "operator": "In", "values": ["1", "2"]}]},
            {"a": "2"},
            True,
        ),
        ({"matchExpressions": [{"key": "a", "operator": "NotIn", "values": ["1"]}]}, {}, True),
        (
            {"matchExpressions": [{"key": "a", "operator": "NotIn", "values": ["1"]}]},
            {"a": "1"},
            False,
        ),
        ({"matchExpressions": [{"key": "a", "operator": "Exists"}]}, {}, False),
        ({"matchExpressions": [{"key": "a", "operator": "DoesNotExist"}]}, {}, True),
        ({"matchExpressions": [{"key": "a", "operator": "Bogus"}]}, {"a": "1"}, False),
    ],
)
def test_selector_matches(
    selector: dict[str, Any] | None, labels: dict[str, str], matches: bool
) -> None:
    assert selector_matches(selector, labels) is matches


def test_override_sources_pick_the_feed_namespace_and_affinity() -> None:
    locs = [
        override("Localization", "mine", 500, "t", "{}"),
        override("Localization", "other-cluster", 500, "t", "{}", namespace="clusternet-b"),
        override("Localization", "other-feed", 500, "t", "{}", feed=CHART),
    ]
    globs = [
        override("Globalization", "all", 500, "t", "{}"),
        override("Globalization", "west", 500, "t", "{}", affinity={"matchLabels": {"r": "w"}}),
        override("Globalization", "east", 500, "t", "{}", affinity={"matchLabels": {"r": "e"}}),
        override("Globalization", "chart", 500, "t", "{}", feed=CHART),
    ]
    names = [s.name for s in override_sources(DEPLOY, "clusternet-a", {"r": "w"}, locs, globs)]
    assert names == ["all", "west", "clusternet-a/mine"]
    # No ManagedCluster in the namespace: only Globalizations without affinity apply.
    names = [s.name for s in override_sources(DEPLOY, "clusternet-a", None, locs, globs)]
    assert names == ["all", "clusternet-a/mine"]


def sources(*objs: dict[str, Any]) -> list[OverrideSource]:
    return [OverrideSource.from_object(o) for o in objs]


@pytest.mark.parametrize(
    ("case", "overrides", "replicas"),
    [
        ("none: the template", [], 3),
        (
            "one Localization",
            [override("Localization", "l", 500, "2026-01-01T00:00:00Z", replicas_of(1))],
            1,
        ),
        (
            "Localization wins over a higher-priority Globalization",
            [
                override("Localization", "l", 0, "2026-01-01T00:00:00Z", replicas_of(1)),
                override("Globalization", "g", 1000, "2026-01-01T00:00:00Z", replicas_of(9)),
            ],
            1,
        ),
        (
            "higher priority wins",
            [
                override("Localization", "high", 900, "2026-01-01T00:00:00Z", replicas_of(7)),
                override("Localization", "low", 100, "2026-01-01T00:00:00Z", replicas_of(2)),
            ],
            7,
        ),
        (
            # Same priority: the later creation wins, compared on the full timestamp
            # (upstream compared only the seconds, so 10:00:01 would lose to 09:59:30).
            "tie broken by the full creation time",
            [
                override("Localization", "later", 500, "2026-01-01T10:00:01Z", replicas_of(5)),
                override("Localization", "earlier", 500, "2026-01-01T09:59:30Z", replicas_of(4)),
            ],
            5,
        ),
        (
            "being deleted: skipped (rolled back)",
            [
                override("Localization", "l", 500, "t", replicas_of(1), deleting=True),
            ],
            3,
        ),
    ],
)
def test_generic_rendering_order(case: str, overrides: list[dict[str, Any]], replicas: int) -> None:
    inputs = [FeedInput(DEPLOY, TEMPLATE, sources(*overrides))]
    rendered = render_generic(BASE, inputs)
    assert rendered.errors == [], case
    assert rendered.missing == [], case
    assert rendered.description is not None
    (raw,) = rendered.description["spec"]["raw"]
    obj = decode(raw)
    assert obj["spec"]["replicas"] == replicas, case
    assert "status" not in obj, case  # system fields go
    assert "uid" not in obj["metadata"], case


def test_a_generic_description_has_name_labels_owner_and_finalizer() -> None:
    desc = render_generic(BASE, [FeedInput(DEPLOY, TEMPLATE)]).description
    assert desc is not None
    meta = desc["metadata"]
    assert (meta["name"], meta["namespace"]) == ("web-k3p9z-generic", "clusternet-a")
    assert desc["spec"]["deployer"] == "Generic"
    assert meta["finalizers"] == [known.APP_FINALIZER]
    (owner,) = meta["ownerReferences"]
    assert (owner["kind"], owner["name"], owner["uid"], owner["controller"]) == (
        "Base",
        "web-k3p9z",
        "base-uid",
        True,
    )
    assert meta["labels"] == {
        known.OBJECT_CREATED_BY_LABEL: known.CLUSTERNET_CONTROLLER_MANAGER_NAME,
        known.CONFIG_KIND_LABEL: "Base",
        known.CONFIG_NAME_LABEL: "web-k3p9z",  # §12 item 1: kept
        known.CONFIG_NAMESPACE_LABEL: "clusternet-a",
        known.CONFIG_UID_LABEL: "base-uid",
        known.CONFIG_SUBSCRIPTION_NAME_LABEL: "web",  # §12 item 1: kept
        known.CONFIG_SUBSCRIPTION_NAMESPACE_LABEL: "team",
        known.CONFIG_SUBSCRIPTION_UID_LABEL: "sub-uid",
        known.CLUSTER_ID_LABEL: "id-a",
        known.CLUSTER_NAME_LABEL: "child1",
    }


def test_feeds_keep_their_order_in_raw() -> None:
    ns = {"apiVersion": "v1", "kind": "Namespace", "name": "shop"}
    ns_template = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}}
    desc = render_generic(BASE, [FeedInput(ns, ns_template), FeedInput(DEPLOY, TEMPLATE)])
    assert desc.description is not None
    kinds = [decode(r)["kind"] for r in desc.description["spec"]["raw"]]
    assert kinds == ["Namespace", "Deployment"]


SERVICE = {"apiVersion": "v1", "kind": "Service", "namespace": "shop", "name": "web"}
SERVICE_TEMPLATE = {
    "apiVersion": "v1",
    "kind": "Service",
    "metadata": {"name": "web", "namespace": "shop"},
    "spec": {"ports": [{"port": 80}]},
}
# What the Deployment feed was rendered to before (the current Description's object).
PREVIOUS_WEB = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "web", "namespace": "shop"},
    "spec": {"replicas": 7},
}


def kinds_and_replicas(rendered: Any) -> list[tuple[str, Any]]:
    assert rendered.description is not None
    objects = [decode(r) for r in rendered.description["spec"]["raw"]]
    return [(o["kind"], o.get("spec", {}).get("replicas")) for o in objects]


@pytest.mark.parametrize(
    ("case", "patch", "type"),
    [
        ("not YAML", "{{{", "MergePatch"),
        ("not a list of operations", '{"op": "add"}', "JSONPatch"),
        ("field patch on a missing field", '{"a": 1}', "FieldMergePatch"),
    ],
)
@pytest.mark.parametrize(
    ("before", "expected"),
    [
        ((), [("Service", None)]),  # never rendered: left out
        ((PREVIOUS_WEB,), [("Deployment", 7), ("Service", None)]),  # last rendered: kept
    ],
)
def test_a_bad_override_holds_only_its_own_feed(
    case: str, patch: str, type: str, before: tuple[Any, ...], expected: list[Any]
) -> None:
    bad = override("Localization", "bad", 500, "t", patch, type=type)
    bad["spec"]["overrides"][0]["fieldPath"] = "/data/missing.conf"
    rendered = render_generic(
        BASE,
        [FeedInput(DEPLOY, TEMPLATE, sources(bad)), FeedInput(SERVICE, SERVICE_TEMPLATE)],
        list(before),
    )
    (error,) = rendered.errors
    assert "apps/v1/Deployment/shop/web" in error, case
    assert "bad" in error, case
    assert rendered.problems == [error], case
    assert sorted(kinds_and_replicas(rendered)) == expected, case


def test_a_json_patch_on_a_missing_path_is_skipped_and_reported() -> None:
    patch = '[{"op":"replace","path":"/spec/replicas","value":1}]'
    missing = '[{"op":"replace","path":"/spec/nope/x","value":1}]'
    good = override("Localization", "good", 500, "t", patch, type="JSONPatch")
    bad = override("Localization", "bad", 600, "t", missing, type="JSONPatch")
    rendered = render_generic(BASE, [FeedInput(DEPLOY, TEMPLATE, sources(good, bad))])
    assert kinds_and_replicas(rendered) == [("Deployment", 1)]  # the rest still applies
    assert rendered.errors == []
    (warning,) = rendered.warnings
    assert "Localization clusternet-a/bad override" in warning
    assert "replace /spec/nope/x" in warning
    assert "skipped" in warning
    assert rendered.problems == [warning]


def test_a_missing_template_holds_only_its_own_feed() -> None:
    inputs = [FeedInput(DEPLOY, None), FeedInput(SERVICE, SERVICE_TEMPLATE)]
    generic = render_generic(BASE, inputs)
    assert generic.missing == [DEPLOY]
    assert generic.problems == ["template Deployment shop/web does not exist"]
    assert kinds_and_replicas(generic) == [("Service", None)]
    kept = render_generic(BASE, inputs, [PREVIOUS_WEB])
    assert kinds_and_replicas(kept) == [("Deployment", 7), ("Service", None)]
    alone = render_generic(BASE, [FeedInput(DEPLOY, None)])
    assert alone.description is None  # nothing to write yet: no empty Description
    helm = render_helm_description(BASE, [FeedInput(DEPLOY, None), FeedInput(CHART, HELM_CHART)])
    assert helm.description is not None  # the chart is not held up by the missing Manifest
    assert helm.problems == []


def test_rendered_objects_of_a_description() -> None:
    good = render_generic(BASE, [FeedInput(DEPLOY, TEMPLATE)]).description
    assert [o["kind"] for o in rendered_objects(good)] == ["Deployment"]
    assert rendered_objects(None) == []
    assert rendered_objects({"spec": {"raw": ["not base64!", "bnVsbA=="]}}) == []


def test_a_not_found_chart_does_not_block_generic_feeds() -> None:
    not_found = copy.deepcopy(HELM_CHART)
    not_found["status"] = {"phase": "NotFound", "reason": "no such chart"}
    inputs = [FeedInput(DEPLOY, TEMPLATE), FeedInput(CHART, not_found)]
    assert render_generic(BASE, inputs).description is not None
    helm = render_helm_description(BASE, inputs)
    assert helm.description is None
    assert helm.unused
    assert helm.skipped
    assert "no such chart" in helm.skipped[0]
    missing = render_helm_description(BASE, [FeedInput(DEPLOY, TEMPLATE), FeedInput(CHART, None)])
    assert missing.missing == [CHART]
    assert missing.description is None


def test_helm_description_carries_chart_values_and_chart_overrides() -> None:
    values = override(
        "Globalization", "v", 500, "t", '{"replica": {"replicaCount": 1}}', type="Helm", feed=CHART
    )
    pin = override(
        "Localization",
        "pin",
        500,
        "t",
        "spec: {version: 9.1.0, chart: other}",
        type="Helm",
        feed=CHART,
    )
    pin["spec"]["overrides"][0]["overrideChart"] = True
    rendered = render_helm_description(BASE, [FeedInput(CHART, HELM_CHART, sources(values, pin))])
    desc = rendered.description
    assert desc is not None
    assert desc["metadata"]["name"] == "web-k3p9z-helm"
    spec = desc["spec"]
    assert spec["deployer"] == "Helm"
    assert spec["charts"] == [{"namespace": "default", "name": "redis"}]
    (chart,) = [decode(r) for r in spec["chartRaw"]]
    assert chart["spec"]["version"] == "9.1.0"
    assert chart["spec"]["chart"] == "redis"  # chart name cannot be overridden
    assert chart["metadata"] == {
        "name": "redis",
        "namespace": "default",
        "labels": {"team": "cache"},  # back-reference labels are not the chart's
    }
    assert [decode(r) for r in spec["raw"]] == [{"replica": {"replicaCount": 1}}]
    assert render_generic(BASE, [FeedInput(CHART, HELM_CHART)]).unused


def test_a_description_is_written_only_when_it_differs() -> None:
    desired = render_generic(BASE, [FeedInput(DEPLOY, TEMPLATE)]).description
    assert desired is not None
    current = copy.deepcopy(desired)
    current["metadata"] |= {"resourceVersion": "5", "uid": "d"}
    current["metadata"]["labels"]["extra"] = "kept"
    current["status"] = {"phase": "Success"}
    assert description_update(current, desired) is None
    changed = render_generic(
        BASE,
        [
            FeedInput(
                DEPLOY, TEMPLATE, sources(override("Localization", "l", 1, "t", replicas_of(1)))
            )
        ],
    ).description
    assert changed is not None
    updated = description_update(current, changed)
    assert updated is not None
    assert updated["spec"] == changed["spec"]
    assert updated["metadata"]["labels"]["extra"] == "kept"
    assert updated["status"] == {"phase": "Success"}
    assert updated["metadata"]["resourceVersion"] == "5"
    no_finalizer = copy.deepcopy(current)
    no_finalizer["metadata"]["finalizers"] = []
    assert description_update(no_finalizer, desired) is not None
