"""Multi-cluster services (spec §7): names, labels, object builders and sync decisions.

Both sides use this module: the agent copies a child's EndpointSlices of an exported Service
into the cluster's dedicated namespace in the parent, and the controller-manager turns a
ServiceImport into a derived Service plus copies of those slices in the import's namespace.
Everything here is pure: the controllers feed it what their informers hold and carry out
what it returns.

Chain of names, for ServiceExport ``baz/nginx-svc`` in the cluster of namespace
``clusternet-q7x2k`` and a ServiceImport in ``default``::

    child    EndpointSlice baz/nginx-svc-8fj2d
    parent   EndpointSlice clusternet-q7x2k/baz-nginx-svc-8fj2d            (agent)
    parent   EndpointSlice default/clusternet-q7x2k-baz-nginx-svc-8fj2d    (controller-manager)
    parent   Service       default/derived-baz-kl7j74ep4o                  (controller-manager)
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from clusternet.apis import known

Object = Mapping[str, Any]

DISCOVERY_API_VERSION: Final = "discovery.k8s.io/v1"
MCS_API_VERSION: Final = f"{known.MULTICLUSTER_GROUP}/v1alpha1"
DERIVED_PREFIX: Final = "derived-"
SERVICE_NAME_LABEL: Final = "kubernetes.io/service-name"
MANAGED_BY_LABEL: Final = "endpointslice.kubernetes.io/managed-by"
# The MCS API's label for the cluster an EndpointSlice's endpoints come from (KEP-1645).
SOURCE_CLUSTER_LABEL: Final = "multicluster.kubernetes.io/source-cluster"
# Values of MANAGED_BY_LABEL: kube's EndpointSlice controllers leave such slices alone.
EXPORT_MANAGER: Final = "serviceexport-controller.clusternet.io"
IMPORT_MANAGER: Final = "serviceimport-controller.clusternet.io"
# The derived Service is a LoadBalancer of this class (see derived_service).
LOAD_BALANCER_CLASS: Final = "clusternet.io/multi-cluster-service"

# ServiceExport condition (upstream mcs-api: type Valid, reasons Valid/NoService/...).
CONDITION_VALID: Final = "Valid"
REASON_VALID: Final = "Valid"
REASON_NO_SERVICE: Final = "NoService"
REASON_INVALID_SERVICE_TYPE: Final = "InvalidServiceType"

_MAX_NAME: Final = 253
_HASH_LENGTH: Final = 10


def derived_name(namespace: str, name: str) -> str:
    """``derived-<namespace>-<hash(name)>``: the first 10 characters of the lowercase
    base32hex (no padding) of sha256(name).  Only the name is hashed (upstream's rule)."""
    digest = hashlib.sha256(name.encode()).digest()
    encoded = base64.b32hexencode(digest).decode().rstrip("=").lower()
    return f"{DERIVED_PREFIX}{namespace}-{encoded[:_HASH_LENGTH]}"


def copy_name(prefix: str, name: str) -> str:
    """``<prefix>-<name>``, the name of a slice copy; kept within the 253 characters of a
    name by cutting it and appending a hash of the whole when it would be longer."""
    full = f"{prefix}-{name}"
    if len(full) <= _MAX_NAME:
        return full
    digest = hashlib.sha256(full.encode()).hexdigest()[:_HASH_LENGTH]
    return f"{full[: _MAX_NAME - _HASH_LENGTH - 1]}-{digest}"


def mcs_labels(export_namespace: str, export_name: str) -> dict[str, str]:
    return {
        known.MCS_SERVICE_NAME_LABEL: export_name,
        known.MCS_SERVICE_NAMESPACE_LABEL: export_namespace,
    }


def mcs_key(labels: Mapping[str, str] | None) -> str | None:
    """``<namespace>/<name>`` of the exported Service a labelled object belongs to."""
    labels = labels or {}
    name = labels.get(known.MCS_SERVICE_NAME_LABEL)
    namespace = labels.get(known.MCS_SERVICE_NAMESPACE_LABEL)
    return f"{namespace}/{name}" if name and namespace else None


def slice_content(endpoint_slice: Object) -> tuple[Any, Any, Any]:
    """What a copy must reproduce: addressType, endpoints and ports."""
    return (
        endpoint_slice.get("addressType"),
        endpoint_slice.get("endpoints") or [],
        endpoint_slice.get("ports") or [],
    )


def _slice(
    name: str, namespace: str, labels: dict[str, str], source: Object, owners: list[Any]
) -> dict[str, Any]:
    address_type, endpoints, ports = slice_content(source)
    metadata: dict[str, Any] = {"name": name, "namespace": namespace, "labels": labels}
    if owners:
        metadata["ownerReferences"] = owners
    return {
        "apiVersion": DISCOVERY_API_VERSION,
        "kind": "EndpointSlice",
        "metadata": metadata,
        "addressType": address_type,
        "endpoints": [dict(e) for e in endpoints],
        "ports": [dict(p) for p in ports],
    }


# -- agent side (spec §7.2) ---------------------------------------------------------------------


@dataclass(frozen=True)
class SourceCluster:
    """Where the agent runs: its dedicated namespace in the parent, and its identity."""

    namespace: str
    cluster_id: str
    cluster_name: str


def exported_slice_labels(export: Object, cluster: SourceCluster) -> dict[str, str]:
    """Labels of a child slice's copy in the dedicated namespace (spec §7.2), plus the source
    cluster (not upstream), so that the copies in an import's namespace say where their
    endpoints run."""
    meta = export["metadata"]
    labels = {
        **mcs_labels(meta["namespace"], meta["name"]),
        known.OBJECT_CREATED_BY_LABEL: known.CLUSTERNET_AGENT_NAME,
        SERVICE_NAME_LABEL: derived_name(meta["namespace"], meta["name"]),
        MANAGED_BY_LABEL: EXPORT_MANAGER,
        SOURCE_CLUSTER_LABEL: cluster.cluster_id,
        known.CLUSTER_ID_LABEL: cluster.cluster_id,
    }
    if cluster.cluster_name:
        labels[known.CLUSTER_NAME_LABEL] = cluster.cluster_name
    subs_namespace = (meta.get("labels") or {}).get(known.CONFIG_SUBSCRIPTION_NAMESPACE_LABEL)
    if subs_namespace:
        labels[known.CONFIG_SUBSCRIPTION_NAMESPACE_LABEL] = subs_namespace
    return labels


def exported_slice(local_slice: Object, export: Object, cluster: SourceCluster) -> dict[str, Any]:
    """The copy of a child's EndpointSlice in the dedicated namespace of the parent:
    ``<exportNamespace>-<sliceName>``, same addressType, endpoints and ports."""
    meta = local_slice["metadata"]
    return _slice(
        copy_name(meta["namespace"], meta["name"]),
        cluster.namespace,
        exported_slice_labels(export, cluster),
        local_slice,
        [],
    )


def export_valid_condition(service: Object | None) -> dict[str, str]:
    """The ServiceExport's ``Valid`` condition for the same-named Service (None: missing)."""
    if service is None:
        return {
            "type": CONDITION_VALID,
            "status": "False",
            "reason": REASON_NO_SERVICE,
            "message": "no Service with the name and namespace of this ServiceExport",
        }
    if (service.get("spec") or {}).get("type") == "ExternalName":
        return {
            "type": CONDITION_VALID,
            "status": "False",
            "reason": REASON_INVALID_SERVICE_TYPE,
            "message": "a Service of type ExternalName has no endpoints to export",
        }
    return {
        "type": CONDITION_VALID,
        "status": "True",
        "reason": REASON_VALID,
        "message": "the Service is exported",
    }


def with_condition(
    conditions: Iterable[Object] | None, condition: Mapping[str, str], now: str
) -> list[dict[str, Any]] | None:
    """``conditions`` with ``condition`` set (by type), or None if nothing would change.

    ``lastTransitionTime`` moves only when the status flips, as metav1 conditions do.
    """
    current = [dict(c) for c in conditions or ()]
    for index, existing in enumerate(current):
        if existing.get("type") != condition["type"]:
            continue
        if all(existing.get(k) == v for k, v in condition.items()):
            return None
        flipped = existing.get("status") != condition["status"]
        current[index] = {
            **condition,
            "lastTransitionTime": now if flipped else existing.get("lastTransitionTime", now),
        }
        return current
    return [*current, {**condition, "lastTransitionTime": now}]


# -- controller-manager side (spec §7.3) --------------------------------------------------------


@dataclass(frozen=True)
class ImportTarget:
    """What a processable ServiceImport asks for: the exported Service ``namespace/name``."""

    namespace: str
    name: str

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def derived_name(self) -> str:
        return derived_name(self.namespace, self.name)


@dataclass(frozen=True)
class Unprocessable:
    """Why a ServiceImport is left alone: an Event reason and message."""

    reason: str
    message: str


def import_target(service_import: Object) -> ImportTarget | Unprocessable:
    """Which exported Service a ServiceImport selects; only ClusterSetIP imports carrying
    both ``services.clusternet.io/multi-cluster-service-*`` labels are processed."""
    labels = service_import["metadata"].get("labels") or {}
    name = labels.get(known.MCS_SERVICE_NAME_LABEL)
    namespace = labels.get(known.MCS_SERVICE_NAMESPACE_LABEL)
    if not name or not namespace:
        return Unprocessable(
            "MissingServiceLabels",
            f"labels {known.MCS_SERVICE_NAME_LABEL} and {known.MCS_SERVICE_NAMESPACE_LABEL} "
            "must name the exported Service",
        )
    kind = (service_import.get("spec") or {}).get("type")
    if kind != "ClusterSetIP":
        return Unprocessable(
            "UnsupportedServiceImportType",
            f"type {kind!r} is not supported: only ClusterSetIP imports get a derived Service",
        )
    return ImportTarget(namespace, name)


def controller_reference(obj: Object) -> dict[str, Any]:
    meta = obj["metadata"]
    return {
        "apiVersion": obj["apiVersion"],
        "kind": obj["kind"],
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
        "blockOwnerDeletion": False,
    }


def controller_uid(obj: Object) -> str | None:
    for ref in obj["metadata"].get("ownerReferences") or ():
        if ref.get("controller"):
            return str(ref.get("uid"))
    return None


def service_ports(ports: Iterable[Object] | None) -> list[dict[str, Any]]:
    """Service ports from ServiceImport ports (name, protocol, port, appProtocol)."""
    result = []
    for port in ports or ():
        item: dict[str, Any] = {"protocol": port.get("protocol") or "TCP", "port": port["port"]}
        if port.get("name"):
            item["name"] = port["name"]
        if port.get("appProtocol"):
            item["appProtocol"] = port["appProtocol"]
        result.append(item)
    return result


def _port_view(ports: Iterable[Object] | None) -> list[tuple[Any, ...]]:
    return [
        (p.get("name") or "", p.get("protocol") or "TCP", p.get("port"), p.get("appProtocol"))
        for p in ports or ()
    ]


def derived_service(service_import: Object, target: ImportTarget) -> dict[str, Any]:
    """The Service that fronts a ServiceImport: no selector, the import's ports, owned by it.

    Upstream makes it a ClusterIP Service and writes ``spec.ips`` into
    ``status.loadBalancer.ingress``; since Kubernetes 1.29 the API server refuses that status
    on a Service that is not a LoadBalancer.  So it is a LoadBalancer of class
    ``clusternet.io/multi-cluster-service`` (which no load-balancer implementation claims)
    without node ports: a ClusterIP as before, and the import's IP as its ingress.
    """
    meta = service_import["metadata"]
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": target.derived_name,
            "namespace": meta["namespace"],
            "labels": {
                **mcs_labels(target.namespace, target.name),
                known.OBJECT_CREATED_BY_LABEL: known.CLUSTERNET_CONTROLLER_MANAGER_NAME,
            },
            "ownerReferences": [controller_reference(service_import)],
        },
        "spec": {
            "type": "LoadBalancer",
            "loadBalancerClass": LOAD_BALANCER_CLASS,
            "allocateLoadBalancerNodePorts": False,
            "ports": service_ports((service_import.get("spec") or {}).get("ports")),
        },
    }


