"""The ServiceExport controller (spec §7.2; agent, gate MultiClusterService).

For every ServiceExport in the child, the EndpointSlices of the same-named Service are copied
into the cluster's dedicated namespace in the parent (:func:`clusternet.apis.mcs.exported_slice`)
and kept equal to them; copies of slices that went away are deleted, and all copies go when
the export or its Service does.  A finalizer on the export makes sure the copies are removed
before it disappears.  The export's ``Valid`` condition says whether its Service exists.

Watch-driven on both sides: informers on the child's ServiceExports, Services and
EndpointSlices, and one on the agent's own copies in the parent (so that a copy edited or
deleted by someone else is repaired, and copies of an export that vanished are removed).
Every event maps to the key ``<namespace>/<name>`` of an export.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime
from typing import Any, Final

import structlog
from prometheus_client import REGISTRY, CollectorRegistry

from clusternet.apis import known, mcs, naming
from clusternet.kube import AlreadyExists, Conflict, KubeClient, NotFound, Object
from clusternet.runtime import (
    DeletedFinalStateUnknown,
    EventRecorder,
    EventType,
    Result,
    SharedInformerFactory,
    WorkQueue,
    object_key,
    run_workers,
)

log = structlog.get_logger(__name__)

NAME: Final = "serviceexport"
_BY_SERVICE: Final = "service"  # child slices by <namespace>/<kubernetes.io/service-name>
_BY_EXPORT: Final = "export"  # parent copies by <mcs-namespace>/<mcs-name>


def service_key(endpoint_slice: Object) -> list[str]:
    meta = endpoint_slice["metadata"]
    service = (meta.get("labels") or {}).get(mcs.SERVICE_NAME_LABEL)
    return [f"{meta['namespace']}/{service}"] if service else []


def export_key(copy: Object) -> list[str]:
    key = mcs.mcs_key(copy["metadata"].get("labels"))
    return [key] if key else []


def _unwrap(obj: Object | DeletedFinalStateUnknown) -> Object:
    return obj.object if isinstance(obj, DeletedFinalStateUnknown) else obj


def _export_changed(old: Object, new: Object) -> bool:
    """Anything but the status (which this controller writes itself)."""
    o, n = old["metadata"], new["metadata"]
    return any(o.get(k) != n.get(k) for k in ("labels", "finalizers", "deletionTimestamp", "uid"))


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class ServiceExportController:
    """Mirrors exported Services' EndpointSlices into the dedicated namespace of the parent."""

    def __init__(
        self,
        child: KubeClient,
        parent: KubeClient,
        child_informers: SharedInformerFactory,
        cluster: mcs.SourceCluster,
        *,
        registry: CollectorRegistry | None = REGISTRY,
    ) -> None:
        self.child = child
        self.parent = parent
        self.cluster = cluster
        self.registry = registry
        self.queue: WorkQueue[str] = WorkQueue(NAME, registry=registry)
        self.parent_informers = SharedInformerFactory(parent, registry=registry)
        self.exports = child_informers.informer(mcs.MCS_API_VERSION, "ServiceExport")
        self.services = child_informers.informer("v1", "Service")
        self.slices = child_informers.informer(
            mcs.DISCOVERY_API_VERSION, "EndpointSlice", label_selector=mcs.SERVICE_NAME_LABEL
        )
        self.copies = self.parent_informers.informer(
            mcs.DISCOVERY_API_VERSION,
            "EndpointSlice",
            namespace=cluster.namespace,
            label_selector=f"{known.OBJECT_CREATED_BY_LABEL}={known.CLUSTERNET_AGENT_NAME}",
        )
        self.slices.add_indexer(_BY_SERVICE, service_key)
        self.copies.add_indexer(_BY_EXPORT, export_key)
        self.exports.add_event_handler(
            on_add=self._enqueue,
            on_update=lambda old, new: self._enqueue(new) if _export_changed(old, new) else None,
            on_delete=self._enqueue,
        )
        self.services.add_event_handler(
            on_add=self._enqueue_exported,
            on_update=lambda old, new: (
                self._enqueue_exported(new)
                if (old.get("spec") or {}).get("type") != (new.get("spec") or {}).get("type")
                else None
            ),
            on_delete=self._enqueue_exported,
        )
        self.slices.add_event_handler(
            on_add=self._enqueue_slice,
            on_update=lambda old, new: (
                self._enqueue_slice(new)
                if mcs.slice_content(old) != mcs.slice_content(new)
                or service_key(old) != service_key(new)
                else None
            ),
            on_delete=self._enqueue_slice,
        )
        self.copies.add_event_handler(
            on_add=self._enqueue_copy,
            on_update=lambda old, new: self._enqueue_copy(new),
            on_delete=self._enqueue_copy,
        )
        self.recorder: EventRecorder | None = None

    # -- event mapping -------------------------------------------------------------------

    def _enqueue(self, obj: Object | DeletedFinalStateUnknown) -> None:
        self.queue.add(object_key(obj))

    def _enqueue_exported(self, service: Object | DeletedFinalStateUnknown) -> None:
        key = object_key(service)
        if key in self.exports.store:
            self.queue.add(key)

    def _enqueue_slice(self, endpoint_slice: Object | DeletedFinalStateUnknown) -> None:
        for key in service_key(_unwrap(endpoint_slice)):
            if key in self.exports.store:
                self.queue.add(key)

    def _enqueue_copy(self, copy: Object | DeletedFinalStateUnknown) -> None:
        for key in export_key(_unwrap(copy)):
            self.queue.add(key)

    # -- running -------------------------------------------------------------------------

    async def run(self, workers: int = 2) -> None:
        """Until cancelled: the parent informer runs here; the child informers are run by
        the agent (they share its factory) and waited for."""
        async with (
            EventRecorder(
                self.child, component=known.CLUSTERNET_AGENT_NAME, registry=self.registry
            ) as recorder,
            asyncio.TaskGroup() as tasks,
        ):
            self.recorder = recorder
            for informer in self.parent_informers.informers.values():
                tasks.create_task(informer.run())
            for informer in (self.exports, self.services, self.slices, self.copies):
                if not await informer.wait_for_sync():
                    raise RuntimeError(f"informer {informer.key} stopped before it synced")
            log.info("ServiceExport controller started", namespace=self.cluster.namespace)
            try:
                await run_workers(
                    self.queue, self.reconcile, workers=workers, registry=self.registry
                )
            finally:
                self.queue.shut_down()

    # -- reconcile -----------------------------------------------------------------------

    async def reconcile(self, key: str) -> Result | None:
        export = self.exports.store.get(key)
        if export is None:
            # Gone without this agent seeing its deletion (or never exported): no copies.
            await self._sync_copies(key, [])
            return None
        meta = export["metadata"]
        if meta.get("deletionTimestamp"):
            if mcs.has_finalizer(export):
                # Every copy, also those this cache has not seen yet (spec §7.2).
                selector = naming.selector_string(
                    {
                        mcs.SERVICE_NAME_LABEL: mcs.derived_name(meta["namespace"], meta["name"]),
                        known.OBJECT_CREATED_BY_LABEL: known.CLUSTERNET_AGENT_NAME,
                    }
                )
                await self.parent.delete_collection(
                    mcs.DISCOVERY_API_VERSION,
                    "EndpointSlice",
                    namespace=self.cluster.namespace,
                    label_selector=selector,
                )
                await self._patch_finalizer(export, present=False)
            return None
        if not mcs.has_finalizer(export):
            # The update event brings the key back with the finalizer in place.
            await self._patch_finalizer(export, present=True)
            return None
        service = self.services.store.get(key)
        condition = mcs.export_valid_condition(service)
        desired: list[dict[str, Any]] = []
        if condition["status"] == "True":
            desired = [
                mcs.exported_slice(local, export, self.cluster)
                for local in self.slices.store.by_index(_BY_SERVICE, key)
                if not local["metadata"].get("deletionTimestamp")
            ]
        try:
            await self._sync_copies(key, desired)
        except Exception as err:
            self._event(export, "Warning", "FailedSynced", f"cannot sync EndpointSlices: {err}")
            raise
        await self._set_condition(export, condition)
        return None

    async def _sync_copies(self, key: str, desired: list[dict[str, Any]]) -> None:
        plan = mcs.plan_slices(desired, self.copies.store.by_index(_BY_EXPORT, key))
        if not plan:
            return
        log.info(
            "syncing EndpointSlice copies",
            export=key,
            create=len(plan.create),
            update=len(plan.update),
            delete=len(plan.delete),
        )
        namespace = self.cluster.namespace
        for name in plan.delete:
            with contextlib.suppress(NotFound):
                await self.parent.delete(
                    mcs.DISCOVERY_API_VERSION, "EndpointSlice", name, namespace=namespace
                )
        for obj in plan.create:
            # Exists already: a copy this cache has not seen yet; its event brings us back.
            with contextlib.suppress(AlreadyExists):
                await self.parent.create(obj)
        for obj in plan.update:
            with contextlib.suppress(Conflict):  # its update event brings the export back
                await self.parent.update(obj)

    async def _patch_finalizer(self, export: Object, *, present: bool) -> None:
        patch = mcs.finalizers_patch(export, present=present)
        if patch is None:
            return
        meta = export["metadata"]
        # Conflict or gone: the export's own event brings it back.
        with contextlib.suppress(Conflict, NotFound):
            await self.child.patch(
                mcs.MCS_API_VERSION, "ServiceExport", meta["name"], patch,
                namespace=meta["namespace"],
            )  # fmt: skip

    async def _set_condition(self, export: Object, condition: dict[str, str]) -> None:
        status = export.get("status") or {}
        conditions = mcs.with_condition(status.get("conditions"), condition, _now())
        if conditions is None:
            return
        updated = {**export, "status": {**status, "conditions": conditions}}
        with contextlib.suppress(NotFound):
            await self.child.update_status(updated)  # Conflict: retried
        if condition["status"] != "True":
            self._event(export, "Warning", condition["reason"], condition["message"])

    def _event(self, obj: Object, kind: EventType, reason: str, message: str) -> None:
        if self.recorder is not None:
            self.recorder.event(obj, kind, reason, message)
