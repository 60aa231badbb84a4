"""``multicluster.x-k8s.io/v1alpha1``: the Multi-Cluster Services API (sigs.k8s.io/mcs-api)
ServiceExport and ServiceImport, as the upstream v1alpha1 CRDs define them."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import Field

from clusternet.apis import known
from clusternet.apis.meta import (
    ConditionStatus,
    CRDInfo,
    Int32,
    KubeModel,
    KubeObject,
    PrinterColumn,
    SchemaExtension,
    Time,
)

GROUP = known.MULTICLUSTER_GROUP
VERSION = "v1alpha1"


class ServiceExportCondition(KubeModel):
    type: str
    """e.g. Valid, Conflict."""
    status: ConditionStatus
    last_transition_time: Time | None = None
    reason: str | None = None
    message: str | None = None


class ServiceExportStatus(KubeModel):
    conditions: (
        Annotated[
            list[ServiceExportCondition],
            SchemaExtension(
                **{"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]}
            ),
        ]
        | None
    ) = None


class ServiceExport(KubeObject):
    """Exports the same-named Service of this namespace to the cluster set."""

    crd = CRDInfo(
        group=GROUP,
        version=VERSION,
        kind="ServiceExport",
        plural="serviceexports",
        scope="Namespaced",
        short_names=("svcex",),
        status_subresource=True,
        printer_columns=(),
    )

    status: ServiceExportStatus = Field(default_factory=ServiceExportStatus)


class ServiceImportType(StrEnum):
    CLUSTER_SET_IP = "ClusterSetIP"
    HEADLESS = "Headless"


class ServicePort(KubeModel):
    name: str | None = None
    protocol: Literal["TCP", "UDP", "SCTP"] = "TCP"
    app_protocol: str | None = None
    port: Int32


class ClientIPConfig(KubeModel):
    timeout_seconds: Int32 | None = None


class SessionAffinityConfig(KubeModel):
    client_ip: ClientIPConfig | None = Field(default=None, alias="clientIP")


class ServiceImportSpec(KubeModel):
    ports: Annotated[list[ServicePort], SchemaExtension(**{"x-kubernetes-list-type": "atomic"})]
    ips: Annotated[list[str], Field(max_length=1)] | None = None
    """The VIP of the imported service (ClusterSetIP only)."""
    type: ServiceImportType
    session_affinity: Literal["ClientIP", "None"] | None = None
    session_affinity_config: SessionAffinityConfig | None = None


class ClusterStatus(KubeModel):
    cluster: str
    """Name of an exporting cluster."""


class ServiceImportStatus(KubeModel):
    clusters: (
        Annotated[
            list[ClusterStatus],
            SchemaExtension(
                **{"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["cluster"]}
            ),
        ]
        | None
    ) = None


class ServiceImport(KubeObject):
    """A service imported from the cluster set."""

    crd = CRDInfo(
        group=GROUP,
        version=VERSION,
        kind="ServiceImport",
        plural="serviceimports",
        scope="Namespaced",
        short_names=("svcim",),
        status_subresource=True,
        printer_columns=(
            PrinterColumn("Type", ".spec.type", description="The type of this ServiceImport"),
            PrinterColumn("IP", ".spec.ips", description="The VIP for this ServiceImport"),
            PrinterColumn("Age", ".metadata.creationTimestamp", "date"),
        ),
    )

    spec: ServiceImportSpec
    status: ServiceImportStatus = Field(default_factory=ServiceImportStatus)


KINDS: tuple[type[KubeObject], ...] = (ServiceExport, ServiceImport)
