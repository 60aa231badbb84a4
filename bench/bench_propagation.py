"""Propagation latency: Subscription created → objects present (and ready) in every child.

    python bench/bench_propagation.py [--children 3] [--runs 50] [--burst 500] [--kubeconfig F]

Brings up its own parent and children with `clusternet local up`'s code (the whole
Clusternet running: hub, scheduler, controller-manager, one agent per child) and drives it
only through the Kubernetes API, as a user would:

1. Sequential: for each run a Deployment template (1 replica) is written to the shadow API,
   then the clock starts and a Replication Subscription selecting every child is created.
   Watches opened on every child beforehand record when the Deployment appears (ADDED) and
   when it is ready (readyReplicas = replicas, pods run by kwok).  Latency = the slowest child.
2. Burst: N ConfigMap templates, then N Subscriptions created at once (50 in flight); the
   time until every child holds all N ConfigMaps, and the throughput that gives.
Prints tables. Binaries must be built (`clusternet local build`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import yaml

from clusternet.apis import known
from clusternet.kube import AlreadyExists, KubeClient, NotFound, load_kubeconfig
from clusternet.local.environment import LocalEnvironment, Options

SHADOW = "/apis/shadow/v1alpha1"
APPS = "apps.clusternet.io/v1alpha1"
NAMESPACE = "bench"
REVISION_LABEL = "bench.clusternet.io/revision"  # template updates (python -m bench)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def subscription(
    name: str, feeds: list[dict[str, str]], clusters: list[str] | None = None
) -> dict[str, Any]:
    """A Replication Subscription of ``feeds`` (and the namespace) to the clusters named
    ``clusters`` (cluster-name label), or to every cluster with a name."""
    if clusters is None:
        expression: dict[str, Any] = {"key": known.CLUSTER_NAME_LABEL, "operator": "Exists"}
    else:
        expression = {"key": known.CLUSTER_NAME_LABEL, "operator": "In", "values": clusters}
    return {
        "apiVersion": APPS,
        "kind": "Subscription",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "subscribers": [{"clusterAffinity": {"matchExpressions": [expression]}}],
            "feeds": [{"apiVersion": "v1", "kind": "Namespace", "name": NAMESPACE}, *feeds],
        },
    }


def deployment(name: str) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "web", "image": "nginx:1.25"}]},
            },
        },
    }


class Seen:
    """First time each object name was seen (and seen ready) in each child, from watches."""

    def __init__(self, children: list[str]) -> None:
        self.children = children
        self.present: dict[str, dict[str, float]] = {}
        self.ready: dict[str, dict[str, float]] = {}
        # (name, value of its REVISION_LABEL) -> child -> first seen with that value
        self.revisions: dict[tuple[str, str], dict[str, float]] = {}
        self.changed = asyncio.Event()

    def record(self, child: str, obj: dict[str, Any], ready: bool) -> None:
        name = obj["metadata"]["name"]
        now = time.monotonic()
        self.present.setdefault(name, {}).setdefault(child, now)
        if ready:
            self.ready.setdefault(name, {}).setdefault(child, now)
        revision = (obj["metadata"].get("labels") or {}).get(REVISION_LABEL)
        if revision is not None:
            self.revisions.setdefault((name, revision), {}).setdefault(child, now)
        self.changed.set()

    async def until(self, check: Callable[[], bool], limit: float = 120) -> None:
        async with asyncio.timeout(limit):
            while not check():
                self.changed.clear()
                await self.changed.wait()

    def everywhere(self, table: dict[str, dict[str, float]], name: str) -> float | None:
        seen = table.get(name, {})
        return max(seen.values()) if len(seen) == len(self.children) else None


async def watch_child(
    client: KubeClient, child: str, kind: str, api_version: str, seen: Seen
) -> None:
    while True:
        listed = await client.list(api_version, kind, namespace=NAMESPACE)
        for item in listed["items"]:
            seen.record(child, item, _ready(item))
        rv = listed["metadata"]["resourceVersion"]
        async with client.watch(api_version, kind, namespace=NAMESPACE, resource_version=rv) as ev:
            async for event in ev:
                if event.type in ("ADDED", "MODIFIED"):
                    seen.record(child, event.object, _ready(event.object))


def _ready(obj: dict[str, Any]) -> bool:
    if obj.get("kind", "Deployment") == "ConfigMap" or "spec" not in obj:
        return True
    wanted = obj["spec"].get("replicas", 1)
    return bool((obj.get("status") or {}).get("readyReplicas", 0) >= wanted)


async def bounded(tasks: list[Callable[[], Awaitable[Any]]], limit: int) -> None:
    gate = asyncio.Semaphore(limit)

    async def one(task: Callable[[], Awaitable[Any]]) -> None:
        async with gate:
            await task()

    await asyncio.gather(*(one(t) for t in tasks))


async def create_namespace(parent: KubeClient) -> None:
    ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}
    with contextlib.suppress(AlreadyExists):
        await parent.request("POST", f"{SHADOW}/namespaces", body=ns)


async def sequential(
    parent: KubeClient, seen: Seen, runs: int, clusters: list[str] | None = None, tag: str = ""
) -> list[dict[str, tuple[float, float]]]:
    """``runs`` Deployments, one Subscription at a time; per run, child -> (seconds until
    present, seconds until ready) from the Subscription's create call."""
    results: list[dict[str, tuple[float, float]]] = []
    for i in range(runs):
        name = f"web{tag}-{i}"
        await parent.request(
            "POST", f"{SHADOW}/namespaces/{NAMESPACE}/deployments", body=deployment(name)
        )
        feed = {"apiVersion": "apps/v1", "kind": "Deployment", "namespace": NAMESPACE}
        start = time.monotonic()
        await parent.create(subscription(f"seq{tag}-{i}", [{**feed, "name": name}], clusters))
        await seen.until(lambda n=name: seen.everywhere(seen.ready, n) is not None)  # type: ignore[misc]
        results.append(
            {
                child: (seen.present[name][child] - start, seen.ready[name][child] - start)
                for child in seen.children
            }
        )
    return results


