"""``clusters.clusternet.io/v1beta1``: cluster registration and managed clusters."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import ConfigDict, Field

from clusternet.apis import known
from clusternet.apis.core import Taint
from clusternet.apis.meta import (
    AGE_COLUMN,
    Bytes,
    Condition,
    CRDInfo,
    Int32,
    Int64,
    KubeModel,
    KubeObject,
    PrinterColumn,
    Quantity,
    ResourceList,
    SchemaExtension,
    Time,
    cel,
)

GROUP = known.CLUSTERS_GROUP
VERSION = "v1beta1"

# Upstream's patterns are unanchored, so they accept any string that merely *contains* a UUID
# or a DNS label.  Anchoring keeps every valid upstream value and rejects the garbage.
UUID_PATTERN = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
CLUSTER_NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"

ClusterID = Annotated[str, Field(pattern=UUID_PATTERN)]
"""A random (version 4) UUID; in practice the UID of the agent's Lease in the child."""


class ClusterType(StrEnum):
    """Known cluster types.  The field stays a free string, as upstream, for forward compat."""

    STANDARD = "StandardCluster"
    EDGE = "EdgeCluster"


class ClusterSyncMode(StrEnum):
    PUSH = "Push"
    """The parent applies resources to the child."""
    PULL = "Pull"
    """The agent in the child watches the parent and applies resources itself."""
    DUAL = "Dual"
    """Push when the agent allows it (status.appPusher), otherwise Pull."""


class ApprovedResult(StrEnum):
    APPROVED = "Approved"
    DENIED = "Denied"
    FAILED = "Failed"


class ClusterRegistrationRequestSpec(KubeModel):
    cluster_id: ClusterID
    """Unique, immutable ID of the child cluster; must equal the suffix of the object name."""
    cluster_type: str | None = None
    """Type of the child cluster, e.g. StandardCluster or EdgeCluster."""
    cluster_name: Annotated[str, Field(max_length=30, pattern=CLUSTER_NAME_PATTERN)] | None = None
    """Name of the ManagedCluster: lower-case alphanumerics or '-', alphanumeric at both ends."""
    cluster_namespace: Annotated[str, Field(max_length=63)] | None = None
    """Preferred dedicated namespace in the parent; generated when empty."""
    cluster_labels: dict[str, str] | None = Field(default=None, alias="ClusterLabels")
    """Labels for the ManagedCluster.  The capitalised JSON name is upstream's, kept for
    compatibility with upstream agents."""
    sync_mode: ClusterSyncMode = ClusterSyncMode.PULL
    """How resources get from the parent to the child."""


class ClusterRegistrationRequestStatus(KubeModel):
    result: ApprovedResult | None = None
    error_message: str | None = None
    """Why the request was not approved."""
    dedicated_namespace: str | None = None
    """Namespace in the parent reserved for this cluster (holds its ManagedCluster)."""
    managed_cluster_name: str | None = None
    token: Bytes | None = None
    """Token of the cluster's dedicated service account in the parent."""
    ca_certificate: Bytes | None = None
    """PEM CA bundle of the parent apiserver."""


class ClusterRegistrationRequest(KubeObject):
    """A child cluster's request to join; approved automatically when valid."""

    crd = CRDInfo(
        group=GROUP,
        version=VERSION,
        kind="ClusterRegistrationRequest",
        plural="clusterregistrationrequests",
        scope="Cluster",
        short_names=("clsrr",),
        categories=(known.CATEGORY,),
        printer_columns=(
            PrinterColumn(
                "CLUSTER ID", ".spec.clusterId", description="The unique id for the cluster"
            ),
            PrinterColumn(
                "STATUS",
                ".status.result",
                description="The status of current cluster registration request",
            ),
            AGE_COLUMN,
        ),
        status_subresource=True,
    )

    spec: ClusterRegistrationRequestSpec
    status: ClusterRegistrationRequestStatus = Field(
        default_factory=ClusterRegistrationRequestStatus
    )


