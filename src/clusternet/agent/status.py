"""What the agent reports about its cluster: pure functions from observations to status.

Everything here is computed from plain inputs (the ``/version`` document, the cached Nodes,
probe results, flags, the clock's ``now``), so every rule of spec §3.5/§3.6 is unit-tested
without a cluster; :mod:`clusternet.agent.reporter` only gathers the inputs and writes.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from clusternet.apis import known
from clusternet.apis.quantity import add_quantities

Object = dict[str, Any]

# Summed over nodes, as upstream: cpu, memory and (when any node has it) NVIDIA GPUs.
REPORTED_RESOURCES = ("cpu", "memory", known.NVIDIA_GPU_RESOURCE)
CONTROL_PLANE_ROLE_LABELS = (
    "node-role.kubernetes.io/control-plane",
    "node-role.kubernetes.io/master",
)
READY_MESSAGE = "managed cluster is ready."
NOT_READY_MESSAGE = "managed cluster is not ready."


@dataclass(frozen=True)
class Probes:
    """The child apiserver's answers to GET /healthz, /livez and /readyz ("ok" = True)."""

    healthz: bool
    livez: bool
    readyz: bool

    @property
    def ready(self) -> bool:
        # Upstream's rule: the newer endpoints both pass, or the legacy aggregate does.
        return (self.livez and self.readyz) or self.healthz


@dataclass(frozen=True)
class ReportSettings:
    """What the flags and feature gates contribute to every status."""

    apiserver_url: str
    agent_version: str
    kube_qps: float
    kube_burst: int
    heartbeat_frequency_seconds: int
    app_pusher: bool
    use_socket: bool
    predictor_address: str | None  # None: no predictor to advertise
    predictor_direct_access: bool


def node_statistics(nodes: Iterable[Object]) -> dict[str, int]:
    """Nodes by their Ready condition; a node that has none is counted as lost."""
    counts = Counter[str]()
    for node in nodes:
        ready = _condition(node.get("status", {}).get("conditions"), "Ready")
        if ready is None:
            counts["lostNodes"] += 1
        elif ready.get("status") == "True":
            counts["readyNodes"] += 1
        elif ready.get("status") == "False":
            counts["notReadyNodes"] += 1
        else:
            counts["unknownNodes"] += 1
    return {
        key: counts[key] for key in ("readyNodes", "notReadyNodes", "unknownNodes", "lostNodes")
    }


def resource_totals(nodes: Sequence[Object], field: str) -> dict[str, str]:
    """The sum of ``status.<field>`` (capacity or allocatable) over ``nodes``.

    cpu and memory are always reported (``0`` without nodes); GPUs only when a node has some.
    """
    totals: dict[str, str] = {}
    for resource in REPORTED_RESOURCES:
        values = [
            amount
            for node in nodes
            if (amount := (node.get("status", {}).get(field) or {}).get(resource)) is not None
        ]
        if values or resource != known.NVIDIA_GPU_RESOURCE:
            totals[resource] = add_quantities(values)
    return totals


def is_worker(node: Object) -> bool:
    labels = node.get("metadata", {}).get("labels") or {}
    return not any(role in labels for role in CONTROL_PLANE_ROLE_LABELS)


def aggregate_node_labels(
    nodes: Iterable[Object], prefixes: Sequence[str], threshold: float
) -> dict[str, str]:
    """Labels (with one of ``prefixes``) shared by at least ``threshold`` of the workers.

    Per key, the most frequent value wins (ties: the smallest value, to stay stable).
    """
    workers = [node for node in nodes if is_worker(node)]
    if not workers or not prefixes:
        return {}
    values: dict[str, Counter[str]] = {}
    for node in workers:
        for key, value in (node["metadata"].get("labels") or {}).items():
            if key.startswith(tuple(prefixes)):
                values.setdefault(key, Counter())[value] += 1
    aggregated = {}
    for key, counter in values.items():
        value, count = min(counter.items(), key=lambda item: (-item[1], item[0]))
        if count / len(workers) >= threshold:
            aggregated[key] = value
    return aggregated


def label_patch(
    current: Mapping[str, str], aggregated: Mapping[str, str], prefixes: Sequence[str]
) -> dict[str, str | None] | None:
    """The merge patch of ``metadata.labels`` that makes the aggregated labels (those with
    ``prefixes``) exactly ``aggregated``; None when nothing changes."""
    patch: dict[str, str | None] = {
        key: None for key in current if key.startswith(tuple(prefixes)) and key not in aggregated
    }
    patch.update({key: value for key, value in aggregated.items() if current.get(key) != value})
    return patch or None


