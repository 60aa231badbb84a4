"""The event recorder's aggregation, truncation, namespaces and dropping, against a fake API."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import AsyncIterator
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from clusternet.kube import ClusterUnreachable, Forbidden, NotFound
from clusternet.runtime import EventRecorder, FakeClock, object_reference
from clusternet.runtime.events import MAX_MESSAGE_LENGTH, truncate_message

Object = dict[str, Any]

DEPLOYMENT = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "web", "namespace": "shop", "uid": "u-1", "resourceVersion": "7"},
}
NODE = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-1", "uid": "u-2"}}


class FakeEvents:
    """Events by (namespace, name); ``failures`` are raised by the next writes, in order."""

    def __init__(self) -> None:
        self.events: dict[tuple[str, str], Object] = {}
        self.calls: list[str] = []
        self.failures: list[Exception] = []

    async def create(self, obj: Object) -> Object:
        self._maybe_fail("create")
        metadata = obj["metadata"]
        self.events[metadata["namespace"], metadata["name"]] = copy.deepcopy(obj)
        return obj

    async def patch(
        self, api_version: str, kind: str, name: str, patch: Object, *, namespace: str | None = None
    ) -> Object:
        assert (api_version, kind) == ("v1", "Event")
        assert namespace is not None
        self._maybe_fail("patch")
        if (namespace, name) not in self.events:
            raise NotFound(404, {"reason": "NotFound"})
        self.events[namespace, name].update(patch)
        return self.events[namespace, name]

    def only(self) -> Object:
        assert len(self.events) == 1, self.events
        return next(iter(self.events.values()))

    def _maybe_fail(self, call: str) -> None:
        self.calls.append(call)
        if self.failures:
            raise self.failures.pop(0)


@pytest.fixture
def api() -> FakeEvents:
    return FakeEvents()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
async def recorder(
    api: FakeEvents, clock: FakeClock, registry: CollectorRegistry
) -> AsyncIterator[EventRecorder]:
    async with EventRecorder(
        api, component="clusternet-hub", host="hub-0", clock=clock, registry=registry
    ) as started:
        yield started


def metric(registry: CollectorRegistry, name: str, **labels: str) -> float:
    value = registry.get_sample_value(name, {"component": "clusternet-hub", **labels})
    return value or 0.0


async def test_an_event_has_the_fields_kubernetes_expects(
    api: FakeEvents, recorder: EventRecorder
) -> None:
    recorder.event(DEPLOYMENT, "Warning", "FailedSync", "could not sync")
    await recorder.flush()
    event = api.only()
    assert event["metadata"]["namespace"] == "shop"
    assert event["metadata"]["name"].startswith("web.")
    assert event["involvedObject"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "namespace": "shop",
        "name": "web",
        "uid": "u-1",
        "resourceVersion": "7",
    }
    assert (event["type"], event["reason"], event["message"]) == (
        "Warning",
        "FailedSync",
        "could not sync",
    )
    assert event["source"] == {"component": "clusternet-hub", "host": "hub-0"}
    assert (event["reportingComponent"], event["reportingInstance"]) == ("clusternet-hub", "hub-0")
    assert event["count"] == 1
    assert event["firstTimestamp"] == event["lastTimestamp"]


async def test_events_about_cluster_scoped_objects_go_to_default(
    api: FakeEvents, recorder: EventRecorder
) -> None:
    recorder.event(NODE, "Normal", "Registered", "node registered")
    await recorder.flush()
    event = api.only()
    assert event["metadata"]["namespace"] == "default"
    assert "namespace" not in event["involvedObject"]


async def test_repeats_patch_the_count_of_one_event(
    api: FakeEvents, recorder: EventRecorder, registry: CollectorRegistry
) -> None:
    for _ in range(3):
        recorder.event(DEPLOYMENT, "Warning", "FailedSync", "could not sync")
    await recorder.flush()
    assert api.calls == ["create", "patch", "patch"]
    assert api.only()["count"] == 3
    assert metric(registry, "clusternet_events_written_total", action="patch") == 2


@pytest.mark.parametrize(
    "other",
    [
        (DEPLOYMENT, "Warning", "FailedSync", "another message"),
        (DEPLOYMENT, "Normal", "FailedSync", "could not sync"),
        (DEPLOYMENT, "Warning", "OtherReason", "could not sync"),
        (
            {**DEPLOYMENT, "metadata": {**DEPLOYMENT["metadata"], "uid": "u-9"}},
            "Warning",
            "FailedSync",
            "could not sync",
        ),
    ],
    ids=["message", "type", "reason", "object"],
)
async def test_any_difference_in_the_key_makes_a_new_event(
    api: FakeEvents, recorder: EventRecorder, other: tuple[Any, ...]
) -> None:
    recorder.event(DEPLOYMENT, "Warning", "FailedSync", "could not sync")
    recorder.event(*other)
    await recorder.flush()
    assert api.calls == ["create", "create"]
    assert [e["count"] for e in api.events.values()] == [1, 1]


async def test_a_repeat_after_the_window_starts_a_new_event(
    api: FakeEvents, recorder: EventRecorder, clock: FakeClock
) -> None:
    recorder.event(DEPLOYMENT, "Normal", "Synced", "ok")
    await recorder.flush()
    clock.advance(recorder.aggregation_window - 1)
    recorder.event(DEPLOYMENT, "Normal", "Synced", "ok")  # within the window of the last one
    await recorder.flush()
    clock.advance(recorder.aggregation_window + 1)
    recorder.event(DEPLOYMENT, "Normal", "Synced", "ok")
    await recorder.flush()
    assert api.calls == ["create", "patch", "create"]
    assert sorted(e["count"] for e in api.events.values()) == [1, 2]


async def test_an_expired_event_is_created_again_keeping_its_count(
    api: FakeEvents, recorder: EventRecorder
) -> None:
    recorder.event(DEPLOYMENT, "Normal", "Synced", "ok")
    await recorder.flush()
    first = api.only()
    api.events.clear()  # the API server's --event-ttl removed it
    recorder.event(DEPLOYMENT, "Normal", "Synced", "ok")
    await recorder.flush()
    assert api.calls == ["create", "patch", "create"]
    again = api.only()
    assert again["count"] == 2
    assert again["firstTimestamp"] == first["firstTimestamp"]
    assert again["metadata"]["name"] != first["metadata"]["name"]


def test_long_messages_are_truncated_to_the_api_limit() -> None:
    assert truncate_message("x" * MAX_MESSAGE_LENGTH) == "x" * MAX_MESSAGE_LENGTH
    long = truncate_message("y" * 5000)
    assert len(long) == MAX_MESSAGE_LENGTH
    assert long.endswith("...")


async def test_recorded_messages_are_truncated(api: FakeEvents, recorder: EventRecorder) -> None:
    recorder.event(DEPLOYMENT, "Warning", "Huge", "z" * 3000)
    await recorder.flush()
    assert len(api.only()["message"]) == MAX_MESSAGE_LENGTH


def test_object_reference_requires_kind_and_name() -> None:
    assert object_reference(NODE) == {
        "apiVersion": "v1",
        "kind": "Node",
        "name": "node-1",
        "uid": "u-2",
    }
    with pytest.raises(ValueError, match=r"kind and metadata\.name"):
        object_reference({"metadata": {"name": "x"}})


async def test_invalid_type_is_a_programming_error(recorder: EventRecorder) -> None:
    with pytest.raises(ValueError, match="Normal or Warning"):
        recorder.event(DEPLOYMENT, "Error", "Bad", "no such type")  # type: ignore[arg-type]


async def test_a_full_queue_drops_events_instead_of_blocking(
    api: FakeEvents, clock: FakeClock, registry: CollectorRegistry
) -> None:
    recorder = EventRecorder(
        api, component="clusternet-hub", queue_size=2, clock=clock, registry=registry
    )
    for i in range(5):  # the writer is not running: nothing drains the queue
        recorder.event(DEPLOYMENT, "Normal", "Step", f"step {i}")
    assert metric(registry, "clusternet_events_dropped_total", reason="queue_full") == 3
    async with recorder:
        await recorder.flush()
    assert sorted(e["message"] for e in api.events.values()) == ["step 0", "step 1"]


async def flush_stepping_time(recorder: EventRecorder, clock: FakeClock) -> None:
    flushed = asyncio.create_task(recorder.flush())
    while not flushed.done():
        clock.advance(1)  # past the retry delays (0.5 s doubling, jittered): no real sleeps
        await asyncio.sleep(0)
    await flushed


async def test_unreachable_api_is_retried_then_the_event_dropped(
    api: FakeEvents, recorder: EventRecorder, clock: FakeClock, registry: CollectorRegistry
) -> None:
    api.failures = [ClusterUnreachable("refused")] * 2
    recorder.event(DEPLOYMENT, "Normal", "Retried", "written on the third attempt")
    await flush_stepping_time(recorder, clock)
    assert [e["reason"] for e in api.events.values()] == ["Retried"]
    assert metric(registry, "clusternet_events_written_total", action="create") == 1

    api.failures = [ClusterUnreachable("refused")] * 3
    recorder.event(DEPLOYMENT, "Normal", "Dropped", "every attempt failed")
    await flush_stepping_time(recorder, clock)
    assert api.calls == ["create"] * 6
    assert [e["reason"] for e in api.events.values()] == ["Retried"]
    assert metric(registry, "clusternet_events_dropped_total", reason="write_failed") == 1


async def test_a_rejected_event_is_dropped_without_retries(
    api: FakeEvents, recorder: EventRecorder, registry: CollectorRegistry
) -> None:
    api.failures = [Forbidden(403, {"reason": "Forbidden"})]
    recorder.event(DEPLOYMENT, "Normal", "Denied", "no RBAC for events")
    await recorder.flush()
    assert api.calls == ["create"]
    assert metric(registry, "clusternet_events_dropped_total", reason="write_failed") == 1
