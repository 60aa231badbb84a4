"""What `clusternet install` applies: the right objects, in an order that can be applied."""

from clusternet.apis import ALL_KINDS
from clusternet.apis.install import (
    BOOTSTRAP_GROUP,
    SYSTEM_NAMESPACE,
    child_manifests,
    parent_manifests,
)


def kinds(manifests: list[dict]) -> list[str]:
    return [m["kind"] for m in manifests]


def test_parent_gets_every_crd_first_then_namespaces_and_rbac() -> None:
    manifests = parent_manifests()
    crds = [m for m in manifests if m["kind"] == "CustomResourceDefinition"]
    assert len(crds) == len(ALL_KINDS)
    assert kinds(manifests)[: len(crds)] == ["CustomResourceDefinition"] * len(crds)
    names = {(m["kind"], m["metadata"]["name"]) for m in manifests}
    assert {("Namespace", "clusternet-system"), ("Namespace", "clusternet-reserved")} <= names
    binding = next(m for m in manifests if m["kind"] == "ClusterRoleBinding")
    assert binding["subjects"] == [
        {"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": BOOTSTRAP_GROUP}
    ]
    role = next(m for m in manifests if m["kind"] == "ClusterRole")
    # Bootstrap tokens may only file registration requests: nothing else.
    assert role["rules"] == [
        {
            "apiGroups": ["clusters.clusternet.io"],
            "resources": ["clusterregistrationrequests"],
            "verbs": ["create", "get"],
        }
    ]


def test_child_gets_only_the_mcs_crds_and_the_deployer() -> None:
    manifests = child_manifests()
    crds = {m["metadata"]["name"] for m in manifests if m["kind"] == "CustomResourceDefinition"}
    assert crds == {"serviceexports.multicluster.x-k8s.io", "serviceimports.multicluster.x-k8s.io"}
    namespaced = [m for m in manifests if "namespace" in m["metadata"]]
    assert {m["metadata"]["namespace"] for m in namespaced} == {SYSTEM_NAMESPACE}
    # The namespace is applied before what lives in it.
    order = kinds(manifests)
    assert order.index("Namespace") < order.index("ServiceAccount") < order.index("Secret")
