"""Fixed names shared with upstream Clusternet (``pkg/known``): groups, labels, annotations,
finalizers, taints and object names.  These are wire contract: upstream agents, hubs and
example YAML rely on the exact strings.
"""

from __future__ import annotations

from typing import Final

# --- API groups ----------------------------------------------------------------------------
CLUSTERS_GROUP: Final = "clusters.clusternet.io"
APPS_GROUP: Final = "apps.clusternet.io"
PROXIES_GROUP: Final = "proxies.clusternet.io"
SHADOW_GROUP: Final = "shadow"  # literally "shadow", not shadow.clusternet.io
MULTICLUSTER_GROUP: Final = "multicluster.x-k8s.io"
CATEGORY: Final = "clusternet"  # `kubectl get clusternet` lists every Clusternet kind
SHADOW_CATEGORY: Final = "clusternet.shadow"

# --- annotations ---------------------------------------------------------------------------
AUTO_UPDATE_ANNOTATION: Final = "clusternet.io/autoupdate"
FEED_PROTECTION_ANNOTATION: Final = "apps.clusternet.io/feed-protection"
SKIP_VALIDATING_ANNOTATION: Final = "apps.clusternet.io/skip-validating"
OWNED_BY_DESCRIPTION_ANNOTATION: Final = "apps.clusternet.io/owned-by-description"
LAST_APPLIED_CONFIG_ANNOTATION: Final = "clusternet.io/last-applied-configuration"
IS_DEFAULT_CLUSTER_INIT_ANNOTATION: Final = "apps.clusternet.io/is-default-cluster-init"
CLUSTER_INIT_BASE_ANNOTATION: Final = "apps.clusternet.io/cluster-init-base"
# Ours, on a Base: why its last render was incomplete (the Subscription's Deployed condition).
RENDER_ERROR_ANNOTATION: Final = "apps.clusternet.io/render-error"
# Ours, on a Base of a Dividing Subscription: the replica Localizations it must not be rendered
# without ("pending" until the Subscription controller has written them).
REPLICA_LOCALIZATIONS_ANNOTATION: Final = "apps.clusternet.io/replica-localizations"
REPLICA_LOCALIZATIONS_PENDING: Final = "pending"
SKIP_CLUSTER_INIT_ANNOTATION: Final = "clusters.clusternet.io/skip-cluster-init"
LEGACY_CLUSTER_ID_ANNOTATION: Final = "legacy-cluster-id"

# --- labels --------------------------------------------------------------------------------
NODE_LABELS_PREFIX: Final = "node.clusternet.io/"
CLUSTER_REGISTERED_BY_LABEL: Final = "clusters.clusternet.io/registered-by"
CLUSTER_ID_LABEL: Final = "clusters.clusternet.io/cluster-id"
CLUSTER_NAME_LABEL: Final = "clusters.clusternet.io/cluster-name"
CLUSTER_BOOTSTRAPPING_LABEL: Final = "clusters.clusternet.io/bootstrapping"
CREDENTIALS_AUTO: Final = "credentials-auto"
RBAC_DEFAULTS: Final = "rbac-defaults"
OBJECT_CREATED_BY_LABEL: Final = "clusternet.io/created-by"
# Not upstream: stamped by the deployers on every object they apply in a child, so that
# Recovery can select exactly those objects (upstream selects on created-by, spec §12 item 16).
DEPLOYED_BY_LABEL: Final = "apps.clusternet.io/deployed-by"
DEPLOYED_BY_CLUSTERNET: Final = "clusternet"

CONFIG_GROUP_LABEL: Final = "apps.clusternet.io/config.group"
CONFIG_VERSION_LABEL: Final = "apps.clusternet.io/config.version"
CONFIG_KIND_LABEL: Final = "apps.clusternet.io/config.kind"
CONFIG_NAME_LABEL: Final = "apps.clusternet.io/config.name"
CONFIG_NAMESPACE_LABEL: Final = "apps.clusternet.io/config.namespace"
CONFIG_UID_LABEL: Final = "apps.clusternet.io/config.uid"
CONFIG_SUBSCRIPTION_NAME_LABEL: Final = "apps.clusternet.io/subs.name"
CONFIG_SUBSCRIPTION_NAMESPACE_LABEL: Final = "apps.clusternet.io/subs.namespace"
CONFIG_SUBSCRIPTION_UID_LABEL: Final = "apps.clusternet.io/subs.uid"
MCS_SERVICE_NAME_LABEL: Final = "services.clusternet.io/multi-cluster-service-name"
MCS_SERVICE_NAMESPACE_LABEL: Final = "services.clusternet.io/multi-cluster-service-namespace"

