"""The ServiceImport controller (spec §7.3; controller ``serviceimport``, gate
MultiClusterService).

For every ServiceImport of type ClusterSetIP labelled with the exported Service's name and
namespace, the controller keeps, in the import's namespace:

* the derived Service ``derived-<ns>-<hash(name)>`` (:func:`clusternet.apis.mcs.derived_service`)
  with the import's ports, and the import's IPs as its load-balancer ingress;
* one EndpointSlice per exported slice copy that agents keep in their dedicated namespaces,
  named ``<dedicatedNamespace>-<copyName>``, owned by the derived Service, so that the
  Service's endpoints are the pods of every exporting cluster.

A finalizer on the import removes both before the import goes.  An import that selects no
export gets a ``NoExportedEndpoints`` Warning Event (the ServiceImport status has no
conditions, only ``clusters``, which this controller leaves alone).

Watch-driven: informers on ServiceImports, on the agents' copies (all namespaces, selected
by ``clusternet.io/created-by=clusternet-agent``), on the controller's own slices and on the
derived Services; every event maps to the keys of the ServiceImports concerned.
"""

from __future__ import annotations

import contextlib
from typing import Final

import structlog
from prometheus_client import REGISTRY, CollectorRegistry

from clusternet.apis import known, mcs
from clusternet.kube import AlreadyExists, Conflict, Invalid, KubeClient, NotFound, Object
from clusternet.runtime import (
    DeletedFinalStateUnknown,
    EventRecorder,
    Result,
    SharedInformerFactory,
    WorkQueue,
    object_key,
    run_workers,
)

log = structlog.get_logger(__name__)

NAME: Final = "serviceimport"
_BY_TARGET: Final = "mcs-target"  # <mcs-namespace>/<mcs-name>
_BY_SERVICE: Final = "service"  # <namespace>/<kubernetes.io/service-name>
_BY_OWNER: Final = "owner"  # controller owner's UID

SOURCE_SELECTOR: Final = f"{known.OBJECT_CREATED_BY_LABEL}={known.CLUSTERNET_AGENT_NAME}"
IMPORTED_SELECTOR: Final = f"{mcs.MANAGED_BY_LABEL}={mcs.IMPORT_MANAGER}"
SERVICE_SELECTOR: Final = (
    f"{known.OBJECT_CREATED_BY_LABEL}={known.CLUSTERNET_CONTROLLER_MANAGER_NAME},"
    f"{known.MCS_SERVICE_NAME_LABEL}"
)


def target_index(obj: Object) -> list[str]:
    key = mcs.mcs_key(obj["metadata"].get("labels"))
    return [key] if key else []


def service_index(endpoint_slice: Object) -> list[str]:
    meta = endpoint_slice["metadata"]
    service = (meta.get("labels") or {}).get(mcs.SERVICE_NAME_LABEL)
    return [f"{meta['namespace']}/{service}"] if service else []


def owner_index(obj: Object) -> list[str]:
    uid = mcs.controller_uid(obj)
    return [uid] if uid else []


def _unwrap(obj: Object | DeletedFinalStateUnknown) -> Object:
    return obj.object if isinstance(obj, DeletedFinalStateUnknown) else obj


def _import_changed(old: Object, new: Object) -> bool:
    o, n = old["metadata"], new["metadata"]
    return (
        old.get("spec") != new.get("spec")
        or o.get("labels") != n.get("labels")
        or o.get("finalizers") != n.get("finalizers")
        or o.get("deletionTimestamp") != n.get("deletionTimestamp")
    )


