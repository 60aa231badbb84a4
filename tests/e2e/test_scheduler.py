"""clusternet-scheduler against real control planes: placement, taints, selectors, subgroups,
static dividing through the real FeedInventory controller, and failover of a Dividing
Subscription when an agent stops.

The scheduler is the one `clusternet local up` runs; every wait watches the
Subscription until a predicate holds (bounded by a timeout), never a fixed sleep.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from clusternet.apis import naming
from clusternet.kube import KubeClient, wait_for
from clusternet.local.environment import Options
from clusternet.local.testing import Clusters, start_environment

APPS = "apps.clusternet.io/v1alpha1"
RESERVED = "clusternet-reserved"


class SchedulerProcess:
    """The clusternet-scheduler that `clusternet local up` runs (a real process)."""

    def __init__(self, c: Clusters) -> None:
        record = next(p for p in c.state.processes if p.name == "parent/clusternet-scheduler")
        self.log = Path(record.log)

    def tail(self) -> str:
        return "\n".join(self.log.read_text().splitlines()[-40:])


def parent_kubeconfig(c: Clusters) -> str:
    return str(c.state.cluster("parent").kubeconfig)


@pytest.fixture(scope="module")
def scheduler(clusters: Clusters) -> SchedulerProcess:
    return SchedulerProcess(clusters)


def managed_clusters(c: Clusters) -> dict[str, str]:
    """child name → ``<namespace>/<name>`` of its ManagedCluster."""
    items = c.kubectl("parent").json("get", "managedclusters", "-A")["items"]
    return {
        m["metadata"]["name"]: f"{m['metadata']['namespace']}/{m['metadata']['name']}"
        for m in items
    }


def label(c: Clusters, cluster_key: str, *labels: str) -> None:
    namespace, name = cluster_key.split("/")
    c.kubectl("parent")("label", "managedcluster", name, "-n", namespace, "--overwrite", *labels)


def taint(c: Clusters, cluster_key: str, taints: list[dict[str, str]]) -> None:
    namespace, name = cluster_key.split("/")
    c.kubectl("parent")(
        "patch", "managedcluster", name, "-n", namespace, "--type=merge",
        "-p", json.dumps({"spec": {"taints": taints}}),
    )  # fmt: skip


def subscription(name: str, namespace: str, **spec: Any) -> str:
    spec.setdefault("feeds", [{"apiVersion": "v1", "kind": "Namespace", "name": namespace}])
    return json.dumps(
        {"apiVersion": APPS, "kind": "Subscription",
         "metadata": {"name": name, "namespace": namespace}, "spec": spec}
    )  # fmt: skip


def deployment_manifest(namespace: str, name: str, replicas: int) -> str:
    template = {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "c", "image": "nginx",
                                         "resources": {"requests": {"cpu": "100m"}}}]},
            },
        },
    }  # fmt: skip
    return json.dumps(naming.manifest(template, "deployments"))


@asynccontextmanager
async def parent_client(c: Clusters) -> AsyncIterator[KubeClient]:
    async with KubeClient.from_kubeconfig(c.kubeconfig, context="parent") as client:
        yield client


async def wait_subscription(
    c: Clusters,
    namespace: str,
    name: str,
    predicate: Callable[[dict[str, Any]], bool],
    scheduler: SchedulerProcess,
    within: float = 60,
) -> dict[str, Any]:
    async with parent_client(c) as client:
        try:
            async with asyncio.timeout(within):
                return await wait_for(
                    client, APPS, "Subscription", name, predicate, namespace=namespace
                )
        except TimeoutError:
            current = c.kubectl("parent").json("get", "subscription", name, "-n", namespace)
            raise AssertionError(
                f"Subscription {namespace}/{name} did not get there in {within}s; status "
                f"{current.get('status')}\nscheduler log:\n{scheduler.tail()}"
            ) from None


def bound_to(*clusters: str) -> Callable[[dict[str, Any]], bool]:
    wanted = sorted(clusters)
    return lambda sub: (sub.get("status") or {}).get("bindingClusters") == wanted


def events(c: Clusters, namespace: str, name: str, reason: str) -> list[str]:
    listed = c.kubectl("parent").json(
        "get", "events", "-n", namespace,
        "--field-selector", f"involvedObject.name={name},reason={reason}",
    )  # fmt: skip
    return [e["message"] for e in listed["items"]]


async def test_replication_taints_tolerations_and_selectors(
    clusters: Clusters, scheduler: SchedulerProcess, namespace: str
) -> None:
    keys = managed_clusters(clusters)
    one, two = keys["child1"], keys["child2"]
    role = f"t-{uuid.uuid4().hex[:6]}.example.com/role"
    label(clusters, one, f"{role}=edge")
    label(clusters, two, f"{role}=core")
    kc = clusters.kubectl("parent")
    try:
        kc.apply(subscription("everywhere", namespace, subscribers=[
            {"clusterAffinity": {"matchExpressions": [{"key": role, "operator": "Exists"}]}}]))  # fmt: skip  # noqa: E501
        await wait_subscription(clusters, namespace, "everywhere", bound_to(one, two), scheduler)

        kc.apply(subscription("core-only", namespace, subscribers=[
            {"clusterAffinity": {"matchLabels": {role: "core"}}}]))  # fmt: skip
        await wait_subscription(clusters, namespace, "core-only", bound_to(two), scheduler)

        # Taint child1: it is unbound; the reasons are told.
        taint(clusters, one, [{"key": "maint", "effect": "NoSchedule"}])
        await wait_subscription(clusters, namespace, "everywhere", bound_to(two), scheduler)

        # Tolerate it: bound again.
        kc("patch", "subscription", "everywhere", "-n", namespace, "--type=merge", "-p",
           json.dumps({"spec": {"clusterTolerations": [{"key": "maint", "operator": "Exists"}]}}))  # fmt: skip  # noqa: E501
        await wait_subscription(clusters, namespace, "everywhere", bound_to(one, two), scheduler)

        # Nothing fits: the last placement is kept and the reasons are reported.
        kc.apply(subscription("edge-only", namespace, subscribers=[
            {"clusterAffinity": {"matchLabels": {role: "edge"}}}]))  # fmt: skip
        await wait_subscription(
            clusters, namespace, "edge-only", lambda s: bool(events(clusters, namespace, "edge-only", "FailedScheduling")),  # noqa: E501
            scheduler,
        )  # fmt: skip
        (message,) = set(events(clusters, namespace, "edge-only", "FailedScheduling"))
        total = len(keys)
        assert message.startswith(f"0/{total} clusters are available: ")
        assert "1 cluster(s) had taint {maint: }, that the subscription didn't tolerate" in message
        assert f"{total - 1} cluster(s) didn't match the subscribers' cluster affinity" in message

        # The same reasons are on the Subscription itself, in its Scheduled condition.
        def scheduled(sub: dict[str, Any]) -> dict[str, Any]:
            conditions = (sub.get("status") or {}).get("conditions") or []
            return next((c for c in conditions if c["type"] == "Scheduled"), {})

        unplaced = await wait_subscription(
            clusters, namespace, "edge-only", lambda s: scheduled(s).get("status") == "False",
            scheduler,
        )  # fmt: skip
        assert scheduled(unplaced)["message"].startswith(f"0/{total} clusters are available: ")
        placed = await wait_subscription(
            clusters, namespace, "everywhere", lambda s: scheduled(s).get("status") == "True",
            scheduler,
        )  # fmt: skip
        assert scheduled(placed)["reason"] == "Scheduled"
    finally:
        taint(clusters, one, [])
        label(clusters, one, f"{role}-")
        label(clusters, two, f"{role}-")


async def test_subgroups(clusters: Clusters, scheduler: SchedulerProcess, namespace: str) -> None:
    keys = managed_clusters(clusters)
    one, two = keys["child1"], keys["child2"]
    region = f"t-{uuid.uuid4().hex[:6]}.example.com/region"
    label(clusters, one, f"{region}=ap-shanghai")
    label(clusters, two, f"{region}=ap-beijing")
    try:
        clusters.kubectl("parent").apply(subscription(
            "grouped", namespace, schedulingBySubGroup=True, subscribers=[
                {"clusterAffinity": {"matchLabels": {region: "ap-shanghai"}},
                 "subGroupStrategy": {"minClusters": 3}},
                {"clusterAffinity": {"matchLabels": {region: "ap-beijing"}},
                 "subGroupStrategy": {"minClusters": 1}},
            ]))  # fmt: skip
        await wait_subscription(clusters, namespace, "grouped", bound_to(one, two), scheduler)
    finally:
        label(clusters, one, f"{region}-")
        label(clusters, two, f"{region}-")


async def test_static_dividing_one_to_two_of_six(
    clusters: Clusters, scheduler: SchedulerProcess, namespace: str
) -> None:
    keys = managed_clusters(clusters)
    one, two = keys["child1"], keys["child2"]
    group = f"t-{uuid.uuid4().hex[:6]}.example.com/group"
    label(clusters, one, f"{group}=a")
    label(clusters, two, f"{group}=b")
    kc = clusters.kubectl("parent")
    kc.apply(deployment_manifest(namespace, "web", 6))
    feed_key = f"apps/v1/Deployment/{namespace}/web"
    try:
        kc.apply(subscription(
            "divided", namespace, schedulingStrategy="Dividing", dividingScheduling={"type": "Static"},  # noqa: E501
            subscribers=[{"clusterAffinity": {"matchLabels": {group: "a"}}, "weight": 1},
                         {"clusterAffinity": {"matchLabels": {group: "b"}}, "weight": 2}],
            feeds=[{"apiVersion": "apps/v1", "kind": "Deployment", "namespace": namespace, "name": "web"}],  # noqa: E501
        ))  # fmt: skip

        def two_and_four(sub: dict[str, Any]) -> bool:
            status = sub.get("status") or {}
            bound = status.get("bindingClusters") or []
            replicas = dict(
                zip(bound, (status.get("replicas") or {}).get(feed_key) or [], strict=False)
            )
            return replicas == {one: 2, two: 4}

        await wait_subscription(clusters, namespace, "divided", two_and_four, scheduler)
        inventory = kc.json("get", "feedinventory", "divided", "-n", namespace)
        (order,) = inventory["spec"]["feeds"]
        assert (order["desiredReplicas"], order["replicaJsonPath"]) == (6, "/spec/replicas")
        assert order["replicaRequirements"]["resources"] == {"requests": {"cpu": "100m"}}

        # Scale the template to 9: the FeedInventory follows and the division with it.
        kc.apply(deployment_manifest(namespace, "web", 9))

        def three_and_six(sub: dict[str, Any]) -> bool:
            status = sub.get("status") or {}
            bound = status.get("bindingClusters") or []
            replicas = dict(
                zip(bound, (status.get("replicas") or {}).get(feed_key) or [], strict=False)
            )
            return replicas == {one: 3, two: 6}

        await wait_subscription(clusters, namespace, "divided", three_and_six, scheduler)
    finally:
        kc(
            "delete",
            "manifest",
            f"deployments.{namespace}.web",
            "-n",
            RESERVED,
            "--wait=false",
            check=False,
        )
        label(clusters, one, f"{group}-")
        label(clusters, two, f"{group}-")


async def test_dividing_replicas_leave_a_cluster_whose_agent_stopped(tmp_path: Path) -> None:
    options = Options(children=3, nodes_per_child=1, node_cpu="8", node_memory="16Gi")
    with start_environment(tmp_path, options) as c:
        process = SchedulerProcess(c)
        kc = c.kubectl("parent")
        kc("create", "namespace", "shop")
        kc.apply(deployment_manifest("shop", "web", 6))
        kc.apply(subscription(
            "web", "shop", schedulingStrategy="Dividing", dividingScheduling={"type": "Static"},
            subscribers=[{"clusterAffinity": {}, "weight": 1}],
            feeds=[{"apiVersion": "apps/v1", "kind": "Deployment", "namespace": "shop", "name": "web"}],  # noqa: E501
        ))  # fmt: skip
        keys = managed_clusters(c)
        feed_key = "apps/v1/Deployment/shop/web"

        def replicas_by_cluster(sub: dict[str, Any]) -> dict[str, int]:
            status = sub.get("status") or {}
            bound = status.get("bindingClusters") or []
            return dict(
                zip(bound, (status.get("replicas") or {}).get(feed_key) or [], strict=False)
            )

        await wait_subscription(
            c, "shop", "web",
            lambda s: replicas_by_cluster(s) == {k: 2 for k in keys.values()}, process,
        )  # fmt: skip

        # Stop child1's agent; claim a 1 s heartbeat so that the lifecycle controller
        # marks the cluster unknown (and taints it) within 3 s instead of 9 min.
        c.env.stop_process("child1/clusternet-agent")
        namespace, name = keys["child1"].split("/")
        kc("patch", "managedcluster", name, "-n", namespace, "--subresource=status",
           "--type=merge", "-p", json.dumps({"status": {"heartbeatFrequencySeconds": 1}}))  # fmt: skip  # noqa: E501

        others = {k: v for k, v in keys.items() if k != "child1"}
        moved = await wait_subscription(
            c, "shop", "web",
            lambda s: replicas_by_cluster(s) == {k: 3 for k in others.values()}, process,
            within=120,
        )  # fmt: skip
        assert sum(moved["status"]["replicas"][feed_key]) == 6
