"""The informer's store, indexes and replace-diff, and its reflector against a scripted API."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from clusternet.kube import ClusterUnreachable, Gone, WatchEvent
from clusternet.runtime import DeletedFinalStateUnknown, Informer, InformerKey, Store, object_key
from clusternet.runtime._backoff import Backoff

Object = dict[str, Any]


def cm(name: str, rv: int, namespace: str = "ns", uid: str = "", **labels: str) -> Object:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "resourceVersion": str(rv),
            "uid": uid or f"uid-{name}",
            "labels": labels,
        },
    }


def by_label(label: str) -> Any:
    return lambda obj: [v for k, v in obj["metadata"]["labels"].items() if k == label]


# -- store -----------------------------------------------------------------------------------


def test_keys_are_namespace_slash_name_or_name_for_cluster_scoped_objects() -> None:
    assert object_key(cm("a", 1)) == "ns/a"
    assert object_key({"metadata": {"name": "node-1"}}) == "node-1"
    assert object_key(DeletedFinalStateUnknown("ns/a", cm("a", 1))) == "ns/a"


def test_store_indexes_follow_updates_and_deletes() -> None:
    store = Store({"app": by_label("app")})
    store.upsert(cm("a", 1, app="web"))
    store.upsert(cm("b", 2, app="web"))
    store.upsert(cm("c", 3, namespace="other", app="db"))

    assert sorted(object_key(o) for o in store.by_index("app", "web")) == ["ns/a", "ns/b"]
    assert [object_key(o) for o in store.by_index("namespace", "other")] == ["other/c"]

    old = store.upsert(cm("a", 4, app="db"))  # moves from one index value to another
    assert old is not None
    assert old["metadata"]["resourceVersion"] == "1"
    assert [object_key(o) for o in store.by_index("app", "web")] == ["ns/b"]
    assert sorted(store.index_keys("app", "db")) == ["ns/a", "other/c"]

    assert store.delete("ns/b") is not None
    assert store.delete("ns/b") is None
    assert store.by_index("app", "web") == []
    assert sorted(store.keys()) == ["ns/a", "other/c"]
    assert len(store) == 2
    assert "ns/a" in store
    assert "ns/b" not in store


def test_index_added_later_covers_existing_objects_and_may_be_added_twice() -> None:
    store = Store()
    store.upsert(cm("a", 1, tier="front"))
    index = by_label("tier")
    store.add_indexer("tier", index)
    store.add_indexer("tier", index)  # a second controller asking for the same index
    assert [object_key(o) for o in store.by_index("tier", "front")] == ["ns/a"]
    with pytest.raises(ValueError, match="exists already"):
        store.add_indexer("tier", by_label("tier"))
    with pytest.raises(KeyError, match="no index named"):
        store.by_index("missing", "x")


def test_multi_valued_index() -> None:
    store = Store({"owners": lambda obj: obj["metadata"]["labels"].values()})
    store.upsert(cm("a", 1, first="x", second="y"))
    assert [object_key(o) for o in store.by_index("owners", "x")] == ["ns/a"]
    assert [object_key(o) for o in store.by_index("owners", "y")] == ["ns/a"]


def test_replace_reports_vanished_objects_as_tombstones_and_skips_unchanged_ones() -> None:
    store = Store()
    kept, changed, gone = cm("kept", 1), cm("changed", 2), cm("gone", 3)
    for obj in (kept, changed, gone):
        store.upsert(obj)

    result = store.replace([cm("kept", 1), cm("changed", 7), cm("new", 8)])

    assert result.deleted == [DeletedFinalStateUnknown("ns/gone", gone)]
    assert [object_key(o) for o in result.added] == ["ns/new"]
    assert [
        (old["metadata"]["resourceVersion"], new["metadata"]["resourceVersion"])
        for old, new in result.updated
    ] == [("2", "7")]
    assert store.get("ns/kept") is kept  # unchanged: the cached dict is kept, not reported
    assert sorted(store.keys()) == ["ns/changed", "ns/kept", "ns/new"]


def test_replace_treats_a_recreated_object_as_delete_then_add() -> None:
    store = Store()
    before = cm("a", 1, uid="first")
    store.upsert(before)
    result = store.replace([cm("a", 9, uid="second")])
    assert result.deleted == [DeletedFinalStateUnknown("ns/a", before)]
    assert [o["metadata"]["uid"] for o in result.added] == ["second"]
    assert result.updated == []


# -- reflector -------------------------------------------------------------------------------


class ScriptedApi:
    """Lists ``items``; each watch replays the next script the test queues: WatchEvents to
    yield and exceptions to raise, then the server "closes" the watch."""

    cluster = "fake"

    def __init__(self, items: list[Object], rv: int) -> None:
        self.items = items
        self.rv = rv
        self.list_calls: list[str | None] = []  # continue tokens
        self.expire_continue_tokens = False
        self.fail_lists: Exception | None = None
        self.watch_calls: asyncio.Queue[str] = asyncio.Queue()  # resourceVersions
        self.scripts: asyncio.Queue[list[WatchEvent | Exception]] = asyncio.Queue()

    async def list(
        self, *args: Any, limit: int | None = None, continue_: str | None = None, **kwargs: Any
    ) -> Object:
        self.list_calls.append(continue_)
        if self.fail_lists is not None:
            raise self.fail_lists
        if continue_ and self.expire_continue_tokens:
            raise Gone(410, {"reason": "Expired"})
        start = int(continue_ or 0)
        end = len(self.items) if limit is None else start + limit
        metadata: Object = {"resourceVersion": str(self.rv)}
        if end < len(self.items):
            metadata["continue"] = str(end)
        return {"metadata": metadata, "items": copy.deepcopy(self.items[start:end])}

    @asynccontextmanager
    async def watch(
        self, *args: Any, resource_version: str, **kwargs: Any
    ) -> AsyncIterator[AsyncIterator[WatchEvent]]:
        assert kwargs["allow_bookmarks"] is True
        self.watch_calls.put_nowait(resource_version)
        script = await self.scripts.get()

        async def events() -> AsyncIterator[WatchEvent]:
            for step in script:
                if isinstance(step, Exception):
                    raise step
                yield step

        yield events()


class Recorder:
    def __init__(self) -> None:
        self.seen: list[tuple[str, ...]] = []

    def on_add(self, obj: Object) -> None:
        self.seen.append(("add", object_key(obj), obj["metadata"]["resourceVersion"]))

    def on_update(self, old: Object, new: Object) -> None:
        self.seen.append(("update", object_key(new), new["metadata"]["resourceVersion"]))

    def on_delete(self, obj: Object | DeletedFinalStateUnknown) -> None:
        tombstone = isinstance(obj, DeletedFinalStateUnknown)
        self.seen.append(("tombstone" if tombstone else "delete", object_key(obj)))


def fast_backoff(delays: list[float] | None = None) -> Any:
    class Recorded(Backoff):
        def next_delay(self) -> float:
            delay = super().next_delay()
            if delays is not None:
                delays.append(delay)
            return 0.001

    return lambda: Recorded(initial=0.5, cap=8.0, jitter=0.0)


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


async def start(
    api: ScriptedApi, registry: CollectorRegistry, **options: Any
) -> tuple[Informer, Recorder]:
    informer = Informer(
        api,  # type: ignore[arg-type]
        InformerKey("v1", "ConfigMap", "ns"),
        page_size=2,
        registry=registry,
        backoff=options.pop("backoff", fast_backoff()),
        **options,
    )
    recorder = Recorder()
    informer.add_event_handler(recorder.on_add, recorder.on_update, recorder.on_delete)
    informer.start()
    return informer, recorder


async def next_watch(api: ScriptedApi) -> str:
    async with asyncio.timeout(5):
        return await api.watch_calls.get()


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    value = registry.get_sample_value(
        name, {"cluster": "fake", "informer": "v1/ConfigMap namespace=ns", **labels}
    )
    return value or 0.0


async def test_lists_in_pages_then_watches_from_the_list_version(
    registry: CollectorRegistry,
) -> None:
    api = ScriptedApi([cm("a", 1), cm("b", 2), cm("c", 3)], rv=10)
    informer, recorder = await start(api, registry)
    try:
        assert await next_watch(api) == "10"
        assert api.list_calls == [None, "2"]
        assert informer.has_synced
        assert await informer.wait_for_sync()
        assert recorder.seen == [("add", "ns/a", "1"), ("add", "ns/b", "2"), ("add", "ns/c", "3")]
    finally:
        await informer.stop()


async def test_a_closed_watch_resumes_from_the_last_version_seen_without_a_relist(
    registry: CollectorRegistry,
) -> None:
    api = ScriptedApi([cm("a", 1)], rv=10)
    informer, recorder = await start(api, registry)
    try:
        await next_watch(api)
        api.scripts.put_nowait(
            [
                WatchEvent("MODIFIED", cm("a", 11)),
                WatchEvent("ADDED", cm("b", 12)),
                WatchEvent("DELETED", cm("a", 13)),
                WatchEvent("BOOKMARK", {"metadata": {"resourceVersion": "20"}}),
            ]
        )
        assert await next_watch(api) == "20"
        assert api.list_calls == [None]
        assert recorder.seen[1:] == [
            ("update", "ns/a", "11"),
            ("add", "ns/b", "12"),
            ("delete", "ns/a"),
        ]
        assert informer.store.keys() == ["ns/b"]
        assert sample(registry, "clusternet_informer_events_total", type="BOOKMARK") == 1
        assert sample(registry, "clusternet_informer_watch_restarts_total", reason="closed") == 1
        assert sample(registry, "clusternet_informer_last_sync_resource_version") == 20
    finally:
        await informer.stop()


@pytest.mark.parametrize("at_start", [True, False], ids=["http-410", "error-event-410"])
async def test_gone_relists_and_delivers_what_changed_meanwhile(
    registry: CollectorRegistry, at_start: bool
) -> None:
    api = ScriptedApi([cm("a", 1), cm("b", 2), cm("c", 3)], rv=10)
    informer, recorder = await start(api, registry)
    try:
        await next_watch(api)
        # While the watch was away: a deleted, b changed, d created, c untouched.
        api.items, api.rv = [cm("b", 15), cm("c", 3), cm("d", 16)], 30
        expired = Gone(410, {"kind": "Status", "code": 410, "reason": "Expired"})
        script: list[WatchEvent | Exception] = [expired]
        if not at_start:  # the client raises the same Gone for an ERROR event mid-stream
            script.insert(0, WatchEvent("MODIFIED", cm("c", 3)))
        api.scripts.put_nowait(script)
        assert await next_watch(api) == "30"
        assert recorder.seen[3:] == [
            *([("update", "ns/c", "3")] if not at_start else []),
            ("tombstone", "ns/a"),
            ("add", "ns/d", "16"),
            ("update", "ns/b", "15"),
        ]
        assert sorted(informer.store.keys()) == ["ns/b", "ns/c", "ns/d"]
        assert sample(registry, "clusternet_informer_relists_total") == 1
        assert sample(registry, "clusternet_informer_watch_restarts_total", reason="expired") == 1
    finally:
        await informer.stop()


async def test_errors_back_off_exponentially_and_resume_the_watch(
    registry: CollectorRegistry,
) -> None:
    api = ScriptedApi([cm("a", 1)], rv=10)
    delays: list[float] = []
    informer, _recorder = await start(api, registry, backoff=fast_backoff(delays))
    try:
        await next_watch(api)
        for _ in range(3):
            api.scripts.put_nowait([ClusterUnreachable("connection refused")])
            assert await next_watch(api) == "10"
        assert delays == [0.5, 1.0, 2.0]
        api.scripts.put_nowait([WatchEvent("MODIFIED", cm("a", 11)), ClusterUnreachable("reset")])
        assert await next_watch(api) == "11"
        assert delays[-1] == 0.5  # an event arrived: the backoff started over
        assert api.list_calls == [None]
    finally:
        await informer.stop()


async def test_a_watch_closed_at_once_is_retried_with_backoff(registry: CollectorRegistry) -> None:
    api = ScriptedApi([], rv=10)
    delays: list[float] = []
    informer, _ = await start(api, registry, backoff=fast_backoff(delays))
    try:
        await next_watch(api)
        api.scripts.put_nowait([])
        await next_watch(api)
        api.scripts.put_nowait([])
        await next_watch(api)
        assert delays == [0.5, 1.0]
    finally:
        await informer.stop()


async def test_expired_continue_token_falls_back_to_one_full_list(
    registry: CollectorRegistry,
) -> None:
    api = ScriptedApi([cm("a", 1), cm("b", 2), cm("c", 3)], rv=10)
    api.expire_continue_tokens = True
    informer, recorder = await start(api, registry)
    try:
        await next_watch(api)
        assert api.list_calls == [None, "2", None]
        assert sorted(informer.store.keys()) == ["ns/a", "ns/b", "ns/c"]
        assert len(recorder.seen) == 3
    finally:
        await informer.stop()


async def test_late_handlers_get_the_cache_and_a_failing_handler_harms_no_other(
    registry: CollectorRegistry,
) -> None:
    api = ScriptedApi([cm("a", 1)], rv=10)
    informer, first = await start(api, registry)
    try:
        await next_watch(api)

        def broken(obj: Object) -> None:
            raise RuntimeError("bug in a consumer")

        informer.add_event_handler(on_add=broken)
        late = Recorder()
        handler = informer.add_event_handler(late.on_add, late.on_update, late.on_delete)
        assert late.seen == [("add", "ns/a", "1")]
        api.scripts.put_nowait([WatchEvent("ADDED", cm("b", 11))])
        await next_watch(api)
        assert first.seen[-1] == late.seen[-1] == ("add", "ns/b", "11")

        informer.remove_event_handler(handler)
        api.scripts.put_nowait([WatchEvent("ADDED", cm("c", 12))])
        await next_watch(api)
        assert first.seen[-1] == ("add", "ns/c", "12")
        assert late.seen[-1] == ("add", "ns/b", "11")
    finally:
        await informer.stop()


async def test_resync_redelivers_every_cached_object(registry: CollectorRegistry) -> None:
    api = ScriptedApi([cm("a", 1), cm("b", 2)], rv=10)
    resynced: set[str] = set()
    both = asyncio.Event()

    def on_update(old: Object, new: Object) -> None:
        assert old is new
        resynced.add(object_key(new))
        if len(resynced) == 2:
            both.set()

    informer, _ = await start(api, registry, resync_period=0.01)
    informer.add_event_handler(on_update=on_update)
    try:
        async with asyncio.timeout(5):
            await both.wait()
    finally:
        await informer.stop()


async def test_wait_for_sync_is_false_when_stopped_before_the_first_list(
    registry: CollectorRegistry,
) -> None:
    api = ScriptedApi([], rv=10)
    api.fail_lists = ClusterUnreachable("no route to host")
    informer, _ = await start(api, registry)
    waiting = asyncio.create_task(informer.wait_for_sync())
    await informer.stop()
    assert await waiting is False
    assert not informer.has_synced
    assert not informer.running
