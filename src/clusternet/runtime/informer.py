"""Informers: a watch-driven local cache of one kind of object in one cluster, with handlers.

The reflector follows client-go's ``ListAndWatch``:

* list in pages of 500 (a consistent read), then watch from the list's resourceVersion with
  bookmarks, so that a quiet watch still moves its resourceVersion forward;
* a watch that ends (server timeout, a dropped connection, an unreachable cluster) is resumed
  from the last resourceVersion seen: nothing is listed again;
* 410 Gone, as the HTTP answer or as a watch ERROR event, means that resourceVersion has been
  compacted away: list again and diff the result against the cache (client-go's
  ``Replace``), delivering a delete, wrapped in :class:`DeletedFinalStateUnknown`, for every
  object that vanished meanwhile and an add or update for the others;
* every other failure is retried with exponential backoff and jitter, never in a hot loop.

Handlers are called synchronously, in the order of the events, after the store has been
updated, so that what a handler reads from the store is at least as new as its event.  They
must not block: the usual handler enqueues a key into a :class:`WorkQueue`.  Objects are shared
between the store and all handlers; never mutate one, copy it first.

Everything runs on one event loop, and no store operation awaits, so each is atomic with
respect to other tasks: that is all the "thread safety" asyncio code needs.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import random
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

import structlog
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge

from clusternet.kube import (
    ApiError,
    Gone,
    KubeClient,
    TooManyRequests,
    UnknownKind,
    WatchEvent,
)
from clusternet.runtime._backoff import Backoff
from clusternet.runtime.metrics import PerRegistry

log = structlog.get_logger(__name__)

Object = dict[str, Any]
IndexFunc = Callable[[Object], Iterable[str]]

NAMESPACE_INDEX = "namespace"


@dataclass(frozen=True, slots=True)
class DeletedFinalStateUnknown:
    """A delete that the watch did not show: the object vanished while the watch was down.

    ``object`` is the last state the cache had, which may be stale.
    """

    key: str
    object: Object


def last_state(obj: Object | DeletedFinalStateUnknown) -> Object:
    """The object a delete handler got: itself, or the last state the cache had of it."""
    return obj.object if isinstance(obj, DeletedFinalStateUnknown) else obj


def object_key(obj: Object | DeletedFinalStateUnknown) -> str:
    """``namespace/name``, or ``name`` for cluster-scoped objects (client-go's key format)."""
    if isinstance(obj, DeletedFinalStateUnknown):
        return obj.key
    metadata = obj["metadata"]
    namespace = metadata.get("namespace")
    return f"{namespace}/{metadata['name']}" if namespace else str(metadata["name"])


def namespace_index(obj: Object) -> list[str]:
    namespace = obj["metadata"].get("namespace")
    return [namespace] if namespace else []


def _resource_version(obj: Object) -> str:
    return str(obj["metadata"].get("resourceVersion", ""))


# -- the store -------------------------------------------------------------------------------


class ReplaceResult(NamedTuple):
    """What :meth:`Store.replace` changed; unchanged objects appear in none of the lists."""

    deleted: list[DeletedFinalStateUnknown]
    added: list[Object]
    updated: list[tuple[Object, Object]]  # (old, new)


class Store:
    """Objects by key, with indexes: ``by_index(name, value)`` -> objects.

    An index function maps an object to the values it is found under (none, one or many).
    ``namespace`` is built in.  The informer writes; controllers only read.
    """

    def __init__(self, indexers: Mapping[str, IndexFunc] | None = None) -> None:
        self._items: dict[str, Object] = {}
        self._indexers: dict[str, IndexFunc] = {}
        self._indices: dict[str, dict[str, set[str]]] = {}
        self.add_indexer(NAMESPACE_INDEX, namespace_index)
        for name, index in (indexers or {}).items():
            self.add_indexer(name, index)

    def add_indexer(self, name: str, index: IndexFunc) -> None:
        """Add an index, built over the objects already stored.

        Adding the same function under the same name again is a no-op, so every controller
        that shares an informer can ask for the index it needs.
        """
        existing = self._indexers.get(name)
        if existing is index:
            return
        if existing is not None:
            raise ValueError(f"another index named {name!r} exists already")
        self._indexers[name] = index
        self._indices[name] = {}
        for key, obj in self._items.items():
            self._index_one(name, key, obj)

    def get(self, key: str) -> Object | None:
        return self._items.get(key)

    def list(self) -> builtins.list[Object]:
        return builtins.list(self._items.values())

    def keys(self) -> builtins.list[str]:
        return builtins.list(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def __iter__(self) -> Iterator[Object]:
        return iter(self.list())

    def by_index(self, name: str, value: str) -> builtins.list[Object]:
        return [self._items[key] for key in self.index_keys(name, value)]

    def index_keys(self, name: str, value: str) -> builtins.list[str]:
        try:
            index = self._indices[name]
        except KeyError:
            raise KeyError(f"no index named {name!r}") from None
        return builtins.list(index.get(value, ()))

    def upsert(self, obj: Object) -> Object | None:
        """Store ``obj``; returns the object it replaced."""
        key = object_key(obj)
        old = self._items.get(key)
        if old is not None:
            self._unindex(key, old)
        self._items[key] = obj
        for name in self._indexers:
            self._index_one(name, key, obj)
        return old

    def delete(self, key: str) -> Object | None:
        """Remove the object under ``key``; returns it (None if there was none)."""
        old = self._items.pop(key, None)
        if old is not None:
            self._unindex(key, old)
        return old

    def replace(self, objects: Iterable[Object]) -> ReplaceResult:
        """Make the store hold exactly ``objects`` (a fresh list) and say what changed.

        An object whose resourceVersion is unchanged keeps its cached dict and counts as no
        change; a key whose UID changed was deleted and created again while nobody watched,
        so it is a delete of the old object and an add of the new one.
        """
        fresh = {object_key(obj): obj for obj in objects}
        result = ReplaceResult([], [], [])
        for key in [key for key in self._items if key not in fresh]:
            result.deleted.append(DeletedFinalStateUnknown(key, self._items[key]))
            self.delete(key)
        for key, obj in fresh.items():
            old = self._items.get(key)
            if old is not None and _uid(old) != _uid(obj):
                result.deleted.append(DeletedFinalStateUnknown(key, old))
                self.delete(key)
                old = None
            if old is None:
                self.upsert(obj)
                result.added.append(obj)
            elif _resource_version(old) != _resource_version(obj):
                self.upsert(obj)
                result.updated.append((old, obj))
        return result

    def _index_one(self, name: str, key: str, obj: Object) -> None:
        index = self._indices[name]
        for value in self._indexers[name](obj):
            index.setdefault(value, set()).add(key)

    def _unindex(self, key: str, obj: Object) -> None:
        for name, index_func in self._indexers.items():
            index = self._indices[name]
            for value in index_func(obj):
                keys = index.get(value)
                if keys is not None:
                    keys.discard(key)
                    if not keys:
                        del index[value]


def _uid(obj: Object) -> str:
    return str(obj["metadata"].get("uid", ""))


# -- metrics ---------------------------------------------------------------------------------

_EVENT_TYPES = ("ADDED", "MODIFIED", "DELETED", "BOOKMARK")
_RESTART_REASONS = ("closed", "error", "expired")


class _InformerFamilies:
    def __init__(self, registry: CollectorRegistry) -> None:
        labels = ["cluster", "informer"]
        self.events = Counter(
            "clusternet_informer_events",
            "Watch events received, by type.",
            [*labels, "type"],
            registry=registry,
        )
        self.relists = Counter(
            "clusternet_informer_relists",
            "Lists after the first one: the watch's resourceVersion had expired (410 Gone).",
            labels,
            registry=registry,
        )
        self.watch_restarts = Counter(
            "clusternet_informer_watch_restarts",
            "List-watch cycles started again, by why the previous one ended: closed by the "
            "server, error (incl. unreachable cluster) or expired (410, relisted).",
            [*labels, "reason"],
            registry=registry,
        )
        self.last_sync_resource_version = Gauge(
            "clusternet_informer_last_sync_resource_version",
            "The resourceVersion the cache is synced to (etcd revisions are numbers).",
            labels,
            registry=registry,
        )


_informer_families = PerRegistry(_InformerFamilies)


class _InformerMetrics:
    def __init__(self, families: _InformerFamilies, cluster: str, informer: str) -> None:
        self._families = families
        self._labels = (cluster, informer)
        self.events = {t: families.events.labels(*self._labels, t) for t in _EVENT_TYPES}
        self.relists = families.relists.labels(*self._labels)
        self.watch_restarts = {
            r: families.watch_restarts.labels(*self._labels, r) for r in _RESTART_REASONS
        }
        self.last_sync_resource_version = families.last_sync_resource_version.labels(*self._labels)

    def remove(self) -> None:
        """Drop this informer's series, e.g. when its cluster is removed."""
        with contextlib.suppress(KeyError):
            for event_type in _EVENT_TYPES:
                self._families.events.remove(*self._labels, event_type)
            for reason in _RESTART_REASONS:
                self._families.watch_restarts.remove(*self._labels, reason)
            self._families.relists.remove(*self._labels)
            self._families.last_sync_resource_version.remove(*self._labels)


# -- the informer ----------------------------------------------------------------------------

OnAdd = Callable[[Object], None]
OnUpdate = Callable[[Object, Object], None]
OnDelete = Callable[[Object | DeletedFinalStateUnknown], None]


@dataclass(eq=False)
class EventHandler:
    """Callbacks of one consumer; ``on_update`` gets ``(old, new)``, ``on_delete`` the final
    state or a :class:`DeletedFinalStateUnknown`."""

    on_add: OnAdd | None = None
    on_update: OnUpdate | None = None
    on_delete: OnDelete | None = None


class InformerKey(NamedTuple):
    """What an informer watches; one informer per key and cluster is shared."""

    api_version: str
    kind: str
    namespace: str | None = None
    label_selector: str | None = None
    field_selector: str | None = None

    def __str__(self) -> str:
        """E.g. ``v1/ConfigMap namespace=shop labelSelector=app=web``: logs, metric labels."""
        parts = [f"{self.api_version}/{self.kind}"]
        for name, value in (
            ("namespace", self.namespace),
            ("labelSelector", self.label_selector),
            ("fieldSelector", self.field_selector),
        ):
            if value:
                parts.append(f"{name}={value}")
        return " ".join(parts)


class _ShortWatch(Exception):
    """The server ended a watch at once, with no event: back off rather than spin."""


class Informer:
    """List-watch one kind in one cluster into a :class:`Store` and call handlers.

    ``await run()`` until cancelled (or :meth:`start` / :meth:`stop`).  Running it again after
    a cancellation resumes the watch from the last resourceVersion, with the cache intact.
    ``resync_period`` (seconds, off by default) re-delivers every cached object as an update
    ``(obj, obj)``, for controllers that must periodically re-check the world.
    """

    def __init__(
        self,
        client: KubeClient,
        key: InformerKey,
        *,
        resync_period: float | None = None,
        page_size: int = 500,
        indexers: Mapping[str, IndexFunc] | None = None,
        backoff: Callable[[], Backoff] = Backoff,
        watch_timeout: tuple[int, int] = (300, 600),
        registry: CollectorRegistry | None = REGISTRY,
    ) -> None:
        self.client = client
        self.key = key
        self.store = Store(indexers)
        self.resync_period = resync_period
        self._page_size = page_size
        self._new_backoff = backoff
        # A random timeout per watch, as client-go, so that the watches of many informers do
        # not all end (and hit the API server) together.
        self._watch_timeout = watch_timeout
        self._handlers: list[EventHandler] = []
        self._last_resource_version = ""
        self._listed = False
        self._synced = asyncio.Event()
        self._stopped = asyncio.Event()
        self._running = False
        self._task: asyncio.Task[None] | None = None
        self._log = log.bind(cluster=client.cluster, informer=str(key))
        self._metrics = None
        if registry is not None:
            families = _informer_families(registry)
            self._metrics = _InformerMetrics(families, client.cluster, str(key))

    # -- consumers -----------------------------------------------------------------------

    @property
    def has_synced(self) -> bool:
        """True once the first list has been stored and delivered to the handlers."""
        return self._synced.is_set()

    @property
    def last_sync_resource_version(self) -> str:
        return self._last_resource_version

    @property
    def running(self) -> bool:
        return self._running

    async def wait_for_sync(self) -> bool:
        """Wait until :attr:`has_synced`; False if the informer stopped before that."""
        if self._synced.is_set():
            return True
        synced = asyncio.ensure_future(self._synced.wait())
        stopped = asyncio.ensure_future(self._stopped.wait())
        try:
            await asyncio.wait({synced, stopped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            synced.cancel()
            stopped.cancel()
        return self._synced.is_set()

    def add_event_handler(
        self,
        on_add: OnAdd | None = None,
        on_update: OnUpdate | None = None,
        on_delete: OnDelete | None = None,
    ) -> EventHandler:
        """Register callbacks; objects already cached are delivered to ``on_add`` at once, so a
        late consumer sees every object exactly as an early one does."""
        handler = EventHandler(on_add, on_update, on_delete)
        self._handlers.append(handler)
        if on_add is not None:
            for obj in self.store.list():
                self._call(on_add, obj)
        return handler

    def remove_event_handler(self, handler: EventHandler) -> None:
        with contextlib.suppress(ValueError):
            self._handlers.remove(handler)

    def add_indexer(self, name: str, index: IndexFunc) -> None:
        self.store.add_indexer(name, index)

    def by_index(self, name: str, value: str) -> list[Object]:
        return self.store.by_index(name, value)

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        """Run in a task of its own (a no-op if running)."""
        if self._task is None or self._task.done():
            self._stopped.clear()  # so that wait_for_sync() waits for this run
            self._task = asyncio.create_task(self.run(), name=f"informer {self.key}")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            self._stopped.set()  # also when cancelled before it ever ran

    def close(self) -> None:
        """Forget this informer's metric series (call once it is stopped for good)."""
        if self._metrics is not None:
            self._metrics.remove()

    async def run(self) -> None:
        if self._running:
            raise RuntimeError(f"informer {self.key} is running already")
        self._running = True
        self._stopped.clear()
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self._reflect())
                if self.resync_period:
                    group.create_task(self._resync_every(self.resync_period))
        finally:
            self._running = False
            self._stopped.set()

    # -- the reflector -------------------------------------------------------------------

    async def _reflect(self) -> None:
        backoff = self._new_backoff()
        needs_list = not self._listed
        while True:
            try:
                if needs_list:
                    await self._list_and_replace()
                    needs_list = False
                await self._watch(backoff)
                reason = "closed"
            except Exception as err:
                delay = backoff.next_delay()
                if isinstance(err, Gone) or (isinstance(err, ApiError) and err.code == 410):
                    needs_list, reason = True, "expired"
                    self._log.info("resourceVersion expired, relisting", rv=self._rv_or_none())
                    if backoff.failures == 1:
                        delay = 0.0  # relist at once; back off only if expiry repeats at once
                else:
                    reason = "error"
                    if isinstance(err, TooManyRequests) and err.retry_after:
                        delay = max(delay, err.retry_after)
                    # Programming errors get a stack trace; API and network errors do not.
                    expected = isinstance(
                        err, ApiError | ConnectionError | UnknownKind | _ShortWatch
                    )
                    self._log.warning(
                        "list/watch failed, retrying",
                        error=str(err) or type(err).__name__,
                        retry_in=round(delay, 2),
                        exc_info=not expected,
                    )
                await asyncio.sleep(delay)
            if self._metrics:
                self._metrics.watch_restarts[reason].inc()

    async def _list(self) -> tuple[list[Object], str]:
        """Every object and the resourceVersion of that snapshot, listed in pages."""
        key = self.key
        items: list[Object] = []
        token: str | None = None
        while True:
            try:
                page = await self.client.list(
                    key.api_version,
                    key.kind,
                    namespace=key.namespace,
                    label_selector=key.label_selector,
                    field_selector=key.field_selector,
                    limit=self._page_size,
                    continue_=token,
                )
            except Gone:
                if token is None:
                    raise
                # The continue token was compacted away mid-list: like client-go's pager,
                # fall back to a single unpaginated list.
                page = await self.client.list(
                    key.api_version,
                    key.kind,
                    namespace=key.namespace,
                    label_selector=key.label_selector,
                    field_selector=key.field_selector,
                )
                items = []
            items.extend(page.get("items") or ())
            token = page["metadata"].get("continue")
            if not token:
                return items, str(page["metadata"]["resourceVersion"])

    async def _list_and_replace(self) -> None:
        items, resource_version = await self._list()
        result = self.store.replace(items)
        for tombstone in result.deleted:
            self._dispatch_delete(tombstone)
        for obj in result.added:
            self._dispatch_add(obj)
        for old, new in result.updated:
            self._dispatch_update(old, new)
        self._set_resource_version(resource_version)
        if self._listed and self._metrics:
            self._metrics.relists.inc()
        self._listed = True
        if not self._synced.is_set():
            self._synced.set()
            self._log.info("synced", objects=len(items), rv=resource_version)
        elif result.deleted or result.added or result.updated:
            self._log.info(
                "relisted",
                deleted=len(result.deleted),
                added=len(result.added),
                updated=len(result.updated),
            )

    async def _watch(self, backoff: Backoff) -> None:
        started, received = time.monotonic(), 0
        key = self.key
        async with self.client.watch(
            key.api_version,
            key.kind,
            namespace=key.namespace,
            label_selector=key.label_selector,
            field_selector=key.field_selector,
            resource_version=self._last_resource_version,
            allow_bookmarks=True,
            timeout_seconds=random.randint(*self._watch_timeout),
        ) as events:
            async for event in events:
                if not received:
                    backoff.reset()
                received += 1
                self._handle(event)
        if not received and time.monotonic() - started < 1.0:
            raise _ShortWatch("watch closed by the server at once")
        backoff.reset()

    def _handle(self, event: WatchEvent) -> None:
        if self._metrics and event.type in self._metrics.events:
            self._metrics.events[event.type].inc()
        obj = event.object
        if event.type in ("ADDED", "MODIFIED"):
            # Decided by the cache, not the event type: the two can disagree after a resume.
            old = self.store.upsert(obj)
            if old is None:
                self._dispatch_add(obj)
            else:
                self._dispatch_update(old, obj)
        elif event.type == "DELETED":
            self.store.delete(object_key(obj))
            self._dispatch_delete(obj)
        elif event.type != "BOOKMARK":
            raise ValueError(f"unexpected watch event type {event.type!r}")
        self._set_resource_version(event.resource_version)

    def _set_resource_version(self, resource_version: str) -> None:
        if not resource_version:
            return
        self._last_resource_version = resource_version
        if self._metrics and resource_version.isdigit():
            self._metrics.last_sync_resource_version.set(int(resource_version))

    def _rv_or_none(self) -> str | None:
        return self._last_resource_version or None

    async def _resync_every(self, period: float) -> None:
        while True:
            await asyncio.sleep(period)
            if self.has_synced:
                for obj in self.store.list():
                    self._dispatch_update(obj, obj)

    # -- delivery ------------------------------------------------------------------------

    def _dispatch_add(self, obj: Object) -> None:
        for handler in tuple(self._handlers):
            if handler.on_add is not None:
                self._call(handler.on_add, obj)

    def _dispatch_update(self, old: Object, new: Object) -> None:
        for handler in tuple(self._handlers):
            if handler.on_update is not None:
                self._call(handler.on_update, old, new)

    def _dispatch_delete(self, obj: Object | DeletedFinalStateUnknown) -> None:
        for handler in tuple(self._handlers):
            if handler.on_delete is not None:
                self._call(handler.on_delete, obj)

    def _call(self, callback: Callable[..., None], *args: Any) -> None:
        try:
            callback(*args)
        except Exception:
            # One consumer's bug must not stop the cache or the other consumers.
            self._log.exception("event handler failed", handler=getattr(callback, "__name__", ""))


# -- sharing ---------------------------------------------------------------------------------


class SharedInformerFactory:
    """The informers of one cluster: one per :class:`InformerKey`, shared by every controller.

    Informers asked for after :meth:`start` start at once.  :meth:`stop` is for good (the
    informers' metric series are removed).  The client belongs to the caller.
    """

    def __init__(
        self,
        client: KubeClient,
        *,
        resync_period: float | None = None,
        registry: CollectorRegistry | None = REGISTRY,
        **informer_options: Any,
    ) -> None:
        self.client = client
        self._resync_period = resync_period
        self._registry = registry
        self._informer_options = informer_options
        self._informers: dict[InformerKey, Informer] = {}
        self._started = False

    @property
    def cluster(self) -> str:
        return self.client.cluster

    @property
    def informers(self) -> dict[InformerKey, Informer]:
        return dict(self._informers)

    def informer(
        self,
        api_version: str,
        kind: str,
        *,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> Informer:
        key = InformerKey(api_version, kind, namespace, label_selector, field_selector)
        informer = self._informers.get(key)
        if informer is None:
            informer = self._informers[key] = Informer(
                self.client,
                key,
                resync_period=self._resync_period,
                registry=self._registry,
                **self._informer_options,
            )
            if self._started:
                informer.start()
        return informer

    def start(self) -> None:
        self._started = True
        for informer in self._informers.values():
            informer.start()

    async def wait_for_sync(self) -> bool:
        """Wait until every informer asked for so far has synced; False if one stopped."""
        results = await asyncio.gather(*(i.wait_for_sync() for i in self._informers.values()))
        return all(results)

    async def stop(self) -> None:
        self._started = False
        await asyncio.gather(*(informer.stop() for informer in self._informers.values()))
        for informer in self._informers.values():
            informer.close()


ClusterSetup = Callable[[str, SharedInformerFactory], None]


class MultiClusterInformers:
    """A :class:`SharedInformerFactory` per cluster, started and stopped with the cluster.

    Controllers register a setup with :meth:`for_each_cluster`: it is called for every
    cluster present and every cluster added later, to ask for informers and add handlers.
    """

    def __init__(
        self, *, resync_period: float | None = None, registry: CollectorRegistry | None = REGISTRY
    ) -> None:
        self._resync_period = resync_period
        self._registry = registry
        self._factories: dict[str, SharedInformerFactory] = {}
        self._setups: list[ClusterSetup] = []

    @property
    def clusters(self) -> list[str]:
        return list(self._factories)

    def __contains__(self, cluster: object) -> bool:
        return cluster in self._factories

    def __getitem__(self, cluster: str) -> SharedInformerFactory:
        return self._factories[cluster]

    def for_each_cluster(self, setup: ClusterSetup) -> None:
        self._setups.append(setup)
        for cluster, factory in list(self._factories.items()):
            setup(cluster, factory)

    def add_cluster(self, cluster: str, client: KubeClient) -> SharedInformerFactory:
        if cluster in self._factories:
            raise ValueError(f"cluster {cluster!r} has informers already")
        factory = SharedInformerFactory(
            client, resync_period=self._resync_period, registry=self._registry
        )
        self._factories[cluster] = factory
        for setup in list(self._setups):
            setup(cluster, factory)
        factory.start()
        return factory

    async def remove_cluster(self, cluster: str) -> None:
        """Stop the cluster's informers; their handlers get no further events."""
        factory = self._factories.pop(cluster, None)
        if factory is not None:
            await factory.stop()

    async def stop(self) -> None:
        await asyncio.gather(*(self.remove_cluster(c) for c in list(self._factories)))
