"""clusternet.kube against real kube-apiservers: a parent and two children."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx2
import pytest

from clusternet.kube import (
    AlreadyExists,
    ApiError,
    Conflict,
    Forbidden,
    Gone,
    Impersonation,
    Invalid,
    KubeClient,
    NotFound,
    PatchType,
    Preconditions,
    UnknownKind,
    WatchEvent,
    load_kubeconfig,
)
from clusternet.local.testing import Clusters

Factory = Callable[..., KubeClient]


@pytest.fixture
async def connect(clusters: Clusters) -> AsyncIterator[Factory]:
    """Opens clients to contexts of the test environment; closes them after the test."""
    opened: list[KubeClient] = []

    def factory(context: str = "parent", **kwargs: Any) -> KubeClient:
        config = load_kubeconfig(clusters.kubeconfig, context)
        if "impersonate" in kwargs:
            config = dataclasses.replace(config, impersonate=kwargs.pop("impersonate"))
        client = KubeClient(config, cluster=context, **kwargs)
        opened.append(client)
        return client

    yield factory
    await asyncio.gather(*(client.aclose() for client in opened))


async def watch_until_closed(client: KubeClient, *args: Any, **kwargs: Any) -> list[WatchEvent]:
    async with client.watch(*args, **kwargs) as events:
        return [event async for event in events]


def configmap(name: str, namespace: str, data: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace, "labels": {"test": "kube"}},
        "data": data or {},
    }


async def test_configmap_crud(connect: Factory, namespace: str) -> None:
    client = connect()
    created = await client.create(configmap("one", namespace, {"a": "1"}))
    assert created["metadata"]["uid"]

    with pytest.raises(AlreadyExists) as exists:
        await client.create(configmap("one", namespace))
    assert exists.value.code == 409
    assert exists.value.details["name"] == "one"

    fetched = await client.get("v1", "ConfigMap", "one", namespace=namespace)
    assert fetched["data"] == {"a": "1"}

    fetched["data"]["a"] = "2"
    updated = await client.update(fetched)
    assert updated["data"] == {"a": "2"}
    with pytest.raises(Conflict):  # `fetched` still has the old resourceVersion
        await client.update(fetched)

    dry = await client.create(configmap("dry", namespace), dry_run=True)
    assert dry["metadata"]["name"] == "dry"
    with pytest.raises(NotFound):
        await client.get("v1", "ConfigMap", "dry", namespace=namespace)

    with pytest.raises(Conflict):
        await client.delete(
            "v1",
            "ConfigMap",
            "one",
            namespace=namespace,
            preconditions=Preconditions(uid=str(uuid.uuid4())),
        )
    await client.delete(
        "v1",
        "ConfigMap",
        "one",
        namespace=namespace,
        preconditions=Preconditions(uid=created["metadata"]["uid"]),
    )
    with pytest.raises(NotFound) as missing:
        await client.get("v1", "ConfigMap", "one", namespace=namespace)
    assert missing.value.reason == "NotFound"


async def test_list_pages_selectors_and_delete_collection(connect: Factory, namespace: str) -> None:
    client = connect()
    for i in range(5):
        obj = configmap(f"cm-{i}", namespace)
        obj["metadata"]["labels"]["parity"] = "even" if i % 2 == 0 else "odd"
        await client.create(obj)

    names: list[str] = []
    page = await client.list(
        "v1", "ConfigMap", namespace=namespace, label_selector="test=kube", limit=2
    )
    pages = 1
    while True:
        assert all(item["kind"] == "ConfigMap" for item in page["items"])
        names += [item["metadata"]["name"] for item in page["items"]]
        if not (token := page["metadata"].get("continue")):
            break
        page = await client.list(
            "v1",
            "ConfigMap",
            namespace=namespace,
            label_selector="test=kube",
            limit=2,
            continue_=token,
        )
        pages += 1
    assert (sorted(names), pages) == ([f"cm-{i}" for i in range(5)], 3)

    odd = await client.list(
        "v1",
        "ConfigMap",
        namespace=namespace,
        label_selector="parity=odd",
        field_selector="metadata.name!=cm-1",
    )
    assert [item["metadata"]["name"] for item in odd["items"]] == ["cm-3"]

    await client.delete_collection(
        "v1", "ConfigMap", namespace=namespace, label_selector="parity=even"
    )
    left = await client.list("v1", "ConfigMap", namespace=namespace, label_selector="test=kube")
    assert sorted(item["metadata"]["name"] for item in left["items"]) == ["cm-1", "cm-3"]


async def test_invalid_object_names_the_field(connect: Factory, namespace: str) -> None:
    with pytest.raises(Invalid) as invalid:
        await connect().create(configmap("Not_A_DNS_Name", namespace))
    assert invalid.value.code == 422
    assert [cause["field"] for cause in invalid.value.causes] == ["metadata.name"]


async def test_patch_types(connect: Factory, namespace: str) -> None:
    client = connect()
    await client.create(configmap("p", namespace, {"a": "1", "b": "2"}))

    def patch(body: Any, patch_type: PatchType) -> Any:
        return client.patch(
            "v1", "ConfigMap", "p", body, patch_type=patch_type, namespace=namespace
        )

    result = await patch([{"op": "replace", "path": "/data/a", "value": "10"}], PatchType.JSON)
    assert result["data"] == {"a": "10", "b": "2"}
    result = await patch({"data": {"b": None, "c": "3"}}, PatchType.MERGE)
    assert result["data"] == {"a": "10", "c": "3"}

    # Strategic merge merges lists by key (containers by name) where a merge patch replaces.
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": namespace},
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "containers": [{"name": "a", "image": "a:1"}, {"name": "b", "image": "b:1"}]
                },
            },
        },
    }
    await client.create(deployment)
    change = {"spec": {"template": {"spec": {"containers": [{"name": "b", "image": "b:2"}]}}}}
    merged = await client.patch(
        "apps/v1", "Deployment", "web", change, namespace=namespace, patch_type=PatchType.STRATEGIC
    )
    images = [c["image"] for c in merged["spec"]["template"]["spec"]["containers"]]
    assert images == ["a:1", "b:2"]
    replaced = await client.patch(
        "apps/v1", "Deployment", "web", change, namespace=namespace, patch_type=PatchType.MERGE
    )
    assert [c["name"] for c in replaced["spec"]["template"]["spec"]["containers"]] == ["b"]


async def test_server_side_apply_conflicts_and_force(connect: Factory, namespace: str) -> None:
    client = connect()
    mine = configmap("ssa", namespace, {"owner": "alice", "alice": "x"})
    applied = await client.apply(mine, field_manager="alice")
    assert applied["data"] == {"owner": "alice", "alice": "x"}

    theirs = configmap("ssa", namespace, {"owner": "bob"})
    with pytest.raises(Conflict) as conflict:
        await client.apply(theirs, field_manager="bob")
    assert conflict.value.reason == "Conflict"
    assert {c["field"] for c in conflict.value.details["causes"]} == {".data.owner"}

    forced = await client.apply(theirs, field_manager="bob", force=True)
    assert forced["data"] == {"owner": "bob", "alice": "x"}
    managers = {entry["manager"] for entry in forced["metadata"]["managedFields"]}
    assert {"alice", "bob"} <= managers

    # alice stops owning "alice": apply removes what a manager no longer states.
    dropped = await client.apply(configmap("ssa", namespace, {}), field_manager="alice")
    assert dropped["data"] == {"owner": "bob"}


async def test_watch_from_resource_version(connect: Factory, namespace: str) -> None:
    client = connect()
    await client.create(configmap("before", namespace))
    listed = await client.list("v1", "ConfigMap", namespace=namespace)
    since = listed["metadata"]["resourceVersion"]

    async def writes() -> None:
        await client.create(configmap("w", namespace, {"v": "1"}))
        await client.patch("v1", "ConfigMap", "w", {"data": {"v": "2"}}, namespace=namespace)
        await client.delete("v1", "ConfigMap", "w", namespace=namespace)

    seen: list[tuple[str, str]] = []
    async with client.watch(
        "v1", "ConfigMap", namespace=namespace, resource_version=since, timeout_seconds=30
    ) as events:
        writer = asyncio.create_task(writes())
        async for event in events:
            if event.type != "BOOKMARK":
                seen.append((event.type, event.object["metadata"]["name"]))
            if event.type == "DELETED":
                break
        await writer
    # "before" predates the resourceVersion, so it is not replayed.
    assert seen == [("ADDED", "w"), ("MODIFIED", "w"), ("DELETED", "w")]


async def test_watch_initial_events_end_with_a_bookmark(connect: Factory, namespace: str) -> None:
    client = connect()
    for name in ("x", "y"):
        await client.create(configmap(name, namespace))
    events: list[WatchEvent] = []
    async with client.watch(
        "v1",
        "ConfigMap",
        namespace=namespace,
        label_selector="test=kube",
        send_initial_events=True,
        timeout_seconds=30,
    ) as stream:
        async for event in stream:
            events.append(event)
            if event.type == "BOOKMARK":
                break
    assert sorted(e.object["metadata"]["name"] for e in events[:-1]) == ["x", "y"]
    bookmark = events[-1]
    assert bookmark.object["metadata"]["annotations"]["k8s.io/initial-events-end"] == "true"
    assert int(bookmark.resource_version) >= max(int(e.resource_version) for e in events[:-1])


async def test_watch_ends_at_its_timeout(connect: Factory, namespace: str) -> None:
    # resourceVersion 0 = "from the cache": kube-root-ca.crt is replayed, then the server
    # closes the quiet watch after timeoutSeconds.
    events = await watch_until_closed(
        connect(), "v1", "ConfigMap", namespace=namespace, resource_version="0",
        allow_bookmarks=False, timeout_seconds=1,
    )  # fmt: skip
    assert [(e.type, e.object["metadata"]["name"]) for e in events] == [
        ("ADDED", "kube-root-ca.crt")
    ]


async def compact_etcd(clusters: Clusters) -> None:
    """Drop all etcd history up to now, as the kube-apiserver does every 5 minutes."""
    async with httpx2.AsyncClient(base_url=f"http://127.0.0.1:{clusters.state.etcd_port}") as etcd:
        head = await etcd.post("/v3/kv/range", json={"key": base64.b64encode(b"/").decode()})
        revision = head.json()["header"]["revision"]
        compacted = await etcd.post(
            "/v3/kv/compaction", json={"revision": revision, "physical": True}
        )
        compacted.raise_for_status()


async def test_compacted_resource_version_and_continue_token_are_gone(
    clusters: Clusters, connect: Factory, namespace: str
) -> None:
    # Events, unlike ConfigMaps, bypass the apiserver's watch cache (its default cache size
    # for events is 0), so lists and watches go to etcd and see its compaction.
    def event(name: str) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": name, "namespace": namespace},
            "involvedObject": {"kind": "ConfigMap", "name": "x", "namespace": namespace},
            "reason": "Test",
            "message": "compaction",
            "type": "Normal",
        }

    client = connect()
    for i in range(3):
        await client.create(event(f"e{i}"))
    first = await client.list("v1", "Event", namespace=namespace, limit=1)
    await client.create(event("later"))  # etcd's head moves past the list
    await compact_etcd(clusters)

    with pytest.raises(Gone) as expired:
        await client.list(
            "v1", "Event", namespace=namespace, limit=1, continue_=first["metadata"]["continue"]
        )
    assert (expired.value.code, expired.value.reason) == (410, "Expired")
    assert expired.value.status["metadata"]["continue"]  # the server offers a fresh token

    with pytest.raises(Gone) as gone:
        await watch_until_closed(
            client, "v1", "Event", namespace=namespace, resource_version="1", timeout_seconds=10
        )
    assert (gone.value.code, gone.value.reason) == (410, "Expired")


async def test_custom_resource_is_mappable_once_its_crd_exists(
    connect: Factory, namespace: str
) -> None:
    client = connect()
    group = f"t{uuid.uuid4().hex[:8]}.clusternet.io"
    widget = {
        "apiVersion": f"{group}/v1",
        "kind": "Widget",
        "metadata": {"name": "w1", "namespace": namespace},
        "spec": {"size": 3},
    }
    with pytest.raises(UnknownKind):
        await client.create(widget)

    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"widgets.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "x-kubernetes-preserve-unknown-fields": True,
                        }
                    },
                }
            ],
        },
    }
    await client.create(crd)
    try:
        # Discovery lags the CRD by a moment; the mapper rediscovers on every miss.
        async with asyncio.timeout(30):
            while True:
                try:
                    created = await client.create(widget)
                    break
                except (UnknownKind, NotFound):
                    await asyncio.sleep(0.5)
        assert created["spec"] == {"size": 3}

        resource = await client.mapper.resource_for(f"{group}/v1", "Widget")
        assert (resource.plural, resource.namespaced) == ("widgets", True)
        assert "status" in resource.subresources

        created["status"] = {"ready": True}
        status = await client.update_status(created)
        assert status["status"] == {"ready": True}
        with pytest.raises(ApiError) as unsupported:  # no strategic merge for custom resources
            await client.patch(
                f"{group}/v1",
                "Widget",
                "w1",
                {"spec": {"size": 4}},
                namespace=namespace,
                patch_type=PatchType.STRATEGIC,
            )
        assert unsupported.value.code == 415
    finally:
        await client.delete(
            "apiextensions.k8s.io/v1", "CustomResourceDefinition", f"widgets.{group}"
        )


async def test_impersonated_service_account_without_rights_is_forbidden(
    connect: Factory, namespace: str
) -> None:
    admin = connect()
    await admin.create(
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": "nobody", "namespace": namespace},
        }
    )
    nobody = connect(
        impersonate=Impersonation(
            user=f"system:serviceaccount:{namespace}:nobody",
            groups=(
                "system:serviceaccounts",
                f"system:serviceaccounts:{namespace}",
                "system:authenticated",
            ),
        )
    )
    with pytest.raises(Forbidden) as forbidden:
        await nobody.list("v1", "ConfigMap", namespace=namespace)
    assert f"system:serviceaccount:{namespace}:nobody" in forbidden.value.message
    assert forbidden.value.details["kind"] == "configmaps"

    review = await nobody.create(
        {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "SelfSubjectReview",
        }
    )
    assert review["status"]["userInfo"]["username"] == f"system:serviceaccount:{namespace}:nobody"


@pytest.mark.parametrize("http2", [False, True], ids=["http1", "http2"])
async def test_two_clusters_concurrently(connect: Factory, namespace: str, http2: bool) -> None:
    calls: list[tuple[str, str, str, int]] = []

    def observe(cluster: str, verb: str, resource: str, code: int, seconds: float) -> None:
        assert seconds >= 0
        calls.append((cluster, verb, resource, code))

    children = {name: connect(name, observer=observe, http2=http2) for name in ("child1", "child2")}

    async def fill(name: str, client: KubeClient) -> None:
        await asyncio.gather(
            *(client.create(configmap(f"{name}-{i}", namespace)) for i in range(20))
        )

    async def watch_one(client: KubeClient) -> WatchEvent:
        async with client.watch(
            "v1",
            "ConfigMap",
            namespace=namespace,
            field_selector="metadata.name=late",
            timeout_seconds=30,
        ) as events:
            await client.create(configmap("late", namespace))
            # The server may open with a BOOKMARK of the current resourceVersion.
            return await anext(e async for e in events if e.type != "BOOKMARK")

    await asyncio.gather(*(fill(name, client) for name, client in children.items()))
    late = await asyncio.gather(*(watch_one(client) for client in children.values()))
    assert [event.type for event in late] == ["ADDED", "ADDED"]

    for name, client in children.items():
        listed = await client.list("v1", "ConfigMap", namespace=namespace, label_selector="test")
        names = sorted(item["metadata"]["name"] for item in listed["items"])
        assert names == sorted([f"{name}-{i}" for i in range(20)] + ["late"])
        assert await client.request("GET", "/readyz") == "ok"
        assert (await client.request("GET", "/version"))["major"] == "1"
        with pytest.raises(NotFound):
            await client.get("v1", "ConfigMap", "absent", namespace=namespace)

    for name in children:
        assert calls.count((name, "create", "configmaps", 201)) == 21
        assert (name, "watch", "configmaps", 200) in calls
        assert (name, "get", "configmaps", 404) in calls
        assert (name, "get", "/readyz", 200) in calls
