"""Property: the pipeline's pure steps are total and deterministic on any input the API can
hold: ``plan_bases`` (Subscription -> Bases) leaves exactly one Base per bound namespace
that exists, and ``render_generic`` (Base -> Description) reports bad overrides as errors
instead of raising (controllermanager/bases.py, descriptions.py)."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from clusternet.controllermanager.bases import plan_bases
from clusternet.controllermanager.descriptions import FeedInput, render_generic
from clusternet.controllermanager.overrides import OverrideSource

NAMESPACES = st.sampled_from(["ns-a", "ns-b", "ns-c", "ns-d"])
TIMES = st.sampled_from(["2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z", ""])
FEED = st.fixed_dictionaries(
    {
        "apiVersion": st.sampled_from(["v1", "apps/v1"]),
        "kind": st.sampled_from(["ConfigMap", "Deployment", "HelmChart"]),
        "name": st.sampled_from(["a", "b"]),
    },
    optional={"namespace": st.sampled_from(["shop", ""])},
)
BINDING = NAMESPACES.map(lambda ns: f"{ns}/cluster") | st.text(max_size=6)
SUB_UID = "11111111-2222-3333-4444-555555555555"


def subscription(bindings: list[str], feeds: list[dict[str, Any]], dividing: bool) -> Any:
    return {
        "metadata": {"name": "app", "namespace": "team", "uid": SUB_UID},
        "spec": {"feeds": feeds, "schedulingStrategy": "Dividing" if dividing else "Replication"},
        "status": {"bindingClusters": bindings},
    }


BASE = st.fixed_dictionaries(
    {
        "namespace": NAMESPACES,
        "name": st.text("abc", min_size=1, max_size=3),
        "created": TIMES,
        "deleting": st.booleans(),
        "feeds": st.lists(FEED, max_size=2),
    }
)


def base(b: dict[str, Any]) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "name": f"app-{b['name']}",
        "namespace": b["namespace"],
        "creationTimestamp": b["created"],
        "labels": {},
    }
    if b["deleting"]:
        metadata["deletionTimestamp"] = "2026-01-03T00:00:00Z"
    return {
        "apiVersion": "apps.clusternet.io/v1alpha1",
        "kind": "Base",
        "metadata": metadata,
        "spec": {"feeds": b["feeds"]},
    }


@settings(max_examples=300, deadline=None)
@given(
    bindings=st.lists(BINDING, max_size=5),
    feeds=st.lists(FEED, min_size=1, max_size=3),
    dividing=st.booleans(),
    bases=st.lists(BASE, max_size=6),
    existing_namespaces=st.sets(NAMESPACES),
    pending=st.sets(NAMESPACES, max_size=2),
)
def test_plan_bases_is_total_deterministic_and_one_base_per_bound_namespace(
    bindings: list[str],
    feeds: list[dict[str, Any]],
    dividing: bool,
    bases: list[dict[str, Any]],
    existing_namespaces: set[str],
    pending: set[str],
) -> None:
    sub = subscription(bindings, feeds, dividing)
    existing = [base(b) for b in bases]
    labels = {ns: {"clusters.clusternet.io/cluster-id": ns} for ns in existing_namespaces}
    plan = plan_bases(sub, existing, labels, sorted(pending))
    again = plan_bases(sub, existing, labels, sorted(pending))
    assert json.dumps(plan.__dict__, sort_keys=True) == json.dumps(again.__dict__, sort_keys=True)

    bound = {b.partition("/")[0] for b in bindings if "/" in b}
    created = [b["metadata"]["namespace"] for b in plan.create]
    assert len(created) == len(set(created)), "at most one Base created per namespace"
    assert set(created) <= bound - pending
    assert set(plan.kept) <= bound
    assert not set(created) & set(plan.kept), "never a second Base next to a kept one"
    for dropped in (*plan.duplicates, *plan.unbound):
        assert not dropped["metadata"].get("deletionTimestamp")
    assert {b["metadata"]["namespace"] for b in plan.unbound}.isdisjoint(bound)


SCALARS = st.none() | st.booleans() | st.integers(-2, 5) | st.text(max_size=5)
JSON = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=10,
)
OVERRIDE = st.fixed_dictionaries(
    {"type": st.sampled_from(["JSONPatch", "MergePatch", "FieldJSONPatch", "Helm", "?"])},
    optional={
        "value": JSON.map(json.dumps) | st.text(max_size=20),
        "fieldPath": st.sampled_from(["/data/x", "/spec", ""]),
        "name": st.text(max_size=4),
    },
)
SOURCE = st.builds(
    lambda kind, priority, overrides: OverrideSource(
        kind, f"ns-a/{kind.lower()}", priority, "2026-01-01T00:00:00Z", tuple(overrides)
    ),
    st.sampled_from(["Globalization", "Localization"]),
    st.integers(0, 1000),
    st.lists(OVERRIDE, max_size=3),
)
TEMPLATE = st.none() | st.dictionaries(
    st.sampled_from(["metadata", "spec", "data", "kind"]), JSON, max_size=4
)


@settings(max_examples=200, deadline=None)
@given(
    feeds=st.lists(st.tuples(FEED, TEMPLATE, st.lists(SOURCE, max_size=2)), min_size=1, max_size=3)
)
def test_render_generic_reports_every_bad_input_and_never_raises(
    feeds: list[tuple[dict[str, Any], dict[str, Any] | None, list[OverrideSource]]],
) -> None:
    base_obj = {
        "apiVersion": "apps.clusternet.io/v1alpha1",
        "kind": "Base",
        "metadata": {"name": "app-x", "namespace": "ns-a", "uid": "u"},
        "spec": {"feeds": [f for f, _, _ in feeds]},
    }
    inputs = [FeedInput(feed, template, tuple(sources)) for feed, template, sources in feeds]
    first = render_generic(base_obj, inputs)
    second = render_generic(base_obj, inputs)
    assert first == second, "deterministic"
    if first.unused:
        return
    if first.description is None:
        assert first.problems, "a Description is held back only with a reason"
    assert all(isinstance(p, str) and p for p in first.problems)
