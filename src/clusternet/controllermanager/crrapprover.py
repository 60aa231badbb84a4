"""The ``crrapprover`` controller: turns ClusterRegistrationRequests into registered clusters.

Provisioning is idempotent and survives a crash at any point.  Objects with generated names
(the namespace and the ServiceAccount, named ``clusternet-xxxxx`` as upstream names them) are
looked up by their labels with a live list before anything is created: a list without
resourceVersion is a consistent read, so unlike an informer cache it cannot miss what this
process, or a predecessor killed a moment ago, created.  Only requests not yet decided are
provisioned, so these reads happen once per registration, not per resync.

Nothing waits in a worker: when the ServiceAccount token is not there yet, the reconcile
returns and the Secret informer brings the request back once kube-controller-manager has
filled the token in (with a slow timed requeue as a safety net).

Access ends with the registration: when a request is Denied (also after an approval) or its
ManagedCluster is deleted, the cluster's ClusterRole/ClusterRoleBinding, Role/RoleBinding,
ServiceAccount and token Secret are deleted (deleting the ServiceAccount invalidates every
token of it).  The token Secrets cached by the Secret informer tell whether there is anything
left to revoke, so a decided request costs no API call on resync.
"""

from __future__ import annotations

from typing import Final

import structlog
from prometheus_client import REGISTRY, CollectorRegistry

from clusternet.apis import known
from clusternet.apis.clusters.v1beta1 import ApprovedResult
from clusternet.controllermanager import registration as reg
from clusternet.kube import AlreadyExists, ApiError, Conflict, KubeClient, NotFound, Object
from clusternet.runtime import (
    DeletedFinalStateUnknown,
    EventRecorder,
    Informer,
    Result,
    SharedInformerFactory,
    WorkQueue,
    last_state,
    object_key,
    run_workers,
)

log = structlog.get_logger(__name__)

NAME: Final = "crrapprover"
# The token normally arrives within a second, announced by the Secret informer; this only
# covers a missed event.
CREDENTIALS_RECHECK_SECONDS: Final = 30.0
_BY_CLUSTER_ID: Final = "cluster-id"


def _cluster_id_index(obj: Object) -> list[str]:
    cluster_id = (obj["metadata"].get("labels") or {}).get(known.CLUSTER_ID_LABEL)
    return [cluster_id] if cluster_id else []


class ProvisioningConflict(Exception):
    """Something stands in the way that retrying will not remove: the request fails."""


