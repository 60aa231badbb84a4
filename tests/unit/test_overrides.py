"""Globalization/Localization overrides (spec §4.6): table-driven, no cluster needed."""

from __future__ import annotations

import json
from typing import Any

import pytest

from clusternet.controllermanager.overrides import (
    MissingPathError,
    Override,
    OverrideError,
    OverrideSource,
    deep_merge,
    ordered_overrides,
    render,
    render_helm,
)
from clusternet.kube import merge_patch

DEPLOYMENT: dict[str, Any] = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {
        "name": "web",
        "namespace": "demo",
        "uid": "u-1",
        "labels": {"app": "web"},
        "managedFields": [{"manager": "kubectl"}],
    },
    "spec": {
        "replicas": 3,
        "template": {"spec": {"containers": [{"name": "c", "image": "nginx:1.25"}]}},
    },
    "status": {"readyReplicas": 3},
}


def override(kind: str, value: Any, **extra: Any) -> Override:
    text = value if isinstance(value, str) else json.dumps(value)
    return Override("Localization demo/x", {"type": kind, "value": text, **extra})


@pytest.mark.parametrize(
    ("overrides", "expect"),
    [
        # JSON patch (RFC 6902), values given as JSON
        (
            [override("JSONPatch", [{"op": "replace", "path": "/spec/replicas", "value": 1}])],
            {"spec.replicas": 1},
        ),
        # the same given as YAML
        (
            [override("JSONPatch", "- op: add\n  path: /metadata/labels/tier\n  value: front\n")],
            {"metadata.labels.tier": "front", "metadata.labels.app": "web"},
        ),
        # merge patch (RFC 7386): null deletes, lists replace
        (
            [override("MergePatch", {"metadata": {"labels": {"app": None, "x": "y"}}})],
            {"metadata.labels": {"x": "y"}},
        ),
        # later wins
        (
            [
                override("MergePatch", {"spec": {"replicas": 5}}),
                override("MergePatch", {"spec": {"replicas": 7}}),
            ],
            {"spec.replicas": 7},
        ),
        (
            [
                override(
                    "MergePatch",
                    "spec:\n  template:\n    spec:\n      containers:\n"
                    "      - name: c\n        image: nginx:1.27\n",
                )
            ],
            {"spec.template.spec.containers": [{"name": "c", "image": "nginx:1.27"}]},
        ),
    ],
)
def test_overrides_apply_in_order(overrides: list[Override], expect: dict[str, Any]) -> None:
    rendered = render(DEPLOYMENT, overrides)
    for dotted, value in expect.items():
        node: Any = rendered
        for part in dotted.split("."):
            node = node[part]
        assert node == value
    # Always removed: set by the parent, meaningless in a child.
    assert "status" not in rendered
    assert "uid" not in rendered["metadata"]
    assert "managedFields" not in rendered["metadata"]
    assert DEPLOYMENT["spec"]["replicas"] == 3  # the template is not changed


CONFIGMAP: dict[str, Any] = {
    "apiVersion": "v1",
    "kind": "ConfigMap",
    "metadata": {"name": "conf"},
    "data": {
        "app.yaml": "server:\n  port: 80\n  host: a\n",
        "app.json": '{"b": 1, "a": {"x": 1}}',
        "empty": "",
    },
}


