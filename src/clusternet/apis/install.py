"""What `clusternet install` puts into a parent or a child cluster, as plain manifests.

The CRDs come from the generator (the API types are the one source of truth); the rest are
the namespaces and RBAC that upstream Clusternet's deploy manifests create (spec §3.1, §3.4).
Everything here is pure data, applied idempotently by server-side apply.
"""

from __future__ import annotations

from typing import Any, Final

from clusternet.apis import ALL_KINDS, known
from clusternet.apis.crdgen import crd_manifest

SYSTEM_NAMESPACE: Final = "clusternet-system"
RESERVED_NAMESPACE: Final = "clusternet-reserved"
# Bootstrap tokens for cluster registration carry this extra group (auth-extra-groups).
BOOTSTRAP_GROUP: Final = "system:bootstrappers:clusternet:register-cluster-token"
BOOTSTRAPPING_ROLE: Final = "clusternet:system:bootstrapping"
APP_DEPLOYER: Final = "clusternet-app-deployer"
SOCKETS_PROXY_ROLE: Final = "clusternet:system:socketsproxy"
HUB_PROXY_SERVICE_ACCOUNT: Final = "clusternet-hub-proxy"
# The user a socket-proxy caller impersonates; the child credentials travel as its extras.
SOCKETS_PROXY_USER: Final = "clusternet"

Manifest = dict[str, Any]


def _labels() -> dict[str, str]:
    return {"app.kubernetes.io/part-of": "clusternet"}


def namespace(name: str) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": name, "labels": _labels()},
    }


def crds(groups: set[str] | None = None) -> list[Manifest]:
    """The CRDs of the given API groups (all of them by default)."""
    return [crd_manifest(kind) for kind in ALL_KINDS if groups is None or kind.crd.group in groups]


def parent_manifests() -> list[Manifest]:
    """CRDs, namespaces and the RBAC that lets bootstrap tokens register clusters."""
    return [
        *crds(),
        namespace(SYSTEM_NAMESPACE),
        namespace(RESERVED_NAMESPACE),
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": BOOTSTRAPPING_ROLE, "labels": _labels()},
            "rules": [
                {
                    "apiGroups": [known.CLUSTERS_GROUP],
                    "resources": ["clusterregistrationrequests"],
                    "verbs": ["create", "get"],
                }
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": BOOTSTRAPPING_ROLE, "labels": _labels()},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": BOOTSTRAPPING_ROLE,
            },
            "subjects": [
                {"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": BOOTSTRAP_GROUP}
            ],
        },
        *sockets_proxy_manifests(),
    ]


def sockets_proxy_manifests() -> list[Manifest]:
    """Who may reach child clusters through ``sockets/<id>/proxy`` as user ``clusternet``.

    Upstream binds this role to ``system:unauthenticated``, ``system:anonymous`` and
    ``system:authenticated``: anyone who can reach the parent may then impersonate
    ``clusternet`` and make the hub dial into every child, the child token being the only
    check left.  Here it is bound only to user ``clusternet`` itself (after impersonation the
    parent authorizes ``sockets/proxy`` for that user) and to ServiceAccount
    ``clusternet-hub-proxy``; people and controllers that should use the proxy this way are
    bound explicitly.  Per-cluster access needs no impersonation of ``clusternet``: a role
    with ``sockets/proxy`` restricted to resourceNames [<clusterID>] (docs/hub.md).
    """
    return [
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {
                "name": HUB_PROXY_SERVICE_ACCOUNT,
                "namespace": SYSTEM_NAMESPACE,
                "labels": _labels(),
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "kubernetes.io/service-account-token",
            "metadata": {
                "name": HUB_PROXY_SERVICE_ACCOUNT,
                "namespace": SYSTEM_NAMESPACE,
                "labels": _labels(),
                "annotations": {"kubernetes.io/service-account.name": HUB_PROXY_SERVICE_ACCOUNT},
            },
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": SOCKETS_PROXY_ROLE, "labels": _labels()},
            "rules": [
                {
                    "apiGroups": [known.PROXIES_GROUP],
                    "resources": ["sockets/proxy"],
                    "verbs": ["*"],
                },
                {
                    "apiGroups": [""],
                    "resources": ["users"],
                    "resourceNames": [SOCKETS_PROXY_USER],
                    "verbs": ["impersonate"],
                },
                {
                    "apiGroups": ["authentication.k8s.io"],
                    "resources": [
                        "userextras/clusternet-token",
                        "userextras/clusternet-certificate",
                        "userextras/clusternet-privatekey",
                    ],
                    "verbs": ["impersonate"],
                },
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": SOCKETS_PROXY_ROLE, "labels": _labels()},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": SOCKETS_PROXY_ROLE,
            },
            "subjects": [
                {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "User",
                    "name": SOCKETS_PROXY_USER,
                },
                {
                    "kind": "ServiceAccount",
                    "name": HUB_PROXY_SERVICE_ACCOUNT,
                    "namespace": SYSTEM_NAMESPACE,
                },
            ],
        },
    ]


def child_manifests() -> list[Manifest]:
    """The MCS CRDs, the agent's namespace, and the identity the parent deploys with.

    ``clusternet-app-deployer`` is bound to cluster-admin because the parent deploys arbitrary
    kinds into the child on the child owner's behalf (spec §3.4); its token reaches the parent
    only in the cluster's dedicated namespace (Secret ``child-cluster-deployer``).
    """
    return [
        *crds({known.MULTICLUSTER_GROUP}),
        namespace(SYSTEM_NAMESPACE),
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": APP_DEPLOYER, "namespace": SYSTEM_NAMESPACE, "labels": _labels()},
        },
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "kubernetes.io/service-account-token",
            "metadata": {
                "name": APP_DEPLOYER,
                "namespace": SYSTEM_NAMESPACE,
                "labels": _labels(),
                "annotations": {"kubernetes.io/service-account.name": APP_DEPLOYER},
            },
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": APP_DEPLOYER, "labels": _labels()},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "cluster-admin",
            },
            "subjects": [
                {"kind": "ServiceAccount", "name": APP_DEPLOYER, "namespace": SYSTEM_NAMESPACE}
            ],
        },
    ]
