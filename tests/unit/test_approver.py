"""The crrapprover's decisions and the objects it provisions, without an API server."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from clusternet.apis import known
from clusternet.apis.clusters.v1beta1 import ApprovedResult
from clusternet.controllermanager import registration as reg
from clusternet.controllermanager.registration import Action

CLUSTER_ID = "7c2f4a10-1111-4e2b-9a00-0c0ffee00001"
OTHER_ID = "7c2f4a10-1111-4e2b-9a00-0c0ffee00002"


def request(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "clusters.clusternet.io/v1beta1",
        "kind": "ClusterRegistrationRequest",
        "metadata": {"name": f"clusternet-{spec.get('clusterId', CLUSTER_ID)}"},
        "spec": {
            "clusterId": CLUSTER_ID,
            "clusterName": "edge-a",
            "clusterType": "EdgeCluster",
            "syncMode": "Dual",
            "ClusterLabels": {"region": "west"},
            **spec,
        },
    }


ACCOUNT = {"metadata": {"name": "clusternet-x7k2p", "namespace": "clusternet-q7x2k"}}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"metadata": {"name": f"clusternet-{OTHER_ID}"}},
            f"name 'clusternet-{OTHER_ID}' does not match spec.clusterId '{CLUSTER_ID}': the "
            f"request of this cluster must be named 'clusternet-{CLUSTER_ID}'",
        ),
        ({"spec": {"clusterId": "not-a-uuid"}}, "spec.clusterId 'not-a-uuid' is not a UUID"),
        ({"spec": {"clusterName": ""}}, "spec.clusterName is required"),
        (
            {"spec": {"clusterName": "Edge_A"}},
            "spec.clusterName 'Edge_A' is not a DNS label of at most 30 characters",
        ),
        (
            {"spec": {"clusterName": "a" * 31}},
            f"spec.clusterName '{'a' * 31}' is not a DNS label of at most 30 characters",
        ),
        (
            {"spec": {"clusterNamespace": "Not.A.Namespace"}},
            "spec.clusterNamespace 'Not.A.Namespace' is not a valid namespace name",
        ),
        (
            {"spec": {"ClusterLabels": {"ok": "yes", "bad key": "v", "k": "bad value!"}}},
            "spec.ClusterLabels has invalid labels: bad key=v, k=bad value!",
        ),
        (
            {"spec": {"syncMode": "Sideways"}},
            "spec.syncMode 'Sideways' is not one of Push, Pull, Dual",
        ),
    ],
)
def test_invalid_requests_are_denied_with_the_reason(
    change: dict[str, dict[str, Any]], message: str
) -> None:
    crr = request()
    for part, fields in change.items():
        crr[part].update(fields)

    assert reg.decide(crr, auto_approve=True) == (Action.DENY, message)
    assert reg.rejected_status(ApprovedResult.DENIED, message) == {
        "result": "Denied",
        "errorMessage": message,
    }


@pytest.mark.parametrize(
    ("status", "auto_approve", "expected"),
    [
        ({}, True, Action.PROVISION),
        ({}, False, Action.WAIT_FOR_APPROVAL),
        ({"result": "Approved"}, False, Action.PROVISION),  # an operator approved it
        ({"result": "Approved", "token": "dA==", "caCertificate": "Yw=="}, True, Action.SKIP),
        ({"result": "Denied", "errorMessage": "no"}, True, Action.SKIP),
        ({"result": "Failed", "errorMessage": "no"}, True, Action.SKIP),
    ],
)
def test_decisions(status: dict[str, Any], auto_approve: bool, expected: Action) -> None:
    crr = {**request(), "status": status}

    assert reg.decide(crr, auto_approve=auto_approve)[0] is expected


def test_an_operator_cannot_approve_an_invalid_request() -> None:
    crr = request()
    crr["metadata"]["name"] = f"clusternet-{OTHER_ID}"
    crr["status"] = {"result": "Approved"}

    assert reg.decide(crr, auto_approve=False)[0] is Action.DENY


@pytest.mark.parametrize("socket_connection", [False, True])
def test_the_cluster_role_grants_no_secrets_and_only_this_clusters_objects(
    socket_connection: bool,
) -> None:
    rules = reg.cluster_role_rules(CLUSTER_ID, socket_connection=socket_connection)

    assert all("secrets" not in rule["resources"] for rule in rules)
    assert all(
        rule["verbs"] != ["*"] or rule.get("resourceNames") == [CLUSTER_ID] for rule in rules
    )
    reads = [r for r in rules if "get" in r["verbs"]]
    assert reads == [
        {
            "apiGroups": ["clusters.clusternet.io"],
            "resources": ["clusterregistrationrequests"],
            "resourceNames": [f"clusternet-{CLUSTER_ID}"],
            "verbs": ["get"],
        }
    ]
    sockets = [r for r in rules if r["apiGroups"] == ["proxies.clusternet.io"]]
    if socket_connection:
        assert sockets == [
            {
                "apiGroups": ["proxies.clusternet.io"],
                "resources": ["sockets", "sockets/proxy"],
                "resourceNames": [CLUSTER_ID],
                "verbs": ["*"],
            }
        ]
    else:
        assert sockets == []


def test_rbac_objects_names_labels_and_subjects() -> None:
    objects = {o["kind"]: o for o in reg.rbac_objects(CLUSTER_ID, ACCOUNT, socket_connection=True)}

    assert set(objects) == {"ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}
    subject = {
        "kind": "ServiceAccount",
        "name": "clusternet-x7k2p",
        "namespace": "clusternet-q7x2k",
    }
    for kind, obj in objects.items():
        metadata = obj["metadata"]
        assert metadata["labels"] == {
            "clusters.clusternet.io/bootstrapping": "rbac-defaults",
            "clusternet.io/created-by": "clusternet-controller-manager",
            "clusters.clusternet.io/cluster-id": CLUSTER_ID,
        }
        assert metadata["annotations"] == {"clusternet.io/autoupdate": "true"}
        if kind.startswith("Cluster"):
            assert metadata["name"] == f"clusternet-{CLUSTER_ID}"
            assert "namespace" not in metadata
        else:
            assert metadata["name"] == "clusternet-managedcluster-role"
            assert metadata["namespace"] == "clusternet-q7x2k"
    assert objects["ClusterRoleBinding"]["subjects"] == [subject]
    assert objects["RoleBinding"]["subjects"] == [subject]
    assert objects["ClusterRoleBinding"]["roleRef"]["name"] == f"clusternet-{CLUSTER_ID}"
    assert objects["Role"]["rules"] == [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]


def test_existing_rbac_is_updated_only_when_it_opted_in_and_differs() -> None:
    desired = reg.rbac_objects(CLUSTER_ID, ACCOUNT, socket_connection=True)[0]
    upstream = copy.deepcopy(desired)
    upstream["rules"].append({"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]})
    upstream["metadata"]["resourceVersion"] = "42"

    updated = reg.rbac_update(upstream, desired)

    assert updated is not None
    assert updated["rules"] == desired["rules"]
    assert updated["metadata"]["resourceVersion"] == "42"  # an optimistic-concurrency update
    assert reg.rbac_update(desired, desired) is None
    opted_out = copy.deepcopy(upstream)
    opted_out["metadata"]["annotations"] = {}
    assert reg.rbac_update(opted_out, desired) is None


def test_provisioned_objects_carry_the_labels_they_are_found_by() -> None:
    crr = request(clusterNamespace="edge-a-ns")
    owned = {
        "clusternet.io/created-by": "clusternet-agent",
        "clusters.clusternet.io/cluster-id": CLUSTER_ID,
        "clusters.clusternet.io/cluster-name": "edge-a",
    }

    namespace = reg.dedicated_namespace(crr)
    generated = reg.dedicated_namespace(request())
    cluster = reg.managed_cluster(crr, "edge-a-ns", cluster_init=False)
    account = reg.service_account(crr, "edge-a-ns")
    secret = reg.token_secret(crr, ACCOUNT)

    assert namespace["metadata"] == {"name": "edge-a-ns", "labels": owned}
    assert generated["metadata"] == {"generateName": "clusternet-", "labels": owned}
    assert cluster["metadata"] == {
        "name": "edge-a",
        "namespace": "edge-a-ns",
        "labels": {"region": "west", **owned},
    }
    assert cluster["spec"] == {
        "clusterId": CLUSTER_ID,
        "syncMode": "Dual",
        "clusterType": "EdgeCluster",
    }
    assert account["metadata"]["generateName"] == "clusternet-"
    assert account["metadata"]["labels"] == owned
    assert secret["type"] == "kubernetes.io/service-account-token"
    assert secret["metadata"]["name"] == "clusternet-x7k2p"
    assert secret["metadata"]["annotations"] == {
        "kubernetes.io/service-account.name": "clusternet-x7k2p"
    }
    assert reg.owned_selector(CLUSTER_ID) == (
        f"clusternet.io/created-by=clusternet-agent,clusters.clusternet.io/cluster-id={CLUSTER_ID}"
    )
    assert all(reg.is_owned_by(o, CLUSTER_ID) for o in (namespace, cluster, account, secret))
    assert not reg.is_owned_by(namespace, OTHER_ID)


def test_requested_labels_cannot_override_the_identifying_ones() -> None:
    crr = request(ClusterLabels={known.CLUSTER_ID_LABEL: OTHER_ID})

    cluster = reg.managed_cluster(crr, "ns", cluster_init=False)

    assert cluster["metadata"]["labels"][known.CLUSTER_ID_LABEL] == CLUSTER_ID


def test_cluster_init_gate_taints_new_clusters() -> None:
    cluster = reg.managed_cluster(request(), "ns", cluster_init=True)

    assert cluster["spec"]["taints"] == [
        {
            "key": "clusters.clusternet.io/initialization",
            "value": "ClusterInitWaiting",
            "effect": "NoSchedule",
        }
    ]


def test_credentials_are_copied_from_a_filled_token_secret_only() -> None:
    empty = {"metadata": {"name": "s"}, "data": {}}
    half = {"metadata": {"name": "s"}, "data": {"token": "dG9rZW4="}}
    filled = {"metadata": {"name": "s"}, "data": {"token": "dG9rZW4=", "ca.crt": "Y2E="}}

    assert reg.approved_status("ns", "edge-a", empty) is None
    assert reg.approved_status("ns", "edge-a", half) is None
    assert reg.approved_status("ns", "edge-a", filled) == {
        "result": "Approved",
        "dedicatedNamespace": "ns",
        "managedClusterName": "edge-a",
        "token": "dG9rZW4=",
        "caCertificate": "Y2E=",
    }
