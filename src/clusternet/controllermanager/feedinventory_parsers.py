"""Workload parsers of the FeedInventory controller (spec §4.10): desired replicas, the JSON
pointer of the replica count and the requirements of one replica, from an object template.

Pure functions over the template dict, registered by (apiVersion, kind).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal
from typing import Any, Final

from clusternet.apis.apps.v1alpha1 import Feed, FeedOrder, ReplicaRequirements
from clusternet.apis.quantity import Quantity

REPLICAS_JSON_PATH: Final = "/spec/replicas"

Parser = Callable[[Mapping[str, Any]], tuple[int | None, ReplicaRequirements, str]]


def pod_template_parser(template: Mapping[str, Any]) -> tuple[int | None, ReplicaRequirements, str]:
    """Deployments, StatefulSets and ReplicaSets: ``spec.replicas`` and ``spec.template``.

    An unset ``spec.replicas`` stays unset (the apiserver would default it to 1, but the
    template is what the user wrote, and the scheduler then leaves the workload whole).
    """
    spec = template.get("spec") or {}
    replicas = spec.get("replicas")
    pod_spec = (spec.get("template") or {}).get("spec") or {}
    return (
        int(replicas) if replicas is not None else None,
        replica_requirements(pod_spec),
        REPLICAS_JSON_PATH,
    )


def replica_requirements(pod_spec: Mapping[str, Any]) -> ReplicaRequirements:
    requests, limits = pod_resources(pod_spec)
    resources: dict[str, Any] = {}
    if requests:
        resources["requests"] = requests
    if limits:
        resources["limits"] = limits
    return ReplicaRequirements.model_validate(
        {
            "nodeSelector": pod_spec.get("nodeSelector") or None,
            "tolerations": pod_spec.get("tolerations") or None,
            "affinity": pod_spec.get("affinity") or None,
            "resources": resources or None,
        }
    )


def pod_resources(pod_spec: Mapping[str, Any]) -> tuple[dict[str, str], dict[str, str]]:
    """Requests and limits of one pod: containers summed per resource (a limit without a
    request counts as the request, as the apiserver defaults it), init containers by max
    (they run one at a time, before the others)."""

    def totals(kind: str) -> dict[str, Quantity]:
        summed = _sum(_container_resources(c, kind) for c in pod_spec.get("containers") or ())
        for init in pod_spec.get("initContainers") or ():
            for name, quantity in _container_resources(init, kind).items():
                if name not in summed or quantity.value > summed[name].value:
                    summed[name] = quantity
        return summed

    def text(values: Mapping[str, Quantity]) -> dict[str, str]:
        return {name: str(q) for name, q in sorted(values.items())}

    return text(totals("requests")), text(totals("limits"))


def _container_resources(container: Mapping[str, Any], kind: str) -> dict[str, Quantity]:
    resources = container.get("resources") or {}
    values = dict(resources.get(kind) or {})
    if kind == "requests":
        for name, limit in (resources.get("limits") or {}).items():
            values.setdefault(name, limit)
    return {name: Quantity.parse(value) for name, value in values.items()}


def _sum(items: Iterable[Mapping[str, Quantity]]) -> dict[str, Quantity]:
    total: dict[str, Quantity] = {}
    for item in items:
        for name, quantity in item.items():
            total[name] = total.get(name, Quantity(Decimal(0), quantity.format)) + quantity
    return total


PARSERS: Final[Mapping[tuple[str, str], Parser]] = {
    **{(v, "Deployment"): pod_template_parser for v in (
        "apps/v1", "apps/v1beta1", "apps/v1beta2", "extensions/v1beta1")},
    **{(v, "ReplicaSet"): pod_template_parser for v in ("apps/v1", "extensions/v1beta1")},
    **{(v, "StatefulSet"): pod_template_parser for v in (
        "apps/v1", "apps/v1beta1", "apps/v1beta2", "extensions/v1beta1")},
}  # fmt: skip


def feed_order(feed: Feed, template: Mapping[str, Any] | None) -> FeedOrder:
    """The FeedOrder of one feed; only the feed itself for kinds without a parser (or
    without a template: HelmCharts, whose replicas are inside values)."""
    order = FeedOrder.model_validate(feed.model_dump())
    parser = PARSERS.get((feed.api_version, feed.kind))
    if parser is None or template is None:
        return order
    desired, requirements, json_path = parser(template)
    order.desired_replicas = desired
    order.replica_requirements = requirements
    order.replica_json_path = json_path
    return order
