"""What the ``crrapprover`` decides about a ClusterRegistrationRequest, and the objects it
provisions for an approved cluster: pure functions of plain dicts, so that every rule can be
tested without an API server.

The per-cluster RBAC is deliberately narrower than upstream's (spec §12.10): the cluster's
identity may read only its own registration request and, with ``SocketConnection``, open
only its own tunnel; it gets no Secret access outside its dedicated namespace.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Any, Final

from clusternet.apis import known
from clusternet.apis.clusters.v1beta1 import GROUP, VERSION, ApprovedResult, ClusterSyncMode
from clusternet.runtime.flags import is_label_key, is_label_value

Object = dict[str, Any]

CLUSTERS_API_VERSION: Final = f"{GROUP}/{VERSION}"
RBAC_API_VERSION: Final = "rbac.authorization.k8s.io/v1"
RBAC_GROUP: Final = "rbac.authorization.k8s.io"
SERVICE_ACCOUNT_TOKEN_TYPE: Final = "kubernetes.io/service-account-token"
SERVICE_ACCOUNT_NAME_ANNOTATION: Final = "kubernetes.io/service-account.name"
CLUSTER_NAME_MAX_LENGTH: Final = 30  # the CRR CRD's limit (spec §12.12)

_UUID = re.compile(r"^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


class Action(StrEnum):
    SKIP = "Skip"  # decided already: approved with credentials, denied or failed
    DENY = "Deny"
    WAIT_FOR_APPROVAL = "WaitForApproval"
    PROVISION = "Provision"


def decide(request: Object, *, auto_approve: bool) -> tuple[Action, str]:
    """The next step for ``request`` and, for ``DENY``, the reason.

    A result that is set stays as it is, except an ``Approved`` without credentials: that is
    an operator's approval (``--cluster-auto-approve=false``) which the approver completes.
    """
    status = request.get("status") or {}
    result = status.get("result")
    if result == ApprovedResult.APPROVED and status.get("token") and status.get("caCertificate"):
        return Action.SKIP, ""
    if result in (ApprovedResult.DENIED, ApprovedResult.FAILED):
        return Action.SKIP, ""
    error = validation_error(request)
    if error is not None:
        return Action.DENY, error
    if result == ApprovedResult.APPROVED or auto_approve:
        return Action.PROVISION, ""
    return Action.WAIT_FOR_APPROVAL, ""


def validation_error(request: Object) -> str | None:
    """Why ``request`` cannot be approved as it stands, or None.

    The CRD schema checks most fields already; checking again here means a request stored
    under an older or hand-edited schema is denied with a reason instead of failing later.
    """
    name = request["metadata"]["name"]
    spec = request.get("spec") or {}
    cluster_id = str(spec.get("clusterId") or "")
    if not _UUID.match(cluster_id):
        return f"spec.clusterId {cluster_id!r} is not a UUID"
    expected = known.registration_request_name(cluster_id)
    if name != expected:
        return (
            f"name {name!r} does not match spec.clusterId {cluster_id!r}: the request of this "
            f"cluster must be named {expected!r}"
        )
    cluster_name = str(spec.get("clusterName") or "")
    if not cluster_name:
        return "spec.clusterName is required"
    if len(cluster_name) > CLUSTER_NAME_MAX_LENGTH or not _DNS_LABEL.match(cluster_name):
        return (
            f"spec.clusterName {cluster_name!r} is not a DNS label of at most "
            f"{CLUSTER_NAME_MAX_LENGTH} characters"
        )
    namespace = spec.get("clusterNamespace")
    if namespace and (len(namespace) > 63 or not _DNS_LABEL.match(namespace)):
        return f"spec.clusterNamespace {namespace!r} is not a valid namespace name"
    labels = spec.get("ClusterLabels") or {}
    bad = sorted(
        f"{k}={v}" for k, v in labels.items() if not (is_label_key(k) and is_label_value(v))
    )
    if bad:
        return f"spec.ClusterLabels has invalid labels: {', '.join(bad)}"
    sync_mode = spec.get("syncMode") or ClusterSyncMode.PULL
    if sync_mode not in set(ClusterSyncMode):
        return f"spec.syncMode {sync_mode!r} is not one of Push, Pull, Dual"
    return None


# -- what gets provisioned -------------------------------------------------------------------


def cluster_id_of(request: Object) -> str:
    return str(request["spec"]["clusterId"])


def owned_selector(cluster_id: str) -> str:
    """The labels that find a cluster's Namespace, ManagedCluster and ServiceAccount (the
    created-by value is upstream's, so objects created by upstream approvers are found)."""
    return (
        f"{known.OBJECT_CREATED_BY_LABEL}={known.CLUSTERNET_AGENT_NAME},"
        f"{known.CLUSTER_ID_LABEL}={cluster_id}"
    )