def ready_condition(probes: Probes, previous: Iterable[Object], now: datetime) -> Object:
    """The Ready condition; its lastTransitionTime moves only when its status changes."""
    status = "True" if probes.ready else "False"
    old = _condition(previous, known.CONDITION_READY)
    transition = (
        old["lastTransitionTime"]
        if old and old.get("status") == status and old.get("lastTransitionTime")
        else _rfc3339(now)
    )
    return {
        "type": known.CONDITION_READY,
        "status": status,
        "reason": known.REASON_CLUSTER_READY if probes.ready else known.REASON_CLUSTER_NOT_READY,
        "message": READY_MESSAGE if probes.ready else NOT_READY_MESSAGE,
        "lastTransitionTime": transition,
    }


def discover_cidrs(
    pods: Iterable[Object], environ: Mapping[str, str]
) -> tuple[str | None, str | None]:
    """(clusterCIDR, serviceCIDR) from the control-plane Pods' flags, else the environment.

    serviceCIDR: ``--service-cluster-ip-range`` of kube-apiserver, then of
    kube-controller-manager, then ``SERVICE_CIDR``.  clusterCIDR: ``--cluster-cidr`` of
    kube-controller-manager, then of kube-proxy, then ``CLUSTER_CIDR``.
    """
    by_component: dict[str, list[str]] = {}
    for pod in pods:
        component = _component(pod)
        for container in pod.get("spec", {}).get("containers") or ():
            args = [*(container.get("command") or ()), *(container.get("args") or ())]
            by_component.setdefault(component, []).extend(args)

    def flag(name: str, components: Sequence[str]) -> str | None:
        pattern = re.compile(rf"^--{name}=(.+)$")
        for component in components:
            for arg in by_component.get(component, ()):
                if match := pattern.match(arg):
                    return match.group(1)
        return None

    service = flag("service-cluster-ip-range", ("kube-apiserver", "kube-controller-manager"))
    cluster = flag("cluster-cidr", ("kube-controller-manager", "kube-proxy"))
    return cluster or environ.get("CLUSTER_CIDR") or None, (
        service or environ.get("SERVICE_CIDR") or None
    )


def _component(pod: Object) -> str:
    labels = pod.get("metadata", {}).get("labels") or {}
    return str(
        labels.get("component")
        or labels.get("app.kubernetes.io/component")
        or labels.get("k8s-app")
        or ""
    )


def compute_status(
    *,
    version: Mapping[str, Any],
    nodes: Sequence[Object],
    probes: Probes,
    cidrs: tuple[str | None, str | None],
    settings: ReportSettings,
    previous_conditions: Iterable[Object],
    now: datetime,
) -> Object:
    """The ManagedCluster status fields the agent owns (spec §2.2, §3.5), as JSON."""
    cluster_cidr, service_cidr = cidrs
    status: Object = {
        "lastObservedTime": _rfc3339(now),
        "k8sVersion": version.get("gitVersion", ""),
        "agentVersion": settings.agent_version,
        "platform": version.get("platform", ""),
        "apiserverURL": settings.apiserver_url,
        "healthz": probes.healthz,
        "livez": probes.livez,
        "readyz": probes.readyz,
        "appPusher": settings.app_pusher,
        "useSocket": settings.use_socket,
        "kubeQPS": settings.kube_qps,
        "kubeBurst": settings.kube_burst,
        "allocatable": resource_totals(nodes, "allocatable"),
        "capacity": resource_totals(nodes, "capacity"),
        "clusterCIDR": cluster_cidr,
        "serviceCIDR": service_cidr,
        "nodeStatistics": node_statistics(nodes),
        "heartbeatFrequencySeconds": settings.heartbeat_frequency_seconds,
        "predictorEnabled": settings.predictor_address is not None,
        "predictorAddress": settings.predictor_address,
        "predictorDirectAccess": settings.predictor_direct_access
        if settings.predictor_address is not None
        else None,
    }
    others = [c for c in previous_conditions if c.get("type") != known.CONDITION_READY]
    status["conditions"] = [*others, ready_condition(probes, previous_conditions, now)]
    return {key: value for key, value in status.items() if value is not None}


def merged_status(current: Mapping[str, Any], reported: Mapping[str, Any]) -> Object:
    """``current`` with every field the agent owns replaced by ``reported``.

    Fields written by others (e.g. the ClusterInit condition, kept inside ``reported``'s
    conditions already) survive; agent-owned fields it no longer reports are dropped.
    """
    owned = {
        "clusterCIDR", "serviceCIDR", "predictorEnabled", "predictorAddress",
        "predictorDirectAccess",
    }  # fmt: skip
    kept = {key: value for key, value in current.items() if key not in owned}
    return {**kept, **reported}


def _condition(conditions: Iterable[Object] | None, kind: str) -> Object | None:
    return next((c for c in conditions or () if c.get("type") == kind), None)


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
