"""``apps.clusternet.io/v1alpha1``: what to deploy (feeds), where (Subscription), how to
customise it (Localization, Globalization) and the per-cluster objects derived from it
(Base, Description, HelmRelease, FeedInventory)."""

from __future__ import annotations

from enum import StrEnum
from functools import partial
from typing import Annotated

from pydantic import ConfigDict, Field

from clusternet.apis import known
from clusternet.apis.core import (
    Affinity,
    PreferredSchedulingTerm,
    ResourceRequirements,
    Toleration,
    TopologySpreadConstraint,
)
from clusternet.apis.meta import (
    AGE_COLUMN,
    Bytes,
    Condition,
    CRDInfo,
    FreeFormObject,
    Int32,
    Int64,
    KubeModel,
    KubeObject,
    LabelSelector,
    PrinterColumn,
    cel,
)

GROUP = known.APPS_GROUP
VERSION = "v1alpha1"


_crd = partial(CRDInfo, GROUP, VERSION, categories=(known.CATEGORY,))


class Feed(KubeModel):
    """A reference to one object in the parent to be distributed."""

    kind: str
    api_version: str
    namespace: str | None = None
    """Empty for cluster-scoped objects."""
    name: str

    @property
    def key(self) -> str:
        """``<apiVersion>/<kind>/[<namespace>/]<name>``: the key of status.replicas."""
        scope = f"{self.namespace}/" if self.namespace else ""
        return f"{self.api_version}/{self.kind}/{scope}{self.name}"


# --- Subscription ---------------------------------------------------------------------------


class SchedulingStrategy(StrEnum):
    REPLICATION = "Replication"
    """Every matching cluster gets a full copy."""
    DIVIDING = "Dividing"
    """Workload replicas are divided among the matching clusters."""


class ReplicaDividingType(StrEnum):
    STATIC = "Static"
    """By subscriber weights."""
    DYNAMIC = "Dynamic"
    """By the capacity clusters report."""


class DynamicDividingStrategy(StrEnum):
    SPREAD = "Spread"
    BINPACK = "Binpack"


class PreemptionPolicy(StrEnum):
    PREEMPT_LOWER_PRIORITY = "PreemptLowerPriority"
    # Upstream's Go constant for this is "Never", which its own CRD enum rejects; the CRD
    # value is the contract.
    PREEMPT_NEVER = "PreemptNever"


class DynamicDividing(KubeModel):
    strategy: DynamicDividingStrategy = DynamicDividingStrategy.SPREAD
    topology_spread_constraints: list[TopologySpreadConstraint] | None = None
    preferred_clusters: list[PreferredSchedulingTerm] | None = None
    min_clusters: Int32 | None = None
    max_clusters: Int32 | None = None


class DividingScheduling(KubeModel):
    type: ReplicaDividingType = ReplicaDividingType.STATIC
    dynamic_dividing: DynamicDividing | None = None


class SubGroupStrategy(KubeModel):
    min_clusters: Annotated[Int32, Field(ge=0)] | None = None
    """How many clusters of this subscriber group must be selected."""


class Subscriber(KubeModel):
    cluster_affinity: LabelSelector
    """Selects ManagedClusters by their labels."""
    weight: Annotated[Int32, Field(ge=0)] | None = None
    """Relative share of replicas (static dividing only)."""
    sub_group_strategy: SubGroupStrategy | None = None


class SubscriptionSpec(KubeModel):
    scheduler_name: str = known.DEFAULT_SCHEDULER_NAME
    scheduling_strategy: SchedulingStrategy = SchedulingStrategy.REPLICATION
    dividing_scheduling: DividingScheduling | None = None
    """Used only when schedulingStrategy is Dividing."""
    scheduling_by_sub_group: bool | None = None
    priority: Int32 | None = None
    """Higher priorities are scheduled first."""
    preemption_policy: PreemptionPolicy = PreemptionPolicy.PREEMPT_LOWER_PRIORITY
    subscribers: Annotated[list[Subscriber], Field(min_length=1)]
    """Cluster groups to deploy to; at least one."""
    cluster_tolerations: list[Toleration] | None = None
    """Tolerated ManagedCluster taints."""
    feeds: Annotated[list[Feed], Field(min_length=1)]
    """Objects to deploy; at least one."""


