"""The parent-side Helm deployer (spec §4.7 "Helm path", Push): reconciles the HelmReleases
of clusters in Push mode (or Dual with the agent's AppPusher gate on) with the real helm
binary, through the hub like the Generic pusher and with the same credentials
(:func:`.pusher.child_config`: the parent's own identity to the hub proxy, impersonating
``clusternet`` with the child's ``child-cluster-deployer`` token as the ``clusternet-token``
extra).  helm gets them as a 0600 kubeconfig in a private temporary folder, never on its
command line.

Watch-driven: HelmReleases (spec or deletion changes, not their status), ManagedClusters
(push decision inputs) and the ``child-cluster-deployer`` Secrets.  A deleting HelmRelease
of a lost cluster just loses its finalizer.
"""

from __future__ import annotations

from typing import Final

import structlog
from prometheus_client import REGISTRY, CollectorRegistry

from clusternet.apis import known
from clusternet.apis.apps.v1alpha1 import GROUP, VERSION
from clusternet.controllermanager.pusher import MissingCredentials, _push_inputs, child_config
from clusternet.deployer import PushDecision, cluster_lost, is_deleting, push_decision
from clusternet.deployer.helm import failed_status, status_patch
from clusternet.deployer.helmcli import Helm
from clusternet.deployer.helmsync import ReleaseSync
from clusternet.kube import KubeClient, NotFound, Object
from clusternet.runtime import (
    DeletedFinalStateUnknown,
    EventRecorder,
    Result,
    SharedInformerFactory,
    WorkQueue,
    default_controller_rate_limiter,
    object_key,
    run_workers,
)

log = structlog.get_logger(__name__)

NAME: Final = "helmpusher"
PUSH_RETRY_CAP: Final = 30.0  # seconds
APPS_API_VERSION: Final = f"{GROUP}/{VERSION}"
CLUSTERS_API_VERSION: Final = f"{known.CLUSTERS_GROUP}/v1beta1"
_BY_NAMESPACE: Final = "namespace"


class HelmPusher:
    def __init__(
        self,
        client: KubeClient,
        informers: SharedInformerFactory,
        recorder: EventRecorder,
        helm: Helm | None,
        *,
        registry: CollectorRegistry | None = REGISTRY,
    ) -> None:
        self.client = client
        self.recorder = recorder
        self.sync = ReleaseSync(client, recorder, helm)
        # A child that is away fails every push: retry at least every 30 s, so that work
        # resumes soon after it is back (client-go's 1000 s cap would leave it idle).
        self.queue: WorkQueue[str] = WorkQueue(
            NAME,
            rate_limiter=default_controller_rate_limiter(max_delay=PUSH_RETRY_CAP),
            registry=registry,
        )
        self.releases = informers.informer(APPS_API_VERSION, "HelmRelease")
        self.clusters = informers.informer(CLUSTERS_API_VERSION, "ManagedCluster")
        self.secrets = informers.informer(
            "v1", "Secret", field_selector=f"metadata.name={known.CHILD_CLUSTER_SECRET_NAME}"
        )
        self.releases.add_event_handler(
            on_add=self._enqueue,
            on_update=lambda old, new: (
                self._enqueue(new)
                if old.get("spec") != new.get("spec") or is_deleting(old) != is_deleting(new)
                else None
            ),
        )
        self.clusters.add_event_handler(
            on_add=self._enqueue_namespace,
            on_update=lambda old, new: (
                self._enqueue_namespace(new) if _push_inputs(old) != _push_inputs(new) else None
            ),
            on_delete=self._enqueue_namespace,
        )
        self.secrets.add_event_handler(
            on_add=self._enqueue_namespace,
            on_update=lambda old, new: (
                self._enqueue_namespace(new) if old.get("data") != new.get("data") else None
            ),
            on_delete=self._enqueue_namespace,
        )

    async def run(self, workers: int) -> None:
        try:
            await run_workers(self.queue, self.reconcile, workers=workers)
        finally:
            self.queue.shut_down()

    def _enqueue(self, obj: Object | DeletedFinalStateUnknown) -> None:
        self.queue.add(object_key(obj))

    def _enqueue_namespace(self, obj: Object | DeletedFinalStateUnknown) -> None:
        if isinstance(obj, DeletedFinalStateUnknown):
            obj = obj.object
        namespace = obj["metadata"].get("namespace", "")
        for key in self.releases.store.index_keys(_BY_NAMESPACE, namespace):
            self.queue.add(key)

    def _managed_cluster(self, namespace: str) -> Object | None:
        found = self.clusters.by_index(_BY_NAMESPACE, namespace)
        return found[0] if found else None

    async def reconcile(self, key: str) -> Result | None:
        obj = self.releases.store.get(key)
        if obj is None:
            return None
        namespace = obj["metadata"]["namespace"]
        managed_cluster = self._managed_cluster(namespace)
        deleting = is_deleting(obj)
        if deleting:
            if known.APP_FINALIZER not in (obj["metadata"].get("finalizers") or ()):
                return None
            if cluster_lost(managed_cluster):
                await self.sync.remove(None, obj)  # a lost cluster never blocks deletion
                return None
        if managed_cluster is None:
            return None
        decision = push_decision(managed_cluster)
        if decision is not PushDecision.PUSH:
            return None  # WAIT: the ManagedCluster update requeues; NOT_OURS: the agent pulls
        secret = self.secrets.store.get(f"{namespace}/{known.CHILD_CLUSTER_SECRET_NAME}")
        try:
            config = child_config(self.client.config, managed_cluster, secret)
        except MissingCredentials as err:
            if not deleting:
                await self._fail(obj, str(err))
            return None  # the Secret's events requeue
        if deleting:
            await self.sync.remove(config, obj)
        else:
            await self.sync.deploy(config, obj)
        return None

    async def _fail(self, obj: Object, message: str) -> None:
        patch = status_patch(obj.get("status"), failed_status(message, obj.get("status")))
        if patch is not None:
            meta = obj["metadata"]
            try:
                await self.client.patch(
                    APPS_API_VERSION, "HelmRelease", meta["name"], {"status": patch},
                    namespace=meta["namespace"], subresource="status",
                )  # fmt: skip
            except NotFound:
                return
        self.recorder.event(obj, "Warning", "ChartLocateFailure", message)
