"""Issue 9's acceptance: the ``clusternet demo mcs`` scenario (examples/scheduling-with-mcs-api)
on the session's parent and two children, through the code the CLI runs
(:func:`clusternet.cli.demo.run_scenario`), then what a user does next with kubectl.

The example uses fixed names (namespace ``baz``, Subscription and ServiceImport in
``default``), so the fixture deletes everything it created: the Subscriptions first (their
Descriptions take the objects out of the children), then the templates.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import pytest

from clusternet.apis import known, mcs
from clusternet.cli import demo
from clusternet.kube import KubeClient, load_kubeconfig
from clusternet.local.testing import Clusters, wait_until

T = TypeVar("T")
TIMEOUT = 120
SCENARIO = demo.load_scenario(demo.EXAMPLE)
DERIVED = "derived-baz-kl7j74ep4o"
SUBSCRIPTION = "scheduling-with-mcs-api"
EXPORT_SUBSCRIPTION = "nginx-svc-export"


def run(clusters: Clusters, body: Callable[[dict[str, KubeClient]], Awaitable[T]]) -> T:
    """``body`` with a client per context of the session's environment."""

    async def main() -> T:
        clients = {
            name: KubeClient(load_kubeconfig(clusters.kubeconfig, name), cluster=name)
            for name in clusters.names
        }
        try:
            return await body(clients)
        finally:
            await asyncio.gather(*(c.aclose() for c in clients.values()))

    return asyncio.run(main())


def endpoints_settle(clusters: Clusters, children: list[str], total: int) -> dict[str, int]:
    async def body(clients: dict[str, KubeClient]) -> dict[str, int]:
        endpoints, _ = await demo.wait_for_endpoints(
            clients["parent"], {c: clients[c] for c in children}, SCENARIO, total, TIMEOUT
        )
        return endpoints

    return run(clusters, body)


def export_subscription() -> str:
    """Export baz/nginx-svc from child2 only: a Subscription of the ServiceExport alone."""
    return json.dumps(
        {
            "apiVersion": demo.SUBSCRIPTION_API_VERSION,
            "kind": "Subscription",
            "metadata": {"name": EXPORT_SUBSCRIPTION, "namespace": "default"},
            "spec": {
                "subscribers": [
                    {"clusterAffinity": {"matchLabels": {known.CLUSTER_NAME_LABEL: "child2"}}}
                ],
                "feeds": [
                    {
                        "apiVersion": mcs.MCS_API_VERSION,
                        "kind": "ServiceExport",
                        "name": "nginx-svc",
                        "namespace": "baz",
                    }
                ],
            },
        }
    )


def typo_import() -> str:
    """The upstream example's ServiceImport: it asks for ``my-nginx-svc``, which nobody exports."""
    service_import = json.loads(json.dumps(SCENARIO.service_import))
    service_import["metadata"]["name"] = "my-svc-typo"
    service_import["metadata"]["labels"][known.MCS_SERVICE_NAME_LABEL] = "my-nginx-svc"
    return json.dumps(service_import)


def cleanup(clusters: Clusters) -> None:
    parent = clusters.kubectl("parent")
    parent("delete", "serviceimports.multicluster.x-k8s.io", "-n", "default", "my-svc",
           "my-svc-typo", "--ignore-not-found")  # fmt: skip
    parent("delete", "subscriptions.apps.clusternet.io", "-n", "default", SUBSCRIPTION,
           EXPORT_SUBSCRIPTION, "--ignore-not-found", "--wait=false")  # fmt: skip
    for name in (SUBSCRIPTION, EXPORT_SUBSCRIPTION):
        parent("wait", "--for=delete", f"subscriptions.apps.clusternet.io/{name}", "-n",
               "default", f"--timeout={TIMEOUT}s", check=False)  # fmt: skip
    for name in ("nginx-deployment.yaml", "nginx-svc.yaml", "service-export.yaml"):
        clusters.plugin("delete", "-f", str(demo.EXAMPLE / "scheduling" / name),
                        "--ignore-not-found", "--wait=false", check=False)  # fmt: skip


