"""The shadow API through the parent's aggregator: templates stored as Manifests, never realised.

Every request is real kubectl → parent kube-apiserver → aggregator → clusternet-hub, which
validates creates with a dry run in the parent and stores Manifests in clusternet-reserved.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import pytest

from clusternet.kube import ApiError, KubeClient
from clusternet.local.testing import Clusters, Kubectl, wait_until

SHADOW = "/apis/shadow/v1alpha1"
RESERVED = "clusternet-reserved"


def fresh(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def parent(clusters: Clusters) -> Kubectl:
    return clusters.kubectl("parent")


def create(kubectl: Kubectl, path: str, obj: dict[str, Any], check: bool = True) -> Any:
    result = kubectl("create", "--raw", path, "-f", "-", input=json.dumps(obj), check=check)
    return json.loads(result.stdout) if result.returncode == 0 else result


def replace(kubectl: Kubectl, path: str, obj: dict[str, Any], check: bool = True) -> Any:
    result = kubectl("replace", "--raw", path, "-f", "-", input=json.dumps(obj), check=check)
    return json.loads(result.stdout) if result.returncode == 0 else result


def get(kubectl: Kubectl, path: str) -> Any:
    return json.loads(kubectl("get", "--raw", path).stdout)


def manifest(kubectl: Kubectl, name: str) -> Any:
    result = kubectl(
        "get", "manifests.apps.clusternet.io", "-n", RESERVED, name, "-o", "json", check=False
    )
    return json.loads(result.stdout) if result.returncode == 0 else None


def deployment(namespace: str, name: str, labels: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]},
            },
        },
    }


def test_discovery_lists_mirrored_resources(parent: Kubectl) -> None:
    resources = {r["name"]: r for r in get(parent, SHADOW)["resources"]}
    assert resources["deployments"]["kind"] == "Deployment"
    assert resources["deployments"]["categories"] == ["clusternet.shadow"]
    assert resources["namespaces"]["namespaced"] is False
    assert "deployments/scale" in resources
    assert resources["deployments/status"]["verbs"] == ["get"]
    # Never mirrored: clusternet's own kinds and the aggregator's APIServices.
    assert "manifests" not in resources
    assert "apiservices" not in resources
    # Core events win over events.k8s.io events.
    assert resources["events"]["kind"] == "Event"


def test_templates_are_stored_as_manifests_not_realised(parent: Kubectl) -> None:
    ns, name = fresh("shadow"), "web"
    created_ns = create(
        parent,
        f"{SHADOW}/namespaces",
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}},
    )
    created = create(
        parent,
        f"{SHADOW}/namespaces/{ns}/deployments",
        deployment(ns, name, {"tier": "front", "team": "a"}),
    )
    service = create(
        parent,
        f"{SHADOW}/namespaces/{ns}/services",
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"type": "NodePort", "selector": {"app": name}, "ports": [{"port": 80}]},
        },
    )

    stored = manifest(parent, f"deployments.{ns}.{name}")
    labels = stored["metadata"]["labels"]
    assert labels["apps.clusternet.io/config.group"] == "apps"
    assert labels["apps.clusternet.io/config.version"] == "v1"
    assert labels["apps.clusternet.io/config.kind"] == "Deployment"
    assert labels["apps.clusternet.io/config.name"] == name
    assert labels["apps.clusternet.io/config.namespace"] == ns
    assert labels["clusternet.io/created-by"] == "clusternet-hub"
    assert labels["tier"] == "front"
    assert stored["template"]["metadata"]["namespace"] == ns
    assert "status" not in stored["template"]
    assert "uid" not in stored["template"]["metadata"]
    # Defaulted by the parent's dry run.
    assert stored["template"]["spec"]["strategy"]["type"] == "RollingUpdate"
    assert created["metadata"]["uid"] == stored["metadata"]["uid"]
    # (not the resourceVersion: the Manifest controller adds its finalizers meanwhile)

    namespace_manifest = manifest(parent, f"namespaces.{ns}")
    assert namespace_manifest["metadata"]["labels"]["apps.clusternet.io/config.namespace"] == ""
    assert created_ns["metadata"]["uid"] == namespace_manifest["metadata"]["uid"]
    service_template = manifest(parent, f"services.{ns}.{name}")["template"]
    assert "clusterIP" not in service_template["spec"]
    assert "nodePort" not in service_template["spec"]["ports"][0]
    assert "clusterIP" not in service["spec"]

    # Templates only: nothing exists in the parent.
    assert parent("get", "namespace", ns, check=False).returncode != 0
    assert parent("get", "deployment", "-A", "-o", "name").stdout.count(f"/{name}\n") == 0

    read = get(parent, f"{SHADOW}/namespaces/{ns}/deployments/{name}")
    assert (read["apiVersion"], read["kind"]) == ("apps/v1", "Deployment")
    assert read["metadata"]["uid"] == stored["metadata"]["uid"]
    listed = get(parent, f"{SHADOW}/namespaces/{ns}/deployments?labelSelector=tier%3Dfront")
    assert listed["kind"] == "DeploymentList"
    assert [i["metadata"]["name"] for i in listed["items"]] == [name]
    assert (
        get(parent, f"{SHADOW}/namespaces/{ns}/deployments?labelSelector=tier%3Dback")["items"]
        == []
    )
    by_name = get(parent, f"{SHADOW}/deployments?fieldSelector=metadata.name%3D{name}")
    assert ns in {i["metadata"]["namespace"] for i in by_name["items"]}

    # Update: the Manifest is bumped and a label the template dropped leaves the Manifest.
    updated_body = deployment(ns, name, {"tier": "front"})
    updated_body["spec"]["replicas"] = 5
    updated_body["metadata"]["resourceVersion"] = read["metadata"]["resourceVersion"]
    updated = replace(parent, f"{SHADOW}/namespaces/{ns}/deployments/{name}", updated_body)
    after = manifest(parent, f"deployments.{ns}.{name}")
    assert after["metadata"]["resourceVersion"] != stored["metadata"]["resourceVersion"]
    assert updated["metadata"]["resourceVersion"] == after["metadata"]["resourceVersion"]
    assert after["template"]["spec"]["replicas"] == 5
    assert "team" not in after["metadata"]["labels"]
    assert after["metadata"]["labels"]["apps.clusternet.io/config.name"] == name

    # The old resourceVersion is stale now: optimistic concurrency as in Kubernetes.
    stale = replace(parent, f"{SHADOW}/namespaces/{ns}/deployments/{name}", updated_body, False)
    assert stale.returncode != 0
    assert "the object has been modified" in stale.stderr

    scale = get(parent, f"{SHADOW}/namespaces/{ns}/deployments/{name}/scale")
    assert (scale["kind"], scale["spec"]["replicas"]) == ("Scale", 5)
    scale["spec"]["replicas"] = 1
    replace(parent, f"{SHADOW}/namespaces/{ns}/deployments/{name}/scale", scale)
    assert manifest(parent, f"deployments.{ns}.{name}")["template"]["spec"]["replicas"] == 1

    for plural, path in (
        ("deployments", f"{SHADOW}/namespaces/{ns}/deployments/{name}"),
        ("services", f"{SHADOW}/namespaces/{ns}/services/{name}"),
        ("namespaces", f"{SHADOW}/namespaces/{ns}"),
    ):
        parent("delete", "--raw", path)
        stored_name = f"{plural}.{ns}.{name}" if plural != "namespaces" else f"namespaces.{ns}"
        wait_until(
            lambda stored_name=stored_name: manifest(parent, stored_name) is None,
            f"Manifest {stored_name} gone",
        )


def test_status_is_read_only_and_field_selectors_are_limited(parent: Kubectl) -> None:
    ns, name = fresh("shadow"), "ro"
    create(parent, f"{SHADOW}/namespaces/{ns}/deployments", deployment(ns, name, {}))
    path = f"{SHADOW}/namespaces/{ns}/deployments/{name}"
    status = get(parent, f"{path}/status")
    denied = replace(parent, f"{path}/status", status, check=False)
    assert denied.returncode != 0
    assert "does not allow to PUT status" in denied.stderr
    unsupported = parent(
        "get", "--raw", f"{SHADOW}/namespaces/{ns}/deployments?fieldSelector=spec.replicas%3D1",
        check=False,
    )  # fmt: skip
    assert unsupported.returncode != 0
    assert "is not supported" in unsupported.stderr
    assert "InternalError" not in unsupported.stderr
    parent("delete", "--raw", path)


def test_deletecollection_deletes(parent: Kubectl) -> None:
    ns = fresh("shadow")
    for name in ("one", "two"):
        create(
            parent,
            f"{SHADOW}/namespaces/{ns}/configmaps",
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}},
        )
    assert manifest(parent, f"configmaps.{ns}.one") is not None
    parent("delete", "--raw", f"{SHADOW}/namespaces/{ns}/configmaps")
    for name in ("one", "two"):
        wait_until(
            lambda name=name: manifest(parent, f"configmaps.{ns}.{name}") is None,
            f"Manifest configmaps.{ns}.{name} gone",
        )


def test_invalid_objects_get_the_parents_message(parent: Kubectl) -> None:
    ns, name = fresh("shadow"), "noselector"
    body = deployment(ns, name, {})
    del body["spec"]["selector"]
    rejected = create(parent, f"{SHADOW}/namespaces/{ns}/deployments", body, check=False)
    assert rejected.returncode != 0
    assert "spec.selector: Required value" in rejected.stderr
    assert manifest(parent, f"deployments.{ns}.{name}") is None


def test_custom_resources_unknown_to_the_parent_need_skip_validating(parent: Kubectl) -> None:
    group = f"{fresh('e2e')}.example.com"
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"widgets.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "x-kubernetes-preserve-unknown-fields": True,
                        }
                    },
                }
            ],
        },
    }
    parent.apply(json.dumps(crd))
    try:
        wait_until(
            lambda: any(r["name"] == "widgets" for r in get(parent, SHADOW)["resources"]),
            "shadow widgets",
        )
        ns = fresh("shadow")
        path = f"{SHADOW}/namespaces/{ns}/widgets"
        served = {"apiVersion": f"{group}/v1", "kind": "Widget", "metadata": {"name": "a"}}
        create(parent, path, served)
        assert manifest(parent, f"widgets.{ns}.a")["template"]["apiVersion"] == f"{group}/v1"

        # v2 exists only in the children: the parent cannot validate it.
        newer: dict[str, Any] = {
            "apiVersion": f"{group}/v2",
            "kind": "Widget",
            "metadata": {"name": "b"},
            "spec": {"size": 3},
        }
        rejected = create(parent, path, newer, check=False)
        assert rejected.returncode != 0
        assert "skip-validating" in rejected.stderr
        assert manifest(parent, f"widgets.{ns}.b") is None
        newer["metadata"]["annotations"] = {"apps.clusternet.io/skip-validating": "true"}
        create(parent, path, newer)
        stored = manifest(parent, f"widgets.{ns}.b")
        assert stored["metadata"]["labels"]["apps.clusternet.io/config.version"] == "v2"
        for name in ("a", "b"):
            parent("delete", "--raw", f"{path}/{name}")
    finally:
        parent("delete", "crd", f"widgets.{group}", "--wait=true")
    wait_until(
        lambda: all(r["name"] != "widgets" for r in get(parent, SHADOW)["resources"]),
        "widgets dropped from shadow discovery",
    )


def test_kubectl_get_lists_templates(parent: Kubectl) -> None:
    ns = fresh("shadow")
    create(parent, f"{SHADOW}/namespaces/{ns}/deployments", deployment(ns, "listed", {}))
    # Server-side printing: the Deployment printer's columns, for a template that runs nowhere.
    lines = parent("get", "deployments.v1alpha1.shadow", "-n", ns).stdout.splitlines()
    assert lines[0].split() == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
    assert lines[1].split()[:4] == ["listed", "0/2", "0", "0"]
    wide = parent("get", "deployments.v1alpha1.shadow", "-n", ns, "-o", "wide").stdout
    assert wide.splitlines()[0].split()[5:] == ["CONTAINERS", "IMAGES", "SELECTOR"]
    assert "nginx:1.27" in wide
    assert parent("get", "deployments", "-n", ns, "-o", "name").stdout == ""
    parent("delete", "--raw", f"{SHADOW}/namespaces/{ns}/deployments/listed")


def test_kube_client_maps_and_watches_the_shadow_group(clusters: Clusters) -> None:
    ns = fresh("shadow")

    async def scenario() -> dict[str, Any]:
        async with KubeClient.from_kubeconfig(clusters.kubeconfig, context="parent") as client:
            listed = await client.list("shadow/v1alpha1", "Deployment", namespace=ns)
            assert listed["items"] == []
            async with client.watch(
                "shadow/v1alpha1",
                "Deployment",
                namespace=ns,
                resource_version=listed["metadata"]["resourceVersion"],
                timeout_seconds=60,
            ) as events:
                path = f"{SHADOW}/namespaces/{ns}/deployments"
                await client.request("POST", path, body=deployment(ns, "watched", {}))
                async for event in events:
                    if event.type == "ADDED":
                        await client.delete(
                            "shadow/v1alpha1", "Deployment", "watched", namespace=ns
                        )
                        return event.object
        raise AssertionError("the watch ended without an ADDED event")

    added = asyncio.run(scenario())
    assert (added["apiVersion"], added["kind"]) == ("apps/v1", "Deployment")
    assert added["metadata"]["name"] == "watched"


def test_strategic_merge_patch_and_server_side_apply(parent: Kubectl, clusters: Clusters) -> None:
    ns = fresh("shadow")
    path = f"{SHADOW}/namespaces/{ns}/deployments"
    body = deployment(ns, "smp", {})
    body["spec"]["template"]["spec"]["containers"].append({"name": "log", "image": "busybox"})
    create(parent, path, body)
    resource = ["deployments.v1alpha1.shadow", "smp", "-n", ns]
    # Containers merge by name (merge keys from the parent's OpenAPI v3).
    image = {"spec": {"template": {"spec": {"containers": [{"name": "web", "image": "nginx:2"}]}}}}
    parent("patch", *resource, "--type=strategic", "-p", json.dumps(image))
    containers = get(parent, f"{path}/smp")["spec"]["template"]["spec"]["containers"]
    assert [(c["name"], c["image"]) for c in containers] == [("web", "nginx:2"), ("log", "busybox")]
    delete = {"spec": {"template": {"spec": {"containers": [{"name": "log", "$patch": "delete"}]}}}}
    parent("patch", *resource, "--type=strategic", "-p", json.dumps(delete))
    containers = get(parent, f"{path}/smp")["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["web"]

    # Server-side apply: create when absent, merge when present.
    applied = deployment(ns, "ssa", {"team": "a"})

    async def server_side_apply(config: dict[str, Any]) -> None:
        async with KubeClient.from_kubeconfig(clusters.kubeconfig, context="parent") as client:
            await client.request(
                "PATCH",
                f"{path}/ssa",
                params={"fieldManager": "e2e", "force": "true"},
                body=config,
                content_type="application/apply-patch+yaml",
            )

    asyncio.run(server_side_apply(applied))
    assert manifest(parent, f"deployments.{ns}.ssa")["template"]["spec"]["replicas"] == 2
    applied["spec"]["replicas"] = 4
    asyncio.run(server_side_apply(applied))
    assert manifest(parent, f"deployments.{ns}.ssa")["template"]["spec"]["replicas"] == 4
    for name in ("smp", "ssa"):
        parent("delete", "--raw", f"{path}/{name}")


def test_strategic_merge_patch_of_custom_resources_is_refused_as_by_kube_apiserver(
    parent: Kubectl, clusters: Clusters
) -> None:
    group = f"{fresh('e2e')}.example.com"
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"gadgets.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"plural": "gadgets", "singular": "gadget", "kind": "Gadget"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "x-kubernetes-preserve-unknown-fields": True,
                        }
                    },
                    "additionalPrinterColumns": [
                        {"name": "Size", "type": "integer", "jsonPath": ".spec.size"}
                    ],
                }
            ],
        },
    }
    parent.apply(json.dumps(crd))
    ns = fresh("shadow")
    try:
        parent("wait", "--for=condition=Established", f"crd/gadgets.{group}")
        wait_until(
            lambda: any(r["name"] == "gadgets" for r in get(parent, SHADOW)["resources"]),
            "shadow gadgets",
        )
        gadget = {
            "apiVersion": f"{group}/v1",
            "kind": "Gadget",
            "metadata": {"name": "g", "namespace": ns},
            "spec": {"size": 3},
        }
        create(parent, f"{SHADOW}/namespaces/{ns}/gadgets", gadget)
        # The CRD's printer columns, and the strategic patch kube-apiserver refuses for custom
        # resources.  (Raw requests: kube-apiserver's aggregated discovery, which kubectl
        # reads, takes up to a minute to list a new kind of an aggregated API.)
        path = f"{SHADOW}/namespaces/{ns}/gadgets"
        patch = {"spec": {"size": 4}}

        async def table_and_patch() -> tuple[Any, str]:
            async with KubeClient.from_kubeconfig(clusters.kubeconfig, context="parent") as client:
                table = await client.request(
                    "GET", path, accept="application/json;as=Table;v=v1;g=meta.k8s.io"
                )
                try:
                    await client.request(
                        "PATCH",
                        f"{path}/g",
                        body=patch,
                        content_type="application/strategic-merge-patch+json",
                    )
                except ApiError as err:
                    return table, f"{err.code} {err.reason}: {err.message}"
                raise AssertionError("a strategic merge patch of a custom resource was accepted")

        table, refused = asyncio.run(table_and_patch())
        assert [c["name"] for c in table["columnDefinitions"]] == ["Name", "Size"]
        assert table["rows"][0]["cells"] == ["g", 3]
        # A real custom resource in the parent answers the same.
        parent("create", "namespace", ns)
        parent.apply(json.dumps(gadget))
        real = parent(
            "patch", f"gadgets.{group}", "g", "-n", ns, "--type=strategic", "-p",
            json.dumps(patch), check=False,
        )  # fmt: skip
        assert real.returncode != 0
        # (kubectl words a 415 its own way around kube-apiserver's message)
        code, _, message = refused.partition(": ")
        assert code == "415 UnsupportedMediaType"
        assert real.stderr.strip().endswith(f"Kind=Gadget: {message}")
        parent("delete", "--raw", f"{SHADOW}/namespaces/{ns}/gadgets/g")
    finally:
        parent("delete", "namespace", ns, "--wait=false", "--ignore-not-found")
        parent("delete", "crd", f"gadgets.{group}", "--wait=true")