async def burst(
    parent: KubeClient, seen: Seen, count: int, clusters: list[str] | None = None, tag: str = ""
) -> tuple[float, float]:
    """``count`` ConfigMap templates, then ``count`` Subscriptions created at once (50 in
    flight); (seconds to create them all, seconds until every child holds every ConfigMap)."""
    names = [f"cm{tag}-{i}" for i in range(count)]
    await bounded(
        [
            lambda n=n: parent.request(  # type: ignore[misc]
                "POST",
                f"{SHADOW}/namespaces/{NAMESPACE}/configmaps",
                body={
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "metadata": {"name": n},
                    "data": {"k": n},
                },
            )
            for n in names
        ],
        20,
    )
    start = time.monotonic()
    await bounded(
        [
            lambda n=n: parent.create(  # type: ignore[misc]
                subscription(
                    f"burst-{n}",
                    [{"apiVersion": "v1", "kind": "ConfigMap", "namespace": NAMESPACE, "name": n}],
                    clusters,
                )
            )
            for n in names
        ],
        50,
    )
    created = time.monotonic() - start
    await seen.until(lambda: all(seen.everywhere(seen.present, n) is not None for n in names), 900)
    return created, time.monotonic() - start


async def remove_burst(parent: KubeClient, count: int, tag: str = "", limit: float = 900) -> float:
    """Delete the Subscriptions of a :func:`burst` and wait until the parent holds none of
    their Descriptions (each is deleted once its objects are gone from its child, or its
    offload deferred for a lost cluster), so that the next scenario starts from a parent
    without them; returns the seconds it took."""
    start = time.monotonic()
    names = {f"burst-cm{tag}-{i}" for i in range(count)}
    await bounded(
        [
            lambda n=n: _delete_subscription(parent, n)  # type: ignore[misc]
            for n in sorted(names)
        ],
        50,
    )

    def left(items: list[dict[str, Any]]) -> set[str]:
        return {
            f"{d['metadata']['namespace']}/{d['metadata']['name']}"
            for d in items
            if (d["metadata"].get("labels") or {}).get(known.CONFIG_SUBSCRIPTION_NAME_LABEL)
            in names
        }

    async with asyncio.timeout(limit):
        while True:  # list, then watch until none is left; list again if the watch ends
            listed = await parent.list(APPS, "Description")
            remaining = left(listed["items"])
            if not remaining:
                break
            async with parent.watch(
                APPS,
                "Description",
                resource_version=listed["metadata"]["resourceVersion"],
                timeout_seconds=60,
            ) as events:
                async for event in events:
                    if event.type == "BOOKMARK":
                        continue  # only a newer resourceVersion
                    meta = event.object["metadata"]
                    key = f"{meta.get('namespace')}/{meta['name']}"
                    if event.type == "DELETED":
                        remaining.discard(key)
                    elif left([event.object]):
                        remaining.add(key)
                    if not remaining:
                        break
            if not remaining:
                break
    return time.monotonic() - start


