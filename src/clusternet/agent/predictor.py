"""The replica predictor (spec §5.5): how many more replicas of one pod shape a cluster can run.

Pure: it works on Node and Pod objects as the API returns them.  Per node that the replica
could land on (node selector, required node affinity, NoSchedule/NoExecute taints tolerated,
not cordoned): allocatable minus the requests of the pods already there, divided by the
replica's requests, bounded by the free pod slots; the cluster's answer is the sum.

Better than upstream: required node affinity is honoured (upstream ignored affinity) and
cordoned nodes do not count.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any, Final

from clusternet.apis.apps.v1alpha1 import ReplicaRequirements
from clusternet.apis.core import NodeSelectorRequirement, Toleration
from clusternet.apis.quantity import Quantity

Object = Mapping[str, Any]
PODS: Final = "pods"
_HARD_EFFECTS: Final = frozenset({"NoSchedule", "NoExecute"})
_TERMINAL_PHASES: Final = frozenset({"Succeeded", "Failed"})


class NoFeasibleNodes(Exception):
    """No node can run a replica at all (the predictor answers 500, as upstream)."""


def predict_replicas(
    requirements: ReplicaRequirements, nodes: Iterable[Object], pods: Iterable[Object]
) -> int:
    """The replicas of ``requirements`` the nodes can still take, summed over nodes."""
    request = replica_request(requirements)
    by_node: dict[str, list[Object]] = {}
    for pod in pods:
        node_name = (pod.get("spec") or {}).get("nodeName")
        if node_name and (pod.get("status") or {}).get("phase") not in _TERMINAL_PHASES:
            by_node.setdefault(node_name, []).append(pod)
    feasible = [n for n in nodes if node_fits(requirements, n)]
    if not feasible:
        raise NoFeasibleNodes("no feasible nodes found")
    return sum(node_replicas(request, n, by_node.get(n["metadata"]["name"], ())) for n in feasible)


def replica_request(requirements: ReplicaRequirements) -> dict[str, Decimal]:
    """Requests of one replica; a resource with only a limit requests that limit."""
    resources = requirements.resources
    values: dict[str, Any] = {}
    if resources is not None:
        values.update(resources.limits or {})
        values.update(resources.requests or {})
    return {name: Quantity.parse(v).value for name, v in values.items()}


def node_fits(requirements: ReplicaRequirements, node: Object) -> bool:
    spec = node.get("spec") or {}
    if spec.get("unschedulable"):
        return False
    labels: Mapping[str, str] = node["metadata"].get("labels") or {}
    for key, value in (requirements.node_selector or {}).items():
        if labels.get(key) != value:
            return False
    if not _required_affinity_matches(requirements, node["metadata"]["name"], labels):
        return False
    tolerations = requirements.tolerations or []
    for taint in spec.get("taints") or ():
        if taint.get("effect") in _HARD_EFFECTS and not any(
            _tolerates(t, taint) for t in tolerations
        ):
            return False
    return True


def node_replicas(request: Mapping[str, Decimal], node: Object, pods: Sequence[Object]) -> int:
    """Replicas of ``request`` that fit on ``node`` next to ``pods`` (0 if overcommitted)."""
    allocatable = {
        name: Quantity.parse(v).value
        for name, v in ((node.get("status") or {}).get("allocatable") or {}).items()
    }
    used: dict[str, Decimal] = {}
    for pod in pods:
        for name, value in pod_request(pod).items():
            used[name] = used.get(name, Decimal(0)) + value
    free_slots = int(allocatable.get(PODS, Decimal(0))) - len(pods)
    if free_slots <= 0:
        return 0
    fits = free_slots
    for name, wanted in request.items():
        if wanted <= 0 or name == PODS:
            continue
        remaining = allocatable.get(name, Decimal(0)) - used.get(name, Decimal(0))
        if remaining <= 0:
            return 0
        fits = min(fits, int(remaining // wanted))
    return fits


def pod_request(pod: Object) -> dict[str, Decimal]:
    """What the scheduler reserves for a pod: containers summed, init containers by max,
    plus the pod overhead."""
    spec = pod.get("spec") or {}
    total: dict[str, Decimal] = {}
    for container in spec.get("containers") or ():
        for name, value in _container_request(container).items():
            total[name] = total.get(name, Decimal(0)) + value
    for init in spec.get("initContainers") or ():
        for name, value in _container_request(init).items():
            total[name] = max(total.get(name, Decimal(0)), value)
    for name, value in (spec.get("overhead") or {}).items():
        total[name] = total.get(name, Decimal(0)) + Quantity.parse(value).value
    return total


def _container_request(container: Object) -> dict[str, Decimal]:
    resources = container.get("resources") or {}
    values = dict(resources.get("limits") or {})
    values.update(resources.get("requests") or {})
    return {name: Quantity.parse(v).value for name, v in values.items()}


def _tolerates(toleration: Toleration, taint: Object) -> bool:
    if toleration.effect and toleration.effect != taint.get("effect"):
        return False
    if toleration.key and toleration.key != taint.get("key"):
        return False
    if (toleration.operator or "Equal") == "Exists":
        return True
    return bool(toleration.key) and (toleration.value or "") == (taint.get("value") or "")


def _required_affinity_matches(
    requirements: ReplicaRequirements, node_name: str, labels: Mapping[str, str]
) -> bool:
    affinity = requirements.affinity
    node_affinity = affinity.node_affinity if affinity is not None else None
    required = (
        node_affinity.required_during_scheduling_ignored_during_execution
        if node_affinity is not None
        else None
    )
    if required is None:
        return True
    # Terms are ORed; within a term every expression and field must hold.  A term with
    # nothing in it matches nothing, as in kube-scheduler.
    for term in required.node_selector_terms:
        expressions = term.match_expressions or []
        fields = term.match_fields or []
        if not expressions and not fields:
            continue
        if all(_requirement_matches(r, labels) for r in expressions) and all(
            _requirement_matches(r, {"metadata.name": node_name}) for r in fields
        ):
            return True
    return False


def _requirement_matches(req: NodeSelectorRequirement, labels: Mapping[str, str]) -> bool:
    value = labels.get(req.key)
    values = req.values or []
    if req.operator == "In":
        return value is not None and value in values
    if req.operator == "NotIn":
        return value not in values
    if req.operator == "Exists":
        return value is not None
    if req.operator == "DoesNotExist":
        return value is None
    # Gt / Lt: one integer value compared with the label's integer value.
    if value is None or len(values) != 1:
        return False
    try:
        label, bound = int(value), int(values[0])
    except ValueError:
        return False
    return label > bound if req.operator == "Gt" else label < bound