def service_ingress(service_import: Object) -> list[dict[str, str]]:
    return [{"ip": ip} for ip in (service_import.get("spec") or {}).get("ips") or ()]


def service_update(current: Object, desired: Object) -> dict[str, Any] | None:
    """``current`` with the spec fields and labels the controller owns set as in
    ``desired``, or None when they agree.  Fields the API server fills (clusterIP,
    targetPort...) and labels of others are kept."""
    spec = dict(current.get("spec") or {})
    want = desired["spec"]
    labels = dict(current["metadata"].get("labels") or {})
    wanted_labels = desired["metadata"]["labels"]
    same = (
        _port_view(spec.get("ports")) == _port_view(want["ports"])
        and spec.get("type") == want["type"]
        and spec.get("loadBalancerClass") == want["loadBalancerClass"]
        and not spec.get("selector")
        and all(labels.get(k) == v for k, v in wanted_labels.items())
    )
    if same:
        return None
    spec.update(want)
    spec.pop("selector", None)
    metadata = {**current["metadata"], "labels": {**labels, **wanted_labels}}
    return {**current, "metadata": metadata, "spec": spec}


def ingress_differs(service: Object, ingress: list[dict[str, str]]) -> bool:
    current = ((service.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
    return [i.get("ip") for i in current] != [i["ip"] for i in ingress]


def imported_slice_labels(source: Object) -> dict[str, str]:
    """The source copy's labels minus ``clusternet.io/created-by``, managed by the import
    controller (``kubernetes.io/service-name`` already names the derived Service)."""
    labels = dict(source["metadata"].get("labels") or {})
    labels.pop(known.OBJECT_CREATED_BY_LABEL, None)
    labels[MANAGED_BY_LABEL] = IMPORT_MANAGER
    return labels


def imported_slice(source: Object, service: Object) -> dict[str, Any]:
    """A source copy (in a dedicated namespace) copied next to the derived Service as
    ``<sourceNamespace>-<sourceName>``, owned by that Service."""
    meta = source["metadata"]
    labels = imported_slice_labels(source)
    labels[SERVICE_NAME_LABEL] = service["metadata"]["name"]
    owner = {
        "apiVersion": "v1",
        "kind": "Service",
        "name": service["metadata"]["name"],
        "uid": service["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": False,
    }
    return _slice(
        copy_name(meta["namespace"], meta["name"]),
        service["metadata"]["namespace"],
        labels,
        source,
        [owner],
    )


# -- what to write ------------------------------------------------------------------------------


@dataclass
class SlicePlan:
    """Writes that make the current slices the desired ones: new objects to create, current
    objects with the desired fields set (resourceVersion kept), names to delete."""

    create: list[dict[str, Any]] = field(default_factory=list)
    update: list[dict[str, Any]] = field(default_factory=list)
    delete: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.create or self.update or self.delete)


def _slice_differs(current: Object, desired: Object) -> bool:
    cur, want = current["metadata"], desired["metadata"]
    return (
        slice_content(current) != slice_content(desired)
        or (cur.get("labels") or {}) != want["labels"]
        or (cur.get("ownerReferences") or []) != (want.get("ownerReferences") or [])
    )


def plan_slices(desired: Iterable[Object], current: Iterable[Object]) -> SlicePlan:
    """Create what is missing, update what differs (content, labels or owners), delete what
    is no longer wanted; a changed addressType (immutable) is a delete and a create, so
    deletes go first.  Slices being deleted are neither updated nor deleted again."""
    plan = SlicePlan()
    existing = {c["metadata"]["name"]: c for c in current}
    wanted: set[str] = set()
    for want in sorted(desired, key=lambda d: str(d["metadata"]["name"])):
        name = want["metadata"]["name"]
        wanted.add(name)
        have = existing.get(name)
        if have is None:
            plan.create.append(dict(want))
        elif have["metadata"].get("deletionTimestamp"):
            continue  # comes back as a create once it is gone
        elif have.get("addressType") != want.get("addressType"):
            # addressType is immutable: replace the slice (deletes are carried out first).
            plan.delete.append(name)
            plan.create.append(dict(want))
        elif _slice_differs(have, want):
            metadata = {**have["metadata"], "labels": want["metadata"]["labels"]}
            if "ownerReferences" in want["metadata"]:
                metadata["ownerReferences"] = want["metadata"]["ownerReferences"]
            else:
                metadata.pop("ownerReferences", None)
            address_type, endpoints, ports = slice_content(want)
            plan.update.append(
                {
                    **have,
                    "metadata": metadata,
                    "addressType": address_type,
                    "endpoints": endpoints,
                    "ports": ports,
                }
            )
    plan.delete = sorted(
        [
            *plan.delete,
            *(
                name
                for name, have in existing.items()
                if name not in wanted and not have["metadata"].get("deletionTimestamp")
            ),
        ]
    )
    return plan


def has_finalizer(obj: Object) -> bool:
    return known.APP_FINALIZER in (obj["metadata"].get("finalizers") or [])


def finalizers_patch(obj: Object, *, present: bool) -> dict[str, Any] | None:
    """A merge patch adding or removing ``apps.clusternet.io/finalizer`` (guarded by the
    resourceVersion), or None when it is already so."""
    meta = obj["metadata"]
    finalizers = list(meta.get("finalizers") or [])
    if (known.APP_FINALIZER in finalizers) == present:
        return None
    if present:
        finalizers.append(known.APP_FINALIZER)
    else:
        finalizers = [f for f in finalizers if f != known.APP_FINALIZER]
    return {"metadata": {"resourceVersion": meta["resourceVersion"], "finalizers": finalizers}}
