"""Property: a strategic merge patch of any shape (directives included) gives a dict or a
StrategicPatchError, never another exception; it is deterministic and changes neither input
(kube/_strategic.py)."""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from clusternet.kube import StrategicPatchError, kind_schema, strategic_merge_patch


def ref(name: str, **extensions: Any) -> dict[str, Any]:
    return {"allOf": [{"$ref": f"#/components/schemas/{name}"}], **extensions}


MERGE_BY_NAME = {"x-kubernetes-patch-merge-key": "name", "x-kubernetes-patch-strategy": "merge"}
DOCUMENT: dict[str, Any] = {
    "components": {
        "schemas": {
            "Deployment": {
                "type": "object",
                "properties": {"metadata": ref("ObjectMeta"), "spec": ref("Spec")},
                "x-kubernetes-group-version-kind": [
                    {"group": "apps", "version": "v1", "kind": "Deployment"}
                ],
            },
            "ObjectMeta": {
                "type": "object",
                "properties": {
                    "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                    "finalizers": {
                        "type": "array",
                        "items": {"type": "string"},
                        "x-kubernetes-patch-strategy": "merge",
                    },
                },
            },
            "Spec": {
                "type": "object",
                "properties": {
                    "replicas": {"type": "integer"},
                    "strategy": ref("Strategy", **{"x-kubernetes-patch-strategy": "retainKeys"}),
                    "containers": {"type": "array", "items": ref("Container"), **MERGE_BY_NAME},
                    "args": {"type": "array", "items": {"type": "string"}},
                },
            },
            "Strategy": {
                "type": "object",
                "properties": {"type": {"type": "string"}, "rollingUpdate": {"type": "object"}},
            },
            "Container": {
                "type": "object",
                "properties": {
                    "name": {"type": "string"},
                    "image": {"type": "string"},
                    "ports": {
                        "type": "array",
                        "items": {"type": "object"},
                        "x-kubernetes-patch-merge-key": "containerPort",
                        "x-kubernetes-patch-strategy": "merge",
                    },
                },
            },
        }
    }
}
SCHEMA = kind_schema(DOCUMENT, "apps", "v1", "Deployment")

SCALARS = st.none() | st.booleans() | st.integers(-3, 3) | st.text(max_size=4)
KEYS = st.sampled_from(
    [
        "metadata",
        "spec",
        "labels",
        "finalizers",
        "replicas",
        "strategy",
        "type",
        "rollingUpdate",
        "containers",
        "args",
        "name",
        "image",
        "ports",
        "containerPort",
        "$patch",
        "$retainKeys",
        "$setElementOrder/containers",
        "$setElementOrder/finalizers",
        "$deleteFromPrimitiveList/finalizers",
        "$deleteFromPrimitiveList/args",
    ]
) | st.text(max_size=5)
VALUES = st.recursive(
    SCALARS | st.sampled_from(["replace", "delete", "merge", "c", "d"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=4),
    max_leaves=20,
)
OBJECTS = st.dictionaries(KEYS, VALUES, max_size=4)


@settings(max_examples=400, deadline=None)
@given(original=OBJECTS, patch=OBJECTS)
def test_any_patch_gives_a_dict_or_a_strategic_patch_error(
    original: dict[str, Any], patch: dict[str, Any]
) -> None:
    assert SCHEMA is not None
    before = (copy.deepcopy(original), copy.deepcopy(patch))

    def run() -> tuple[str, Any]:
        try:
            result = strategic_merge_patch(original, patch, SCHEMA)
        except StrategicPatchError as err:
            message = str(err)
            return "error", message
        assert isinstance(result, dict)
        return "ok", result

    first = run()
    assert first == run()
    assert first[0] == "ok" or first[1], "an error always says why"
    assert (original, patch) == before, "neither input is changed"


@settings(max_examples=100, deadline=None)
@given(original=OBJECTS)
def test_an_empty_patch_keeps_everything_but_directives(original: dict[str, Any]) -> None:
    assert SCHEMA is not None
    try:
        result = strategic_merge_patch(original, {}, SCHEMA)
    except StrategicPatchError:
        return
    assert set(result) <= set(original)