def owned_labels(request: Object) -> dict[str, str]:
    spec = request["spec"]
    return {
        known.OBJECT_CREATED_BY_LABEL: known.CLUSTERNET_AGENT_NAME,
        known.CLUSTER_ID_LABEL: spec["clusterId"],
        known.CLUSTER_NAME_LABEL: spec["clusterName"],
    }


def is_owned_by(obj: Object, cluster_id: str) -> bool:
    labels = obj["metadata"].get("labels") or {}
    return (
        labels.get(known.OBJECT_CREATED_BY_LABEL) == known.CLUSTERNET_AGENT_NAME
        and labels.get(known.CLUSTER_ID_LABEL) == cluster_id
    )


def dedicated_namespace(request: Object) -> Object:
    """``spec.clusterNamespace``, or a generated ``clusternet-xxxxx`` as upstream names it."""
    metadata: Object = {"labels": owned_labels(request)}
    explicit = request["spec"].get("clusterNamespace")
    if explicit:
        metadata["name"] = explicit
    else:
        metadata["generateName"] = known.NAME_PREFIX
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": metadata}


def managed_cluster(request: Object, namespace: str, *, cluster_init: bool) -> Object:
    spec = request["spec"]
    # The approver's labels win over requested ones: they are how the cluster is found.
    labels = {**(spec.get("ClusterLabels") or {}), **owned_labels(request)}
    cluster_spec: Object = {
        "clusterId": spec["clusterId"],
        "syncMode": spec.get("syncMode") or ClusterSyncMode.PULL.value,
    }
    if spec.get("clusterType"):
        cluster_spec["clusterType"] = spec["clusterType"]
    if cluster_init:
        cluster_spec["taints"] = [
            {
                "key": known.TAINT_CLUSTER_INITIALIZATION,
                "value": known.REASON_CLUSTER_INIT_WAITING,
                "effect": "NoSchedule",
            }
        ]
    return {
        "apiVersion": CLUSTERS_API_VERSION,
        "kind": "ManagedCluster",
        "metadata": {"name": spec["clusterName"], "namespace": namespace, "labels": labels},
        "spec": cluster_spec,
    }


def service_account(request: Object, namespace: str) -> Object:
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {
            "generateName": known.NAME_PREFIX,
            "namespace": namespace,
            "labels": owned_labels(request),
        },
    }


def token_secret(request: Object, account: Object) -> Object:
    """The long-lived token of ``account``, filled in by kube-controller-manager.

    It carries the cluster-id label so that the approver's Secret informer (which selects on
    that label) sees the token arrive and resumes the registration.
    """
    metadata = account["metadata"]
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": SERVICE_ACCOUNT_TOKEN_TYPE,
        "metadata": {
            "name": metadata["name"],
            "namespace": metadata["namespace"],
            "labels": {
                **owned_labels(request),
                known.CLUSTER_BOOTSTRAPPING_LABEL: known.CREDENTIALS_AUTO,
            },
            "annotations": {SERVICE_ACCOUNT_NAME_ANNOTATION: metadata["name"]},
        },
    }


def cluster_role_rules(cluster_id: str, *, socket_connection: bool) -> list[Object]:
    """What the cluster's identity may do outside its dedicated namespace: the least that a
    registered agent needs (re-reading its own request, and its own tunnel)."""
    rules: list[Object] = [
        {
            "apiGroups": [known.CLUSTERS_GROUP],
            "resources": ["clusterregistrationrequests"],
            "verbs": ["create"],  # an RBAC resourceName cannot restrict create
        },
        {
            "apiGroups": [known.CLUSTERS_GROUP],
            "resources": ["clusterregistrationrequests"],
            "resourceNames": [known.registration_request_name(cluster_id)],
            "verbs": ["get"],
        },
    ]
    if socket_connection:
        rules.append(
            {
                "apiGroups": [known.PROXIES_GROUP],
                "resources": ["sockets", "sockets/proxy"],
                "resourceNames": [cluster_id],
                "verbs": ["*"],
            }
        )
    return rules


def _rbac_metadata(name: str, cluster_id: str, namespace: str | None = None) -> Object:
    metadata: Object = {
        "name": name,
        "labels": {
            known.CLUSTER_BOOTSTRAPPING_LABEL: known.RBAC_DEFAULTS,
            known.OBJECT_CREATED_BY_LABEL: known.CLUSTERNET_CONTROLLER_MANAGER_NAME,
            known.CLUSTER_ID_LABEL: cluster_id,
        },
        "annotations": {known.AUTO_UPDATE_ANNOTATION: "true"},
    }
    if namespace:
        metadata["namespace"] = namespace
    return metadata