async def _delete_subscription(parent: KubeClient, name: str) -> None:
    with contextlib.suppress(NotFound):
        await parent.delete(APPS, "Subscription", name, namespace="default")


def watch_children(
    clients: dict[str, KubeClient], seen: Seen, kinds: tuple[tuple[str, str], ...] | None = None
) -> list[asyncio.Task[None]]:
    kinds = kinds or (("Deployment", "apps/v1"), ("ConfigMap", "v1"))
    return [
        asyncio.create_task(watch_child(client, child, kind, version, seen))
        for child, client in clients.items()
        for kind, version in kinds
    ]


async def run(kubeconfig: str, children: list[str], args: Any) -> None:
    parent = KubeClient(load_kubeconfig(kubeconfig, context="parent"), cluster="parent")
    child_clients = {
        c: KubeClient(load_kubeconfig(kubeconfig, context=c), cluster=c) for c in children
    }
    seen = Seen(children)
    watchers = watch_children(child_clients, seen)
    try:
        await create_namespace(parent)
        results = await sequential(parent, seen, args.runs)
        present = [max(p for p, _ in run.values()) for run in results]
        ready = [max(r for _, r in run.values()) for run in results]
        print(f"\nSequential: {args.runs} Subscriptions, {len(children)} children (seconds)")
        print("| measure | p50 | p90 | p99 | max |\n|---|---|---|---|---|")
        for label, values in (("present in all", present), ("ready in all", ready)):
            print(
                f"| {label} | {statistics.median(values):.3f} | {percentile(values, 0.9):.3f} "
                f"| {percentile(values, 0.99):.3f} | {max(values):.3f} |"
            )
        created, total = await burst(parent, seen, args.burst)
        print(f"\nBurst: {args.burst} Subscriptions created at once, {len(children)} children")
        print("| measure | value |\n|---|---|")
        print(f"| all Subscriptions created | {created:.1f} s |")
        print(f"| all objects present in all children | {total:.1f} s |")
        print(f"| throughput | {args.burst / total:.1f} Subscriptions/s |")
    finally:
        for task in watchers:
            task.cancel()
        await asyncio.gather(*watchers, return_exceptions=True)
        await parent.aclose()
        for client in child_clients.values():
            await client.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--children", type=int, default=3)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--burst", type=int, default=500)
    parser.add_argument(
        "--kubeconfig",
        help="Use a running environment (contexts parent, child1..N) instead of starting one",
    )
    args = parser.parse_args()
    if args.kubeconfig:
        config = yaml.safe_load(Path(args.kubeconfig).read_text())
        children = sorted(c["name"] for c in config["contexts"] if c["name"] != "parent")
        asyncio.run(run(args.kubeconfig, children, args))
        return
    with tempfile.TemporaryDirectory(prefix="clusternet-bench-") as tmp:
        env = LocalEnvironment(run_dir=Path(tmp) / "run", kubeconfig=Path(tmp) / "kubeconfig")
        try:
            state = env.up(Options(children=args.children))
            children = [c.name for c in state.children]
            asyncio.run(run(str(state.kubeconfig), children, args))
        finally:
            env.down()


if __name__ == "__main__":
    main()
