"""The parent-side Generic deployer (spec §4.7, "Push"): applies Descriptions to the child
clusters that are in Push mode, or Dual with the agent's AppPusher gate on.

Watch-driven: Descriptions (all namespaces), ManagedClusters and the ``child-cluster-deployer``
Secrets.  A Description of a cluster whose ``status.appPusher`` is not reported yet waits for
the ManagedCluster update that brings it (no polling).  The child is reached through the hub
(``sockets/<clusterID>/proxy/direct``) with this process's own parent credentials,
impersonating user ``clusternet`` with the child's deployer token as the ``clusternet-token``
extra; or directly at ``apiserver-advertise-url`` if the cluster does not use the socket.
One client per cluster ID, rebuilt when the Secret changes.  Helm Descriptions are not
handled here.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hashlib
from typing import Final
from urllib.parse import quote

import structlog
from prometheus_client import REGISTRY, CollectorRegistry

from clusternet.apis import known
from clusternet.apis.apps.v1alpha1 import GROUP, VERSION, DescriptionPhase
from clusternet.deployer import (
    DeployFailed,
    DescriptionSync,
    PushDecision,
    cluster_lost,
    is_deleting,
    is_generic,
    push_decision,
)
from clusternet.deployer.deferred import DEFERRED_OFFLOAD_LABEL, sweep
from clusternet.kube import ClusterConfig, Impersonation, KubeClient, Object
from clusternet.runtime import (
    DeletedFinalStateUnknown,
    EventRecorder,
    Result,
    SharedInformerFactory,
    WorkQueue,
    default_controller_rate_limiter,
    last_state,
    object_key,
    run_workers,
)

log = structlog.get_logger(__name__)

NAME: Final = "pusher"
PUSH_RETRY_CAP: Final = 30.0  # seconds
_SWEEP: Final = "sweep:"  # queue key prefix: deferred offloads of a cluster's namespace
APPS_API_VERSION: Final = f"{GROUP}/{VERSION}"
CLUSTERS_API_VERSION: Final = f"{known.CLUSTERS_GROUP}/v1beta1"
SOCKETS_PATH: Final = f"/apis/{known.PROXIES_GROUP}/v1alpha1/sockets"
_BY_NAMESPACE: Final = "namespace"  # built into every informer's store


class MissingCredentials(Exception):
    """The dedicated namespace has no usable ``child-cluster-deployer`` Secret (yet)."""


def child_config(
    parent: ClusterConfig, managed_cluster: Object, secret: Object | None
) -> ClusterConfig:
    """How the parent reaches a child (pure): through the hub with the deployer token as the
    ``clusternet-token`` extra, or directly when the cluster does not use the socket."""
    data = (secret or {}).get("data") or {}
    try:
        token = base64.b64decode(data["token"], validate=True).decode()
    except (KeyError, ValueError):
        token = ""
    if not token:
        raise MissingCredentials(
            f"no token in Secret {known.CHILD_CLUSTER_SECRET_NAME} of the cluster's namespace"
        )
    cluster_id = (managed_cluster.get("spec") or {}).get("clusterId", "")
    use_socket = (managed_cluster.get("status") or {}).get("useSocket")
    # Not reported yet (status.useSocket unset): through the hub unless a direct URL is known.
    if use_socket or (use_socket is None and not data.get(known.CHILD_CLUSTER_APISERVER_URL_KEY)):
        return dataclasses.replace(
            parent,
            server=f"{parent.server.rstrip('/')}{SOCKETS_PATH}/{quote(cluster_id)}/proxy/direct",
            impersonate=Impersonation(user="clusternet", extra={"clusternet-token": (token,)}),
        )
    url = base64.b64decode(data[known.CHILD_CLUSTER_APISERVER_URL_KEY]).decode()
    ca = base64.b64decode(data["ca.crt"]) if data.get("ca.crt") else None
    return ClusterConfig(server=url, ca_data=ca, token=token)


def _fingerprint(managed_cluster: Object, secret: Object | None) -> str:
    data = (secret or {}).get("data") or {}
    status = managed_cluster.get("status") or {}
    parts = [str(status.get("useSocket")), *(f"{k}={data[k]}" for k in sorted(data))]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


class Pusher:
    def __init__(
        self,
        client: KubeClient,
        informers: SharedInformerFactory,
        recorder: EventRecorder,
        *,
        registry: CollectorRegistry | None = REGISTRY,
    ) -> None:
        self.client = client
        self.sync = DescriptionSync(client, recorder)
        # A child that is away fails every push: retry at least every 30 s, so that work
        # resumes soon after it is back (client-go's 1000 s cap would leave it idle).
        self.queue: WorkQueue[str] = WorkQueue(
            NAME,
            rate_limiter=default_controller_rate_limiter(max_delay=PUSH_RETRY_CAP),
            registry=registry,
        )
        self.descriptions = informers.informer(APPS_API_VERSION, "Description")
        self.clusters = informers.informer(CLUSTERS_API_VERSION, "ManagedCluster")
        self.secrets = informers.informer(
            "v1", "Secret", field_selector=f"metadata.name={known.CHILD_CLUSTER_SECRET_NAME}"
        )
        # offloads deferred while a cluster was lost (clusternet.deployer.deferred)
        self.deferred = informers.informer(
            "v1", "ConfigMap", label_selector=f"{DEFERRED_OFFLOAD_LABEL}=true"
        )
        self.deferred.add_event_handler(on_add=self._enqueue_sweep)
        # cluster ID -> (fingerprint of its credentials, client)
        self._children: dict[str, tuple[str, KubeClient]] = {}
        self._closing: set[asyncio.Task[None]] = set()
        self.descriptions.add_event_handler(
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
            on_delete=self._cluster_deleted,
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
            for _, child in self._children.values():
                await child.aclose()
            self._children.clear()

    def _enqueue(self, obj: Object | DeletedFinalStateUnknown) -> None:
        self.queue.add(object_key(obj))

    def _enqueue_namespace(self, obj: Object | DeletedFinalStateUnknown) -> None:
        namespace = last_state(obj)["metadata"].get("namespace", "")
        for key in self.descriptions.store.index_keys(_BY_NAMESPACE, namespace):
            self.queue.add(key)
        self._enqueue_sweep(obj)

    def _enqueue_sweep(self, obj: Object | DeletedFinalStateUnknown) -> None:
        namespace = last_state(obj)["metadata"].get("namespace", "")
        if self.deferred.store.index_keys(_BY_NAMESPACE, namespace):
            self.queue.add(f"{_SWEEP}{namespace}")

    async def _sweep(self, namespace: str) -> Result | None:
        """Deferred offloads of a cluster that is reachable again."""
        records = self.deferred.store.by_index(_BY_NAMESPACE, namespace)
        managed_cluster = self._managed_cluster(namespace)
        if not records or managed_cluster is None or cluster_lost(managed_cluster):
            return None  # the ManagedCluster's events requeue
        try:
            child = await self._child(managed_cluster)
        except MissingCredentials:
            return None  # the Secret's events requeue
        errors = await sweep(self.client, child, records, self.descriptions.store.get)
        if errors:
            raise DeployFailed("; ".join(errors))
        return None

    def _cluster_deleted(self, obj: Object | DeletedFinalStateUnknown) -> None:
        self._enqueue_namespace(obj)
        cluster_id = (last_state(obj).get("spec") or {}).get("clusterId", "")
        cached = self._children.pop(cluster_id, None)
        if cached is not None:
            task = asyncio.get_running_loop().create_task(cached[1].aclose())
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    def _managed_cluster(self, namespace: str) -> Object | None:
        found = self.clusters.by_index(_BY_NAMESPACE, namespace)
        return found[0] if found else None

    async def _child(self, managed_cluster: Object) -> KubeClient:
        namespace = managed_cluster["metadata"]["namespace"]
        cluster_id = (managed_cluster.get("spec") or {}).get("clusterId", "")
        secret = self.secrets.store.get(f"{namespace}/{known.CHILD_CLUSTER_SECRET_NAME}")
        fingerprint = _fingerprint(managed_cluster, secret)
        cached = self._children.get(cluster_id)
        if cached is not None and cached[0] == fingerprint:
            return cached[1]
        config = child_config(self.client.config, managed_cluster, secret)
        child = KubeClient(
            config,
            cluster=f"child/{cluster_id}",
            user_agent=known.CLUSTERNET_CONTROLLER_MANAGER_NAME,
        )
        self._children[cluster_id] = (fingerprint, child)
        if cached is not None:
            await cached[1].aclose()
        return child

    async def reconcile(self, key: str) -> Result | None:
        if key.startswith(_SWEEP):
            return await self._sweep(key.removeprefix(_SWEEP))
        obj = self.descriptions.store.get(key)
        if obj is None or not is_generic(obj):
            return None
        namespace = obj["metadata"]["namespace"]
        managed_cluster = self._managed_cluster(namespace)
        if is_deleting(obj):
            if known.APP_FINALIZER not in (obj["metadata"].get("finalizers") or ()):
                return None
            if cluster_lost(managed_cluster):
                # A lost cluster never blocks deletion.  One that still exists gets its
                # objects deleted when it is back; a deleted one has no credentials left.
                returns = managed_cluster is not None and not is_deleting(managed_cluster)
                await self.sync.remove(None, obj, defer_offload=returns)
                return None
        if managed_cluster is None:
            return None  # the ManagedCluster's add event brings it back
        decision = push_decision(managed_cluster)
        if decision is PushDecision.WAIT:
            log.info("waiting for the agent to report status.appPusher", description=key)
            return None  # its ManagedCluster update event requeues
        if decision is PushDecision.NOT_OURS:
            return None  # the agent pulls
        try:
            child = await self._child(managed_cluster)
        except MissingCredentials as err:
            if not is_deleting(obj):
                await self.sync.write_status(
                    obj, {"phase": DescriptionPhase.FAILURE, "reason": str(err)}
                )
            self.sync.recorder.event(obj, "Warning", "UnSuccessfullyDeployed", str(err))
            return None  # the Secret's events requeue
        try:
            if is_deleting(obj):
                await self.sync.remove(child, obj)
            else:
                await self.sync.deploy(child, obj)
        except DeployFailed as err:
            log.warning("deploying failed, retrying", description=key, error=str(err))
            raise
        return None


def _push_inputs(managed_cluster: Object) -> tuple[object, ...]:
    """What the push decision and the client depend on: a change requeues the namespace."""
    spec = managed_cluster.get("spec") or {}
    status = managed_cluster.get("status") or {}
    return (
        spec.get("syncMode"),
        spec.get("clusterId"),
        status.get("appPusher"),
        status.get("useSocket"),
        cluster_lost(managed_cluster),
    )