def _subjects(account: Object) -> list[Object]:
    metadata = account["metadata"]
    return [
        {"kind": "ServiceAccount", "name": metadata["name"], "namespace": metadata["namespace"]}
    ]


def rbac_objects(cluster_id: str, account: Object, *, socket_connection: bool) -> list[Object]:
    """ClusterRole and ClusterRoleBinding ``clusternet-<id>``, and Role and RoleBinding
    ``clusternet-managedcluster-role`` (everything, but only in the dedicated namespace)."""
    name = known.cluster_role_name(cluster_id)
    namespace = account["metadata"]["namespace"]
    role = known.MANAGED_CLUSTER_ROLE
    return [
        {
            "apiVersion": RBAC_API_VERSION,
            "kind": "ClusterRole",
            "metadata": _rbac_metadata(name, cluster_id),
            "rules": cluster_role_rules(cluster_id, socket_connection=socket_connection),
        },
        {
            "apiVersion": RBAC_API_VERSION,
            "kind": "ClusterRoleBinding",
            "metadata": _rbac_metadata(name, cluster_id),
            "roleRef": {"apiGroup": RBAC_GROUP, "kind": "ClusterRole", "name": name},
            "subjects": _subjects(account),
        },
        {
            "apiVersion": RBAC_API_VERSION,
            "kind": "Role",
            "metadata": _rbac_metadata(role, cluster_id, namespace),
            "rules": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}],
        },
        {
            "apiVersion": RBAC_API_VERSION,
            "kind": "RoleBinding",
            "metadata": _rbac_metadata(role, cluster_id, namespace),
            "roleRef": {"apiGroup": RBAC_GROUP, "kind": "Role", "name": role},
            "subjects": _subjects(account),
        },
    ]


def rbac_update(existing: Object, desired: Object) -> Object | None:
    """``existing`` brought in line with ``desired``, or None when it is in line already or
    its owner opted out (no ``clusternet.io/autoupdate: "true"``).  ``roleRef`` is immutable
    and, the names being fixed, always the same: only rules and subjects are reconciled."""
    annotations = existing["metadata"].get("annotations") or {}
    if annotations.get(known.AUTO_UPDATE_ANNOTATION) != "true":
        return None
    fields = [f for f in ("rules", "subjects") if f in desired]
    if all(existing.get(f) == desired[f] for f in fields):
        return None
    return {**existing, **{f: desired[f] for f in fields}}


# -- the verdict -----------------------------------------------------------------------------


def approved_status(namespace: str, cluster_name: str, secret: Object) -> Object | None:
    """The Approved status carrying the cluster's credentials, or None while
    kube-controller-manager has not filled the token Secret in yet.

    ``token`` and ``caCertificate`` are ``[]byte`` fields, base64 in JSON, exactly like a
    Secret's data values: they are copied over without decoding.
    """
    data = secret.get("data") or {}
    token, ca = data.get("token"), data.get("ca.crt")
    if not token or not ca:
        return None
    return {
        "result": ApprovedResult.APPROVED.value,
        "dedicatedNamespace": namespace,
        "managedClusterName": cluster_name,
        "token": token,
        "caCertificate": ca,
    }


def rejected_status(result: ApprovedResult, message: str) -> Object:
    """Denied or Failed: credentials, namespace and cluster name are left out (blanked)."""
    return {"result": result.value, "errorMessage": message}


# -- revocation --------------------------------------------------------------------------------


def revocation_reason(request: Object, cluster: Object | None) -> str | None:
    """Why the credentials minted for ``request`` must be revoked, or None.

    ``cluster`` is the request's ManagedCluster as found (None when it does not exist).  A
    Denied request (an operator may deny one approved earlier) or a deleted ManagedCluster
    ends the cluster's access: its ServiceAccount, token and RBAC are deleted.  Called only
    when credentials of the cluster still exist, so a revocation happens once.
    """
    status = request.get("status") or {}
    result = status.get("result")
    if result == ApprovedResult.DENIED:
        return "the registration request is Denied"
    if result == ApprovedResult.APPROVED and status.get("managedClusterName") and cluster is None:
        return (
            f"ManagedCluster {status.get('dedicatedNamespace')}/{status['managedClusterName']} "
            "was deleted"
        )
    return None


def revoked_status(request: Object) -> Object | None:
    """A Denied request's status without the credentials an earlier approval left in it, or
    None when it carries none."""
    status = request.get("status") or {}
    if status.get("result") != ApprovedResult.DENIED or not (
        status.get("token") or status.get("caCertificate")
    ):
        return None
    message = status.get("errorMessage") or "denied by an operator after approval"
    return rejected_status(ApprovedResult.DENIED, message)
