"""Informer throughput against a real kube-apiserver (a benchmark, not a test).

    python bench/bench_informer.py [--objects 5000] [--writers 32] [--kubeconfig PATH --context CTX]

Without ``--kubeconfig`` a private local environment is started, and stopped at the end.
Rows: ConfigMap creates as the writers saw them and as one watching informer delivered them
(the writers are the bottleneck there); a fresh informer listing them all in pages of 500;
updates made while an informer was stopped, replayed by its watch when it resumes (the
informer's own event rate), and reconciled through work queue -> ``run_workers`` into a
reconcile that reads the store, per worker count.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from clusternet.kube import KubeClient
from clusternet.local.environment import Options
from clusternet.local.testing import start_environment
from clusternet.runtime import Informer, InformerKey, WorkQueue, object_key, run_workers

Object = dict[str, Any]

WORKER_COUNTS = (1, 4, 16)


async def write_all(
    client: KubeClient, namespace: str, objects: int, writers: int, generation: int
) -> float:
    """Create (generation 0) or update every ConfigMap; returns seconds taken."""
    limit = asyncio.Semaphore(writers)

    async def write(i: int) -> None:
        async with limit:
            if generation == 0:
                body = {"metadata": {"name": f"cm-{i}"}, "data": {"generation": "0"}}
                await client.create(
                    {"apiVersion": "v1", "kind": "ConfigMap", **body}, namespace=namespace
                )
            else:
                patch = {"data": {"generation": str(generation)}}
                await client.patch("v1", "ConfigMap", f"cm-{i}", patch, namespace=namespace)

    started = time.perf_counter()
    await asyncio.gather(*(write(i) for i in range(objects)))
    return time.perf_counter() - started


def new_informer(client: KubeClient, namespace: str) -> Informer:
    key = InformerKey("v1", "ConfigMap", namespace)
    return Informer(client, key, registry=CollectorRegistry())


async def watched_creates(
    client: KubeClient, namespace: str, objects: int, writers: int
) -> tuple[float, float]:
    informer = new_informer(client, namespace)
    seen = 0
    all_seen = asyncio.Event()

    def on_add(obj: dict[str, object]) -> None:
        nonlocal seen
        seen += 1
        if seen == objects:
            all_seen.set()

    informer.add_event_handler(on_add=on_add)
    informer.start()
    await informer.wait_for_sync()
    started = time.perf_counter()
    write_seconds = await write_all(client, namespace, objects, writers, generation=0)
    await all_seen.wait()
    observed_seconds = time.perf_counter() - started
    await informer.stop()
    return write_seconds, observed_seconds


async def initial_list(client: KubeClient, namespace: str) -> float:
    informer = new_informer(client, namespace)
    started = time.perf_counter()
    informer.start()
    await informer.wait_for_sync()
    seconds = time.perf_counter() - started
    await informer.stop()
    return seconds


async def replayed_updates(
    client: KubeClient, namespace: str, objects: int, writers: int, workers: int, generation: int
) -> tuple[float, float, float]:
    """Update every object while a synced informer is stopped, then resume it: the watch
    replays the updates as fast as the informer takes them, and a work queue feeds them to
    ``workers``.  Returns seconds until every update was delivered and until every key was
    reconciled at its new generation, and the relists (should be 0: a 410 would mean the
    watch cache did not hold the burst and the informer listed instead)."""
    registry = CollectorRegistry()
    informer = Informer(client, InformerKey("v1", "ConfigMap", namespace), registry=registry)
    queue: WorkQueue[str] = WorkQueue(f"bench-{workers}", registry=CollectorRegistry())
    delivered = 0
    all_delivered, all_reconciled = asyncio.Event(), asyncio.Event()

    def on_update(old: Object, new: Object) -> None:
        nonlocal delivered
        queue.add(object_key(new))
        if new["data"]["generation"] == str(generation):
            delivered += 1
            if delivered == objects:
                all_delivered.set()

    reconciled: set[str] = set()

    async def reconcile(key: str) -> None:
        obj = informer.store.get(key)
        if obj is not None and obj["data"]["generation"] == str(generation):
            reconciled.add(key)
            if len(reconciled) == objects:
                all_reconciled.set()

    informer.add_event_handler(on_update=on_update)
    informer.start()
    await informer.wait_for_sync()
    await informer.stop()
    await write_all(client, namespace, objects, writers, generation)

    workers_task = asyncio.create_task(
        run_workers(queue, reconcile, workers=workers, registry=CollectorRegistry())
    )
    started = time.perf_counter()
    informer.start()
    await all_delivered.wait()
    delivered_seconds = time.perf_counter() - started
    await all_reconciled.wait()
    reconciled_seconds = time.perf_counter() - started
    queue.shut_down()
    await workers_task
    await informer.stop()
    relists = registry.get_sample_value(
        "clusternet_informer_relists_total",
        {"cluster": client.cluster, "informer": str(informer.key)},
    )
    return delivered_seconds, reconciled_seconds, relists or 0.0


@contextlib.contextmanager
def cluster(kubeconfig: str | None, context: str) -> Iterator[tuple[Path, str]]:
    if kubeconfig:
        yield Path(kubeconfig), context
        return
    with (
        tempfile.TemporaryDirectory(prefix="bench-informer-") as folder,
        start_environment(Path(folder), Options(children=1)) as clusters,
    ):
        yield clusters.kubeconfig, "parent"


async def main(kubeconfig: Path, context: str, objects: int, writers: int) -> None:
    async with KubeClient.from_kubeconfig(kubeconfig, context) as client:
        namespace = f"bench-{uuid.uuid4().hex[:6]}"
        await client.create(
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}
        )
        try:
            rows = []
            write_s, observed_s = await watched_creates(client, namespace, objects, writers)
            rows.append(("creates written", objects, write_s))
            rows.append(("creates observed (1 informer)", objects, observed_s))
            rows.append(
                ("initial list, pages of 500", objects, await initial_list(client, namespace))
            )
            for generation, workers in enumerate(WORKER_COUNTS, start=1):
                delivered_s, reconciled_s, relists = await replayed_updates(
                    client, namespace, objects, writers, workers, generation
                )
                if relists:
                    print(f"note: the informer relisted {relists:.0f}x (watch cache too small)")
                if workers == WORKER_COUNTS[0]:
                    rows.append(("update events replayed (watch)", objects, delivered_s))
                rows.append((f"updates reconciled, {workers:>2} workers", objects, reconciled_s))
        finally:
            await client.delete("v1", "Namespace", namespace)

    header = f"{'phase':<34} | {'objects':>7} | {'seconds':>7} | {'per second':>10}"
    print(header)
    print("-" * len(header))
    for phase, count, seconds in rows:
        print(f"{phase:<34} | {count:>7,} | {seconds:>7.2f} | {count / seconds:>10,.0f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=5_000)
    parser.add_argument("--writers", type=int, default=32, help="concurrent writes")
    parser.add_argument("--kubeconfig", help="an existing cluster (default: start one)")
    parser.add_argument("--context", default="parent")
    arguments = parser.parse_args()
    with cluster(arguments.kubeconfig, arguments.context) as (path, context):
        asyncio.run(main(path, context, arguments.objects, arguments.writers))
