"""Subscription status aggregation and feed in-use protection against real control planes
(spec §4.8, §4.9, §11 item 24), with the controller-manager `clusternet local up` runs.

Aggregation goes through the whole pipeline: templates in the shadow API, a Subscription,
the Descriptions the pusher deploys to the children and the statuses it reads back from them
(kwok runs the pods).  Every wait watches the object until a predicate holds.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from typing import Any

from clusternet.apis import known
from clusternet.kube import Gone, KubeClient, wait_for
from clusternet.local.testing import Clusters, Kubectl

APPS = "apps.clusternet.io/v1alpha1"
RESERVED = known.RESERVED_NAMESPACE
SHADOW = "/apis/shadow/v1alpha1"
TIMEOUT = 90


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


def deployed_condition(sub: dict[str, Any]) -> dict[str, Any]:
    for condition in (sub.get("status") or {}).get("conditions") or ():
        if condition["type"] == "Deployed":
            return dict(condition)
    return {}


def said(condition: dict[str, Any]) -> tuple[str, str, str]:
    return condition.get("status", ""), condition.get("reason", ""), condition.get("message", "")


async def follow(
    c: Clusters,
    name: str,
    namespace: str,
    since: str,
    until: Callable[[dict[str, Any]], bool],
    within: float = TIMEOUT,
) -> tuple[dict[str, Any], list[tuple[str, str, str]]]:
    """Watch the Subscription from resourceVersion ``since`` (every change after it, none
    missed) until ``until`` holds: its state then, and each Deployed condition on the way."""
    seen: list[tuple[str, str, str]] = []
    async with parent_client(c) as client:
        try:
            async with asyncio.timeout(within):
                async with client.watch(
                    APPS, "Subscription", namespace=namespace,
                    field_selector=f"metadata.name={name}", resource_version=since,
                ) as events:  # fmt: skip
                    async for event in events:
                        if event.type not in ("ADDED", "MODIFIED"):
                            continue
                        condition = deployed_condition(event.object)
                        if condition and (not seen or seen[-1] != said(condition)):
                            seen.append(said(condition))
                        if until(event.object):
                            return event.object, seen
        except TimeoutError:
            pass
    raise AssertionError(f"Subscription {namespace}/{name}: conditions seen {seen}")


def deployment(namespace: str, replicas: int) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": namespace},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "web", "image": "nginx:1.25"}]}}},
    }  # fmt: skip


def replicas_localization(
    cluster_namespace: str, namespace: str, name: str, patch: dict[str, Any]
) -> dict[str, Any]:
    return {
        "apiVersion": APPS, "kind": "Localization",
        "metadata": {"name": f"{namespace}-{name}", "namespace": cluster_namespace},
        "spec": {"overridePolicy": "ApplyNow", "priority": 500,
                 "feed": {"apiVersion": "apps/v1", "kind": "Deployment",
                          "namespace": namespace, "name": "web"},
                 "overrides": [{"name": name, "type": "MergePatch",
                                "value": json.dumps(patch)}]},
    }  # fmt: skip


def description_of(kc: Kubectl, cluster_namespace: str, name: str, namespace: str) -> Any:
    selector = (
        f"{known.CONFIG_SUBSCRIPTION_NAME_LABEL}={name},"
        f"{known.CONFIG_SUBSCRIPTION_NAMESPACE_LABEL}={namespace}"
    )
    (found,) = kc.json(
        "get", "descriptions.apps.clusternet.io", "-n", cluster_namespace, "-l", selector
    )["items"]
    return found


async def test_the_deployed_condition_follows_the_children(
    clusters: Clusters, namespace: str
) -> None:
    """Through the whole pipeline (templates in the shadow API, the scheduler, Bases,
    Descriptions, the pusher, kwok running the pods): Pending until every child reported,
    Deployed with the replicas summed over the children, Failed naming the one child that
    rejects its copy (with that child's words), Deployed again once fixed."""
    kc = clusters.kubectl("parent")
    first, second = clusters.children[:2]
    namespaces = clusters.dedicated_namespaces()
    name = "agg"
    settings = {
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "settings", "namespace": namespace}, "data": {"a": "1"},
    }  # fmt: skip
    templates = [deployment(namespace, 2), settings]
    localizations = [
        replicas_localization(namespaces[second], namespace, "three", {"spec": {"replicas": 3}}),
        replicas_localization(namespaces[first], namespace, "negative", {"spec": {"replicas": -1}}),
    ]
    for template in templates:
        clusters.plugin("apply", "-f", "-", input=json.dumps(template))
    kc.apply(json.dumps(localizations[0]))  # the second child runs 3
    since = kc.json("get", "subscriptions.apps.clusternet.io", "-n", namespace)["metadata"][
        "resourceVersion"
    ]
    try:
        kc.apply(json.dumps({
            "apiVersion": APPS, "kind": "Subscription",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"subscribers": [{"clusterAffinity": {"matchExpressions": [
                         {"key": known.CLUSTER_NAME_LABEL, "operator": "In",
                          "values": [first, second]}]}}],
                     "feeds": [{"apiVersion": "apps/v1", "kind": "Deployment",
                                "namespace": namespace, "name": "web"},
                               {"apiVersion": "v1", "kind": "ConfigMap",
                                "namespace": namespace, "name": "settings"}]},
        }))  # fmt: skip

        # Pending while the children have not reported, then Deployed. The status is written
        # at most every half second, so a quick rollout may go straight to Deployed.
        deployed, seen = await follow(
            clusters,
            name,
            namespace,
            since,
            lambda s: deployed_condition(s).get("status") == "True",
        )
        pending = [m for status, reason, m in seen if reason == "Pending"]
        assert all(status == "False" for status, reason, _ in seen if reason == "Pending")
        assert all(m.startswith("not deployed yet: ") for m in pending), pending
        assert [r for _, r, _ in seen if r not in ("NothingToDeploy", "Pending")] == ["Deployed"]
        assert said(deployed_condition(deployed)) == (
            "True", "Deployed", "2 feeds deployed to 2 clusters",
        )  # fmt: skip
        assert any(c["type"] == "Scheduled" for c in deployed["status"]["conditions"])

        # The replicas kwok runs, per child and summed.
        def all_ready(s: dict[str, Any]) -> bool:
            web = (s.get("status") or {}).get("aggregatedStatuses") or [{}]
            summary = web[0].get("feedStatusSummary") or {}
            return (summary.get("replicaStatus") or {}).get("readyReplicas") == 5

        ready = await wait_object(clusters, "Subscription", name, namespace, all_ready, TIMEOUT)
        web, config = ready["status"]["aggregatedStatuses"]
        assert (web["kind"], web["name"], config["kind"]) == ("Deployment", "web", "ConfigMap")
        summary = web["feedStatusSummary"]
        assert summary["available"] is True
        assert {k: summary["replicaStatus"].get(k) for k in
                ("replicas", "readyReplicas", "availableReplicas", "updatedReplicas")} == {
            "replicas": 5, "readyReplicas": 5, "availableReplicas": 5, "updatedReplicas": 5,
        }  # fmt: skip
        by_cluster = {d["clusterName"]: d for d in web["feedStatusDetails"]}
        assert {
            n: (d["available"], d["replicaStatus"]["readyReplicas"]) for n, d in by_cluster.items()
        } == {first: (True, 2), second: (True, 3)}
        ids = {n: mc["spec"]["clusterId"] for n, mc in clusters.managed_clusters().items()}
        assert all(d["clusterId"] == ids[n] for n, d in by_cluster.items())
        assert config["feedStatusSummary"] == {"available": True}

        # A copy only the first child rejects (the parent renders it without complaint).
        kc.apply(json.dumps(localizations[1]))
        failed = await wait_object(
            clusters, "Subscription", name, namespace,
            lambda s: deployed_condition(s).get("reason") == "Failed", TIMEOUT,
        )  # fmt: skip
        reason = description_of(kc, namespaces[first], name, namespace)["status"]["reason"]
        assert "spec.replicas" in reason, reason
        assert said(deployed_condition(failed)) == (
            "False", "Failed",
            f"failed on {first} (Failure: {' '.join(reason.split())}); "
            f"not deployed yet: Deployment/web on {first}",
        )  # fmt: skip
        assert (
            clusters.kubectl(first).json("get", "deployment", "web", "-n", namespace)["spec"][
                "replicas"
            ]
            == 2
        )  # the last good copy stays
        assert description_of(kc, namespaces[second], name, namespace)["status"]["phase"] == (
            "Success"
        )

        # Fixed: Deployed again.
        kc("delete", "localizations.apps.clusternet.io", f"{namespace}-negative", "-n",
           namespaces[first])  # fmt: skip
        fixed = await wait_object(
            clusters, "Subscription", name, namespace,
            lambda s: deployed_condition(s).get("status") == "True", TIMEOUT,
        )  # fmt: skip
        assert said(deployed_condition(fixed)) == (
            "True", "Deployed", "2 feeds deployed to 2 clusters",
        )  # fmt: skip
    finally:
        kc("delete", "subscriptions.apps.clusternet.io", name, "-n", namespace,
           "--ignore-not-found", "--wait=false")  # fmt: skip
        await wait_gone(clusters, "Subscription", name, namespace)
        for localization in localizations:
            meta = localization["metadata"]
            kc("delete", "localizations.apps.clusternet.io", meta["name"], "-n",
               meta["namespace"], "--ignore-not-found")  # fmt: skip
        for template in templates:
            clusters.plugin("delete", template["kind"].lower(), template["metadata"]["name"],
                            "-n", namespace, "--ignore-not-found", check=False)  # fmt: skip


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
