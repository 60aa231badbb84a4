"""Informers against real kube-apiservers: an exact mirror under churn, through an etcd
compaction and an API server restart; a CRD; one informer per cluster via the factory."""

from __future__ import annotations

import asyncio
import itertools
import random
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from clusternet.kube import ApiError, KubeClient, PatchType
from clusternet.local.environment import Options
from clusternet.local.testing import Clusters, start_environment
from clusternet.runtime import (
    DeletedFinalStateUnknown,
    Informer,
    MultiClusterInformers,
    SharedInformerFactory,
    object_key,
)

Object = dict[str, Any]
CHURN = "e2e=churn"
MIRRORED = 2000


def configmap(name: str, labels: dict[str, str] | None = None) -> Object:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "labels": labels or {}},
        "data": {"generation": "0"},
    }


class Mirror:
    """What the handlers were told, key -> resourceVersion; ``changed`` is set on every event."""

    def __init__(self, informer: Informer) -> None:
        self.versions: dict[str, str] = {}
        self.tombstones: set[str] = set()
        self.changed = asyncio.Event()
        informer.add_event_handler(self._put, lambda old, new: self._put(new), self._delete)

    def _put(self, obj: Object) -> None:
        self.versions[object_key(obj)] = obj["metadata"]["resourceVersion"]
        self.changed.set()

    def _delete(self, obj: Object | DeletedFinalStateUnknown) -> None:
        self.versions.pop(object_key(obj), None)
        if isinstance(obj, DeletedFinalStateUnknown):
            self.tombstones.add(obj.key)
        self.changed.set()


async def fresh_versions(client: KubeClient, namespace: str, selector: str) -> dict[str, str]:
    listed = await client.list("v1", "ConfigMap", namespace=namespace, label_selector=selector)
    return {object_key(o): o["metadata"]["resourceVersion"] for o in listed["items"]}


async def wait_until_mirrored(
    client: KubeClient, namespace: str, informer: Informer, mirror: Mirror
) -> dict[str, str]:
    """Once the writes have stopped: wait until handlers and store both match a fresh list."""
    expected = await fresh_versions(client, namespace, CHURN)
    cached: dict[str, str] = {}
    try:
        async with asyncio.timeout(120):
            while True:
                mirror.changed.clear()
                cached = {object_key(o): o["metadata"]["resourceVersion"] for o in informer.store}
                if mirror.versions == expected and cached == expected:
                    return expected
                await mirror.changed.wait()
    except TimeoutError:
        missing = expected.keys() - cached.keys()
        extra = cached.keys() - expected.keys()
        stale = {k for k in expected.keys() & cached.keys() if expected[k] != cached[k]}
        raise AssertionError(f"cache differs: {missing=} {extra=} {stale=}") from None


class Churn:
    """Concurrent creates, updates and deletes around ``MIRRORED`` objects until stopped.

    Writes that fail (the API server is down or restarting) are counted and retried later.
    """

    def __init__(self, client: KubeClient, namespace: str, existing: list[str]) -> None:
        self.client = client
        self.namespace = namespace
        self.names = set(existing)
        self.sequence = itertools.count()
        self.writes = 0
        self.failures = 0
        self.progress = asyncio.Condition()
        self._stop = asyncio.Event()
        self._workers: list[asyncio.Task[None]] = []

    def start(self, workers: int = 16) -> None:
        self._stop.clear()
        self._workers = [asyncio.create_task(self._work()) for _ in range(workers)]

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._workers)

    async def wait_for_writes(self, count: int) -> None:
        target = self.writes + count
        async with self.progress:
            await self.progress.wait_for(lambda: self.writes >= target)

    async def _work(self) -> None:
        while not self._stop.is_set():
            try:
                await self._write_one()
            except (ApiError, ConnectionError):
                self.failures += 1
                # Pace a worker whose writes fail (API server down): the load generator
                # should not spin; nothing waits on this.
                await asyncio.sleep(0.1)
                continue
            async with self.progress:
                self.writes += 1
                self.progress.notify_all()

    async def _write_one(self) -> None:
        choice = random.random()
        if len(self.names) < MIRRORED * 0.95 or (choice < 0.3 and len(self.names) < MIRRORED):
            name = f"churn-{next(self.sequence)}"
            self.names.add(name)
            await self.client.create(configmap(name, {"e2e": "churn"}), namespace=self.namespace)
        elif choice < 0.7:
            name = random.choice(tuple(self.names))
            await self.client.patch(
                "v1",
                "ConfigMap",
                name,
                {"data": {"generation": str(next(self.sequence))}},
                namespace=self.namespace,
            )
        else:
            name = random.choice(tuple(self.names))
            self.names.discard(name)  # no other worker picks it meanwhile
            await self.client.delete("v1", "ConfigMap", name, namespace=self.namespace)


