"""The event recorder against a real kube-apiserver: fields, aggregation, namespaces."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from clusternet.kube import KubeClient
from clusternet.local.testing import Clusters
from clusternet.runtime import EventRecorder


@pytest.fixture
async def parent(clusters: Clusters) -> AsyncIterator[KubeClient]:
    async with KubeClient.from_kubeconfig(clusters.kubeconfig, "parent") as client:
        yield client


@pytest.fixture
async def recorder(parent: KubeClient) -> AsyncIterator[EventRecorder]:
    async with EventRecorder(
        parent, component="clusternet-e2e", host="e2e-0", registry=CollectorRegistry()
    ) as started:
        yield started


async def events_about(client: KubeClient, namespace: str, kind: str, name: str) -> list[Any]:
    selector = f"involvedObject.kind={kind},involvedObject.name={name}"
    listed = await client.list("v1", "Event", namespace=namespace, field_selector=selector)
    return sorted(listed["items"], key=lambda e: e["metadata"]["creationTimestamp"])


async def test_an_event_is_written_with_its_fields_and_repeats_aggregate(
    parent: KubeClient, recorder: EventRecorder, namespace: str
) -> None:
    configmap = await parent.create(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"}},
        namespace=namespace,
    )
    recorder.event(configmap, "Warning", "SyncFailed", "child1 refused the object")
    await recorder.flush()

    [event] = await events_about(parent, namespace, "ConfigMap", "settings")
    assert event["involvedObject"] == {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "namespace": namespace,
        "name": "settings",
        "uid": configmap["metadata"]["uid"],
        "resourceVersion": configmap["metadata"]["resourceVersion"],
    }
    assert (event["type"], event["reason"]) == ("Warning", "SyncFailed")
    assert event["message"] == "child1 refused the object"
    assert event["source"] == {"component": "clusternet-e2e", "host": "e2e-0"}
    assert event["reportingComponent"] == "clusternet-e2e"
    assert event["reportingInstance"] == "e2e-0"
    assert event["count"] == 1

    for _ in range(2):
        recorder.event(configmap, "Warning", "SyncFailed", "child1 refused the object")
    recorder.event(configmap, "Warning", "SyncFailed", "x" * 3000)  # another message
    await recorder.flush()

    aggregated, other = await events_about(parent, namespace, "ConfigMap", "settings")
    assert aggregated["metadata"]["name"] == event["metadata"]["name"]
    assert aggregated["count"] == 3
    assert aggregated["firstTimestamp"] == event["firstTimestamp"]
    assert aggregated["lastTimestamp"] >= event["lastTimestamp"]
    assert other["count"] == 1
    assert len(other["message"]) == 1024


async def test_events_about_cluster_scoped_objects_are_written_to_default(
    parent: KubeClient, recorder: EventRecorder, namespace: str
) -> None:
    namespace_object = await parent.get("v1", "Namespace", namespace)
    recorder.event(namespace_object, "Normal", "Adopted", "namespace adopted by clusternet")
    await recorder.flush()
    [event] = await events_about(parent, "default", "Namespace", namespace)
    assert event["involvedObject"]["uid"] == namespace_object["metadata"]["uid"]
    assert "namespace" not in event["involvedObject"]
    assert event["reason"] == "Adopted"
