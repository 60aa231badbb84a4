"""An event recorder: core/v1 Events about objects, aggregated and written in the background.

``recorder.event(obj, "Warning", "FailedSync", "...")`` never blocks and never fails: it queues
the event, and one writer task sends it.  When the queue is full (the API server is down or
slow) the event is dropped and counted, as losing an event beats stalling a reconcile.

Aggregation is client-go's event logger: an occurrence with the same involved object, type,
reason, message and source as one seen within ``aggregation_window`` seconds patches the
existing Event (``count`` + 1, new ``lastTimestamp``) instead of creating another.  Events
are created in the namespace of the involved object, ``default`` for cluster-scoped ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal, NamedTuple, Protocol

import structlog
from prometheus_client import REGISTRY, CollectorRegistry, Counter

from clusternet.kube import NotFound, Object, ServerTimeout, ServiceUnavailable, TooManyRequests
from clusternet.runtime._backoff import Backoff
from clusternet.runtime._clockwait import sleep
from clusternet.runtime.clock import Clock, MonotonicClock
from clusternet.runtime.metrics import PerRegistry

log = structlog.get_logger(__name__)

EventType = Literal["Normal", "Warning"]
MAX_MESSAGE_LENGTH = 1024
_MAX_NAME_LENGTH = 253
# Worth another try; anything else (Invalid, Forbidden, ...) fails the same way again.
_RETRYABLE = (ConnectionError, ServerTimeout, ServiceUnavailable, TooManyRequests)


class EventClient(Protocol):
    """The part of :class:`~clusternet.kube.KubeClient` the recorder uses (merge patch)."""

    async def create(self, obj: Object) -> Object: ...

    async def patch(
        self, api_version: str, kind: str, name: str, patch: Object, *, namespace: str | None = None
    ) -> Object: ...


def object_reference(obj: Object) -> Object:
    """The ``involvedObject`` for ``obj``: apiVersion, kind, namespace, name, uid, RV."""
    metadata = obj.get("metadata") or {}
    reference = {
        "apiVersion": obj.get("apiVersion"),
        "kind": obj.get("kind"),
        "namespace": metadata.get("namespace"),
        "name": metadata.get("name"),
        "uid": metadata.get("uid"),
        "resourceVersion": metadata.get("resourceVersion"),
    }
    if not reference["kind"] or not reference["name"]:
        raise ValueError("an event needs an involved object with kind and metadata.name")
    return {key: value for key, value in reference.items() if value}


def truncate_message(message: str) -> str:
    if len(message) <= MAX_MESSAGE_LENGTH:
        return message
    return message[: MAX_MESSAGE_LENGTH - 3] + "..."


class AggregationKey(NamedTuple):
    """What makes two occurrences the same event (client-go's ``getEventKey``)."""

    component: str
    host: str
    api_version: str
    kind: str
    namespace: str
    name: str
    uid: str
    type: str
    reason: str
    message: str


@dataclass(slots=True)
class _Occurrence:
    key: AggregationKey
    reference: Object
    timestamp: str  # when it happened, not when it is written


@dataclass(slots=True)
class _Aggregate:
    event_name: str
    namespace: str
    count: int
    first_timestamp: str
    last_seen: float  # clock time of the latest occurrence


class _EventFamilies:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.written = Counter(
            "clusternet_events_written",
            "Events written to the API server: create (new Event) or patch (count + 1).",
            ["component", "action"],
            registry=registry,
        )
        self.dropped = Counter(
            "clusternet_events_dropped",
            "Events not written: queue_full (the writer is behind, e.g. the API is down), "
            "write_failed (retries exhausted or rejected) or shutdown.",
            ["component", "reason"],
            registry=registry,
        )


_event_families = PerRegistry(_EventFamilies)


class EventRecorder:
    """Records Events as ``component`` on ``host``; ``start()`` (or ``async with``) first.

    ``reportingComponent`` and ``reportingInstance`` are the component and the host, as
    client-go's recorder sets them.
    """

    def __init__(
        self,
        client: EventClient,
        *,
        component: str,
        host: str | None = None,
        aggregation_window: float = 600.0,
        queue_size: int = 1000,
        cache_size: int = 4096,
        write_attempts: int = 3,
        clock: Clock | None = None,
        registry: CollectorRegistry | None = REGISTRY,
    ) -> None:
        if not component:
            raise ValueError("an event recorder needs a component name")
        self.component = component
        self.host = host if host is not None else socket.gethostname()
        self.aggregation_window = aggregation_window
        self._client = client
        self._queue: asyncio.Queue[_Occurrence] = asyncio.Queue(queue_size)
        self._cache: OrderedDict[AggregationKey, _Aggregate] = OrderedDict()  # LRU
        self._cache_size = cache_size
        self._write_attempts = write_attempts
        self._clock: Clock = clock or MonotonicClock()
        self._writer: asyncio.Task[None] | None = None
        self._last_name_suffix = 0
        self._written = self._dropped = None
        if registry is not None:
            families = _event_families(registry)
            self._written = {a: families.written.labels(component, a) for a in ("create", "patch")}
            self._dropped = {
                r: families.dropped.labels(component, r)
                for r in ("queue_full", "write_failed", "shutdown")
            }

    # -- recording -------------------------------------------------------------------------

    def event(self, obj: Object, type: EventType, reason: str, message: str) -> None:
        """Record that ``reason`` (UpperCamelCase) happened to ``obj``; returns at once."""
        if type not in ("Normal", "Warning"):
            raise ValueError(f"event type must be Normal or Warning, got {type!r}")
        reference = object_reference(obj)
        message = truncate_message(message)
        key = AggregationKey(
            self.component,
            self.host,
            reference.get("apiVersion", ""),
            reference["kind"],
            reference.get("namespace", ""),
            reference["name"],
            reference.get("uid", ""),
            type,
            reason,
            message,
        )
        try:
            self._queue.put_nowait(_Occurrence(key, reference, _time()))
        except asyncio.QueueFull:
            self._drop("queue_full", key)

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_all(), name=f"events {self.component}")

    async def flush(self) -> None:
        """Wait until every event recorded so far has been written (or dropped)."""
        if self._writer is None or self._writer.done():
            raise RuntimeError("the event recorder is not started")
        await self._queue.join()

    async def stop(self, grace_period: float = 5.0) -> None:
        """Write what is queued, for at most ``grace_period`` seconds, then stop the writer."""
        if self._writer is None:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(grace_period):
                await self.flush()
        self._writer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._writer
        self._writer = None
        while not self._queue.empty():
            self._drop("shutdown", self._queue.get_nowait().key)
            self._queue.task_done()

    async def __aenter__(self) -> EventRecorder:
        self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    # -- writing ---------------------------------------------------------------------------

    async def _write_all(self) -> None:
        while True:
            occurrence = await self._queue.get()
            try:
                await self._write(occurrence)
            except Exception as err:
                self._drop("write_failed", occurrence.key, err)
            finally:
                self._queue.task_done()

    async def _write(self, occurrence: _Occurrence) -> None:
        now = self._clock.now()
        aggregate = self._cache.get(occurrence.key)
        if aggregate is not None and now - aggregate.last_seen > self.aggregation_window:
            aggregate = None  # too long ago: a new series of occurrences, a new Event
        if aggregate is not None:
            # Counted even if this patch is lost: count says how often it happened.
            aggregate.count += 1
            aggregate.last_seen = now
            self._cache.move_to_end(occurrence.key)
            patch = {"count": aggregate.count, "lastTimestamp": occurrence.timestamp}
            try:
                await self._retrying(
                    lambda: self._client.patch(
                        "v1", "Event", aggregate.event_name, patch, namespace=aggregate.namespace
                    )
                )
            except NotFound:
                pass  # the Event expired (the API server's --event-ttl): create it again
            else:
                if self._written:
                    self._written["patch"].inc()
                return
        body = self._new_event(occurrence, aggregate)
        await self._retrying(lambda: self._client.create(body))
        if self._written:
            self._written["create"].inc()
        metadata = body["metadata"]
        self._cache[occurrence.key] = _Aggregate(
            metadata["name"], metadata["namespace"], body["count"], body["firstTimestamp"], now
        )
        self._cache.move_to_end(occurrence.key)
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)

    def _new_event(self, occurrence: _Occurrence, aggregate: _Aggregate | None) -> Object:
        key, reference = occurrence.key, occurrence.reference
        return {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {
                "name": self._event_name(key.name),
                "namespace": key.namespace or "default",
            },
            "involvedObject": reference,
            "type": key.type,
            "reason": key.reason,
            "message": key.message,
            "source": {"component": self.component, "host": self.host},
            "reportingComponent": self.component,
            "reportingInstance": self.host,
            # Recreated after expiring: keep counting the same series of occurrences.
            "firstTimestamp": aggregate.first_timestamp if aggregate else occurrence.timestamp,
            "lastTimestamp": occurrence.timestamp,
            "count": aggregate.count if aggregate else 1,
        }

    def _event_name(self, object_name: str) -> str:
        # client-go: "<object>.<unix nanoseconds in hex>"; strictly increasing here, so two
        # events in one nanosecond do not collide.
        self._last_name_suffix = max(self._last_name_suffix + 1, time.time_ns())
        suffix = f".{self._last_name_suffix:x}"
        return object_name[: _MAX_NAME_LENGTH - len(suffix)] + suffix

    async def _retrying(self, write: Callable[[], Awaitable[Object]]) -> None:
        backoff = Backoff(initial=0.5, cap=5.0)
        for attempt in range(1, self._write_attempts + 1):
            try:
                await write()
                return
            except _RETRYABLE:
                if attempt == self._write_attempts:
                    raise
            await sleep(self._clock, backoff.next_delay())

    def _drop(self, reason: str, key: AggregationKey, error: Exception | None = None) -> None:
        if self._dropped:
            self._dropped[reason].inc()
        log.warning(
            "event dropped",
            drop_reason=reason,
            reason=key.reason,
            object=f"{key.kind} {key.namespace}/{key.name}".replace(" /", " "),
            error=str(error) if error else None,
        )


def _time() -> str:
    """Now as a ``metav1.Time`` (second precision, UTC)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
