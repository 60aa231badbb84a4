"""Turning the parent's answers into credentials, and the child-cluster-deployer Secret."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from clusternet.agent.options import parse_options
from clusternet.agent.registration import (
    Registration,
    RegistrationRejected,
    approved_registration,
    child_cluster_deployer,
    deployer_token_secret,
    is_decided,
)
from clusternet.kube import ClusterConfig

OPTIONS = parse_options(
    ["--cluster-reg-parent-url=https://parent:6443", "--cluster-reg-token=07401b.f395accd246ae52d"]
)
ID = "7c2f4a10-1111-4e2b-9a00-0c0ffee00001"


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def request(**status: Any) -> dict[str, Any]:
    return {"metadata": {"name": f"clusternet-{ID}"}, "status": status}


APPROVED = request(
    result="Approved", dedicatedNamespace="clusternet-q7x2k", managedClusterName="edge-a",
    token=b64("sa-token"), caCertificate=b64("PEM"),
)  # fmt: skip


def test_an_approval_yields_the_dedicated_credentials() -> None:
    registration = approved_registration(APPROVED, OPTIONS, ID)
    assert registration.cluster_name == "edge-a"
    assert registration.namespace == "clusternet-q7x2k"
    assert registration.parent.server == "https://parent:6443"
    assert registration.parent.token == "sa-token"
    assert registration.parent.ca_data == b"PEM"


@pytest.mark.parametrize("result", ["Denied", "Failed"])
def test_a_refusal_carries_the_parents_reason(result: str) -> None:
    with pytest.raises(RegistrationRejected, match=f"{result} the registration: name clash"):
        approved_registration(request(result=result, errorMessage="name clash"), OPTIONS, ID)


@pytest.mark.parametrize(
    ("status", "decided"),
    [
        ({}, False),
        ({"result": "Approved"}, False),  # approved by an operator, credentials still to come
        (APPROVED["status"], True),
        ({"result": "Denied", "errorMessage": "no"}, True),
        ({"result": "Failed", "errorMessage": "no"}, True),
    ],
)
def test_waiting_ends_only_on_a_usable_answer(status: dict[str, Any], decided: bool) -> None:
    assert is_decided(request(**status)) is decided


def token_secret(account: str, token: str | None) -> dict[str, Any]:
    annotations = {
        "kubernetes.io/service-account.name": account,
        "kubernetes.io/service-account.uid": "sa-uid",
    }
    data = {"ca.crt": b64("child CA")} | ({"token": b64(token)} if token else {})
    return {"metadata": {"name": account, "annotations": annotations}, "data": data}


def test_the_deployer_token_is_the_populated_secret_of_its_service_account() -> None:
    other = token_secret("default", "t0")
    unpopulated = token_secret("clusternet-app-deployer", None)
    populated = token_secret("clusternet-app-deployer", "t1")
    assert deployer_token_secret([other, unpopulated]) is None
    assert deployer_token_secret([other, unpopulated, populated]) is populated


def test_child_cluster_deployer_secret() -> None:
    registration = Registration(
        cluster_id=ID,
        cluster_name="edge-a",
        namespace="clusternet-q7x2k",
        parent=ClusterConfig(server="https://parent:6443", token="x"),
    )
    secret = child_cluster_deployer(
        token_secret("clusternet-app-deployer", "t1"), registration, "https://child:6443"
    )
    assert secret["metadata"] == {
        "name": "child-cluster-deployer",
        "namespace": "clusternet-q7x2k",
        "labels": {
            "clusternet.io/created-by": "clusternet-agent",
            "clusters.clusternet.io/cluster-id": ID,
            "clusters.clusternet.io/bootstrapping": "credentials-auto",
        },
        "annotations": {"clusternet.io/autoupdate": "true"},
        "finalizers": ["apps.clusternet.io/finalizer"],
    }
    data = {key: base64.b64decode(value).decode() for key, value in secret["data"].items()}
    assert data == {
        "ca.crt": "child CA",
        "token": "t1",
        "service-account.name": "clusternet-app-deployer",
        "service-account.uid": "sa-uid",
        "apiserver-advertise-url": "https://child:6443",
    }
