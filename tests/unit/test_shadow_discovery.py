"""Aggregated APIs that come and go after the hub started reach the shadow resource table."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from clusternet.hub.shadow_discovery import (
    BuiltinRefresher,
    agreeing_with_apiservices,
    changes_discovery,
)
from clusternet.hub.shadow_resources import ResourceTable, builtin_resources
from clusternet.kube import APIResource

VERBS = frozenset({"get", "list", "create"})


def res(group: str, kind: str, plural: str) -> APIResource:
    return APIResource(group, "v1", kind, plural, True, VERBS)


def apiservice(available: str, service: str | None = "metrics", **extra: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "v1.x.io", "resourceVersion": extra.pop("rv", "1")},
        "spec": {
            "group": "x.io",
            "version": "v1",
            "service": {"name": service} if service else None,
        },
        "status": {"conditions": [{"type": "Available", "status": available}]},
    }


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (None, apiservice("True"), True),
        (apiservice("True"), None, True),
        (apiservice("False"), apiservice("True"), True),
        (apiservice("True"), apiservice("True", service="other"), True),
        (apiservice("True"), apiservice("True", rv="2"), False),  # a heartbeat
        (None, apiservice("True", service=None), False),  # a CRD's or a built-in group
        (apiservice("True", service=None), None, False),
    ],
)
def test_changes_discovery(
    old: dict[str, Any] | None, new: dict[str, Any] | None, expected: bool
) -> None:
    assert changes_discovery(old, new) is expected


class FakeMapper:
    def __init__(self, resources: list[APIResource]) -> None:
        self.resources = resources
        self.walks = 0

    async def refresh(self) -> None:
        self.walks += 1


class FakeParent:
    def __init__(self, resources: list[APIResource]) -> None:
        self.mapper = FakeMapper(resources)


async def test_a_new_aggregated_api_is_mirrored_and_invalidates_openapi() -> None:
    parent = FakeParent([res("apps", "Deployment", "deployments")])
    table = ResourceTable(builtin_resources(parent.mapper.resources, ()), list)
    changed: list[bool] = []
    refresher = BuiltinRefresher(
        parent,  # type: ignore[arg-type]
        table,
        lambda: (),
        lambda: changed.append(True),
    )
    assert await refresher.refresh() is False  # nothing new
    parent.mapper.resources.append(res("x.io", "Gizmo", "gizmos"))
    assert await refresher.refresh() is True
    assert table.get("gizmos") is not None
    assert changed == [True]


async def test_events_coalesce_into_one_walk() -> None:
    parent = FakeParent([res("apps", "Deployment", "deployments")])
    table = ResourceTable({}, list)
    changed = asyncio.Event()
    refresher = BuiltinRefresher(parent, table, lambda: (), changed.set)  # type: ignore[arg-type]
    for _ in range(5):
        refresher.on_add(apiservice("True"))
    refresher.on_update(apiservice("True"), apiservice("True", rv="2"))  # ignored
    refresher.start()
    try:
        async with asyncio.timeout(5):
            await changed.wait()
    finally:
        await refresher.stop()
    assert parent.mapper.walks == 1
    assert table.get("deployments") is not None


def local_apiservice(group: str, version: str = "v1") -> dict[str, Any]:
    return {
        "metadata": {"name": f"{version}.{group}"},
        "spec": {"group": group, "version": version, "service": None},
        "status": {"conditions": [{"type": "Available", "status": "True"}]},
    }


def test_a_removed_aggregated_api_that_discovery_still_lists_is_dropped() -> None:
    # discovery lags the APIService delete; the store already lost it
    discovered = [res("apps", "Deployment", "deployments"), res("x.io", "Gizmo", "gizmos")]
    kept, missing = agreeing_with_apiservices(discovered, [local_apiservice("apps")])
    assert [r.plural for r in kept] == ["deployments"]
    assert missing == set()


def test_an_unavailable_aggregated_api_is_dropped() -> None:
    discovered = [res("apps", "Deployment", "deployments"), res("x.io", "Gizmo", "gizmos")]
    store = [local_apiservice("apps"), apiservice("False")]
    kept, _ = agreeing_with_apiservices(discovered, store)
    assert [r.plural for r in kept] == ["deployments"]


def test_an_available_aggregated_api_not_yet_discovered_is_missing() -> None:
    discovered = [res("apps", "Deployment", "deployments")]
    kept, missing = agreeing_with_apiservices(
        discovered, [local_apiservice("apps"), apiservice("True")]
    )
    assert [r.plural for r in kept] == ["deployments"]
    assert missing == {("x.io", "v1")}


def test_an_unlisted_store_vouches_for_everything() -> None:
    discovered = [res("x.io", "Gizmo", "gizmos")]
    assert agreeing_with_apiservices(discovered, []) == (discovered, set())


class LaggingMapper(FakeMapper):
    """Discovery that lists ``late`` only from its second walk on."""

    def __init__(self, resources: list[APIResource], late: APIResource) -> None:
        super().__init__(resources)
        self.late = late

    async def refresh(self) -> None:
        await super().refresh()
        if self.walks == 2:
            self.resources.append(self.late)


async def test_the_walk_repeats_until_discovery_catches_up() -> None:
    parent = FakeParent([])
    parent.mapper = LaggingMapper(
        [res("apps", "Deployment", "deployments")], res("x.io", "Gizmo", "gizmos")
    )
    table = ResourceTable({}, list)
    store = [local_apiservice("apps"), apiservice("True")]
    changed = asyncio.Event()
    refresher = BuiltinRefresher(
        parent,  # type: ignore[arg-type]
        table,
        lambda: (),
        changed.set,
        apiservices=lambda: store,
    )
    refresher.on_add(apiservice("True"))
    refresher.start()
    try:
        async with asyncio.timeout(5):
            while table.get("gizmos") is None:
                await changed.wait()
                changed.clear()
    finally:
        await refresher.stop()
    assert parent.mapper.walks == 2  # one missed x.io, the next one (no event) found it
    assert refresher.missing == set()
