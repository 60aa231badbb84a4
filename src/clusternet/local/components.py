"""Clusternet itself on local clusters: install, a bootstrap token, and the component processes.

``clusternet local up`` (unless ``--no-clusternet``) installs the CRDs and RBAC, creates a
bootstrap token in the parent, publishes the parent's CA in ``kube-public/cluster-info`` (signed
for that token by kube-controller-manager's bootstrapsigner, as kubeadm does), then starts
``clusternet-hub`` behind the parent's aggregator, ``clusternet-controller-manager`` for the
parent and one ``clusternet-agent`` per child, exactly as they would run in real clusters:
separate processes that only talk to API servers (the agents with their tunnels to the hub).
"""

from __future__ import annotations

import asyncio
import base64
import secrets
import string
import sys
from pathlib import Path
from typing import Any
from urllib.parse import quote

import yaml

from clusternet.apis import known
from clusternet.apis.install import (
    APP_DEPLOYER,
    BOOTSTRAP_GROUP,
    child_manifests,
    parent_manifests,
)
from clusternet.kube import KubeClient, apply_manifests
from clusternet.local._rest import APIError, RestClient
from clusternet.runtime.certs import write_private

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


def controller_manager_argv(
    kubeconfig: str, health_port: int, helm_binary: str | None = None
) -> list[str]:
    helm = [f"--helm-binary={helm_binary}"] if helm_binary else []
    return [
        sys.executable,
        "-m",
        "clusternet.controllermanager",
        f"--kubeconfig={kubeconfig}",
        f"--secure-port={health_port}",
        "--leader-elect=true",
        # SocketConnection: the approver grants each cluster its socket (spec §3.3).
        "--feature-gates=Deployer=true,FeedInUseProtection=true,FeedInventory=true,"
        "SocketConnection=true,MultiClusterService=true",
        *helm,  # HelmReleases pushed to the children
    ]


def scheduler_argv(kubeconfig: str, health_port: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "clusternet.scheduler",
        f"--kubeconfig={kubeconfig}",
        f"--secure-port={health_port}",
        "--leader-elect=true",
    ]


def write_token_file(directory: Path, token: str) -> Path:
    """The registration token in a file only its owner reads: tokens never go on a command
    line, where every user of the machine can see them."""
    path = directory / "registration-token"
    write_private(path, token.encode())
    return path


def agent_argv(
    kubeconfig: str,
    cluster: str,
    parent_url: str,
    token_file: Path,
    health_port: int,
    sync_mode: str = "Dual",
    helm_binary: str | None = None,
) -> list[str]:
    helm = [f"--helm-binary={helm_binary}"] if helm_binary else []
    return [
        sys.executable,
        "-m",
        "clusternet.agent",
        f"--kubeconfig={kubeconfig}",
        f"--cluster-reg-parent-url={parent_url}",
        f"--cluster-reg-token-file={token_file}",
        f"--cluster-reg-name={cluster}",
        f"--cluster-sync-mode={sync_mode}",
        # Predictor: each agent serves replica predictions (on a free port: several agents
        # share this machine) that the scheduler reaches through the hub.  Recovery: the
        # agent repairs drift of deployed objects and reports their status (spec §4.7).
        "--feature-gates=AppPusher=true,SocketConnection=true,Predictor=true,Recovery=true,"
        "MultiClusterService=true",
        "--predictor-port=0",
        f"--secure-port={health_port}",
        "--leader-elect=true",
        *helm,  # HelmReleases pulled by the agent
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


# -- clusternet-hub behind the parent's aggregator (local-control-planes.md §4) -----------------

HUB_SERVICE = "clusternet-hub"
# proxies.clusternet.io (tunnels, proxy) and shadow (templates as Manifests, spec §6.1).
HUB_APISERVICES = (f"v1alpha1.{known.PROXIES_GROUP}", f"v1alpha1.{known.SHADOW_GROUP}")
_APISERVICES_PATH = "/apis/apiregistration.k8s.io/v1/apiservices"
SOCKETS_PATH = f"/apis/{known.PROXIES_GROUP}/v1alpha1/sockets"


def hub_argv(kubeconfig: str, port: int, cert_file: Path, key_file: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "clusternet.hub",
        f"--kubeconfig={kubeconfig}",
        f"--secure-port={port}",
        f"--tls-cert-file={cert_file}",
        f"--tls-private-key-file={key_file}",
        "--feature-gates=SocketConnection=true,ShadowAPI=true",
    ]


def hub_manifests(port: int, ca_pem: bytes) -> list[dict[str, Any]]:
    """The Service and APIServices that route the hub's groups to a hub on localhost.

    The aggregator resolves an ExternalName Service to ``<externalName>:<APIService port>`` and
    verifies the hub's certificate for ``<service>.<namespace>.svc`` with ``caBundle``;
    Endpoints on 127.0.0.1 would be rejected by validation, so this is the loopback route.
    """
    service: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": HUB_SERVICE, "namespace": known.SYSTEM_NAMESPACE},
        "spec": {"type": "ExternalName", "externalName": "localhost"},
    }
    apiservices = [
        {
            "apiVersion": "apiregistration.k8s.io/v1",
            "kind": "APIService",
            "metadata": {"name": name},
            "spec": {
                "group": name.split(".", 1)[1],
                "version": name.split(".", 1)[0],
                "service": {
                    "namespace": known.SYSTEM_NAMESPACE,
                    "name": HUB_SERVICE,
                    "port": port,
                },
                "caBundle": base64.b64encode(ca_pem).decode(),
                "groupPriorityMinimum": 1000,
                "versionPriority": 100,
            },
        }
        for name in HUB_APISERVICES
    ]
    return [service, *apiservices]