@pytest.fixture
def outcome(clusters: Clusters) -> Iterator[demo.Outcome]:
    def body(clients: dict[str, KubeClient]) -> Awaitable[demo.Outcome]:
        children = {c: clients[c] for c in clusters.children}
        return demo.run_scenario(clients["parent"], children, SCENARIO, seconds=TIMEOUT)

    try:
        yield run(clusters, body)
    finally:
        cleanup(clusters)


async def delete_export_in_child1(clients: dict[str, KubeClient]) -> dict[str, int]:
    """Delete the ServiceExport in child1 and follow the parent's slices of the derived
    Service from just before (a watch from the list's resourceVersion sees every change)
    until child1 has no endpoints left there: the ready endpoints per cluster at that point."""
    parent = clients["parent"]
    selector = f"{mcs.SERVICE_NAME_LABEL}={DERIVED}"
    listed = await parent.list(
        mcs.DISCOVERY_API_VERSION, "EndpointSlice", namespace="default", label_selector=selector
    )
    current = {item["metadata"]["name"]: item for item in listed["items"]}
    await clients["child1"].delete(mcs.MCS_API_VERSION, "ServiceExport", "nginx-svc",
                                   namespace="baz")  # fmt: skip

    def without_child1() -> dict[str, int] | None:
        found = {c: len(a) for c, a in demo.endpoints_by_cluster(current.values()).items() if a}
        return found if "child1" not in found else None

    async with asyncio.timeout(TIMEOUT):
        async with parent.watch(
            mcs.DISCOVERY_API_VERSION, "EndpointSlice", namespace="default",
            label_selector=selector, resource_version=listed["metadata"]["resourceVersion"],
        ) as events:  # fmt: skip
            async for event in events:
                name = event.object.get("metadata", {}).get("name")
                if event.type == "DELETED":
                    current.pop(name, None)
                elif event.type in ("ADDED", "MODIFIED"):
                    current[name] = event.object
                if (found := without_child1()) is not None:
                    return found
    raise AssertionError("the parent's watch ended before child1's endpoints left")


def parent_slices(clusters: Clusters) -> list[Any]:
    listed = clusters.kubectl("parent").json(
        "get", "endpointslices", "-n", "default", "-l", f"{mcs.SERVICE_NAME_LABEL}={DERIVED}"
    )
    return list(listed["items"])


def ready_pods(clusters: Clusters, child: str) -> int:
    pods = clusters.kubectl(child).json("get", "pods", "-n", "baz", "-l", "app=nginx")["items"]
    return sum(
        demo.condition_status(p, "Ready") == "True"
        for p in pods
        if not p["metadata"].get("deletionTimestamp")
    )


