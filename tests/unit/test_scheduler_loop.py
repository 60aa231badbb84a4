"""The scheduler loop against a fake API: what is patched, what is reported, what is queued."""

from __future__ import annotations

from typing import Any

import pytest

from clusternet.runtime import SharedInformerFactory
from clusternet.runtime.clock import FakeClock
from clusternet.scheduler.framework import Framework, Profile
from clusternet.scheduler.plugins import DEFAULT_PLUGINS, in_tree_registry
from clusternet.scheduler.scheduler import Scheduler, SchedulerHandle

DEPLOY = "apps/v1/Deployment/shop/web"


class FakeClient:
    cluster = "fake"

    def __init__(self) -> None:
        self.patches: list[dict[str, Any]] = []

    async def patch(self, api_version: str, kind: str, name: str, patch: Any, **kw: Any) -> Any:
        self.patches.append({"name": name, **kw, "patch": patch})
        return {}


class FakeRecorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, str]] = []

    def event(self, obj: Any, type: str, reason: str, message: str) -> None:
        self.events.append((type, reason, message))


def managed_cluster(
    name: str, labels: dict[str, str], taints: list[Any] | None = None
) -> dict[str, Any]:
    return {
        "apiVersion": "clusters.clusternet.io/v1beta1",
        "kind": "ManagedCluster",
        "metadata": {
            "name": name,
            "namespace": f"ns-{name}",
            "labels": labels,
            "resourceVersion": "1",
        },
        "spec": {"clusterId": f"id-{name}", "taints": taints or []},
        "status": {"conditions": [{"type": "Ready", "status": "True"}]},
    }


def subscription(name: str, status: dict[str, Any] | None = None, **spec: Any) -> dict[str, Any]:
    spec.setdefault("subscribers", [{"clusterAffinity": {"matchLabels": {"env": "prod"}}}])
    spec.setdefault("feeds", [{"apiVersion": "v1", "kind": "Namespace", "name": "shop"}])
    return {
        "apiVersion": "apps.clusternet.io/v1alpha1",
        "kind": "Subscription",
        "metadata": {"name": name, "namespace": "team", "generation": 1, "resourceVersion": "1"},
        "spec": spec,
        "status": status or {},
    }


@pytest.fixture
def env() -> tuple[Scheduler, FakeClient, FakeRecorder, FakeClock]:
    client, recorder, clock = FakeClient(), FakeRecorder(), FakeClock()
    informers = SharedInformerFactory(client, registry=None)  # type: ignore[arg-type]
    handle = SchedulerHandle(client, recorder)  # type: ignore[arg-type]
    framework = Framework(Profile("default", dict(DEFAULT_PLUGINS)), in_tree_registry(), handle)
    scheduler = Scheduler(
        client,
        informers,
        recorder,
        [framework],
        min_reschedule_interval=30,
        clock=clock,  # type: ignore[arg-type]
    )
    scheduler._synced = True
    return scheduler, client, recorder, clock


def add(scheduler: Scheduler, informer_name: str, obj: dict[str, Any]) -> None:
    informer = getattr(scheduler, informer_name)
    old = informer.store.upsert(obj)
    for handler in informer._handlers:
        if old is None and handler.on_add:
            handler.on_add(obj)
        elif old is not None and handler.on_update:
            handler.on_update(old, obj)


async def run_queue(scheduler: Scheduler) -> list[str]:
    keys = []
    while len(scheduler.queue):
        key = await scheduler.queue.pop()
        keys.append(key)
        await scheduler.schedule_one(key)
        await scheduler.settle()
    return keys


async def test_binds_and_reports(env: Any) -> None:
    scheduler, client, recorder, _ = env
    add(scheduler, "managed_clusters", managed_cluster("b", {"env": "prod"}))
    add(scheduler, "managed_clusters", managed_cluster("a", {"env": "prod"}))
    add(scheduler, "subscriptions", subscription("web"))
    assert await run_queue(scheduler) == ["team/web"]
    (patch,) = client.patches
    status = patch["patch"]["status"]
    assert patch["subresource"] == "status"
    assert status["bindingClusters"] == ["ns-a/a", "ns-b/b"]
    assert status["desiredReleases"] == 2
    (condition,) = status["conditions"]
    assert condition["type"] == "Scheduled"
    assert condition["status"] == "True"
    assert recorder.events == [
        ("Normal", "Scheduled", "Successfully bound to 2 cluster(s): ns-a/a, ns-b/b")
    ]


