"""The ServiceExport (agent) and ServiceImport (controller-manager) reconcilers, against fake
clients and hand-fed informer caches: which writes each state leads to."""

from __future__ import annotations

import itertools
from typing import Any

from clusternet.agent.serviceexport import ServiceExportController
from clusternet.apis import known, mcs
from clusternet.controllermanager.serviceimport import ServiceImportController
from clusternet.kube import AlreadyExists, NotFound
from clusternet.runtime import SharedInformerFactory

CLUSTER = mcs.SourceCluster("clusternet-aaaaa", "cid-1", "child1")
_uids = itertools.count(1)


class FakeClient:
    """Records writes; creates answer with a uid and resourceVersion like a server."""

    def __init__(self, cluster: str = "fake") -> None:
        self.cluster = cluster
        self.calls: list[tuple[Any, ...]] = []
        self.existing: dict[tuple[str, str, str], dict[str, Any]] = {}

    async def create(self, obj: dict[str, Any], **_: Any) -> dict[str, Any]:
        meta = obj["metadata"]
        key = (obj["kind"], meta.get("namespace", ""), meta["name"])
        self.calls.append(("create", *key))
        if key in self.existing:
            raise AlreadyExists(409, {"reason": "AlreadyExists"})
        created = {**obj, "metadata": {**meta, "uid": f"uid-{next(_uids)}", "resourceVersion": "1"}}
        self.existing[key] = created
        return created

    async def get(self, api_version: str, kind: str, name: str, *, namespace: str = "") -> Any:
        self.calls.append(("get", kind, namespace, name))
        try:
            return self.existing[(kind, namespace, name)]
        except KeyError:
            raise NotFound(404, {"reason": "NotFound"}) from None

    async def update(self, obj: dict[str, Any], **_: Any) -> dict[str, Any]:
        self.calls.append(
            ("update", obj["kind"], obj["metadata"]["namespace"], obj["metadata"]["name"])
        )
        return obj

    async def update_status(self, obj: dict[str, Any], **_: Any) -> dict[str, Any]:
        meta = obj["metadata"]
        self.calls.append(("update_status", obj["kind"], meta["namespace"], meta["name"]))
        self.last_status = obj["status"]
        return obj

    async def patch(
        self, api_version: str, kind: str, name: str, patch: Any, *, namespace: str = "", **_: Any
    ) -> dict[str, Any]:
        self.calls.append(("patch", kind, namespace, name, patch["metadata"]["finalizers"]))
        return {}

    async def delete(self, api_version: str, kind: str, name: str, *, namespace: str = "") -> Any:
        self.calls.append(("delete", kind, namespace, name))
        return {}

    async def delete_collection(
        self, api_version: str, kind: str, *, namespace: str = "", label_selector: str = ""
    ) -> Any:
        self.calls.append(("delete_collection", kind, namespace, label_selector))
        return {}

    def writes(self, verb: str) -> list[tuple[Any, ...]]:
        return [c for c in self.calls if c[0] == verb]


class FakeRecorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []

    def event(self, obj: Any, type: str, reason: str, message: str) -> None:
        self.events.append((type, reason))


def add(informer: Any, obj: dict[str, Any]) -> None:
    """What the informer does on a watch event: store, then call the handlers."""
    old = informer.store.upsert(obj)
    for handler in informer._handlers:
        if old is None and handler.on_add:
            handler.on_add(obj)
        elif old is not None and handler.on_update:
            handler.on_update(old, obj)


def endpoint_slice(name: str, namespace: str, labels: dict[str, str], *ips: str) -> dict[str, Any]:
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": labels,
            "resourceVersion": "2",
        },
        "addressType": "IPv4",
        "endpoints": [{"addresses": [ip]} for ip in ips],
        "ports": [{"name": "http", "port": 80, "protocol": "TCP"}],
    }


async def queued(queue: Any) -> list[str]:
    """Take every queued key (as workers would) and return them sorted."""
    keys = []
    while len(queue):
        key = await queue.get()
        queue.done(key)
        keys.append(key)
    return sorted(keys)


# -- ServiceExport ------------------------------------------------------------------------------


def export_controller() -> tuple[ServiceExportController, FakeClient, FakeClient]:
    child, parent = FakeClient("child"), FakeClient("parent")
    informers = SharedInformerFactory(child, registry=None)  # type: ignore[arg-type]
    ctrl = ServiceExportController(
        child,  # type: ignore[arg-type]
        parent,  # type: ignore[arg-type]
        informers,
        CLUSTER,
        registry=None,
    )
    return ctrl, child, parent


