"""Access ends with the registration: a Denied request or a deleted ManagedCluster revokes the
cluster's ServiceAccount, token and RBAC (the pure decision, then the controller against a
fake client)."""

from __future__ import annotations

from typing import Any

import pytest

from clusternet.apis import known
from clusternet.controllermanager import registration as reg
from clusternet.controllermanager.crrapprover import RegistrationApprover
from clusternet.kube import NotFound
from clusternet.runtime import SharedInformerFactory

Object = dict[str, Any]
CLUSTER_ID = "7c2f4a10-1111-4e2b-9a00-0c0ffee00001"
OTHER_ID = "7c2f4a10-1111-4e2b-9a00-0c0ffee00002"
NAMESPACE = "clusternet-q7x2k"
ACCOUNT = "clusternet-x7k2p"
CLUSTER = {"metadata": {"name": "edge-a", "namespace": NAMESPACE}}


def request(**status: Any) -> Object:
    return {
        "apiVersion": reg.CLUSTERS_API_VERSION,
        "kind": "ClusterRegistrationRequest",
        "metadata": {"name": known.registration_request_name(CLUSTER_ID), "uid": "u1"},
        "spec": {"clusterId": CLUSTER_ID, "clusterName": "edge-a"},
        "status": status,
    }


APPROVED = {
    "result": "Approved",
    "dedicatedNamespace": NAMESPACE,
    "managedClusterName": "edge-a",
    "token": "dG9rZW4=",
    "caCertificate": "Y2E=",
}


@pytest.mark.parametrize(
    ("status", "cluster", "reason"),
    [
        (APPROVED, CLUSTER, None),
        (APPROVED, None, f"ManagedCluster {NAMESPACE}/edge-a was deleted"),
        ({**APPROVED, "result": "Denied"}, CLUSTER, "the registration request is Denied"),
        ({"result": "Denied", "errorMessage": "no"}, None, "the registration request is Denied"),
        ({"result": "Failed", "errorMessage": "clash"}, None, None),
        ({}, None, None),  # not decided yet: nothing was minted for it
        ({"result": "Approved"}, None, None),  # an operator's approval being provisioned
    ],
)
def test_revocation_reason(status: Object, cluster: Object | None, reason: str | None) -> None:
    assert reg.revocation_reason(request(**status), cluster) == reason


def test_a_denied_status_loses_the_credentials_an_approval_left() -> None:
    denied = request(**{**APPROVED, "result": "Denied"})
    assert reg.revoked_status(denied) == {
        "result": "Denied",
        "errorMessage": "denied by an operator after approval",
    }
    assert reg.revoked_status(request(result="Denied", errorMessage="bad name")) is None
    assert reg.revoked_status(request(**APPROVED)) is None


def labelled(api_version: str, kind: str, name: str, ns: str | None, cid: str) -> Object:
    metadata: Object = {"name": name, "labels": {known.CLUSTER_ID_LABEL: cid}}
    if ns:
        metadata["namespace"] = ns
    return {"apiVersion": api_version, "kind": kind, "metadata": metadata}


class FakeClient:
    cluster = "parent"

    def __init__(self, objects: list[Object]) -> None:
        self.objects = {self._key(o): o for o in objects}
        self.deleted: list[tuple[str, str, str | None]] = []
        self.statuses: list[Object] = []

    @staticmethod
    def _key(o: Object) -> tuple[str, str, str | None]:
        return (o["kind"], o["metadata"]["name"], o["metadata"].get("namespace"))

    async def get(
        self, api_version: str, kind: str, name: str, *, namespace: str | None = None
    ) -> Object:
        try:
            return self.objects[(kind, name, namespace)]
        except KeyError:
            raise NotFound(404, {"message": "not found"}) from None

    async def delete(
        self, api_version: str, kind: str, name: str, *, namespace: str | None = None
    ) -> Object:
        del self.objects[(kind, name, namespace)]
        self.deleted.append((kind, name, namespace))
        return {}

    async def update_status(self, obj: Object) -> Object:
        self.statuses.append(obj["status"])
        return obj


class FakeRecorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, str]] = []

    def event(self, obj: Object, type: str, reason: str, message: str) -> None:
        self.events.append((type, reason, message))


def provisioned() -> list[Object]:
    rbac = reg.RBAC_API_VERSION
    role_name = known.cluster_role_name(CLUSTER_ID)
    secret = labelled("v1", "Secret", ACCOUNT, NAMESPACE, CLUSTER_ID)
    secret["metadata"]["annotations"] = {reg.SERVICE_ACCOUNT_NAME_ANNOTATION: ACCOUNT}
    return [
        labelled(rbac, "ClusterRole", role_name, None, CLUSTER_ID),
        labelled(rbac, "ClusterRoleBinding", role_name, None, CLUSTER_ID),
        labelled(rbac, "Role", known.MANAGED_CLUSTER_ROLE, NAMESPACE, CLUSTER_ID),
        labelled(rbac, "RoleBinding", known.MANAGED_CLUSTER_ROLE, NAMESPACE, CLUSTER_ID),
        labelled("v1", "ServiceAccount", ACCOUNT, NAMESPACE, CLUSTER_ID),
        secret,
        # Another cluster's objects are never touched.
        labelled("v1", "ServiceAccount", "clusternet-other", NAMESPACE, OTHER_ID),
    ]


def approver(objects: list[Object]) -> tuple[RegistrationApprover, FakeClient, FakeRecorder]:
    client, recorder = FakeClient(objects), FakeRecorder()
    informers = SharedInformerFactory(client, registry=None)  # type: ignore[arg-type]
    ctrl = RegistrationApprover(
        client,  # type: ignore[arg-type]
        informers,
        recorder,  # type: ignore[arg-type]
        auto_approve=True,
        socket_connection=True,
        cluster_init=False,
        registry=None,
    )
    for obj in objects:
        if obj["kind"] == "Secret":
            ctrl.tokens.store.upsert(obj)
    return ctrl, client, recorder


async def test_a_deleted_managed_cluster_revokes_everything_minted_for_it() -> None:
    ctrl, client, recorder = approver(provisioned())
    crr = request(**APPROVED)
    ctrl.requests.store.upsert(crr)

    await ctrl.reconcile(crr["metadata"]["name"])

    assert [kind for kind, _, _ in client.deleted] == [
        "ClusterRoleBinding",
        "ClusterRole",
        "RoleBinding",
        "Role",
        "ServiceAccount",
        "Secret",
    ]
    assert ("ServiceAccount", "clusternet-other", NAMESPACE) in client.objects
    assert recorder.events[0][:2] == ("Warning", "CredentialsRevoked")
    assert client.statuses == []  # an Approved request keeps its (now dead) token


async def test_an_existing_cluster_keeps_its_access() -> None:
    objects = [*provisioned(), {"kind": "ManagedCluster", **CLUSTER}]
    ctrl, client, recorder = approver(objects)
    crr = request(**APPROVED)
    ctrl.requests.store.upsert(crr)

    await ctrl.reconcile(crr["metadata"]["name"])  # a cache miss, confirmed by a live read

    assert client.deleted == []
    assert recorder.events == []


async def test_denying_an_approved_request_revokes_and_blanks_its_status() -> None:
    ctrl, client, _recorder = approver(provisioned())
    crr = request(**{**APPROVED, "result": "Denied"})
    ctrl.requests.store.upsert(crr)
    ctrl.clusters.store.upsert({"kind": "ManagedCluster", **CLUSTER})

    await ctrl.reconcile(crr["metadata"]["name"])

    assert len(client.deleted) == 6
    assert client.statuses == [
        {"result": "Denied", "errorMessage": "denied by an operator after approval"}
    ]


async def test_nothing_to_revoke_costs_no_call() -> None:
    ctrl, client, recorder = approver([])
    crr = request(result="Denied", errorMessage="bad name")
    ctrl.requests.store.upsert(crr)

    await ctrl.reconcile(crr["metadata"]["name"])

    assert client.deleted == []
    assert client.statuses == []
    assert recorder.events == []