class ReplicaStatus(KubeModel):
    observed_generation: Int64 | None = None
    replicas: Int32 | None = None
    updated_replicas: Int32 | None = None
    current_replicas: Int32 | None = None
    ready_replicas: Int32 | None = None
    available_replicas: Int32 | None = None
    unavailable_replicas: Int32 | None = None
    active: Int32 | None = None
    succeeded: Int32 | None = None
    failed: Int32 | None = None


class FeedStatus(KubeModel):
    available: bool | None = None
    replica_status: ReplicaStatus | None = None


class FeedStatusPerCluster(FeedStatus):
    cluster_id: str | None = None
    cluster_name: str | None = None


class AggregatedStatus(Feed):
    feed_status_summary: FeedStatus | None = None
    feed_status_details: list[FeedStatusPerCluster] | None = None


class SubscriptionStatus(KubeModel):
    binding_clusters: list[str] | None = None
    """<namespace>/<name> of the bound ManagedClusters, sorted."""
    replicas: dict[str, list[Int32]] | None = None
    """Per feed key, replicas for each binding cluster (same order); empty for non-workloads."""
    spec_hash: Int64 | None = None
    """Hash of the spec the current placement was computed from."""
    desired_releases: int | None = None
    completed_releases: int | None = None
    aggregated_statuses: list[AggregatedStatus] | None = None
    conditions: list[Condition] | None = None
    """Ours (upstream has none): ``Scheduled`` with the reason of every placement decision,
    ``Deployed`` with where the feeds are (not) running yet."""


class Subscription(KubeObject):
    """Deploys a group of feeds to the clusters selected by its subscribers."""

    crd = _crd(
        "Subscription",
        "subscriptions",
        scope="Namespaced",
        short_names=("sub", "subs"),
        status_subresource=True,
    )

    spec: SubscriptionSpec
    status: SubscriptionStatus = Field(default_factory=SubscriptionStatus)


# --- Base, Description ----------------------------------------------------------------------


class BaseSpec(KubeModel):
    feeds: list[Feed]


class Base(KubeObject):
    """A Subscription's feeds bound to one cluster, in that cluster's dedicated namespace."""

    crd = _crd("Base", "bases", scope="Namespaced")

    spec: BaseSpec


class DescriptionDeployer(StrEnum):
    HELM = "Helm"
    GENERIC = "Generic"


class DescriptionPhase(StrEnum):
    PENDING = "Pending"
    SUCCESS = "Success"
    FAILURE = "Failure"
    INSTALLING = "Installing"
    UPGRADING = "Upgrading"
    UNINSTALLING = "Uninstalling"
    SUPERSEDED = "Superseded"
    UNKNOWN = "Unknown"


class ChartReference(KubeModel):
    namespace: str
    name: str


class DescriptionSpec(KubeModel):
    deployer: DescriptionDeployer
    raw: list[Bytes] | None = None
    """Generic: the rendered objects as JSON; Helm: one values document per chart."""
    charts: list[ChartReference] | None = None
    chart_raw: list[Bytes] | None = None
    """Helm: the HelmChart objects after chart overrides."""


class ManifestStatus(Feed):
    observed_status: FreeFormObject | None = None
    """The status of the object as observed in the child cluster."""


class DescriptionStatus(KubeModel):
    phase: DescriptionPhase | None = None
    reason: str | None = None
    manifest_statuses: list[ManifestStatus] | None = None