class ManagedClusterSpec(KubeModel):
    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "!has(oldSelf.clusterInitBaseName) || has(self.clusterInitBaseName)",
                    "clusterInitBaseName cannot be removed once set",
                )
            ]
        }
    )

    cluster_id: ClusterID
    """Unique, immutable ID of the child cluster."""
    cluster_type: str | None = None
    sync_mode: ClusterSyncMode
    taints: list[Taint] | None = None
    """Taints repel Subscriptions that do not tolerate them (spec.clusterTolerations)."""
    cluster_init_base_name: (
        Annotated[
            str,
            Field(max_length=512),
            SchemaExtension(
                **{
                    "x-kubernetes-validations": [
                        cel("self == oldSelf", "clusterInitBaseName is immutable")
                    ]
                }
            ),
        ]
        | None
    ) = None
    """Base used to initialise the cluster; managed by the controller manager, immutable."""


class NodeStatistics(KubeModel):
    ready_nodes: Int32 | None = None
    not_ready_nodes: Int32 | None = None
    unknown_nodes: Int32 | None = None
    lost_nodes: Int32 | None = None


class PodStatistics(KubeModel):
    running_pods: Int32 | None = None
    total_pods: Int32 | None = None


class ResourceUsage(KubeModel):
    cpu_usage: Quantity | None = None
    memory_usage: Quantity | None = None


class ManagedClusterStatus(KubeModel):
    """Reported by the agent on every heartbeat."""

    last_observed_time: Time | None = None
    k8s_version: str | None = Field(default=None, alias="k8sVersion")
    agent_version: str | None = None
    platform: str | None = None
    """e.g. linux/amd64."""
    apiserver_url: str | None = Field(default=None, alias="apiserverURL")
    """Child apiserver URL as seen by the agent; used by the parent when pushing."""
    parent_apiserver_url: str | None = Field(default=None, alias="parentAPIServerURL")
    """Deprecated upstream; still accepted from old agents."""
    healthz: bool | None = None
    livez: bool | None = None
    readyz: bool | None = None
    app_pusher: bool | None = None
    """Whether the agent allows the parent to push applications (Push/Dual)."""
    use_socket: bool | None = None
    """Whether the parent reaches the child through the agent's websocket tunnel."""
    kube_qps: float | None = Field(default=None, alias="kubeQPS")
    kube_burst: Int32 | None = None
    allocatable: ResourceList | None = None
    capacity: ResourceList | None = None
    cluster_cidr: str | None = Field(default=None, alias="clusterCIDR")
    service_cidr: str | None = Field(default=None, alias="serviceCIDR")
    node_statistics: NodeStatistics | None = None
    pod_statistics: PodStatistics | None = None
    resource_usage: ResourceUsage | None = None
    conditions: list[Condition] | None = None
    heartbeat_frequency_seconds: Int64 | None = None
    predictor_enabled: bool | None = None
    predictor_address: str | None = None
    predictor_direct_access: bool | None = None


class ManagedCluster(KubeObject):
    """A registered child cluster, in its dedicated namespace of the parent."""

    crd = CRDInfo(
        group=GROUP,
        version=VERSION,
        kind="ManagedCluster",
        plural="managedclusters",
        scope="Namespaced",
        short_names=("mcls",),
        categories=(known.CATEGORY,),
        printer_columns=(
            PrinterColumn(
                "CLUSTER ID", ".spec.clusterId", description="The unique id for the cluster"
            ),
            PrinterColumn(
                "CLUSTER TYPE",
                ".spec.clusterType",
                description="The type of the cluster",
                priority=100,
            ),
            PrinterColumn("SYNC MODE", ".spec.syncMode", description="The cluster sync mode"),
            PrinterColumn("KUBERNETES", ".status.k8sVersion"),
            PrinterColumn(
                "STATUS",
                '.status.conditions[?(@.type=="Ready")].status',
                description="Whether the cluster is ready",
            ),
            AGE_COLUMN,
            PrinterColumn("AGENT VERSION", ".status.agentVersion", priority=100),
        ),
        status_subresource=True,
    )

    spec: ManagedClusterSpec
    status: ManagedClusterStatus = Field(default_factory=ManagedClusterStatus)


KINDS: tuple[type[KubeObject], ...] = (ClusterRegistrationRequest, ManagedCluster)