async def create_all(client: KubeClient, namespace: str, names: list[str]) -> None:
    limit = asyncio.Semaphore(32)

    async def create(name: str) -> None:
        async with limit:
            await client.create(configmap(name, {"e2e": "churn"}), namespace=namespace)

    await asyncio.gather(*(create(name) for name in names))


async def test_mirror_stays_exact_under_churn_through_compaction_and_apiserver_restart(
    tmp_path: Path,
) -> None:
    with start_environment(tmp_path, Options(children=1)) as clusters:
        env = clusters.env
        registry = CollectorRegistry()
        async with KubeClient.from_kubeconfig(clusters.kubeconfig, "parent") as client:
            namespace = "mirror"
            await client.create(
                {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}
            )
            seeded = [f"seed-{i}" for i in range(MIRRORED)]
            await create_all(client, namespace, seeded)

            factory = SharedInformerFactory(client, registry=registry)
            try:
                informer = factory.informer(
                    "v1", "ConfigMap", namespace=namespace, label_selector=CHURN
                )
                mirror = Mirror(informer)
                factory.start()
                assert await factory.wait_for_sync()
                assert len(informer.store) == MIRRORED  # listed in 4 pages of 500

                # 1. Live through a compaction and a restart of the API server, under churn.
                churn = Churn(client, namespace, seeded)
                churn.start()
                await churn.wait_for_writes(500)
                await asyncio.to_thread(env.compact_etcd)
                await churn.wait_for_writes(200)
                await asyncio.to_thread(env.restart_process, "parent/kube-apiserver")
                await churn.wait_for_writes(500)  # writes after the restart reach the mirror
                await churn.stop()
                assert churn.failures > 0  # the restart did interrupt the writers
                await wait_until_mirrored(client, namespace, informer, mirror)

                # 2. While the informer is away, objects are deleted and the history compacted:
                # it must relist and report those deletes itself.
                await informer.stop()
                deleted_while_away = sorted(o["metadata"]["name"] for o in informer.store)[:100]
                for name in deleted_while_away:
                    churn.names.discard(name)
                    await client.delete("v1", "ConfigMap", name, namespace=namespace)
                churn.start()
                await churn.wait_for_writes(300)
                await asyncio.to_thread(env.compact_etcd)
                # A fresh watch cache: the informer's resourceVersion is now too old for it too.
                await asyncio.to_thread(env.restart_process, "parent/kube-apiserver")
                informer.start()
                await churn.wait_for_writes(500)
                await churn.stop()
                mirrored = await wait_until_mirrored(client, namespace, informer, mirror)

                assert {f"{namespace}/{name}" for name in deleted_while_away} <= mirror.tombstones
                assert len(mirrored) >= MIRRORED * 0.9
                relists = registry.get_sample_value(
                    "clusternet_informer_relists_total",
                    {
                        "cluster": "parent",
                        "informer": f"v1/ConfigMap namespace={namespace} labelSelector={CHURN}",
                    },
                )
                assert relists is not None
                assert relists >= 1
            finally:
                await factory.stop()


# -- shared environment ----------------------------------------------------------------------


@pytest.fixture
async def parent(clusters: Clusters) -> AsyncIterator[KubeClient]:
    async with KubeClient.from_kubeconfig(clusters.kubeconfig, "parent") as client:
        yield client


def widget_crd(group: str) -> Object:
    schema = {
        "type": "object",
        "properties": {
            "spec": {"type": "object", "properties": {"color": {"type": "string"}}},
        },
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"widgets.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {
                "plural": "widgets",
                "singular": "widget",
                "kind": "Widget",
                "listKind": "WidgetList",
            },
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": schema},
                }
            ],
        },
    }


def established(crd: Object) -> bool:
    conditions = (crd.get("status") or {}).get("conditions") or []
    return any(c["type"] == "Established" and c["status"] == "True" for c in conditions)


