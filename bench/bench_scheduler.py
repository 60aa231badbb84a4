"""Scheduling latency and throughput of clusternet-scheduler.

    python bench/bench_scheduler.py [--clusters 100 1000] [--subscriptions 1000] [--no-e2e]

1. In-process: N simulated ManagedClusters and M Subscriptions are fed through the scheduler's
   informer handlers into its stores; every Subscription then goes through one full cycle
   (parse, filter, score, divide, build the status patch; the API call itself is a no-op).
   Latency is per Subscription; throughput is M over the whole run.
2. End to end: a real parent (kube-apiserver + etcd, Clusternet CRDs), N ManagedCluster objects
   created with a Ready status, the scheduler as a subprocess; M Subscriptions are created at
   once and each latency runs from its create call returning to a watch seeing it bound.

The Subscriptions mix: 60% Replication selecting one of 10 regions (matchLabels), 20%
Replication over two regions (matchExpressions In) tolerating a taint, 20% static Dividing
1:2 over two regions with a FeedInventory.  One cluster in 7 carries a NoSchedule taint,
another one in 7 a PreferNoSchedule one (across regions, so every Subscription is bound).
Prints a table.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2

from clusternet.kube import ApiError
from clusternet.runtime import SharedInformerFactory
from clusternet.scheduler.config import load_profiles
from clusternet.scheduler.framework import Framework
from clusternet.scheduler.plugins import in_tree_registry
from clusternet.scheduler.scheduler import Scheduler, SchedulerHandle

APPS = "apps.clusternet.io/v1alpha1"
CLUSTERS = "clusters.clusternet.io/v1beta1"
REGIONS = 10


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def managed_cluster(i: int) -> dict[str, Any]:
    taints = []
    # Taints cut across regions (i % 7, regions are i % 10): every region has good clusters.
    if i % 7 == 3:
        taints.append({"key": "maint", "effect": "NoSchedule"})
    elif i % 7 == 5:
        taints.append({"key": "busy", "effect": "PreferNoSchedule"})
    return {
        "apiVersion": CLUSTERS,
        "kind": "ManagedCluster",
        "metadata": {
            "name": f"c{i:04d}",
            "namespace": f"sim-{i % 10}",
            "labels": {"region": f"r{i % REGIONS}", "tier": "gold" if i % 3 == 0 else "silver"},
        },
        "spec": {
            "clusterId": f"00000000-0000-4000-8000-{i:012d}",
            "syncMode": "Pull",
            "taints": taints,
        },
        "status": {"conditions": [{
            "type": "Ready", "status": "True", "reason": "ManagedClusterReady",
            "message": "ok", "lastTransitionTime": "2026-01-01T00:00:00Z",
        }]},
    }  # fmt: skip


def subscription(j: int, namespace: str = "bench") -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The Subscription and, for Dividing ones, its FeedInventory."""
    feed = {"apiVersion": "apps/v1", "kind": "Deployment", "namespace": "shop", "name": f"w{j}"}
    meta = {"name": f"s{j:04d}", "namespace": namespace}
    kind = j % 10
    if kind < 6:
        spec: dict[str, Any] = {
            "subscribers": [{"clusterAffinity": {"matchLabels": {"region": f"r{j % REGIONS}"}}}],
            "feeds": [feed],
        }
    elif kind < 8:
        regions = [f"r{j % REGIONS}", f"r{(j + 1) % REGIONS}"]
        spec = {
            "subscribers": [{"clusterAffinity": {"matchExpressions": [
                {"key": "region", "operator": "In", "values": regions}]}}],
            "clusterTolerations": [{"key": "maint", "operator": "Exists"}],
            "feeds": [feed],
        }  # fmt: skip
    else:
        spec = {
            "schedulingStrategy": "Dividing",
            "dividingScheduling": {"type": "Static"},
            "subscribers": [
                {"clusterAffinity": {"matchLabels": {"region": f"r{j % REGIONS}"}}, "weight": 1},
                {
                    "clusterAffinity": {"matchLabels": {"region": f"r{(j + 3) % REGIONS}"}},
                    "weight": 2,
                },
            ],
            "feeds": [feed],
        }
    sub = {"apiVersion": APPS, "kind": "Subscription", "metadata": meta, "spec": spec}
    inventory = None
    if kind >= 8:
        inventory = {
            "apiVersion": APPS, "kind": "FeedInventory", "metadata": dict(meta),
            "spec": {"feeds": [
                {**feed, "desiredReplicas": 30, "replicaJsonPath": "/spec/replicas"}]},
        }  # fmt: skip
    return sub, inventory