def service_export(*finalizers: str, deleting: bool = False) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": "web",
        "namespace": "shop",
        "uid": "export-uid",
        "resourceVersion": "4",
        "labels": {known.CONFIG_SUBSCRIPTION_NAMESPACE_LABEL: "team-a"},
        "finalizers": list(finalizers),
    }
    if deleting:
        meta["deletionTimestamp"] = "2026-11-28T00:00:00Z"
    return {"apiVersion": mcs.MCS_API_VERSION, "kind": "ServiceExport", "metadata": meta}


SERVICE = {
    "apiVersion": "v1",
    "kind": "Service",
    "metadata": {"name": "web", "namespace": "shop"},
    "spec": {"type": "ClusterIP"},
}


async def test_an_export_gets_its_finalizer_first() -> None:
    ctrl, child, parent = export_controller()
    add(ctrl.exports, service_export())
    assert await queued(ctrl.queue) == ["shop/web"]

    await ctrl.reconcile("shop/web")

    assert child.writes("patch") == [
        ("patch", "ServiceExport", "shop", "web", [known.APP_FINALIZER])
    ]
    assert parent.calls == []


async def test_an_export_mirrors_its_slices_and_says_it_is_valid() -> None:
    ctrl, child, parent = export_controller()
    add(ctrl.exports, service_export(known.APP_FINALIZER))
    add(ctrl.services, SERVICE)
    label = {mcs.SERVICE_NAME_LABEL: "web"}
    add(ctrl.slices, endpoint_slice("web-abc", "shop", label, "10.0.0.1"))
    add(ctrl.slices, endpoint_slice("web-def", "shop", label, "10.0.0.2"))
    add(
        ctrl.slices, endpoint_slice("other-x", "shop", {mcs.SERVICE_NAME_LABEL: "other"}, "1.1.1.1")
    )

    await ctrl.reconcile("shop/web")

    assert parent.writes("create") == [
        ("create", "EndpointSlice", "clusternet-aaaaa", "shop-web-abc"),
        ("create", "EndpointSlice", "clusternet-aaaaa", "shop-web-def"),
    ]
    copy = parent.existing[("EndpointSlice", "clusternet-aaaaa", "shop-web-abc")]
    assert copy["metadata"]["labels"][known.CONFIG_SUBSCRIPTION_NAMESPACE_LABEL] == "team-a"
    assert child.writes("update_status") == [("update_status", "ServiceExport", "shop", "web")]
    (condition,) = child.last_status["conditions"]
    assert (condition["type"], condition["status"], condition["reason"]) == (
        "Valid",
        "True",
        "Valid",
    )


async def test_slice_events_reach_only_exported_services() -> None:
    ctrl, _, _ = export_controller()
    add(ctrl.exports, service_export(known.APP_FINALIZER))
    await queued(ctrl.queue)
    add(
        ctrl.slices, endpoint_slice("other-x", "shop", {mcs.SERVICE_NAME_LABEL: "other"}, "1.1.1.1")
    )
    assert await queued(ctrl.queue) == []
    add(ctrl.slices, endpoint_slice("web-abc", "shop", {mcs.SERVICE_NAME_LABEL: "web"}, "10.0.0.1"))
    assert await queued(ctrl.queue) == ["shop/web"]


async def test_without_its_service_an_export_is_invalid_and_its_copies_go() -> None:
    ctrl, child, parent = export_controller()
    export = service_export(known.APP_FINALIZER)
    add(ctrl.exports, export)
    stale = mcs.exported_slice(endpoint_slice("web-abc", "shop", {}, "10.0.0.1"), export, CLUSTER)
    add(ctrl.copies, {**stale, "metadata": {**stale["metadata"], "resourceVersion": "3"}})

    await ctrl.reconcile("shop/web")

    assert parent.writes("delete") == [
        ("delete", "EndpointSlice", "clusternet-aaaaa", "shop-web-abc")
    ]
    (condition,) = child.last_status["conditions"]
    assert (condition["status"], condition["reason"]) == ("False", "NoService")