class Description(KubeObject):
    """The fully rendered objects for one cluster, applied by a deployer."""

    crd = _crd(
        "Description",
        "descriptions",
        scope="Namespaced",
        short_names=("desc",),
        status_subresource=True,
        printer_columns=(
            PrinterColumn(
                "DEPLOYER", ".spec.deployer", description="The deployer of the resources"
            ),
            PrinterColumn("STATUS", ".status.phase", description="The status of the deployment"),
            AGE_COLUMN,
        ),
    )

    spec: DescriptionSpec
    status: DescriptionStatus = Field(default_factory=DescriptionStatus)


# --- Localization, Globalization ------------------------------------------------------------


class OverridePolicy(StrEnum):
    APPLY_NOW = "ApplyNow"
    """Re-render already deployed objects now."""
    APPLY_LATER = "ApplyLater"
    """Take effect on the next change of the feed or subscription."""


class OverrideType(StrEnum):
    HELM = "Helm"
    JSON_PATCH = "JSONPatch"
    MERGE_PATCH = "MergePatch"
    FIELD_JSON_PATCH = "FieldJSONPatch"
    FIELD_MERGE_PATCH = "FieldMergePatch"


class FieldFormat(StrEnum):
    YAML = "YAML"
    JSON = "JSON"


FIELD_OVERRIDE_TYPES = (OverrideType.FIELD_JSON_PATCH, OverrideType.FIELD_MERGE_PATCH)


class OverrideConfig(KubeModel):
    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "!(self.type in ['FieldJSONPatch', 'FieldMergePatch']) || has(self.fieldPath)",
                    "fieldPath is required for FieldJSONPatch and FieldMergePatch overrides",
                )
            ]
        }
    )

    name: str | None = None
    value: str
    """The override, as YAML or JSON text (values for Helm, a patch otherwise)."""
    type: OverrideType
    override_chart: bool | None = None
    """Helm only: patch the HelmChart object instead of its values."""
    field_path: str | None = None
    """Field* types: JSON pointer to a string field holding an embedded YAML/JSON document."""
    field_format: FieldFormat | None = None
    """Field* types: format of that embedded document; empty means YAML."""


class LocalizationSpec(KubeModel):
    override_policy: OverridePolicy = OverridePolicy.APPLY_LATER
    overrides: list[OverrideConfig] | None = None
    priority: Annotated[Int32, Field(ge=0, le=1000)] = 500
    """0..1000; overrides are applied from low to high priority, so higher ones win."""
    feed: Feed
    """The object the overrides apply to."""


class Localization(KubeObject):
    """Overrides for one feed in one cluster (lives in that cluster's dedicated namespace)."""

    crd = _crd("Localization", "localizations", scope="Namespaced", short_names=("loc", "local"))

    spec: LocalizationSpec


class GlobalizationSpec(LocalizationSpec):
    cluster_affinity: LabelSelector | None = None
    """Clusters the overrides apply to; empty selects all clusters."""


class Globalization(KubeObject):
    """Overrides for one feed in every cluster its clusterAffinity selects."""

    crd = _crd("Globalization", "globalizations", scope="Cluster", short_names=("glob", "global"))

    spec: GlobalizationSpec


# --- Helm -----------------------------------------------------------------------------------

HELM_REPO_PATTERN = (
    r"^(http|https|oci)?://(?:[a-zA-Z]|[0-9]|[$-_@.&+]|[!*\(\),]|(?:%[0-9a-fA-F][0-9a-fA-F]))+$"
)


class ChartPullSecret(KubeModel):
    """Secret in the parent with the keys username and password."""

    name: str | None = None
    namespace: str | None = None


class HelmOptions(KubeModel):
    repo: Annotated[str, Field(pattern=HELM_REPO_PATTERN)]
    """Chart repository URL (http, https or oci)."""
    chart: str
    version: str | None = None
    """Chart version; the latest when empty."""
    chart_pull_secret: ChartPullSecret | None = None
    plain_http: bool | None = Field(default=None, alias="plainHTTP")
    """OCI only: use plain HTTP."""
    create_namespace: bool = True
    timeout_seconds: Int32 = 300
    wait: bool | None = None
    wait_for_job: bool | None = None
    replace: bool | None = None
    atomic: bool | None = None
    """Install: uninstall a failed release."""
    upgrade_atomic: bool | None = None
    """Upgrade: roll back a failed release."""
    skip_crds: bool | None = Field(default=None, alias="skipCRDs")
    replace_crds: bool | None = Field(default=None, alias="replaceCRDs")
    disable_hooks: bool | None = None
    force: bool | None = None