@pytest.mark.parametrize(
    ("config", "key", "expected"),
    [
        (
            {
                "type": "FieldMergePatch",
                "fieldPath": "/data/app.yaml",
                "value": '{"server": {"port": 8080}}',
            },
            "app.yaml",
            "server:\n  port: 8080\n  host: a\n",
        ),
        (
            {
                "type": "FieldJSONPatch",
                "fieldPath": "/data/app.yaml",
                "value": '[{"op": "remove", "path": "/server/host"}]',
            },
            "app.yaml",
            "server:\n  port: 80\n",
        ),
        (
            {
                "type": "FieldMergePatch",
                "fieldPath": "/data/app.json",
                "fieldFormat": "JSON",
                "value": '{"c": 2}',
            },
            "app.json",
            json.dumps({"a": {"x": 1}, "b": 1, "c": 2}, indent=4),
        ),
        ({"type": "FieldMergePatch", "fieldPath": "/data/empty", "value": '{"a": 1}'}, "empty", ""),
    ],
)
def test_field_overrides_patch_embedded_documents(
    config: dict[str, Any], key: str, expected: str
) -> None:
    rendered = render(CONFIGMAP, [Override("Globalization g", config)])
    assert rendered["data"][key] == expected


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (
            {
                "type": "JSONPatch",
                "value": '[{"op": "replace", "path": "/spec/nope/x", "value": 1}]',
            },
            "Localization demo/x override 'bad': ",
        ),
        ({"type": "JSONPatch", "value": '{"op": "replace"}'}, "must be a list of operations"),
        ({"type": "JSONPatch", "value": '[{"path": "/spec"}]'}, "override 'bad'"),
        ({"type": "MergePatch", "value": "a: [unclosed"}, "neither JSON nor YAML"),
        ({"type": "MergePatch", "value": "[1, 2]"}, "the result is not an object"),
        (
            {"type": "FieldMergePatch", "fieldPath": "/data/missing", "value": "{}"},
            "field /data/missing does not exist",
        ),
        (
            {"type": "FieldMergePatch", "fieldPath": "/spec/replicas", "value": "{}"},
            "field /spec/replicas is not a string",
        ),
        ({"type": "Helm", "value": "a: 1"}, "Helm overrides apply to HelmChart feeds only"),
        ({"type": "Sideways", "value": "a: 1"}, "unknown override type 'Sideways'"),
    ],
)
def test_bad_overrides_are_errors_that_name_the_override(
    config: dict[str, Any], message: str
) -> None:
    with pytest.raises(OverrideError, match=message):
        render(DEPLOYMENT, [Override("Localization demo/x", {"name": "bad", **config})])


@pytest.mark.parametrize(
    ("case", "type", "operations"),
    [
        (
            "replace under a missing parent",
            "JSONPatch",
            '[{"op":"replace","path":"/spec/no/x","value":1}]',
        ),
        ("remove a missing key", "JSONPatch", '[{"op": "remove", "path": "/spec/paused"}]'),
        ("add under a missing parent", "JSONPatch", '[{"op":"add","path":"/no/x","value":1}]'),
        ("replace past a list's end", "JSONPatch", '[{"op":"replace","path":"/l/9","value":1}]'),
    ],
)
def test_a_json_patch_on_a_missing_path_leaves_the_object_unchanged_and_is_reported(
    case: str, type: str, operations: str
) -> None:
    template = {**DEPLOYMENT, "l": [1]}
    first = {"type": "MergePatch", "value": '{"metadata": {"labels": {"a": "b"}}}'}
    bad = {"name": "bad", "type": type, "value": operations}
    skipped: list[str] = []
    overrides = [Override("Globalization g", first), Override("Localization demo/x", bad)]
    rendered = render(template, overrides, skipped=skipped)
    assert rendered == render(template, overrides[:1]), case  # as if it were not there
    (message,) = skipped
    assert message.startswith("Localization demo/x override 'bad': operation 0 ("), case
    assert message.endswith("path does not exist (skipped)"), case
    with pytest.raises(MissingPathError):  # strict without a place to report it
        render(template, overrides)


def test_field_override_of_unparsable_content() -> None:
    broken = {**CONFIGMAP, "data": {"app.json": "{not json"}}
    config = {
        "type": "FieldMergePatch",
        "fieldPath": "/data/app.json",
        "fieldFormat": "JSON",
        "value": "{}",
    }
    with pytest.raises(OverrideError, match="is not valid JSON"):
        render(broken, [Override("Localization demo/x", config)])


def source(
    kind: str, name: str, priority: int, created: str, *values: str, deleting: bool = False
) -> OverrideSource:
    return OverrideSource(
        kind,
        name,
        priority,
        created,
        tuple({"type": "MergePatch", "value": v} for v in values),
        deleting,
    )