async def test_a_deleted_export_removes_its_copies_then_its_finalizer() -> None:
    ctrl, child, parent = export_controller()
    export = service_export(known.APP_FINALIZER, "other", deleting=True)
    add(ctrl.exports, export)
    add(ctrl.services, SERVICE)
    copy = mcs.exported_slice(endpoint_slice("web-abc", "shop", {}, "10.0.0.1"), export, CLUSTER)
    add(ctrl.copies, copy)

    await ctrl.reconcile("shop/web")

    derived = mcs.derived_name("shop", "web")
    assert parent.calls == [
        (
            "delete_collection",
            "EndpointSlice",
            "clusternet-aaaaa",
            f"clusternet.io/created-by=clusternet-agent,kubernetes.io/service-name={derived}",
        )
    ]
    assert child.writes("patch") == [("patch", "ServiceExport", "shop", "web", ["other"])]


async def test_copies_of_a_vanished_export_are_removed() -> None:
    ctrl, _, parent = export_controller()
    copy = mcs.exported_slice(
        endpoint_slice("web-abc", "shop", {}, "10.0.0.1"), service_export(), CLUSTER
    )
    add(ctrl.copies, copy)
    assert await queued(ctrl.queue) == ["shop/web"]

    await ctrl.reconcile("shop/web")

    assert parent.writes("delete") == [
        ("delete", "EndpointSlice", "clusternet-aaaaa", "shop-web-abc")
    ]


# -- ServiceImport ------------------------------------------------------------------------------


def import_controller() -> tuple[ServiceImportController, FakeClient, FakeRecorder]:
    client, recorder = FakeClient("parent"), FakeRecorder()
    informers = SharedInformerFactory(client, registry=None)  # type: ignore[arg-type]
    ctrl = ServiceImportController(
        client,  # type: ignore[arg-type]
        informers,
        recorder,  # type: ignore[arg-type]
        registry=None,
    )
    return ctrl, client, recorder


def service_import(
    *finalizers: str, deleting: bool = False, kind: str = "ClusterSetIP", name: str = "web"
) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": "my-web",
        "namespace": "team-a",
        "uid": "import-uid",
        "resourceVersion": "8",
        "labels": {known.MCS_SERVICE_NAME_LABEL: name, known.MCS_SERVICE_NAMESPACE_LABEL: "shop"},
        "finalizers": list(finalizers),
    }
    if deleting:
        meta["deletionTimestamp"] = "2026-11-28T00:00:00Z"
    return {
        "apiVersion": mcs.MCS_API_VERSION,
        "kind": "ServiceImport",
        "metadata": meta,
        "spec": {"type": kind, "ips": ["42.42.42.42"], "ports": [{"port": 80, "protocol": "TCP"}]},
    }


def source(cluster: mcs.SourceCluster, slice_name: str, *ips: str) -> dict[str, Any]:
    copy = mcs.exported_slice(
        endpoint_slice(slice_name, "shop", {}, *ips), service_export(), cluster
    )
    copy["metadata"]["resourceVersion"] = "5"
    return copy


async def test_an_import_gets_a_service_and_the_slices_of_every_cluster() -> None:
    ctrl, client, recorder = import_controller()
    add(ctrl.imports, service_import(known.APP_FINALIZER))
    other = mcs.SourceCluster("clusternet-bbbbb", "cid-2", "child2")
    add(ctrl.sources, source(CLUSTER, "web-abc", "10.0.0.1"))
    add(ctrl.sources, source(other, "web-xyz", "10.0.0.2", "10.0.0.3"))

    await ctrl.reconcile("team-a/my-web")

    derived = mcs.derived_name("shop", "web")
    assert client.writes("create") == [
        ("create", "Service", "team-a", derived),
        ("create", "EndpointSlice", "team-a", "clusternet-aaaaa-shop-web-abc"),
        ("create", "EndpointSlice", "team-a", "clusternet-bbbbb-shop-web-xyz"),
    ]
    assert client.writes("update_status") == [("update_status", "Service", "team-a", derived)]
    assert client.last_status["loadBalancer"] == {"ingress": [{"ip": "42.42.42.42"}]}
    assert recorder.events == [("Normal", "DerivedServiceCreated")]
    imported = client.existing[("EndpointSlice", "team-a", "clusternet-bbbbb-shop-web-xyz")]
    assert imported["metadata"]["labels"][known.CLUSTER_NAME_LABEL] == "child2"
    assert imported["metadata"]["labels"][mcs.SERVICE_NAME_LABEL] == derived


async def test_source_events_reach_every_import_of_the_service() -> None:
    ctrl, _, _ = import_controller()
    add(ctrl.imports, service_import(known.APP_FINALIZER))
    unrelated = service_import(name="other")
    unrelated["metadata"] |= {"name": "other", "uid": "u2"}
    add(ctrl.imports, unrelated)
    await queued(ctrl.queue)

    add(ctrl.sources, source(CLUSTER, "web-abc", "10.0.0.1"))

    assert await queued(ctrl.queue) == ["team-a/my-web"]