# Values of OBJECT_CREATED_BY_LABEL / CLUSTER_REGISTERED_BY_LABEL.
CLUSTERNET_AGENT_NAME: Final = "clusternet-agent"
CLUSTERNET_HUB_NAME: Final = "clusternet-hub"
CLUSTERNET_SCHEDULER_NAME: Final = "clusternet-scheduler"
CLUSTERNET_CONTROLLER_MANAGER_NAME: Final = "clusternet-controller-manager"
CLUSTERNET_PREDICTOR_NAME: Final = "clusternet-predictor"

# --- finalizers and taints -----------------------------------------------------------------
APP_FINALIZER: Final = "apps.clusternet.io/finalizer"
FEED_PROTECTION_FINALIZER: Final = "apps.clusternet.io/feed-protection"
TAINT_CLUSTER_UNSCHEDULABLE: Final = "clusters.clusternet.io/unschedulable"
TAINT_CLUSTER_INITIALIZATION: Final = "clusters.clusternet.io/initialization"

# ManagedCluster condition types and reasons.
CONDITION_READY: Final = "Ready"
CONDITION_CLUSTER_INIT: Final = "ClusterInit"
REASON_CLUSTER_INIT_WAITING: Final = "ClusterInitWaiting"
REASON_CLUSTER_INIT_DISABLED: Final = "ClusterInitDisabled"
REASON_CLUSTER_INIT_DONE: Final = "ClusterInitDone"
REASON_CLUSTER_READY: Final = "ManagedClusterReady"
REASON_CLUSTER_NOT_READY: Final = "ManagedClusterNotReady"
REASON_CLUSTER_STATUS_UNKNOWN: Final = "ClusterStatusUnknown"
REASON_CLUSTER_STATUS_NEVER_UPDATED: Final = "ClusterStatusNeverUpdated"

# --- socket proxy headers ------------------------------------------------------------------
CLUSTERNET_HEADER_PREFIX: Final = "Clusternet-"
CLUSTERNET_TOKEN_HEADER: Final = "Clusternet-Token"
CLUSTERNET_CERTIFICATE_HEADER: Final = "Clusternet-Certificate"
CLUSTERNET_PRIVATE_KEY_HEADER: Final = "Clusternet-PrivateKey"

# --- fixed object names --------------------------------------------------------------------
NAME_PREFIX: Final = "clusternet-"
SYSTEM_NAMESPACE: Final = "clusternet-system"
RESERVED_NAMESPACE: Final = "clusternet-reserved"  # where Manifests live
CHILD_CLUSTER_SECRET_NAME: Final = "child-cluster-deployer"
CHILD_CLUSTER_APISERVER_URL_KEY: Final = "apiserver-advertise-url"
PARENT_CLUSTER_SECRET_NAME: Final = "parent-cluster"
CHILD_APP_DEPLOYER_SERVICE_ACCOUNT: Final = "clusternet-app-deployer"
HUB_PROXY_SERVICE_ACCOUNT: Final = "clusternet-hub-proxy"
MANAGED_CLUSTER_ROLE: Final = "clusternet-managedcluster-role"
HUB_PEER_LEASE_PREFIX: Final = "clusternet-hub-peer-"

# --- misc ----------------------------------------------------------------------------------
NVIDIA_GPU_RESOURCE: Final = "nvidia.com/gpu"
DEFAULT_RANDOM_SUFFIX_LENGTH: Final = 5
EVENT_MESSAGE_LIMIT: Final = 1024
DEFAULT_SCHEDULER_NAME: Final = "default"


def cluster_role_name(cluster_id: str) -> str:
    """The per-cluster ClusterRole in the parent (``clusternet-<clusterID>``)."""
    return f"{NAME_PREFIX}{cluster_id}"


def registration_request_name(cluster_id: str) -> str:
    """A ClusterRegistrationRequest is always named ``clusternet-<clusterID>``."""
    return f"{NAME_PREFIX}{cluster_id}"