# --- 1. in-process ----------------------------------------------------------------------------


class _NoopClient:
    cluster = "bench"

    async def patch(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        return {}


class _NoopRecorder:
    def event(self, *args: Any) -> None:
        pass


def _feed(informer: Any, obj: dict[str, Any]) -> None:
    informer.store.upsert(obj)
    for handler in informer._handlers:
        if handler.on_add:
            handler.on_add(obj)


async def in_process(
    num_clusters: int, num_subs: int, samples: list[float] | None = None
) -> dict[str, float]:
    client, recorder = _NoopClient(), _NoopRecorder()
    registry = in_tree_registry()
    handle = SchedulerHandle(client, recorder)  # type: ignore[arg-type]
    frameworks = [Framework(p, registry, handle) for p in load_profiles(None, registry)]
    informers = SharedInformerFactory(client, registry=None)  # type: ignore[arg-type]
    scheduler = Scheduler(client, informers, recorder, frameworks)  # type: ignore[arg-type]
    for i in range(num_clusters):
        _feed(scheduler.managed_clusters, managed_cluster(i))
    for j in range(num_subs):
        sub, inventory = subscription(j)
        sub["metadata"]["generation"] = 1
        if inventory is not None:
            _feed(scheduler.inventories, inventory)
        _feed(scheduler.subscriptions, sub)
    latencies: list[float] = []
    started = time.perf_counter()
    while len(scheduler.queue):
        key = await scheduler.queue.pop()
        t0 = time.perf_counter()
        await scheduler.schedule_one(key)
        latencies.append(time.perf_counter() - t0)
    await scheduler.settle()
    elapsed = time.perf_counter() - started
    if samples is not None:
        samples.extend(latencies)
    return _summary(latencies, num_subs / elapsed)


# --- 2. end to end ----------------------------------------------------------------------------


async def end_to_end(
    kubeconfig: Path,
    num_clusters: int,
    num_subs: int,
    log: Path,
    samples: list[float] | None = None,
) -> dict[str, float]:
    """``kubeconfig``: the parent's own (single context), used by the scheduler too."""
    from clusternet.kube import AlreadyExists, KubeClient

    async with KubeClient.from_kubeconfig(kubeconfig) as client:
        limit = asyncio.Semaphore(64)

        async def create(obj: dict[str, Any], status: bool = False) -> None:
            async with limit:
                try:
                    created = await client.create(obj)
                except AlreadyExists:
                    return
                if status:
                    await client.update_status({**created, "status": obj["status"]})

        for ns in {f"sim-{i % 10}" for i in range(num_clusters)} | {"bench"}:
            await create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
        await asyncio.gather(
            *(create(managed_cluster(i), status=True) for i in range(num_clusters))
        )
        subs = [subscription(j) for j in range(num_subs)]
        await asyncio.gather(*(create(inv) for _, inv in subs if inv is not None))

        scheduler = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "clusternet.scheduler", f"--kubeconfig={kubeconfig}",
            "--secure-port=0", "--leader-elect=false", "--log-format=json",
            stdout=log.open("wb"), stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            # Ready once it has bound a probe Subscription (informers synced, loop running).
            probe, _ = subscription(0, namespace="bench")
            probe["metadata"]["name"] = "probe"
            created_at: dict[str, float] = {}
            bound_at: dict[str, float] = {}
            await create(probe)
            done = asyncio.Event()
            probe_bound = asyncio.Event()

            def seen(obj: dict[str, Any], at: float) -> None:
                name = obj["metadata"]["name"]
                if (obj.get("status") or {}).get("bindingClusters") is None:
                    return
                if name == "probe":
                    probe_bound.set()
                elif name not in bound_at:
                    bound_at[name] = at
                    if len(bound_at) == num_subs:
                        done.set()

            async def watch() -> None:
                """List, then watch from the list; again whenever the watch ends or fails
                (a bind seen only by a re-list gets that list's time: a later bound)."""
                while not done.is_set():
                    listed = await client.list(APPS, "Subscription", namespace="bench")
                    now = time.perf_counter()
                    for obj in listed["items"]:
                        seen(obj, now)
                    with contextlib.suppress(ApiError, httpx2.TransportError):
                        async with client.watch(
                            APPS,
                            "Subscription",
                            namespace="bench",
                            resource_version=listed["metadata"]["resourceVersion"],
                            timeout_seconds=600,
                        ) as events:
                            async for event in events:
                                if event.type == "BOOKMARK":
                                    continue  # only a newer resourceVersion (a bookmark
                                    # taken for a Subscription once stopped this wait)
                                seen(event.object, time.perf_counter())
                                if done.is_set():
                                    return

            watcher = asyncio.create_task(watch())
            async with asyncio.timeout(120):
                await probe_bound.wait()

            async def create_sub(sub: dict[str, Any]) -> None:
                async with limit:
                    await client.create(sub)
                    created_at[sub["metadata"]["name"]] = time.perf_counter()

            first = time.perf_counter()
            await asyncio.gather(*(create_sub(sub) for sub, _ in subs))
            async with asyncio.timeout(600):
                waiter = asyncio.ensure_future(done.wait())
                await asyncio.wait({watcher, waiter}, return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
            if not done.is_set():
                watcher.result()  # the watcher's error, if it failed
            last = max(bound_at.values())
            watcher.cancel()
            latencies = [bound_at[n] - created_at[n] for n in created_at]
            if samples is not None:
                samples.extend(latencies)
            return _summary(latencies, num_subs / (last - first))
        finally:
            scheduler.terminate()
            async with asyncio.timeout(30):
                await scheduler.wait()
            # Leave the parent clean for the next size.
            for kind in ("Subscription", "FeedInventory"):
                await client.delete_collection(APPS, kind, namespace="bench")
            for ns in {f"sim-{i % 10}" for i in range(num_clusters)}:
                await client.delete_collection(CLUSTERS, "ManagedCluster", namespace=ns)


def _summary(latencies: list[float], throughput: float) -> dict[str, float]:
    return {
        "p50_ms": percentile(latencies, 0.5) * 1000,
        "p90_ms": percentile(latencies, 0.9) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
        "mean_ms": statistics.fmean(latencies) * 1000,
        "per_s": throughput,
    }


@contextlib.contextmanager
def scheduler_parent(root: Path) -> Iterator[Path]:
    """A parent with Clusternet's CRDs and nothing running against it (the end-to-end part
    starts its own scheduler): yields the parent's own kubeconfig."""
    from clusternet.local.environment import Options
    from clusternet.local.testing import start_environment

    with start_environment(root, Options(children=1, clusternet=False)) as env:
        subprocess.run(
            [sys.executable, "-m", "clusternet.cli.main", "install",
             f"--kubeconfig={env.kubeconfig}", "--context=parent"],
            check=True, capture_output=True, timeout=180,
        )  # fmt: skip
        yield Path(env.state.cluster("parent").kubeconfig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clusters", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--subscriptions", type=int, default=1000)
    parser.add_argument("--no-e2e", action="store_true", help="Only the in-process part.")
    args = parser.parse_args()

    rows: list[tuple[str, int, dict[str, float]]] = []
    for n in args.clusters:
        rows.append(("in-process", n, asyncio.run(in_process(n, args.subscriptions))))
    if not args.no_e2e:
        with tempfile.TemporaryDirectory() as tmp, scheduler_parent(Path(tmp)) as parent:
            for n in args.clusters:
                result = asyncio.run(
                    end_to_end(parent, n, args.subscriptions, Path(tmp) / f"scheduler-{n}.log")
                )
                rows.append(("end-to-end", n, result))

    print(f"\n{args.subscriptions} Subscriptions")
    print(f"{'mode':<12} {'clusters':>8} {'p50 ms':>8} {'p99 ms':>8} {'mean ms':>8} {'subs/s':>8}")
    for mode, n, r in rows:
        print(
            f"{mode:<12} {n:>8} {r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f} "
            f"{r['mean_ms']:>8.2f} {r['per_s']:>8.0f}"
        )
    print(json.dumps([{"mode": m, "clusters": n, **r} for m, n, r in rows]))


if __name__ == "__main__":
    main()