class HelmChartPhase(StrEnum):
    FOUND = "Found"
    NOT_FOUND = "NotFound"


class HelmChartSpec(HelmOptions):
    target_namespace: str
    """Namespace the chart is installed into in each child cluster."""


class HelmChartStatus(KubeModel):
    phase: HelmChartPhase | None = None
    reason: str | None = None


_HELM_COLUMNS = (
    PrinterColumn("CHART", ".spec.chart", description="The helm chart name"),
    PrinterColumn("VERSION", ".spec.version", description="The helm chart version"),
    PrinterColumn("REPO", ".spec.repo", description="The helm repo url"),
)


class HelmChart(KubeObject):
    """A Helm chart to distribute (a feed)."""

    crd = _crd(
        "HelmChart",
        "helmcharts",
        scope="Namespaced",
        short_names=("chart", "charts"),
        status_subresource=True,
        printer_columns=(
            *_HELM_COLUMNS,
            PrinterColumn("STATUS", ".status.phase", description="The helm chart status"),
            AGE_COLUMN,
        ),
    )

    spec: HelmChartSpec
    status: HelmChartStatus = Field(default_factory=HelmChartStatus)


class HelmReleaseSpec(HelmOptions):
    target_namespace: str
    release_name: str | None = None
    overrides: Bytes | None = None
    """Values (JSON) for this release."""


class HelmReleaseStatus(KubeModel):
    first_deployed: str | None = None
    last_deployed: str | None = None
    description: str | None = None
    phase: str | None = None
    """Helm release status, e.g. deployed, failed, pending-install."""
    notes: str | None = None
    version: int | None = None
    """Release revision."""


class HelmRelease(KubeObject):
    """One chart release in one cluster."""

    crd = _crd(
        "HelmRelease",
        "helmreleases",
        scope="Namespaced",
        short_names=("hr",),
        status_subresource=True,
        printer_columns=(
            *_HELM_COLUMNS,
            PrinterColumn("STATUS", ".status.phase", description="The helm release status"),
            AGE_COLUMN,
        ),
    )

    spec: HelmReleaseSpec
    status: HelmReleaseStatus = Field(default_factory=HelmReleaseStatus)


# --- Manifest, FeedInventory ----------------------------------------------------------------


class Manifest(KubeObject):
    """A stored copy of an arbitrary object (a feed), normally in clusternet-reserved."""

    crd = _crd("Manifest", "manifests", scope="Namespaced")

    template: FreeFormObject
    """The object itself."""


class ReplicaRequirements(KubeModel):
    node_selector: dict[str, str] | None = None
    tolerations: list[Toleration] | None = None
    affinity: Affinity | None = None
    resources: ResourceRequirements | None = None


class FeedOrder(Feed):
    desired_replicas: Int32 | None = None
    """Total replicas wanted; unset for non-workloads."""
    replica_requirements: ReplicaRequirements | None = None
    replica_json_path: str | None = Field(default=None, alias="replicaJsonPath")
    """JSON pointer to the replica count, e.g. /spec/replicas."""


class FeedInventorySpec(KubeModel):
    feeds: list[FeedOrder]


class FeedInventory(KubeObject):
    """Replica requirements of a Dividing Subscription's feeds, for the scheduler."""

    crd = _crd("FeedInventory", "feedinventories", scope="Namespaced", short_names=("finv",))

    spec: FeedInventorySpec


KINDS: tuple[type[KubeObject], ...] = (
    Subscription,
    Base,
    Description,
    Localization,
    Globalization,
    HelmChart,
    HelmRelease,
    Manifest,
    FeedInventory,
)
