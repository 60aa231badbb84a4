"""Strategic merge patch against the cases Kubernetes documents.

The schema is a cut-down OpenAPI v3 document shaped like kube-apiserver's
(``/openapi/v3/apis/apps/v1``): properties refer to components through
``allOf: [{$ref}]`` with the patch extensions beside them.
"""

from __future__ import annotations

from typing import Any

import pytest

from clusternet.kube import PatchSchema, StrategicPatchError, kind_schema, strategic_merge_patch


def ref(name: str, **extensions: Any) -> dict[str, Any]:
    return {"allOf": [{"$ref": f"#/components/schemas/{name}"}], **extensions}


def array_of(name: str, **extensions: Any) -> dict[str, Any]:
    return {"type": "array", "items": ref(name), **extensions}


MERGE_BY_NAME = {"x-kubernetes-patch-merge-key": "name", "x-kubernetes-patch-strategy": "merge"}

DOCUMENT: dict[str, Any] = {
    "components": {
        "schemas": {
            "Deployment": {
                "type": "object",
                "properties": {
                    "metadata": ref("ObjectMeta"),
                    "spec": ref("DeploymentSpec"),
                },
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
            "DeploymentSpec": {
                "type": "object",
                "properties": {
                    "replicas": {"type": "integer"},
                    "strategy": ref(
                        "DeploymentStrategy", **{"x-kubernetes-patch-strategy": "retainKeys"}
                    ),
                    "template": ref("PodTemplateSpec"),
                },
            },
            "DeploymentStrategy": {
                "type": "object",
                "properties": {"type": {"type": "string"}, "rollingUpdate": {"type": "object"}},
            },
            "PodTemplateSpec": {
                "type": "object",
                "properties": {"metadata": ref("ObjectMeta"), "spec": ref("PodSpec")},
            },
            "PodSpec": {
                "type": "object",
                "properties": {
                    "containers": array_of(
                        "Container",
                        **MERGE_BY_NAME,
                        **{"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
                    ),
                    "volumes": array_of(
                        "Volume",
                        **{
                            "x-kubernetes-patch-merge-key": "name",
                            "x-kubernetes-patch-strategy": "merge,retainKeys",
                        },
                    ),
                    "tolerations": array_of("Toleration", **{"x-kubernetes-list-type": "atomic"}),
                    "affinity": ref("Affinity"),
                },
            },
            "Affinity": {"type": "object", "properties": {"nodeAffinity": {"type": "object"}}},
            "Container": {
                "type": "object",
                "properties": {
                    "name": {"type": "string"},
                    "image": {"type": "string"},
                    "args": {"type": "array", "items": {"type": "string"}},
                    "env": array_of("EnvVar", **MERGE_BY_NAME),
                    "ports": array_of(
                        "ContainerPort",
                        **{
                            "x-kubernetes-patch-merge-key": "containerPort",
                            "x-kubernetes-patch-strategy": "merge",
                            "x-kubernetes-list-type": "map",
                            "x-kubernetes-list-map-keys": ["containerPort", "protocol"],
                        },
                    ),
                },
            },
            "EnvVar": {"type": "object", "properties": {"name": {}, "value": {}}},
            "ContainerPort": {"type": "object", "properties": {"containerPort": {}}},
            "Volume": {
                "type": "object",
                "properties": {"name": {}, "configMap": {}, "emptyDir": {}, "secret": {}},
            },
            "Toleration": {"type": "object", "properties": {"key": {}}},
        }
    }
}

SCHEMA = kind_schema(DOCUMENT, "apps", "v1", "Deployment")


def deployment(pod: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "patch-demo"},
        "spec": {"replicas": 2, **spec, "template": {"spec": pod}},
    }


def pod_patch(pod: dict[str, Any]) -> dict[str, Any]:
    return {"spec": {"template": {"spec": pod}}}


def pod_of(obj: dict[str, Any]) -> dict[str, Any]:
    pod: dict[str, Any] = obj["spec"]["template"]["spec"]
    return pod


NGINX = {"name": "patch-demo-ctr", "image": "nginx"}
REDIS = {"name": "patch-demo-ctr-2", "image": "redis"}
TOLERATION = {"effect": "NoSchedule", "key": "dedicated", "value": "test-team"}

CASES: list[tuple[str, dict[str, Any], dict[str, Any], dict[str, Any]]] = [
    (
        # kubernetes.io "Update API Objects in Place Using kubectl patch": the new container
        # comes first, the existing one stays.
        "containers merge by name",
        {"containers": [NGINX], "tolerations": [TOLERATION]},
        {"containers": [REDIS]},
        {"containers": [REDIS, NGINX], "tolerations": [TOLERATION]},
    ),
    (
        # ... and tolerations have no patch strategy: replaced.
        "tolerations are replaced",
        {"containers": [NGINX], "tolerations": [TOLERATION]},
        {"tolerations": [{"effect": "NoSchedule", "key": "disktype", "value": "ssd"}]},
        {
            "containers": [NGINX],
            "tolerations": [{"effect": "NoSchedule", "key": "disktype", "value": "ssd"}],
        },
    ),
    (
        "image of an existing container",
        {"containers": [NGINX, REDIS]},
        {"containers": [{"name": "patch-demo-ctr-2", "image": "redis:7"}]},
        {"containers": [NGINX, {"name": "patch-demo-ctr-2", "image": "redis:7"}]},
    ),
    (
        "env merges by name (kept in the original order where it relates items), args are replaced",
        {
            "containers": [
                {
                    **NGINX,
                    "args": ["a", "b"],
                    "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                }
            ]
        },
        {
            "containers": [
                {
                    "name": "patch-demo-ctr",
                    "args": ["c"],
                    "env": [{"name": "B", "value": "3"}, {"name": "C", "value": "4"}],
                }
            ]
        },
        {
            "containers": [
                {
                    **NGINX,
                    "args": ["c"],
                    "env": [
                        {"name": "A", "value": "1"},
                        {"name": "B", "value": "3"},
                        {"name": "C", "value": "4"},
                    ],
                }
            ]
        },
    ),
    (
        "ports merge by containerPort",
        {"containers": [{**NGINX, "ports": [{"containerPort": 80}, {"containerPort": 443}]}]},
        {
            "containers": [
                {"name": "patch-demo-ctr", "ports": [{"containerPort": 443, "name": "https"}]}
            ]
        },
        {
            "containers": [
                {**NGINX, "ports": [{"containerPort": 80}, {"containerPort": 443, "name": "https"}]}
            ]
        },
    ),
    (
        "$patch: delete removes the item with that key",
        {"containers": [NGINX, REDIS]},
        {"containers": [{"name": "patch-demo-ctr", "$patch": "delete"}]},
        {"containers": [REDIS]},
    ),
    (
        "$patch: replace in a list makes the patch the whole list",
        {"containers": [NGINX, REDIS]},
        {"containers": [{"name": "x", "image": "busybox"}, {"$patch": "replace"}]},
        {"containers": [{"name": "x", "image": "busybox"}]},
    ),
    (
        "$patch: replace in a map replaces it",
        {"containers": [NGINX], "affinity": {"nodeAffinity": {"a": 1}, "other": 2}},
        {"affinity": {"$patch": "replace", "nodeAffinity": {"b": 2}}},
        {"containers": [NGINX], "affinity": {"nodeAffinity": {"b": 2}}},
    ),
    (
        "$patch: delete in a map removes it",
        {"containers": [NGINX], "affinity": {"nodeAffinity": {"a": 1}}},
        {"affinity": {"$patch": "delete"}},
        {"containers": [NGINX], "affinity": {}},
    ),
    (
        # What client-side `kubectl apply` sends: the order of the configuration, the removed
        # container as a delete directive.
        "$setElementOrder orders the merged list",
        {"containers": [NGINX, REDIS, {"name": "old", "image": "x"}]},
        {
            "$setElementOrder/containers": [
                {"name": "patch-demo-ctr-2"},
                {"name": "patch-demo-ctr"},
            ],
            "containers": [
                {"name": "old", "$patch": "delete"},
                {"name": "patch-demo-ctr", "image": "nginx:2"},
            ],
        },
        {"containers": [REDIS, {"name": "patch-demo-ctr", "image": "nginx:2"}]},
    ),
    (
        "$setElementOrder without a patch list reorders the original",
        {"containers": [NGINX, REDIS]},
        {"$setElementOrder/containers": [{"name": "patch-demo-ctr-2"}, {"name": "patch-demo-ctr"}]},
        {"containers": [REDIS, NGINX]},
    ),
    (
        "volumes merge by name; $retainKeys drops the other volume source",
        {"volumes": [{"name": "v", "configMap": {"name": "c"}}, {"name": "w", "emptyDir": {}}]},
        {
            "volumes": [
                {"name": "v", "$retainKeys": ["name", "secret"], "secret": {"secretName": "s"}}
            ]
        },
        {"volumes": [{"name": "v", "secret": {"secretName": "s"}}, {"name": "w", "emptyDir": {}}]},
    ),
    (
        "null deletes a key; nulls with nothing to delete are dropped",
        {"containers": [{**NGINX, "args": ["a"]}]},
        {
            "containers": [
                {"name": "patch-demo-ctr", "args": None},
                {"name": "n", "image": "i", "args": None},
            ]
        },
        {"containers": [NGINX, {"name": "n", "image": "i"}]},
    ),
]


@pytest.mark.parametrize(
    ("original", "patch", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_pod_spec_cases(
    original: dict[str, Any], patch: dict[str, Any], expected: dict[str, Any]
) -> None:
    assert SCHEMA is not None
    before = deployment(original)
    patched = strategic_merge_patch(before, pod_patch(patch), SCHEMA)
    assert pod_of(patched) == expected
    assert before == deployment(original)  # not changed in place


def test_retain_keys_on_a_struct() -> None:
    assert SCHEMA is not None
    before = deployment({}, strategy={"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}})
    patch = {"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}}
    assert strategic_merge_patch(before, patch, SCHEMA)["spec"]["strategy"] == {"type": "Recreate"}


def test_primitive_lists() -> None:
    assert SCHEMA is not None
    before = {"metadata": {"finalizers": ["a", "b"], "labels": {"x": "1", "y": "2"}}}
    patch = {
        "metadata": {
            "finalizers": ["c", "a"],
            "$deleteFromPrimitiveList/finalizers": ["b"],
            "labels": {"x": None, "z": "3"},
        }
    }
    after = strategic_merge_patch(before, patch, SCHEMA)
    assert after["metadata"] == {"finalizers": ["c", "a"], "labels": {"y": "2", "z": "3"}}


def test_nested_patch_of_replicas_and_labels_is_a_merge_patch() -> None:
    assert SCHEMA is not None
    before = deployment({"containers": [NGINX]})
    after = strategic_merge_patch(
        before, {"spec": {"replicas": 5}, "metadata": {"labels": {"a": "b"}}}, SCHEMA
    )
    assert after["spec"]["replicas"] == 5
    assert after["metadata"]["labels"] == {"a": "b"}
    assert pod_of(after) == {"containers": [NGINX]}


def test_unknown_fields_merge_maps_and_replace_lists() -> None:
    before = {"spec": {"things": [{"name": "a"}], "map": {"a": 1}}}
    after = strategic_merge_patch(
        before, {"spec": {"things": [{"name": "b"}], "map": {"b": 2}}}, PatchSchema()
    )
    assert after == {"spec": {"things": [{"name": "b"}], "map": {"a": 1, "b": 2}}}


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ({"containers": [{"image": "x"}]}, "does not contain declared merge key: name"),
        ({"containers": [{"$patch": "merge"}]}, "merging lists cannot yet be specified"),
        ({"containers": [{"name": "a", "$patch": "bogus"}]}, "Unknown patch type: bogus"),
        ({"affinity": {"$patch": "bogus"}}, "Unknown patch type: bogus"),
    ],
)
def test_bad_patches(patch: dict[str, Any], message: str) -> None:
    assert SCHEMA is not None
    with pytest.raises(StrategicPatchError, match=message):
        strategic_merge_patch(deployment({"containers": [NGINX]}), pod_patch(patch), SCHEMA)


def test_kind_lookup_and_list_type_fallback() -> None:
    assert kind_schema(DOCUMENT, "apps", "v1", "StatefulSet") is None
    # A document without patch extensions: list-type map keys decide instead.
    bare: dict[str, Any] = {
        "components": {
            "schemas": {
                "Thing": {
                    "x-kubernetes-group-version-kind": [
                        {"group": "x.io", "version": "v1", "kind": "Thing"}
                    ],
                    "properties": {
                        "items": {
                            "type": "array",
                            "items": {"type": "object"},
                            "x-kubernetes-list-type": "map",
                            "x-kubernetes-list-map-keys": ["id"],
                        }
                    },
                }
            }
        }
    }
    schema = kind_schema(bare, "x.io", "v1", "Thing")
    assert schema is not None
    after = strategic_merge_patch({"items": [{"id": 1, "v": "a"}]}, {"items": [{"id": 2}]}, schema)
    assert after == {"items": [{"id": 2}, {"id": 1, "v": "a"}]}
    # With patch extensions in the document, the same list is replaced (as kubectl expects).
    assert SCHEMA is not None
    assert not SCHEMA.field("spec").field("template").field("spec").field("tolerations").strategies