async def test_informer_for_a_custom_resource_with_an_index(
    parent: KubeClient, namespace: str
) -> None:
    group = f"g{uuid.uuid4().hex[:8]}.e2e.clusternet.io"
    crd = widget_crd(group)
    factory = SharedInformerFactory(parent, registry=CollectorRegistry())
    await parent.create(crd)
    try:
        # Cluster-scoped, narrowed by a field selector: wait for the CRD to be served.
        crds = factory.informer(
            "apiextensions.k8s.io/v1",
            "CustomResourceDefinition",
            field_selector=f"metadata.name={crd['metadata']['name']}",
        )
        ready = asyncio.Event()
        crds.add_event_handler(
            on_add=lambda o: established(o) and ready.set(),
            on_update=lambda old, new: established(new) and ready.set(),
        )
        widgets = factory.informer(f"{group}/v1", "Widget", namespace=namespace)
        widgets.add_indexer("color", lambda o: [o["spec"]["color"]])
        seen: list[tuple[str, str]] = []
        four = asyncio.Event()

        def record(event: str, obj: Object | DeletedFinalStateUnknown) -> None:
            seen.append((event, object_key(obj)))
            if len(seen) == 4:
                four.set()

        widgets.add_event_handler(
            on_add=lambda o: record("add", o),
            on_update=lambda old, new: record("update", new),
            on_delete=lambda o: record("delete", o),
        )
        factory.start()
        async with asyncio.timeout(60):
            await ready.wait()
            assert await widgets.wait_for_sync()

        def widget(name: str, color: str) -> Object:
            return {
                "apiVersion": f"{group}/v1",
                "kind": "Widget",
                "metadata": {"name": name},
                "spec": {"color": color},
            }

        await parent.create(widget("w1", "red"), namespace=namespace)
        await parent.create(widget("w2", "red"), namespace=namespace)
        await parent.patch(
            f"{group}/v1",
            "Widget",
            "w1",
            {"spec": {"color": "blue"}},
            namespace=namespace,
            patch_type=PatchType.MERGE,
        )
        await parent.delete(f"{group}/v1", "Widget", "w2", namespace=namespace)
        async with asyncio.timeout(60):
            await four.wait()

        key1, key2 = f"{namespace}/w1", f"{namespace}/w2"
        assert seen == [("add", key1), ("add", key2), ("update", key1), ("delete", key2)]
        assert [object_key(o) for o in widgets.by_index("color", "blue")] == [key1]
        assert widgets.by_index("color", "red") == []
    finally:
        await factory.stop()
        await parent.delete(
            "apiextensions.k8s.io/v1", "CustomResourceDefinition", crd["metadata"]["name"]
        )


async def test_one_informer_per_cluster_that_stops_with_its_cluster(
    clusters: Clusters, namespace: str
) -> None:
    informers = MultiClusterInformers(registry=CollectorRegistry())
    seen: dict[str, list[str]] = defaultdict(list)
    arrived = asyncio.Event()
    selector = "e2e=multi"

    def setup(cluster: str, factory: SharedInformerFactory) -> None:
        def on_add(obj: Object) -> None:
            seen[cluster].append(obj["metadata"]["name"])
            arrived.set()

        factory.informer(
            "v1", "ConfigMap", namespace=namespace, label_selector=selector
        ).add_event_handler(on_add)

    informers.for_each_cluster(setup)
    clients = {
        name: KubeClient.from_kubeconfig(clusters.kubeconfig, name) for name in clusters.children
    }
    try:
        for name, client in clients.items():
            informers.add_cluster(name, client)
        first, second = clusters.children[:2]
        child1_informer = informers[first].informer(
            "v1", "ConfigMap", namespace=namespace, label_selector=selector
        )
        assert len(informers[first].informers) == 1  # the controller's informer, shared

        async def create_and_wait(cluster: str, name: str, until_seen_in: str) -> None:
            await clients[cluster].create(configmap(name, {"e2e": "multi"}), namespace=namespace)
            async with asyncio.timeout(60):
                while name not in seen[until_seen_in]:
                    arrived.clear()
                    await arrived.wait()

        await create_and_wait(first, "in-child1", until_seen_in=first)
        await create_and_wait(second, "in-child2", until_seen_in=second)
        assert dict(seen) == {first: ["in-child1"], second: ["in-child2"]}

        await informers.remove_cluster(first)
        assert first not in informers
        assert informers.clusters == [second]
        assert not child1_informer.running

        await clients[first].create(configmap("late", {"e2e": "multi"}), namespace=namespace)
        await create_and_wait(second, "late", until_seen_in=second)
        assert dict(seen) == {first: ["in-child1"], second: ["in-child2", "late"]}
    finally:
        await informers.stop()
        await asyncio.gather(*(client.aclose() for client in clients.values()))
