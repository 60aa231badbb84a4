"""The ``clusterlifecycle`` controller: applies :func:`~.lifecycle.evaluate` to ManagedClusters.

Each cluster is looked at when it changes (a heartbeat is a status update) and once more at
exactly its heartbeat deadline, never on a polling interval: a fleet of quiet, healthy
clusters costs nothing between heartbeats.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Final

import structlog
from prometheus_client import REGISTRY, CollectorRegistry

from clusternet.apis import known
from clusternet.apis.apps.v1alpha1 import GROUP as APPS_GROUP
from clusternet.apis.apps.v1alpha1 import VERSION as APPS_VERSION
from clusternet.controllermanager import lifecycle
from clusternet.controllermanager.registration import CLUSTERS_API_VERSION
from clusternet.kube import ApiError, Conflict, KubeClient, NotFound, Object
from clusternet.runtime import (
    DeletedFinalStateUnknown,
    EventRecorder,
    Informer,
    Result,
    SharedInformerFactory,
    WorkQueue,
    object_key,
    run_workers,
)

log = structlog.get_logger(__name__)

NAME: Final = "clusterlifecycle"
APPS_API_VERSION: Final = f"{APPS_GROUP}/{APPS_VERSION}"
_BY_BASE_UID: Final = "base-uid"


class ClusterLifecycle:
    def __init__(
        self,
        client: KubeClient,
        informers: SharedInformerFactory,
        recorder: EventRecorder,
        *,
        cluster_init: bool,
        registry: CollectorRegistry | None = REGISTRY,
    ) -> None:
        self.client = client
        self.recorder = recorder
        self.cluster_init = cluster_init
        self.queue: WorkQueue[str] = WorkQueue(NAME, registry=registry)
        self.clusters = informers.informer(CLUSTERS_API_VERSION, "ManagedCluster")
        self.clusters.add_event_handler(
            on_add=self._enqueue, on_update=lambda _old, new: self._enqueue(new)
        )
        self.bases: Informer | None = None
        self.descriptions: Informer | None = None
        if cluster_init:
            # Init Bases and their Descriptions live in the cluster's dedicated namespace.
            self.bases = informers.informer(APPS_API_VERSION, "Base")
            self.descriptions = informers.informer(
                APPS_API_VERSION, "Description", label_selector=f"{known.CONFIG_KIND_LABEL}=Base"
            )
            self.descriptions.add_indexer(_BY_BASE_UID, _base_uid)
            for informer in (self.bases, self.descriptions):
                informer.add_event_handler(
                    on_add=self._enqueue_namespace,
                    on_update=lambda _old, new: self._enqueue_namespace(new),
                    on_delete=self._enqueue_namespace,
                )

    async def run(self, workers: int) -> None:
        try:
            await run_workers(self.queue, self.reconcile, workers=workers)
        finally:
            self.queue.shut_down()

    def _enqueue(self, cluster: Object) -> None:
        self.queue.add(object_key(cluster))

    def _enqueue_namespace(self, obj: Object | DeletedFinalStateUnknown) -> None:
        if isinstance(obj, DeletedFinalStateUnknown):
            obj = obj.object
        namespace = obj["metadata"].get("namespace")
        if namespace:
            for key in self.clusters.store.index_keys("namespace", namespace):
                self.queue.add(key)

    async def reconcile(self, key: str) -> Result | None:
        cluster = self.clusters.store.get(key)
        if cluster is None or cluster["metadata"].get("deletionTimestamp"):
            return None
        spec_patch: Object = {}
        init_reason = known.REASON_CLUSTER_INIT_DISABLED
        if self.cluster_init:
            init_reason, base_name = self._cluster_init(cluster)
            if base_name and not (cluster.get("spec") or {}).get("clusterInitBaseName"):
                spec_patch["clusterInitBaseName"] = base_name
        verdict = lifecycle.evaluate(cluster, datetime.now(UTC), init_reason=init_reason)
        if verdict.taints is not None:
            spec_patch["taints"] = verdict.taints
        try:
            if verdict.status is not None:
                cluster = await self._update_status(cluster, verdict.status)
            if spec_patch:
                # One merge patch replaces the whole taint list; the resourceVersion makes it
                # fail rather than overwrite a change made since the cluster was read.
                patch = {
                    "metadata": {"resourceVersion": cluster["metadata"]["resourceVersion"]},
                    "spec": spec_patch,
                }
                await self.client.patch(
                    CLUSTERS_API_VERSION,
                    "ManagedCluster",
                    cluster["metadata"]["name"],
                    patch,
                    namespace=cluster["metadata"]["namespace"],
                )
        except (Conflict, NotFound):
            # Changed or deleted meanwhile: the informer's event for that brings it back.
            return None
        return Result(requeue_after=verdict.requeue_after)

    async def _update_status(self, cluster: Object, status: Object) -> Object:
        try:
            updated = await self.client.update_status({**cluster, "status": status})
        except (Conflict, NotFound):
            raise
        except ApiError as err:
            self.recorder.event(
                cluster, "Warning", "FailedUpdatingClusterStatus", f"failed to update status: {err}"
            )
            raise
        ready = _condition(status, known.CONDITION_READY)
        before = _condition(cluster.get("status") or {}, known.CONDITION_READY)
        if ready is not None and ready.get("status") == "Unknown" and ready != before:
            self.recorder.event(cluster, "Warning", ready["reason"], ready["message"])
            log.info("cluster status unknown", cluster=object_key(cluster), reason=ready["reason"])
        return updated

    def _cluster_init(self, cluster: Object) -> tuple[str, str | None]:
        assert self.bases is not None
        assert self.descriptions is not None
        namespace = cluster["metadata"]["namespace"]
        base_name = lifecycle.init_base_name(
            cluster, self.bases.store.by_index("namespace", namespace)
        )
        base = self.bases.store.get(f"{namespace}/{base_name}") if base_name else None
        descriptions = (
            self.descriptions.by_index(_BY_BASE_UID, base["metadata"]["uid"]) if base else []
        )
        reason = lifecycle.cluster_init_reason(
            cluster, gate=True, base=base, descriptions=descriptions
        )
        return reason, base_name


def _base_uid(description: Object) -> list[str]:
    uid = (description["metadata"].get("labels") or {}).get(known.CONFIG_UID_LABEL)
    return [uid] if uid else []


def _condition(status: Object, condition_type: str) -> Object | None:
    for condition in status.get("conditions") or []:
        if condition.get("type") == condition_type:
            return dict(condition)
    return None
