"""Subscription status aggregation and feed in-use protection against real control planes
(spec §4.8, §4.9, §11 item 24), with the controller-manager `clusternet local up` runs
(gates Deployer and FeedInUseProtection on).

The aggregation test writes Descriptions by hand, statuses included (through the status
subresource), as the deployers would; they are Helm Descriptions without charts, so that no
deployer acts on them.  Every wait watches the object until a predicate holds.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from typing import Any

from clusternet.apis import known
from clusternet.kube import Gone, KubeClient, wait_for
from clusternet.local.testing import Clusters, Kubectl

APPS = "apps.clusternet.io/v1alpha1"
RESERVED = known.RESERVED_NAMESPACE
SHADOW = "/apis/shadow/v1alpha1"


@asynccontextmanager
async def parent_client(c: Clusters) -> AsyncIterator[KubeClient]:
    async with KubeClient.from_kubeconfig(c.kubeconfig, context="parent") as client:
        yield client


async def wait_object(
    c: Clusters,
    kind: str,
    name: str,
    namespace: str,
    predicate: Callable[[dict[str, Any]], bool],
    within: float = 60,
) -> dict[str, Any]:
    async with parent_client(c) as client:
        try:
            async with asyncio.timeout(within):
                return await wait_for(client, APPS, kind, name, predicate, namespace=namespace)
        except TimeoutError:
            current = c.kubectl("parent").json(
                "get", f"{kind.lower()}s.apps.clusternet.io", name, "-n", namespace
            )
            raise AssertionError(
                f"{kind} {namespace}/{name} did not get there in {within}s: "
                f"{json.dumps(current, indent=1)}"
            ) from None


async def wait_gone(c: Clusters, kind: str, name: str, namespace: str, within: float = 60) -> None:
    """Until the object does not exist: list, then watch for its DELETED event."""
    selector = f"metadata.name={name}"
    async with parent_client(c) as client, asyncio.timeout(within):
        while True:
            listed = await client.list(APPS, kind, namespace=namespace, field_selector=selector)
            if not listed.get("items"):
                return
            with suppress(Gone):
                async with client.watch(
                    APPS,
                    kind,
                    namespace=namespace,
                    field_selector=selector,
                    resource_version=listed["metadata"]["resourceVersion"],
                ) as events:
                    async for event in events:
                        if event.type == "DELETED":
                            return


def managed_clusters(c: Clusters) -> list[dict[str, Any]]:
    """In ``bindingClusters`` order (``<namespace>/<name>``), which the statuses follow."""
    items: list[dict[str, Any]] = c.kubectl("parent").json("get", "managedclusters", "-A")["items"]
    return sorted(items, key=lambda m: f"{m['metadata']['namespace']}/{m['metadata']['name']}")


def label_cluster(kc: Kubectl, cluster: dict[str, Any], label: str) -> None:
    meta = cluster["metadata"]
    kc("label", "managedcluster", meta["name"], "-n", meta["namespace"], "--overwrite", label)


def deployed_condition(sub: dict[str, Any]) -> dict[str, Any]:
    for condition in (sub.get("status") or {}).get("conditions") or ():
        if condition["type"] == "Deployed":
            return dict(condition)
    return {}


def hand_description(sub: dict[str, Any], cluster: dict[str, Any], name: str) -> dict[str, Any]:
    meta = sub["metadata"]
    return {
        "apiVersion": APPS,
        "kind": "Description",
        "metadata": {
            "name": name,
            "namespace": cluster["metadata"]["namespace"],
            "labels": {
                known.CONFIG_SUBSCRIPTION_NAME_LABEL: meta["name"],
                known.CONFIG_SUBSCRIPTION_NAMESPACE_LABEL: meta["namespace"],
                known.CONFIG_SUBSCRIPTION_UID_LABEL: meta["uid"],
                known.CONFIG_NAME_LABEL: f"{meta['name']}-hand",
                known.CLUSTER_ID_LABEL: cluster["spec"]["clusterId"],
                known.CLUSTER_NAME_LABEL: cluster["metadata"]["name"],
            },
        },
        "spec": {"deployer": "Helm", "charts": []},
    }


def write_status(kc: Kubectl, description: dict[str, Any], status: dict[str, Any]) -> None:
    meta = description["metadata"]
    kc(
        "patch", "descriptions.apps.clusternet.io", meta["name"], "-n", meta["namespace"],
        "--subresource=status", "--type=merge", "-p", json.dumps({"status": status}),
    )  # fmt: skip


async def test_descriptions_are_aggregated_into_the_subscription(
    clusters: Clusters, namespace: str
) -> None:
    kc = clusters.kubectl("parent")
    children = managed_clusters(clusters)[:2]
    role = f"agg-{uuid.uuid4().hex[:6]}"
    for cluster in children:
        label_cluster(kc, cluster, f"{role}=yes")
    deploy = {"apiVersion": "apps/v1", "kind": "Deployment", "namespace": namespace, "name": "web"}
    ns_feed = {"apiVersion": "v1", "kind": "Namespace", "name": namespace}
    name = "agg"
    descriptions: list[dict[str, Any]] = []
    try:
        kc.apply(json.dumps({
            "apiVersion": APPS, "kind": "Subscription",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"subscribers": [{"clusterAffinity": {"matchLabels": {role: "yes"}}}],
                     "feeds": [deploy, ns_feed]},
        }))  # fmt: skip
        bound = sorted(f"{m['metadata']['namespace']}/{m['metadata']['name']}" for m in children)
        sub = await wait_object(
            clusters, "Subscription", name, namespace,
            lambda s: (s.get("status") or {}).get("bindingClusters") == bound,
        )  # fmt: skip
        names = [m["metadata"]["name"] for m in children]
        ids = [m["spec"]["clusterId"] for m in children]

        # Bound, nothing reported yet: every cluster listed, nothing available.
        pending = await wait_object(
            clusters, "Subscription", name, namespace,
            lambda s: deployed_condition(s).get("reason") == "Pending"
            and len((s.get("status") or {}).get("aggregatedStatuses") or ()) == 2,
        )  # fmt: skip
        web, _ = pending["status"]["aggregatedStatuses"]
        assert [(d["clusterId"], d["clusterName"], d["available"])
                for d in web["feedStatusDetails"]] == [(i, n, False) for i, n in zip(ids, names, strict=True)]  # noqa: E501  # fmt: skip
        assert deployed_condition(pending)["message"] == (
            f"not deployed yet: Deployment/web on {', '.join(names)}; "
            f"Namespace/{namespace} on {', '.join(names)}"
        )

        for cluster in children:
            description = hand_description(sub, cluster, f"{name}-hand-generic")
            kc.apply(json.dumps(description))
            descriptions.append(description)
        for replicas, description in zip((2, 3), descriptions, strict=True):
            write_status(kc, description, {
                "phase": "Success",
                "manifestStatuses": [
                    {**deploy, "observedStatus": {"replicas": replicas, "readyReplicas": replicas,
                                                  "observedGeneration": 1}},
                    {**ns_feed, "observedStatus": {"phase": "Active"}},
                ],
            })  # fmt: skip
        deployed = await wait_object(
            clusters, "Subscription", name, namespace,
            lambda s: deployed_condition(s).get("status") == "True",
        )  # fmt: skip
        web, namespace_status = deployed["status"]["aggregatedStatuses"]
        assert web["feedStatusSummary"] == {
            "available": True,
            "replicaStatus": {"replicas": 5, "readyReplicas": 5, "observedGeneration": 1},
        }
        assert [d["replicaStatus"]["replicas"] for d in web["feedStatusDetails"]] == [2, 3]
        assert namespace_status["feedStatusSummary"] == {"available": True}
        assert deployed_condition(deployed)["message"] == "2 feeds deployed to 2 clusters"
        # The scheduler's fields are untouched.
        assert deployed["status"]["bindingClusters"] == bound
        assert any(c["type"] == "Scheduled" for c in deployed["status"]["conditions"])

        # One cluster fails: the condition names it with the deployer's reason.
        write_status(kc, descriptions[1], {
            "phase": "Failure", "reason": "deployments.apps \"web\" is forbidden: exceeded quota",
        })  # fmt: skip
        failed = await wait_object(
            clusters, "Subscription", name, namespace,
            lambda s: deployed_condition(s).get("reason") == "Failed",
        )  # fmt: skip
        assert deployed_condition(failed)["status"] == "False"
        assert deployed_condition(failed)["message"] == (
            f'failed on {names[1]} (Failure: deployments.apps "web" is forbidden: exceeded quota)'
        )

        # Its Description goes away: that cluster is no longer available.
        kc("delete", "descriptions.apps.clusternet.io", descriptions[1]["metadata"]["name"],
           "-n", descriptions[1]["metadata"]["namespace"])  # fmt: skip
        gone = await wait_object(
            clusters, "Subscription", name, namespace,
            lambda s: deployed_condition(s).get("reason") == "Pending",
        )  # fmt: skip
        assert deployed_condition(gone)["message"] == (
            f"not deployed yet: Deployment/web on {names[1]}; Namespace/{namespace} on {names[1]}"
        )
    finally:
        for description in descriptions:
            kc("delete", "descriptions.apps.clusternet.io", description["metadata"]["name"],
               "-n", description["metadata"]["namespace"], "--ignore-not-found", "--wait=false")  # fmt: skip  # noqa: E501
        kc("delete", "subscription", name, "-n", namespace, "--ignore-not-found", "--wait=false")
        for cluster in children:
            label_cluster(kc, cluster, f"{role}-")


async def test_a_feed_in_use_is_not_deleted_until_its_subscription_is(
    clusters: Clusters, namespace: str
) -> None:
    kc = clusters.kubectl("parent")
    config = {
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "settings", "namespace": namespace}, "data": {"a": "1"},
    }  # fmt: skip
    shadow_path = f"{SHADOW}/namespaces/{namespace}/configmaps"
    kc("create", "--raw", shadow_path, "-f", "-", input=json.dumps(config))
    manifest = f"configmaps.{namespace}.settings"
    # Every feed Manifest gets the finalizers, in use or not.
    await wait_object(
        clusters, "Manifest", manifest, RESERVED,
        lambda m: set(m["metadata"].get("finalizers") or ())
        >= {known.APP_FINALIZER, known.FEED_PROTECTION_FINALIZER},
    )  # fmt: skip
    feed = {"apiVersion": "v1", "kind": "ConfigMap", "namespace": namespace, "name": "settings"}
    for name in ("uses-it", "also-uses-it"):
        kc.apply(json.dumps({
            "apiVersion": APPS, "kind": "Subscription",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"subscribers": [{"clusterAffinity": {"matchLabels": {"none": namespace}}}],
                     "feeds": [feed]},
        }))  # fmt: skip

    # A shadow DELETE leaves it Terminating, saying why, in the shadow GET too.
    kc("delete", "--raw", f"{shadow_path}/settings")
    message = (
        "block deleting current ConfigMap until all Subscriptions (including "
        f"{namespace}/also-uses-it, {namespace}/uses-it) that refer this as a feed get deleted"
    )
    blocked = await wait_object(
        clusters, "Manifest", manifest, RESERVED,
        lambda m: (m["metadata"].get("annotations") or {}).get(known.FEED_PROTECTION_ANNOTATION)
        == message,
    )  # fmt: skip
    assert blocked["metadata"].get("deletionTimestamp")
    shadow = json.loads(kc("get", "--raw", f"{shadow_path}/settings").stdout)
    assert shadow["metadata"]["annotations"][known.FEED_PROTECTION_ANNOTATION] == message
    assert shadow["metadata"].get("deletionTimestamp")

    # One Subscription goes: still blocked by the other, and the text follows.
    kc("delete", "subscription", "also-uses-it", "-n", namespace, "--wait=false")
    await wait_object(
        clusters, "Manifest", manifest, RESERVED,
        lambda m: (m["metadata"].get("annotations") or {}).get(known.FEED_PROTECTION_ANNOTATION)
        == message.replace(f"{namespace}/also-uses-it, ", ""),
    )  # fmt: skip
    # The last one goes: the feed is released and disappears.
    kc("delete", "subscription", "uses-it", "-n", namespace, "--wait=false")
    await wait_gone(clusters, "Manifest", manifest, RESERVED)
    result = kc("get", "--raw", f"{shadow_path}/settings", check=False)
    assert result.returncode != 0
    assert "NotFound" in result.stderr + result.stdout
