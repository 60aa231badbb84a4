"""Clusternet itself on local clusters: install, a bootstrap token, and the component processes.

``clusternet local up`` (unless ``--no-clusternet``) installs the CRDs and RBAC, creates a
bootstrap token in the parent, publishes the parent's CA in ``kube-public/cluster-info`` (signed
for that token by kube-controller-manager's bootstrapsigner, as kubeadm does), then starts
``clusternet-controller-manager`` for the parent and one ``clusternet-agent`` per child, exactly
as they would run in real clusters: separate processes that only talk to API servers.
"""

from __future__ import annotations

import asyncio
import base64
import secrets
import string
import sys
from pathlib import Path
from typing import Any

import yaml

from clusternet.apis import known
from clusternet.apis.install import BOOTSTRAP_GROUP, child_manifests, parent_manifests
from clusternet.kube import KubeClient, apply_manifests
from clusternet.local._rest import APIError, RestClient

FIELD_MANAGER = "clusternet-local"
_TOKEN_ALPHABET = string.ascii_lowercase + string.digits


def install(kubeconfig: Path, child: bool) -> None:
    """What `clusternet install` does, for one cluster (its admin kubeconfig)."""

    async def run() -> None:
        manifests = child_manifests() if child else parent_manifests()
        async with KubeClient.from_kubeconfig(kubeconfig) as client, asyncio.timeout(120):
            await apply_manifests(client, manifests, field_manager=FIELD_MANAGER)

    asyncio.run(run())


def new_bootstrap_token() -> str:
    """``<id>.<secret>`` in the format kube-apiserver's bootstrap authenticator accepts."""
    token_id = "".join(secrets.choice(_TOKEN_ALPHABET) for _ in range(6))
    secret = "".join(secrets.choice(_TOKEN_ALPHABET) for _ in range(16))
    return f"{token_id}.{secret}"


def bootstrap_manifests(token: str, server: str, ca_pem: bytes) -> list[dict[str, Any]]:
    """The token Secret, and ``cluster-info`` that lets agents verify the parent's CA."""
    token_id, token_secret = token.split(".")
    cluster_info = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "",
                "cluster": {
                    "server": server,
                    "certificate-authority-data": base64.b64encode(ca_pem).decode(),
                },
            }
        ],
        "contexts": [],
        "users": [],
    }
    return [
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "bootstrap.kubernetes.io/token",
            "metadata": {"name": f"bootstrap-token-{token_id}", "namespace": "kube-system"},
            "stringData": {
                "description": "clusternet local: registers the local child clusters",
                "token-id": token_id,
                "token-secret": token_secret,
                "usage-bootstrap-authentication": "true",
                # bootstrapsigner signs cluster-info with tokens that allow signing.
                "usage-bootstrap-signing": "true",
                "auth-extra-groups": BOOTSTRAP_GROUP,
            },
        },
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "cluster-info", "namespace": "kube-public"},
            "data": {"kubeconfig": yaml.safe_dump(cluster_info)},
        },
        # As kubeadm does: anyone may read cluster-info (it holds only the public CA).
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {
                "name": "clusternet:bootstrap-signer-clusterinfo",
                "namespace": "kube-public",
            },
            "rules": [
                {
                    "apiGroups": [""],
                    "resources": ["configmaps"],
                    "resourceNames": ["cluster-info"],
                    "verbs": ["get"],
                }
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {
                "name": "clusternet:bootstrap-signer-clusterinfo",
                "namespace": "kube-public",
            },
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "Role",
                "name": "clusternet:bootstrap-signer-clusterinfo",
            },
            "subjects": [
                {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "User",
                    "name": "system:anonymous",
                }
            ],
        },
    ]


def create_objects(client: RestClient, manifests: list[dict[str, Any]]) -> None:
    paths = {
        "Secret": "/api/v1/namespaces/{ns}/secrets",
        "ConfigMap": "/api/v1/namespaces/{ns}/configmaps",
        "Role": "/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/roles",
        "RoleBinding": "/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/rolebindings",
    }
    for manifest in manifests:
        path = paths[manifest["kind"]].format(ns=manifest["metadata"]["namespace"])
        client.create_or_get(path, manifest)


def controller_manager_argv(kubeconfig: str, health_port: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "clusternet.controllermanager",
        f"--kubeconfig={kubeconfig}",
        f"--secure-port={health_port}",
        "--leader-elect=true",
        "--feature-gates=Deployer=true,FeedInUseProtection=true,FeedInventory=true",
    ]


def agent_argv(
    kubeconfig: str, cluster: str, parent_url: str, token: str, health_port: int
) -> list[str]:
    return [
        sys.executable,
        "-m",
        "clusternet.agent",
        f"--kubeconfig={kubeconfig}",
        f"--cluster-reg-parent-url={parent_url}",
        f"--cluster-reg-token={token}",
        f"--cluster-reg-name={cluster}",
        "--cluster-sync-mode=Dual",
        "--feature-gates=AppPusher=true",
        f"--secure-port={health_port}",
        "--leader-elect=true",
    ]


def ready_clusters(client: RestClient) -> set[str]:
    """Names (cluster-name label) of the ManagedClusters whose Ready condition is True."""
    try:
        listed = client.get(f"/apis/{known.CLUSTERS_GROUP}/v1beta1/managedclusters")
    except (OSError, APIError):  # not there yet (CRD being established): not ready
        return set()
    ready = set()
    for item in listed.get("items") or []:
        conditions = item.get("status", {}).get("conditions") or []
        if any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions):
            ready.add(item["metadata"].get("labels", {}).get(known.CLUSTER_NAME_LABEL, ""))
    return ready
