"""Kubernetes API access for every clusternet component: one async client per cluster.

    config = load_kubeconfig(path, context="child1")
    async with KubeClient(config, cluster="child1") as client:
        cm = await client.get("v1", "ConfigMap", "settings", namespace="default")

Objects are plain dicts of any kind (built-in, CRD, aggregated API); the URL of a kind is
found through the cluster's discovery documents by :class:`RESTMapper`.  Errors from the
API server are :class:`ApiError` subclasses; a cluster that does not answer raises
:class:`ClusterUnreachable`.
"""

from clusternet.kube._apply import Applied, apply_manifests, condition_true, wait_for
from clusternet.kube._client import (
    KubeClient,
    Object,
    PatchType,
    Preconditions,
    PropagationPolicy,
    RequestObserver,
    TransportFactory,
    WatchEvent,
    tls_context,
)
from clusternet.kube._config import (
    ClusterConfig,
    ConfigError,
    ExecPlugin,
    Impersonation,
    in_cluster_config,
    load_kubeconfig,
)
from clusternet.kube._discovery import (
    APIResource,
    GroupVersionKind,
    GroupVersionResource,
    RESTMapper,
    UnknownKind,
)
from clusternet.kube._errors import (
    AlreadyExists,
    ApiError,
    BadRequest,
    ClusterUnreachable,
    Conflict,
    Forbidden,
    Gone,
    Invalid,
    NotFound,
    ServerTimeout,
    ServiceUnavailable,
    TooManyRequests,
    Unauthorized,
)
from clusternet.kube._patch import merge_patch
from clusternet.kube._strategic import (
    PatchSchema,
    StrategicPatchError,
    kind_schema,
    strategic_merge_patch,
)

__all__ = [
    "APIResource",
    "AlreadyExists",
    "ApiError",
    "Applied",
    "BadRequest",
    "ClusterConfig",
    "ClusterUnreachable",
    "ConfigError",
    "Conflict",
    "ExecPlugin",
    "Forbidden",
    "Gone",
    "GroupVersionKind",
    "GroupVersionResource",
    "Impersonation",
    "Invalid",
    "KubeClient",
    "NotFound",
    "Object",
    "PatchSchema",
    "PatchType",
    "Preconditions",
    "PropagationPolicy",
    "RESTMapper",
    "RequestObserver",
    "ServerTimeout",
    "ServiceUnavailable",
    "StrategicPatchError",
    "TooManyRequests",
    "TransportFactory",
    "Unauthorized",
    "UnknownKind",
    "WatchEvent",
    "apply_manifests",
    "condition_true",
    "in_cluster_config",
    "kind_schema",
    "load_kubeconfig",
    "merge_patch",
    "strategic_merge_patch",
    "tls_context",
    "wait_for",
]