def register_hub(client: RestClient, port: int, ca_pem: bytes) -> None:
    service, *apiservices = hub_manifests(port, ca_pem)
    client.create_or_get(f"/api/v1/namespaces/{known.SYSTEM_NAMESPACE}/services", service)
    for apiservice in apiservices:
        try:
            client.post(_APISERVICES_PATH, apiservice)
        except APIError as err:
            if err.status != 409:
                raise
            # Left over from an earlier hub, maybe on another port: point it at this one.
            name = apiservice["metadata"]["name"]
            client.patch(f"{_APISERVICES_PATH}/{name}", {"spec": apiservice["spec"]})


def hub_apiservices_available(client: RestClient) -> bool:
    for name in HUB_APISERVICES:
        try:
            conditions = client.get(f"{_APISERVICES_PATH}/{name}").get("status", {})
        except (OSError, APIError):
            return False
        available = [c for c in conditions.get("conditions") or [] if c.get("type") == "Available"]
        if not available or available[0].get("status") != "True":
            return False
    return True


def delete_hub_apiservices(client: RestClient) -> None:
    """Before the hub stops: an unavailable aggregated group breaks discovery for kubectl,
    the garbage collector and the namespace controller."""
    for name in HUB_APISERVICES:
        try:
            client.delete(f"{_APISERVICES_PATH}/{name}")
        except APIError as err:
            if err.status != 404:
                raise


def cluster_ids(client: RestClient) -> dict[str, str]:
    """Cluster name -> cluster ID of every registered ManagedCluster."""
    try:
        listed = client.get(f"/apis/{known.CLUSTERS_GROUP}/v1beta1/managedclusters")
    except (OSError, APIError):
        return {}
    ids = {}
    for item in listed.get("items") or []:
        labels = item["metadata"].get("labels", {})
        if known.CLUSTER_NAME_LABEL in labels and known.CLUSTER_ID_LABEL in labels:
            ids[labels[known.CLUSTER_NAME_LABEL]] = labels[known.CLUSTER_ID_LABEL]
    return ids


def tunnel_works(client: RestClient, cluster_id: str) -> bool:
    """True when the child's /readyz answers through parent → hub → tunnel → child (the
    child lets anonymous callers read /readyz, so no child credentials are needed)."""
    try:
        return bool(
            client.get(f"{SOCKETS_PATH}/{cluster_id}/proxy/direct/readyz", timeout=5) == "ok"
        )
    except (OSError, APIError):
        return False


def via_hub_kubeconfig(
    *,
    parent_server: str,
    ca_pem: bytes,
    client_cert_pem: bytes,
    client_key_pem: bytes,
    cluster: str,
    cluster_id: str,
    child_token: str,
) -> dict[str, Any]:
    """A kubeconfig whose server is the child seen through the hub (spec §6.3).

    The parent authenticates the client certificate, which impersonates user ``clusternet``
    carrying the child's token as the ``clusternet-token`` extra; the hub presents that
    token to the child.
    """
    name = f"{cluster}-via-hub"
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": name,
                "cluster": {
                    "server": f"{parent_server}{SOCKETS_PATH}/{quote(cluster_id)}/proxy/direct",
                    "certificate-authority-data": base64.b64encode(ca_pem).decode(),
                },
            }
        ],
        "users": [
            {
                "name": name,
                "user": {
                    "client-certificate-data": base64.b64encode(client_cert_pem).decode(),
                    "client-key-data": base64.b64encode(client_key_pem).decode(),
                    "as": "clusternet",
                    "as-user-extra": {"clusternet-token": [child_token]},
                },
            }
        ],
        "contexts": [{"name": name, "context": {"cluster": name, "user": name}}],
        "current-context": name,
    }


def child_deployer_token(child: RestClient) -> str:
    """The token of the child's ``clusternet-app-deployer`` (cluster-admin in the child)."""
    secret = child.get(f"/api/v1/namespaces/{known.SYSTEM_NAMESPACE}/secrets/{APP_DEPLOYER}")
    return base64.b64decode(secret["data"]["token"]).decode()