def test_order_globalizations_then_localizations_by_priority_then_full_time() -> None:
    sources = [
        source("Localization", "ns/l-high", 900, "2026-01-01T00:00:00Z", "l900"),
        source("Localization", "ns/l-low", 100, "2026-01-01T00:00:00Z", "l100"),
        source("Globalization", "g-late", 500, "2026-01-01T00:01:05Z", "g500-late"),
        # Upstream compared seconds-of-minute only (05 > 03 here would flip these two).
        source("Globalization", "g-early", 500, "2026-01-01T00:00:03Z", "g500-early"),
        source("Globalization", "g-top", 1000, "2025-01-01T00:00:00Z", "g1000"),
        source("Localization", "ns/gone", 1, "2026-01-01T00:00:00Z", "gone", deleting=True),
    ]
    values = [o.config["value"] for o in ordered_overrides(sources)]
    assert values == ["g500-early", "g500-late", "g1000", "l100", "l900"]


def test_source_from_object_defaults() -> None:
    loc = OverrideSource.from_object(
        {
            "kind": "Localization",
            "metadata": {
                "name": "l",
                "namespace": "clusternet-abc",
                "creationTimestamp": "2026-01-01T00:00:00Z",
            },
            "spec": {"feed": {}, "overrides": [{"type": "MergePatch", "value": "{}"}]},
        }
    )
    assert (loc.name, loc.priority, len(loc.overrides)) == ("clusternet-abc/l", 500, 1)


@pytest.mark.parametrize(
    ("target", "patch", "result"),
    [  # RFC 7386 appendix A
        ({"a": "b"}, {"a": "c"}, {"a": "c"}),
        ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
        ({"a": "b"}, {"a": None}, {}),
        ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
        ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
        ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
        ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
        ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
        (["a", "b"], ["c", "d"], ["c", "d"]),
        ({"a": "b"}, ["c"], ["c"]),
        ({"a": "foo"}, None, None),
        ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
        ([1, 2], {"a": "b", "c": None}, {"a": "b"}),
        ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
    ],
)
def test_merge_patch_rfc7386_examples(target: Any, patch: Any, result: Any) -> None:
    assert merge_patch(target, patch) == result


CHART = {
    "apiVersion": "apps.clusternet.io/v1alpha1",
    "kind": "HelmChart",
    "metadata": {"name": "mysql", "namespace": "default"},
    "spec": {
        "repo": "https://charts.example.com",
        "chart": "mysql",
        "version": "9.2.0",
        "targetNamespace": "db",
    },
}


def test_helm_values_merge_and_chart_overrides_keep_name_and_target() -> None:
    helm = [
        override("Helm", "primary:\n  persistence:\n    enabled: false\nauth:\n  user: a\n"),
        override("Helm", {"auth": {"user": "b"}, "replicas": 2}),
        override(
            "Helm",
            {"spec": {"version": "9.3.0", "chart": "evil", "targetNamespace": "x"}},
            overrideChart=True,
        ),
    ]
    result = render_helm(CHART, helm)
    assert result.values == {
        "primary": {"persistence": {"enabled": False}},
        "auth": {"user": "b"},
        "replicas": 2,
    }
    assert result.chart["spec"] == {**CHART["spec"], "version": "9.3.0"}
    assert CHART["spec"]["version"] == "9.2.0"


def test_helm_rejects_other_override_types_and_non_mappings() -> None:
    with pytest.raises(OverrideError, match="only Helm overrides apply to HelmCharts"):
        render_helm(CHART, [override("MergePatch", {"a": 1})])
    with pytest.raises(OverrideError, match="Helm values must be a mapping"):
        render_helm(CHART, [override("Helm", [1, 2])])


def test_deep_merge_replaces_lists_and_scalars() -> None:
    assert deep_merge(
        {"a": {"b": 1, "l": [1]}, "s": 1}, {"a": {"c": 2, "l": [2]}, "s": {"x": 1}}
    ) == {"a": {"b": 1, "c": 2, "l": [2]}, "s": {"x": 1}}