class RegistrationApprover:
    def __init__(
        self,
        client: KubeClient,
        informers: SharedInformerFactory,
        recorder: EventRecorder,
        *,
        auto_approve: bool,
        socket_connection: bool,
        cluster_init: bool,
        registry: CollectorRegistry | None = REGISTRY,
    ) -> None:
        self.client = client
        self.recorder = recorder
        self.auto_approve = auto_approve
        self.socket_connection = socket_connection
        self.cluster_init = cluster_init
        self.queue: WorkQueue[str] = WorkQueue(NAME, registry=registry)
        self.requests = informers.informer(reg.CLUSTERS_API_VERSION, "ClusterRegistrationRequest")
        self.requests.add_event_handler(
            on_add=self._enqueue, on_update=lambda _old, new: self._enqueue(new)
        )
        # Only the token Secrets of registering clusters: they carry the cluster-id label.
        self.tokens = tokens = informers.informer(
            "v1",
            "Secret",
            label_selector=known.CLUSTER_ID_LABEL,
            field_selector=f"type={reg.SERVICE_ACCOUNT_TOKEN_TYPE}",
        )
        tokens.add_indexer(_BY_CLUSTER_ID, _cluster_id_index)
        tokens.add_event_handler(
            on_add=self._enqueue_owner, on_update=lambda _old, new: self._enqueue_owner(new)
        )
        # A deleted ManagedCluster brings its request back, to revoke the cluster's access.
        self.clusters: Informer = informers.informer(reg.CLUSTERS_API_VERSION, "ManagedCluster")
        self.clusters.add_event_handler(
            on_delete=lambda cluster: self._enqueue_owner(last_state(cluster))
        )

    async def run(self, workers: int) -> None:
        try:
            await run_workers(self.queue, self.reconcile, workers=workers)
        finally:
            self.queue.shut_down()

    def _enqueue(self, request: Object | DeletedFinalStateUnknown) -> None:
        if isinstance(request, dict):
            self.queue.add(request["metadata"]["name"])

    def _enqueue_owner(self, secret: Object) -> None:
        cluster_id = (secret["metadata"].get("labels") or {}).get(known.CLUSTER_ID_LABEL)
        if cluster_id:
            self.queue.add(known.registration_request_name(cluster_id))

    async def reconcile(self, name: str) -> Result | None:
        request = self.requests.store.get(name)
        if request is None:
            return None
        action, reason = reg.decide(request, auto_approve=self.auto_approve)
        if action is reg.Action.DENY:
            await self._finish(request, reg.rejected_status(ApprovedResult.DENIED, reason))
            self.recorder.event(request, "Warning", "Denied", reason)
        elif action is reg.Action.WAIT_FOR_APPROVAL:
            self.recorder.event(
                request,
                "Normal",
                "WaitingForApproval",
                "automatic approval is off: waiting for an operator to set status.result "
                "to Approved (or Denied)",
            )
        elif action is reg.Action.PROVISION:
            return await self._provision(request)
        elif action is reg.Action.SKIP:
            await self._revoke_if_needed(request)
        return None

    async def _revoke_if_needed(self, request: Object) -> None:
        cluster_id = str((request.get("spec") or {}).get("clusterId") or "")
        secrets = self.tokens.by_index(_BY_CLUSTER_ID, cluster_id) if cluster_id else []
        if secrets:
            reason = reg.revocation_reason(request, await self._managed_cluster(request))
            if reason is not None:
                await self._revoke(cluster_id, secrets)
                self.recorder.event(
                    request,
                    "Warning",
                    "CredentialsRevoked",
                    f"{reason}: the cluster's ServiceAccount, token and RBAC were deleted",
                )
        status = reg.revoked_status(request)
        if status is not None:
            await self._finish(request, status)

    async def _managed_cluster(self, request: Object) -> Object | None:
        """The request's ManagedCluster; a cache miss is confirmed with a live read, as the
        cache may not have seen a cluster created a moment ago."""
        status = request.get("status") or {}
        namespace, name = status.get("dedicatedNamespace"), status.get("managedClusterName")
        if not namespace or not name:
            return None
        cached = self.clusters.store.get(f"{namespace}/{name}")
        if cached is not None:
            return cached
        try:
            return await self.client.get(
                reg.CLUSTERS_API_VERSION, "ManagedCluster", name, namespace=namespace
            )
        except NotFound:
            return None

    async def _revoke(self, cluster_id: str, secrets: list[Object]) -> None:
        """Bindings first (access ends at once), the token Secrets last: they are what tells
        that a revocation is still due, so a failure part way is retried in full."""
        name = known.cluster_role_name(cluster_id)
        await self._delete(reg.RBAC_API_VERSION, "ClusterRoleBinding", name, None, cluster_id)
        await self._delete(reg.RBAC_API_VERSION, "ClusterRole", name, None, cluster_id)
        for secret in secrets:
            metadata = secret["metadata"]
            namespace = metadata["namespace"]
            role = known.MANAGED_CLUSTER_ROLE
            await self._delete(reg.RBAC_API_VERSION, "RoleBinding", role, namespace, cluster_id)
            await self._delete(reg.RBAC_API_VERSION, "Role", role, namespace, cluster_id)
            account = (metadata.get("annotations") or {}).get(reg.SERVICE_ACCOUNT_NAME_ANNOTATION)
            if account:
                await self._delete("v1", "ServiceAccount", account, namespace, cluster_id)
        for secret in secrets:
            await self._delete(
                "v1",
                "Secret",
                secret["metadata"]["name"],
                secret["metadata"]["namespace"],
                cluster_id,
            )
        log.info(
            "revoked the credentials of a cluster",
            cluster_id=cluster_id,
            tokens=[object_key(s) for s in secrets],
        )

    async def _delete(
        self, api_version: str, kind: str, name: str, namespace: str | None, cluster_id: str
    ) -> None:
        """Delete the object if it is this cluster's (its cluster-id label says so)."""
        try:
            current = await self.client.get(api_version, kind, name, namespace=namespace)
            labels = current["metadata"].get("labels") or {}
            if labels.get(known.CLUSTER_ID_LABEL) != cluster_id:
                return
            await self.client.delete(api_version, kind, name, namespace=namespace)
        except NotFound:
            pass

    async def _provision(self, request: Object) -> Result | None:
        try:
            status = await self._provision_objects(request)
        except ProvisioningConflict as err:
            await self._finish(request, reg.rejected_status(ApprovedResult.FAILED, str(err)))
            self.recorder.event(request, "Warning", "FailedProvisioning", str(err))
            return None
        except (ApiError, ConnectionError) as err:
            self.recorder.event(request, "Warning", "FailedProvisioning", str(err))
            raise  # retried with backoff
        if status is None:
            log.info("waiting for the ServiceAccount token", request=request["metadata"]["name"])
            return Result(requeue_after=CREDENTIALS_RECHECK_SECONDS)
        if await self._finish(request, status):
            self.recorder.event(
                request,
                "Normal",
                "Approved",
                f"cluster {request['spec']['clusterName']} registered as ManagedCluster "
                f"{status['dedicatedNamespace']}/{status['managedClusterName']}",
            )
        return None

    async def _provision_objects(self, request: Object) -> Object | None:
        """Every object of the cluster, found or created; its Approved status once the token
        is there."""
        cluster_id = reg.cluster_id_of(request)
        namespace = await self._ensure_namespace(request)
        cluster = await self._ensure_owned(
            reg.managed_cluster(request, namespace, cluster_init=self.cluster_init)
        )
        account = await self._ensure_owned(reg.service_account(request, namespace))
        secret = await self._ensure_token_secret(request, account)
        for desired in reg.rbac_objects(
            cluster_id, account, socket_connection=self.socket_connection
        ):
            await self._ensure_rbac(desired)
        return reg.approved_status(namespace, cluster["metadata"]["name"], secret)

    async def _finish(self, request: Object, status: Object) -> bool:
        """Write the verdict; False if the request changed meanwhile (e.g. an operator
        decided it): its update event brings it back with the new state."""
        try:
            await self.client.update_status({**request, "status": status})
        except Conflict:
            log.info("request changed while being decided", request=request["metadata"]["name"])
            return False
        except NotFound:
            return False  # deleted meanwhile
        return True

    async def _find_owned(
        self, api_version: str, kind: str, cluster_id: str, namespace: str | None = None
    ) -> Object | None:
        """The oldest live object of the cluster (several only if an older approver raced)."""
        listed = await self.client.list(
            api_version, kind, namespace=namespace, label_selector=reg.owned_selector(cluster_id)
        )
        live = [o for o in listed["items"] if not o["metadata"].get("deletionTimestamp")]
        if not live:
            return None
        if len(live) > 1:
            log.warning("several objects for one cluster, using the oldest", kind=kind)
        oldest: Object = min(
            live, key=lambda o: (o["metadata"]["creationTimestamp"], o["metadata"]["name"])
        )
        return oldest

    async def _ensure_namespace(self, request: Object) -> str:
        cluster_id = reg.cluster_id_of(request)
        existing = await self._find_owned("v1", "Namespace", cluster_id)
        if existing is not None:
            return str(existing["metadata"]["name"])
        desired = reg.dedicated_namespace(request)
        try:
            created = await self.client.create(desired)
        except AlreadyExists:
            # Only an explicit spec.clusterNamespace can collide.  One of this cluster's own
            # would have been listed above, unless it is being deleted: then retry later.
            name = desired["metadata"]["name"]
            current = await self.client.get("v1", "Namespace", name)
            if reg.is_owned_by(current, cluster_id):
                raise
            raise ProvisioningConflict(
                f"namespace {name} exists and is not the dedicated namespace of cluster "
                f"{cluster_id}; ask for another spec.clusterNamespace"
            ) from None
        log.info("created the dedicated namespace", namespace=created["metadata"]["name"])
        return str(created["metadata"]["name"])

    async def _ensure_owned(self, desired: Object) -> Object:
        """The ManagedCluster or ServiceAccount of the cluster in its namespace, or ``desired``
        created."""
        metadata = desired["metadata"]
        cluster_id = metadata["labels"][known.CLUSTER_ID_LABEL]
        existing = await self._find_owned(
            desired["apiVersion"], desired["kind"], cluster_id, metadata["namespace"]
        )
        if existing is not None:
            return existing
        try:
            created = await self.client.create(desired)
        except AlreadyExists:
            if "generateName" in metadata:
                raise  # a clash of generated names: the retry draws another name
            raise ProvisioningConflict(
                f"{desired['kind']} {metadata['namespace']}/{metadata['name']} exists and does "
                f"not belong to cluster {cluster_id}"
            ) from None
        log.info(
            "created",
            kind=desired["kind"],
            name=f"{metadata['namespace']}/{created['metadata']['name']}",
        )
        return created

    async def _ensure_token_secret(self, request: Object, account: Object) -> Object:
        desired = reg.token_secret(request, account)
        name, namespace = desired["metadata"]["name"], desired["metadata"]["namespace"]
        try:
            return await self.client.get("v1", "Secret", name, namespace=namespace)
        except NotFound:
            pass
        try:
            return await self.client.create(desired)
        except AlreadyExists:
            return await self.client.get("v1", "Secret", name, namespace=namespace)

    async def _ensure_rbac(self, desired: Object) -> None:
        metadata = desired["metadata"]
        api_version, kind, name = desired["apiVersion"], desired["kind"], metadata["name"]
        namespace = metadata.get("namespace")
        try:
            existing = await self.client.get(api_version, kind, name, namespace=namespace)
        except NotFound:
            try:
                await self.client.create(desired)
                return
            except AlreadyExists:
                existing = await self.client.get(api_version, kind, name, namespace=namespace)
        updated = reg.rbac_update(existing, desired)
        if updated is not None:
            await self.client.update(updated)
            log.info("updated", kind=kind, name=name, namespace=namespace)