async def test_same_placement_is_not_written_again(env: Any) -> None:
    scheduler, client, _, _ = env
    add(scheduler, "managed_clusters", managed_cluster("a", {"env": "prod"}))
    add(scheduler, "subscriptions", subscription("web"))
    await run_queue(scheduler)
    bound = subscription("web", status=client.patches[0]["patch"]["status"])
    bound["metadata"]["resourceVersion"] = "2"
    add(scheduler, "subscriptions", bound)  # our own status update: not a trigger
    assert len(scheduler.queue) == 0
    scheduler.queue.add("team/web")
    await run_queue(scheduler)
    assert len(client.patches) == 1


async def test_fit_error_keeps_the_placement_and_says_why(env: Any) -> None:
    scheduler, client, recorder, _ = env
    taint = [{"key": "maint", "effect": "NoSchedule"}]
    add(scheduler, "managed_clusters", managed_cluster("a", {"env": "prod"}, taint))
    add(scheduler, "managed_clusters", managed_cluster("b", {"env": "dev"}))
    bound = {"bindingClusters": ["ns-a/a"], "replicas": {}}
    add(scheduler, "subscriptions", subscription("web", status=bound))
    await run_queue(scheduler)
    message = (
        "0/2 clusters are available: 1 cluster(s) didn't match the subscribers' cluster "
        "affinity, 1 cluster(s) had taint {maint: }, that the subscription didn't tolerate."
    )
    (patch,) = client.patches
    # Only the condition: bindingClusters is not touched (upstream cleared it).
    assert (
        patch["patch"] == {"status": {"conditions": [pytest.approx_condition]}} if False else True
    )
    assert set(patch["patch"]["status"]) == {"conditions"}
    (condition,) = patch["patch"]["status"]["conditions"]
    assert (condition["status"], condition["reason"], condition["message"]) == (
        "False",
        "Unschedulable",
        message,
    )
    assert recorder.events == [("Warning", "FailedScheduling", message)]
    # Retried as a last resort, not in a hot loop.
    assert len(scheduler.queue) == 0
    assert scheduler.queue.pending() == 1


async def test_cluster_changes_reschedule_selecting_subscriptions_rate_limited(env: Any) -> None:
    scheduler, client, _, clock = env
    add(scheduler, "subscriptions", subscription("web"))
    add(
        scheduler,
        "subscriptions",
        subscription("other", subscribers=[{"clusterAffinity": {"matchLabels": {"env": "dev"}}}]),
    )
    await run_queue(scheduler)
    client.patches.clear()

    cluster = managed_cluster("a", {"env": "prod"})
    add(scheduler, "managed_clusters", cluster)
    assert await run_queue(scheduler) == ["team/web"]  # first change: at once

    tainted = managed_cluster("a", {"env": "prod"}, [{"key": "x", "effect": "NoSchedule"}])
    tainted["metadata"]["resourceVersion"] = "2"
    add(scheduler, "managed_clusters", tainted)
    assert len(scheduler.queue) == 0  # flapping: held back
    heartbeat = dict(tainted, status={**tainted["status"], "lastObservedTime": "now"})
    add(scheduler, "managed_clusters", heartbeat)  # not a placement-relevant change
    clock.advance(30)
    assert await run_queue(scheduler) == ["team/web"]


async def test_dividing_waits_for_its_feed_inventory(env: Any) -> None:
    scheduler, client, _recorder, _ = env
    feeds = [{"apiVersion": "apps/v1", "kind": "Deployment", "namespace": "shop", "name": "web"}]
    sub = subscription(
        "web",
        schedulingStrategy="Dividing",
        dividingScheduling={"type": "Static"},
        subscribers=[{"clusterAffinity": {}, "weight": 1}],
        feeds=feeds,
    )
    add(scheduler, "managed_clusters", managed_cluster("a", {}))
    add(scheduler, "subscriptions", sub)
    await run_queue(scheduler)
    assert (
        client.patches[-1]["patch"]["status"]["conditions"][0]["reason"]
        == "WaitingForFeedInventory"
    )
    assert scheduler.queue.pending() == 0  # no retry loop: the inventory's event brings it back

    inventory = {
        "apiVersion": "apps.clusternet.io/v1alpha1",
        "kind": "FeedInventory",
        "metadata": {"name": "web", "namespace": "team"},
        "spec": {"feeds": [{**feeds[0], "desiredReplicas": 3}]},
    }
    add(scheduler, "inventories", inventory)
    assert await run_queue(scheduler) == ["team/web"]
    assert client.patches[-1]["patch"]["status"]["replicas"] == {DEPLOY: [3]}
