"""Multi-cluster services (issue 9, spec §7) on real control planes, without the distribution
pipeline: the Service, Deployment and ServiceExport are created in each child directly with
``kubectl --context childN``; kwok runs the pods and kube-controller-manager's EndpointSlice
controller lists them.  The agents (gate MultiClusterService) mirror the slices into their
dedicated namespaces; the controller-manager builds the derived Service and its slices next
to the ServiceImport in the parent.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from clusternet.apis import known, mcs
from clusternet.local.testing import Clusters, wait_until

TIMEOUT = 90
SERVICE = "web"


def child_manifests(namespace: str, replicas: int, *, service: bool = True) -> str:
    objects: list[dict[str, Any]] = [
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": SERVICE, "namespace": namespace},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": SERVICE}},
                "template": {
                    "metadata": {"labels": {"app": SERVICE}},
                    "spec": {
                        "containers": [
                            {
                                "name": "nginx",
                                "image": "nginx:1.14.2",
                                "ports": [{"name": "http", "containerPort": 80}],
                            }
                        ]
                    },
                },
            },
        },
        {
            "apiVersion": mcs.MCS_API_VERSION,
            "kind": "ServiceExport",
            "metadata": {
                "name": SERVICE,
                "namespace": namespace,
                "labels": {known.CONFIG_SUBSCRIPTION_NAMESPACE_LABEL: namespace},
            },
        },
    ]
    if service:
        objects.append(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": SERVICE, "namespace": namespace},
                "spec": {
                    "selector": {"app": SERVICE},
                    "ports": [{"name": "http", "port": 80, "targetPort": 80}],
                },
            }
        )
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": objects})


def service_import(namespace: str, name: str, exported: str) -> str:
    return json.dumps(
        {
            "apiVersion": mcs.MCS_API_VERSION,
            "kind": "ServiceImport",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "labels": {
                    known.MCS_SERVICE_NAME_LABEL: exported,
                    known.MCS_SERVICE_NAMESPACE_LABEL: namespace,
                },
            },
            "spec": {
                "type": "ClusterSetIP",
                "ips": ["42.42.42.42"],
                "ports": [{"name": "http", "port": 80, "protocol": "TCP"}],
            },
        }
    )


def parent_slices(clusters: Clusters, namespace: str, derived: str) -> list[Any]:
    return list(
        clusters.kubectl("parent").json(
            "get", "endpointslices", "-n", namespace,
            "-l", f"{mcs.SERVICE_NAME_LABEL}={derived}",
        )["items"]
    )  # fmt: skip


def ready_ips_by_cluster(slices: list[Any]) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for item in slices:
        cluster = item["metadata"]["labels"][known.CLUSTER_NAME_LABEL]
        for endpoint in item.get("endpoints") or []:
            if (endpoint.get("conditions") or {}).get("ready"):
                found.setdefault(cluster, set()).update(endpoint["addresses"])
    return found


def pod_ips(clusters: Clusters, child: str, namespace: str) -> set[str]:
    pods = clusters.kubectl(child).json("get", "pods", "-n", namespace, "-l", f"app={SERVICE}")
    return {
        p["status"]["podIP"]
        for p in pods["items"]
        if p["status"].get("podIP") and not p["metadata"].get("deletionTimestamp")
    }


def wait_for_endpoints(
    clusters: Clusters,
    namespace: str,
    derived: str,
    expected: Callable[[], dict[str, set[str]]],
    what: str,
) -> dict[str, set[str]]:
    def check() -> dict[str, set[str]] | None:
        want = expected()
        got = ready_ips_by_cluster(parent_slices(clusters, namespace, derived))
        return got if got == want and all(want.values()) else None

    return wait_until(check, what, TIMEOUT, interval=0.5)


def test_endpoints_of_every_exporting_child_back_the_derived_service(
    clusters: Clusters, namespace: str
) -> None:
    parent = clusters.kubectl("parent")
    replicas = {"child1": 2, "child2": 1}
    for child, count in replicas.items():
        clusters.kubectl(child).apply(child_manifests(namespace, count))
    for child in replicas:
        clusters.kubectl(child)(
            "wait", "-n", namespace, "serviceexport", SERVICE, "--for=condition=Valid",
            f"--timeout={TIMEOUT}s",
        )  # fmt: skip

    parent.apply(service_import(namespace, "web-import", SERVICE))
    derived = mcs.derived_name(namespace, SERVICE)

    def service() -> Any | None:
        got = parent("get", "service", derived, "-n", namespace, "-o", "json", check=False)
        if got.returncode != 0:
            return None
        svc = json.loads(got.stdout)
        ingress = ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
        return svc if ingress else None

    svc = wait_until(service, f"derived Service {derived} with its ingress", TIMEOUT, 0.5)
    assert [(p["port"], p.get("name")) for p in svc["spec"]["ports"]] == [(80, "http")]
    assert [i["ip"] for i in svc["status"]["loadBalancer"]["ingress"]] == ["42.42.42.42"]
    assert "selector" not in svc["spec"]
    assert svc["spec"]["clusterIP"]

    def pods() -> dict[str, set[str]]:
        return {child: pod_ips(clusters, child, namespace) for child in replicas}

    got = wait_for_endpoints(clusters, namespace, derived, pods, "endpoints of both children")
    assert {child: len(ips) for child, ips in got.items()} == replicas
    for item in parent_slices(clusters, namespace, derived):
        labels = item["metadata"]["labels"]
        assert known.OBJECT_CREATED_BY_LABEL not in labels
        assert labels[known.MCS_SERVICE_NAME_LABEL] == SERVICE
        assert labels[known.MCS_SERVICE_NAMESPACE_LABEL] == namespace
        assert labels[mcs.SOURCE_CLUSTER_LABEL]
        assert [p.get("name") for p in item["ports"]] == ["http"]  # the Service's port name
        assert item["metadata"]["name"].startswith("clusternet-")  # <dedicated ns>-<ns>-<slice>

    # Pods come and go: the parent follows.
    clusters.kubectl("child2")("scale", "deployment", SERVICE, "-n", namespace, "--replicas=3")
    replicas["child2"] = 3
    got = wait_for_endpoints(clusters, namespace, derived, pods, "child2 scaled to 3")
    assert len(got["child2"]) == 3

    # child1 stops exporting: its endpoints leave the parent, its copies go too.
    clusters.kubectl("child1")("delete", "serviceexport", SERVICE, "-n", namespace)
    del replicas["child1"]
    wait_for_endpoints(clusters, namespace, derived, pods, "only child2's endpoints")
    copies = parent.json(
        "get", "endpointslices", "-A", "-l",
        f"{known.MCS_SERVICE_NAMESPACE_LABEL}={namespace},{known.CLUSTER_NAME_LABEL}=child1",
    )["items"]  # fmt: skip
    assert copies == []

    # The import goes: the derived Service and its slices go with it.
    parent("delete", "serviceimport", "web-import", "-n", namespace, f"--timeout={TIMEOUT}s")
    wait_until(
        lambda: (
            parent("get", "service", derived, "-n", namespace, check=False).returncode
            and not parent_slices(clusters, namespace, derived)
        ),
        "derived Service and slices to be gone",
        TIMEOUT,
        0.5,
    )


def test_bad_input_is_reported(clusters: Clusters, namespace: str) -> None:
    parent = clusters.kubectl("parent")
    # An export without its Service: Valid=False, reason NoService, nothing exported.
    child1 = clusters.kubectl("child1")
    child1.apply(child_manifests(namespace, 1, service=False))
    child1(
        "wait", "-n", namespace, "serviceexport", SERVICE, "--for=condition=Valid=false",
        f"--timeout={TIMEOUT}s",
    )  # fmt: skip
    export = child1.json("get", "serviceexport", SERVICE, "-n", namespace)
    (valid,) = [c for c in export["status"]["conditions"] if c["type"] == "Valid"]
    assert valid["reason"] == "NoService"

    # An import whose labels match no export (the upstream example's typo).
    parent.apply(service_import(namespace, "typo", "my-web"))

    def event() -> Any | None:
        events = parent.json(
            "get", "events", "-n", namespace,
            "--field-selector", "involvedObject.name=typo,reason=NoExportedEndpoints",
        )["items"]  # fmt: skip
        return events[0] if events else None

    found = wait_until(event, "a NoExportedEndpoints event", TIMEOUT, 0.5)
    assert found["type"] == "Warning"
    assert f"{namespace}/my-web" in found["message"]
    derived = mcs.derived_name(namespace, "my-web")
    assert parent_slices(clusters, namespace, derived) == []