class ServiceImportController:
    def __init__(
        self,
        client: KubeClient,
        informers: SharedInformerFactory,
        recorder: EventRecorder,
        *,
        registry: CollectorRegistry | None = REGISTRY,
    ) -> None:
        self.client = client
        self.recorder = recorder
        self.registry = registry
        self.queue: WorkQueue[str] = WorkQueue(NAME, registry=registry)
        self.imports = informers.informer(mcs.MCS_API_VERSION, "ServiceImport")
        self.sources = informers.informer(
            mcs.DISCOVERY_API_VERSION, "EndpointSlice", label_selector=SOURCE_SELECTOR
        )
        self.imported = informers.informer(
            mcs.DISCOVERY_API_VERSION, "EndpointSlice", label_selector=IMPORTED_SELECTOR
        )
        self.services = informers.informer("v1", "Service", label_selector=SERVICE_SELECTOR)
        self.imports.add_indexer(_BY_TARGET, target_index)
        self.imports.add_indexer(_BY_OWNER, lambda obj: [str(obj["metadata"].get("uid"))])
        self.sources.add_indexer(_BY_TARGET, target_index)
        self.imported.add_indexer(_BY_SERVICE, service_index)
        self.services.add_indexer(_BY_OWNER, owner_index)

        self.imports.add_event_handler(
            on_add=self._enqueue,
            on_update=lambda old, new: self._enqueue(new) if _import_changed(old, new) else None,
            on_delete=self._enqueue,
        )
        self.sources.add_event_handler(
            on_add=self._enqueue_importers,
            on_update=lambda old, new: (
                self._enqueue_importers(new)
                if mcs.slice_content(old) != mcs.slice_content(new)
                or old["metadata"].get("labels") != new["metadata"].get("labels")
                else None
            ),
            on_delete=self._enqueue_importers,
        )
        # Drift: a copy or a derived Service edited or deleted by someone else.
        self.imported.add_event_handler(
            on_update=lambda old, new: self._enqueue_owner_of_slice(new),
            on_delete=self._enqueue_owner_of_slice,
        )
        self.services.add_event_handler(
            on_update=lambda old, new: self._enqueue_owner(new),
            on_delete=self._enqueue_owner,
        )

    # -- event mapping -------------------------------------------------------------------

    def _enqueue(self, obj: Object | DeletedFinalStateUnknown) -> None:
        self.queue.add(object_key(obj))

    def _enqueue_importers(self, source: Object | DeletedFinalStateUnknown) -> None:
        # Every import of this exported Service, whatever its namespace (upstream looks only
        # in the namespace of the copy's subs.namespace label, missing exports without it).
        for target in target_index(_unwrap(source)):
            for key in self.imports.store.index_keys(_BY_TARGET, target):
                self.queue.add(key)

    def _enqueue_owner(self, obj: Object | DeletedFinalStateUnknown) -> None:
        uid = mcs.controller_uid(_unwrap(obj))
        if uid:
            for key in self.imports.store.index_keys(_BY_OWNER, uid):
                self.queue.add(key)

    def _enqueue_owner_of_slice(self, obj: Object | DeletedFinalStateUnknown) -> None:
        endpoint_slice = _unwrap(obj)
        for key in service_index(endpoint_slice):
            service = self.services.store.get(key)
            if service is not None:
                self._enqueue_owner(service)

    async def run(self, workers: int) -> None:
        try:
            await run_workers(self.queue, self.reconcile, workers=workers, registry=self.registry)
        finally:
            self.queue.shut_down()

    # -- reconcile -----------------------------------------------------------------------

    async def reconcile(self, key: str) -> Result | None:
        service_import = self.imports.store.get(key)
        if service_import is None:
            return None  # what it owned goes with it (finalizer, else garbage collection)
        meta = service_import["metadata"]
        if meta.get("deletionTimestamp"):
            await self._finalize(service_import)
            return None
        target = mcs.import_target(service_import)
        if isinstance(target, mcs.Unprocessable):
            self.recorder.event(service_import, "Warning", target.reason, target.message)
            # Processed before (labels removed, type changed): undo what it had.
            await self._finalize(service_import)
            return None
        if not mcs.has_finalizer(service_import):
            await self._patch_finalizer(service_import, present=True)
            return None  # the update event brings it back
        service = await self._ensure_service(service_import, target)
        if service is None:
            return None
        await self._remove_services(service_import, keep=target.derived_name)  # relabelled
        sources = [
            s
            for s in self.sources.store.by_index(_BY_TARGET, target.key)
            if not s["metadata"].get("deletionTimestamp")
        ]
        desired = [mcs.imported_slice(source, service) for source in sources]
        current = self.imported.store.by_index(_BY_SERVICE, object_key(service))
        try:
            await self._apply(mcs.plan_slices(desired, current), meta["namespace"])
        except Exception as err:
            self.recorder.event(service_import, "Warning", "FailedSynced", str(err))
            raise
        if not sources:
            self.recorder.event(
                service_import,
                "Warning",
                "NoExportedEndpoints",
                f"no cluster exports Service {target.key}: check the labels "
                f"{known.MCS_SERVICE_NAME_LABEL} and {known.MCS_SERVICE_NAMESPACE_LABEL}, and "
                "that a ServiceExport of that name exists in a child",
            )
        return None

    async def _ensure_service(
        self, service_import: Object, target: mcs.ImportTarget
    ) -> Object | None:
        """The derived Service, created or brought in line; None if it cannot be."""
        desired = mcs.derived_service(service_import, target)
        namespace = service_import["metadata"]["namespace"]
        key = f"{namespace}/{target.derived_name}"
        current = self.services.store.get(key)
        try:
            if current is None:
                try:
                    current = await self.client.create(desired)
                    self.recorder.event(
                        service_import, "Normal", "DerivedServiceCreated",
                        f"Service {target.derived_name} fronts the endpoints of {target.key}",
                    )  # fmt: skip
                except AlreadyExists:
                    current = await self.client.get(
                        "v1", "Service", target.derived_name, namespace=namespace
                    )
            if mcs.controller_uid(current) != service_import["metadata"]["uid"]:
                self.recorder.event(
                    service_import,
                    "Warning",
                    "DerivedServiceConflict",
                    f"Service {key} exists and is not owned by this ServiceImport",
                )
                return None
            updated = mcs.service_update(current, desired)
            if updated is not None:
                current = await self.client.update(updated)
            ingress = mcs.service_ingress(service_import)
            if mcs.ingress_differs(current, ingress):
                status = {**(current.get("status") or {}), "loadBalancer": {"ingress": ingress}}
                current = await self.client.update_status({**current, "status": status})
        except Invalid as err:
            # The import's ports or IPs make no valid Service: only an edit helps.
            self.recorder.event(service_import, "Warning", "InvalidDerivedService", str(err))
            return None
        except Conflict:
            # The cache is behind the Service: its update event brings the import back.
            return None
        return current

    async def _apply(self, plan: mcs.SlicePlan, namespace: str) -> None:
        for name in plan.delete:
            with contextlib.suppress(NotFound):
                await self.client.delete(
                    mcs.DISCOVERY_API_VERSION, "EndpointSlice", name, namespace=namespace
                )
        for obj in plan.create:
            with contextlib.suppress(AlreadyExists):  # its add event brings the import back
                await self.client.create(obj)
        for obj in plan.update:
            with contextlib.suppress(Conflict):  # its update event brings the import back
                await self.client.update(obj)

    async def _finalize(self, service_import: Object) -> None:
        """Delete the derived Service(s) and their slices, then drop the finalizer."""
        if not mcs.has_finalizer(service_import):
            return
        await self._remove_services(service_import)
        await self._patch_finalizer(service_import, present=False)

    async def _remove_services(self, service_import: Object, keep: str | None = None) -> None:
        """Delete the import's derived Services (but ``keep``) and their slices: all of them
        when it goes, the one of its former labels when they change."""
        for service in self.services.store.by_index(_BY_OWNER, service_import["metadata"]["uid"]):
            smeta = service["metadata"]
            if smeta["name"] == keep:
                continue
            await self.client.delete_collection(
                mcs.DISCOVERY_API_VERSION,
                "EndpointSlice",
                namespace=smeta["namespace"],
                label_selector=f"{IMPORTED_SELECTOR},{mcs.SERVICE_NAME_LABEL}={smeta['name']}",
            )
            with contextlib.suppress(NotFound):
                await self.client.delete(
                    "v1", "Service", smeta["name"], namespace=smeta["namespace"]
                )

    async def _patch_finalizer(self, service_import: Object, *, present: bool) -> None:
        patch = mcs.finalizers_patch(service_import, present=present)
        if patch is None:
            return
        meta = service_import["metadata"]
        with contextlib.suppress(Conflict, NotFound):  # its own event brings it back
            await self.client.patch(
                mcs.MCS_API_VERSION, "ServiceImport", meta["name"], patch,
                namespace=meta["namespace"],
            )  # fmt: skip