async def test_an_import_without_exports_says_so() -> None:
    ctrl, client, recorder = import_controller()
    add(ctrl.imports, service_import(known.APP_FINALIZER, name="web-typo"))

    await ctrl.reconcile("team-a/my-web")

    assert [c[1] for c in client.writes("create")] == ["Service"]
    assert ("Warning", "NoExportedEndpoints") in recorder.events


async def test_an_unsupported_import_gets_an_event_and_no_objects() -> None:
    ctrl, client, recorder = import_controller()
    add(ctrl.imports, service_import(kind="Headless"))

    await ctrl.reconcile("team-a/my-web")

    assert client.calls == []
    assert recorder.events == [("Warning", "UnsupportedServiceImportType")]


async def test_a_service_of_someone_else_is_left_alone() -> None:
    ctrl, client, recorder = import_controller()
    add(ctrl.imports, service_import(known.APP_FINALIZER))
    derived = mcs.derived_name("shop", "web")
    client.existing[("Service", "team-a", derived)] = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": derived, "namespace": "team-a", "uid": "theirs"},
        "spec": {"type": "ClusterIP", "ports": [{"port": 1}]},
    }

    await ctrl.reconcile("team-a/my-web")

    assert client.writes("update") == client.writes("update_status") == []
    assert ("Warning", "DerivedServiceConflict") in recorder.events


async def test_a_deleted_import_takes_its_service_and_slices_along() -> None:
    ctrl, client, _ = import_controller()
    add(ctrl.imports, service_import(known.APP_FINALIZER, deleting=True))
    derived = mcs.derived_name("shop", "web")
    add(
        ctrl.services,
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {
                "name": derived,
                "namespace": "team-a",
                "uid": "svc",
                "ownerReferences": [{"uid": "import-uid", "controller": True}],
            },
        },
    )

    await ctrl.reconcile("team-a/my-web")

    assert client.calls == [
        (
            "delete_collection",
            "EndpointSlice",
            "team-a",
            f"{mcs.MANAGED_BY_LABEL}={mcs.IMPORT_MANAGER},{mcs.SERVICE_NAME_LABEL}={derived}",
        ),
        ("delete", "Service", "team-a", derived),
        ("patch", "ServiceImport", "team-a", "my-web", []),
    ]


async def test_a_relabelled_import_drops_the_service_of_its_former_labels() -> None:
    ctrl, client, _ = import_controller()
    add(ctrl.imports, service_import(known.APP_FINALIZER))
    former = mcs.derived_name("shop", "web-typo")
    add(
        ctrl.services,
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {
                "name": former,
                "namespace": "team-a",
                "uid": "svc",
                "ownerReferences": [{"uid": "import-uid", "controller": True}],
            },
        },
    )

    await ctrl.reconcile("team-a/my-web")

    assert ("delete", "Service", "team-a", former) in client.calls
    assert ("create", "Service", "team-a", mcs.derived_name("shop", "web")) in client.calls


async def test_an_import_that_becomes_unsupported_undoes_what_it_had() -> None:
    ctrl, client, recorder = import_controller()
    add(ctrl.imports, service_import(known.APP_FINALIZER, kind="Headless"))
    derived = mcs.derived_name("shop", "web")
    add(
        ctrl.services,
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {
                "name": derived,
                "namespace": "team-a",
                "uid": "svc",
                "ownerReferences": [{"uid": "import-uid", "controller": True}],
            },
        },
    )

    await ctrl.reconcile("team-a/my-web")

    assert recorder.events == [("Warning", "UnsupportedServiceImportType")]
    assert ("delete", "Service", "team-a", derived) in client.calls
    assert client.calls[-1] == ("patch", "ServiceImport", "team-a", "my-web", [])


async def test_an_external_name_service_is_not_exported() -> None:
    ctrl, child, parent = export_controller()
    add(ctrl.exports, service_export(known.APP_FINALIZER))
    add(ctrl.services, {**SERVICE, "spec": {"type": "ExternalName", "externalName": "x.example"}})
    add(ctrl.slices, endpoint_slice("web-abc", "shop", {mcs.SERVICE_NAME_LABEL: "web"}, "10.0.0.1"))

    await ctrl.reconcile("shop/web")

    assert parent.calls == []
    (condition,) = child.last_status["conditions"]
    assert (condition["status"], condition["reason"]) == ("False", "InvalidServiceType")