def test_demo_scenario_and_what_follows(clusters: Clusters, outcome: demo.Outcome) -> None:
    parent = clusters.kubectl("parent")
    # After the demo: 2 pods in child1 and 4 in child2, ready.
    assert SCENARIO.derived_service == DERIVED
    assert outcome.subscribed == ["child1", "child2"]
    assert {c: outcome.placement[c] for c in outcome.subscribed} == {
        "child1": (2, 2), "child2": (4, 4),
    }  # fmt: skip
    assert all(outcome.placement[c] == (0, 0) for c in clusters.children[2:])
    assert {c: ready_pods(clusters, c) for c in ("child1", "child2")} == {"child1": 2, "child2": 4}
    # Every registered cluster is listed; the environment's children are Ready (other tests
    # may register clusters that no agent runs: those are not asked about).
    ours = [c for c in outcome.clusters if c.name in clusters.children]
    assert sorted(c.name for c in ours) == sorted(clusters.children)
    assert all(c.id and c.namespace and c.ready == "True" for c in ours)
    assert {c.name: c.namespace for c in ours} == clusters.dedicated_namespaces()

    # The derived Service: port 80 and the import's IP.
    service = parent.json("get", "service", DERIVED, "-n", "default")
    assert [p["port"] for p in service["spec"]["ports"]] == [80]
    ingress = service["status"]["loadBalancer"]["ingress"]
    assert [i["ip"] for i in ingress] == ["42.42.42.42"]

    # Its EndpointSlices: 6 endpoints labelled by source cluster, port names as the Service's.
    slices = parent_slices(clusters)
    assert {c: len(a) for c, a in demo.endpoints_by_cluster(slices).items()} == {
        "child1": 2, "child2": 4,
    }  # fmt: skip
    service_ports = {p.get("name") for p in service["spec"]["ports"]}
    for item in slices:
        assert item["metadata"]["labels"][mcs.SOURCE_CLUSTER_LABEL]
        assert {p.get("name") for p in item.get("ports") or ()} <= service_ports

    # Scale the template to 9 through the shadow API: the endpoints follow (3 and 6).
    clusters.plugin("scale", "deploy", "nginx-app", "-n", "baz", "--replicas=9")
    assert endpoints_settle(clusters, ["child1", "child2"], 9) == {"child1": 3, "child2": 6}

    # Deleting the ServiceExport by hand in child1 withdraws child1's endpoints from the
    # parent; it is drift, so Recovery puts the Subscription's object back, and the endpoints
    # with it.
    child1 = clusters.kubectl("child1")
    before = child1.json("get", "serviceexport", "nginx-svc", "-n", "baz")["metadata"]["uid"]
    assert run(clusters, delete_export_in_child1) == {"child2": 6}
    wait_until(
        lambda: (
            (got := child1("get", "serviceexport", "nginx-svc", "-n", "baz", "-o",
                           "jsonpath={.metadata.uid}", check=False)).returncode == 0
            and got.stdout not in ("", before)
        ),
        "Recovery to re-create the ServiceExport in child1", TIMEOUT,
    )  # fmt: skip
    assert endpoints_settle(clusters, ["child1", "child2"], 9) == {"child1": 3, "child2": 6}

    # To stop exporting from child1 for good, the export leaves the Subscription that puts it
    # everywhere and gets one of its own for child2 only: child1's endpoints leave the parent.
    subscription = parent.json("get", "subscriptions.apps.clusternet.io", SUBSCRIPTION,
                               "-n", "default")  # fmt: skip
    feeds = subscription["spec"]["feeds"]
    index = next(i for i, f in enumerate(feeds) if f["kind"] == "ServiceExport")
    patch = [{"op": "test", "path": f"/spec/feeds/{index}", "value": feeds[index]},
             {"op": "remove", "path": f"/spec/feeds/{index}"}]  # fmt: skip
    parent("patch", "subscriptions.apps.clusternet.io", SUBSCRIPTION, "-n", "default",
           "--type=json", "-p", json.dumps(patch))  # fmt: skip
    parent.apply(export_subscription())

    def only_child2() -> dict[str, list[str]] | None:
        found = demo.endpoints_by_cluster(parent_slices(clusters))
        return found if {c: len(a) for c, a in found.items() if a} == {"child2": 6} else None

    wait_until(only_child2, "only child2's 6 endpoints behind the derived Service", TIMEOUT)
    wait_until(
        lambda: child1("get", "serviceexport", "nginx-svc", "-n", "baz",
                       check=False).returncode != 0,
        "the ServiceExport to leave child1", TIMEOUT,
    )  # fmt: skip

    # A ServiceImport that matches no export (the upstream example's typo) says so.
    parent.apply(typo_import())

    def no_endpoints_event() -> list[Any] | None:
        selector = "reason=NoExportedEndpoints,involvedObject.name=my-svc-typo"
        events = parent.json("get", "events", "-n", "default", "--field-selector", selector)
        return list(events["items"]) or None

    events = wait_until(no_endpoints_event, "a NoExportedEndpoints event on my-svc-typo", TIMEOUT)
    assert events[0]["type"] == "Warning"
    assert "my-nginx-svc" in events[0]["message"]

    # Deleting the ServiceImport removes the derived Service and its slices.
    parent("delete", "serviceimports.multicluster.x-k8s.io", "my-svc", "-n", "default")
    parent("wait", "--for=delete", f"service/{DERIVED}", "-n", "default",
           f"--timeout={TIMEOUT}s", check=False)  # fmt: skip
    wait_until(
        lambda: parent("get", "service", DERIVED, "-n", "default", check=False).returncode != 0
        and not parent_slices(clusters),
        "the derived Service and its slices to be gone", TIMEOUT,
    )  # fmt: skip
