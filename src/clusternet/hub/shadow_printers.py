"""Server-side printing of shadow objects: ``Accept: application/json;as=Table;v=v1;g=meta.k8s.io``.

``kubectl get`` asks for a ``meta.k8s.io/v1`` Table and prints its columns as they are.  A
template is a real object's spec without status, so its cells are what kube-apiserver's
printers would show for such an object (READY ``0/2``, no cluster IP).  Columns:

* custom resources: the CRD's ``additionalPrinterColumns`` (JSONPath), after NAME, or
  NAME/AGE when it has none, as kube-apiserver's CRD handler does;
* built-in kinds: the columns of Kubernetes' printers (pkg/printers/internalversion), in the
  declarative table :data:`PRINTERS`; priority 1 columns are those ``-o wide`` adds;
* any other kind: NAME and AGE.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from clusternet.hub.shadow_resources import PrinterColumn, ShadowResource

Object = dict[str, Any]
Cell = str | int | float | bool | None

TABLE_API_VERSION: Final = "meta.k8s.io/v1"


@dataclass(frozen=True)
class Column:
    name: str
    cell: Callable[[Mapping[str, Any]], Cell]
    type: str = "string"
    priority: int = 0
    format: str = ""
    description: str = ""


# ------------------------------------------------------------------------------ cell helpers


def _get(obj: Mapping[str, Any], *path: str) -> Any:
    value: Any = obj
    for key in path:
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value


def _int(obj: Mapping[str, Any], *path: str) -> int:
    value = _get(obj, *path)
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _count(obj: Mapping[str, Any], *path: str) -> int:
    value = _get(obj, *path)
    return len(value) if isinstance(value, list | dict) else 0


def human_duration(age: timedelta) -> str:
    """k8s.io/apimachinery ``duration.HumanDuration``, as the AGE column shows it."""
    seconds = int(age.total_seconds())
    if seconds < -1:
        return "<invalid>"
    seconds = max(seconds, 0)
    minutes, hours, days = seconds // 60, seconds // 3600, seconds // 86400
    years = days // 365
    if seconds < 120:
        return f"{seconds}s"
    if minutes < 10:
        rest = seconds % 60
        return f"{minutes}m{rest}s" if rest else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    if hours < 8:
        rest = minutes % 60
        return f"{hours}h{rest}m" if rest else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 192:
        rest = hours % 24
        return f"{days}d{rest}h" if rest else f"{days}d"
    if years < 2:
        return f"{days}d"
    if years < 8:
        rest = days % 365
        return f"{years}y{rest}d" if rest else f"{years}y"
    return f"{years}y"


def age_of(timestamp: Any, now: datetime) -> str:
    if not isinstance(timestamp, str) or not timestamp:
        return "<unknown>"
    try:
        created = datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    except ValueError:
        return "<unknown>"
    return human_duration(now - created)


def _pod_spec(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    """The pod spec of a workload (a CronJob's is one level deeper)."""
    for path in (
        ("spec", "template", "spec"),
        ("spec", "jobTemplate", "spec", "template", "spec"),
        ("spec",),
    ):
        spec = _get(obj, *path)
        if isinstance(spec, Mapping) and "containers" in spec:
            return spec
    return {}


def _containers(obj: Mapping[str, Any]) -> str:
    return ",".join(str(c.get("name", "")) for c in _pod_spec(obj).get("containers") or ())


def _images(obj: Mapping[str, Any]) -> str:
    return ",".join(str(c.get("image", "")) for c in _pod_spec(obj).get("containers") or ())


def _label_selector(selector: Any) -> str:
    """``metav1.FormatLabelSelector``."""
    if not isinstance(selector, Mapping):
        return "<none>"
    terms = [f"{k}={v}" for k, v in (selector.get("matchLabels") or {}).items()]
    for expression in selector.get("matchExpressions") or ():
        key, operator = expression.get("key", ""), expression.get("operator", "")
        values = ",".join(expression.get("values") or ())
        terms.append(
            {
                "In": f"{key} in ({values})",
                "NotIn": f"{key} notin ({values})",
                "Exists": key,
                "DoesNotExist": f"!{key}",
            }.get(operator, f"{key} {operator} ({values})")
        )
    return ",".join(terms) or "<none>"


def _map_selector(selector: Any) -> str:
    if not isinstance(selector, Mapping) or not selector:
        return "<none>"
    return ",".join(f"{k}={v}" for k, v in sorted(selector.items()))


def _service_external_ip(obj: Mapping[str, Any]) -> str:
    spec = obj.get("spec") or {}
    kind = spec.get("type") or "ClusterIP"
    external = list(spec.get("externalIPs") or ())
    if kind == "ExternalName":
        return str(spec.get("externalName", ""))
    if kind == "LoadBalancer":
        ingress = _get(obj, "status", "loadBalancer", "ingress") or []
        found = [i.get("ip") or i.get("hostname") for i in ingress] + external
        return ",".join(str(f) for f in found if f) or "<pending>"
    return ",".join(external) or "<none>"


def _service_ports(obj: Mapping[str, Any]) -> str:
    ports = []
    for port in _get(obj, "spec", "ports") or ():
        text = str(port.get("port", ""))
        if port.get("nodePort"):
            text += f":{port['nodePort']}"
        ports.append(f"{text}/{port.get('protocol') or 'TCP'}")
    return ",".join(ports) or "<none>"


_ACCESS_MODES: Final = {
    "ReadWriteOnce": "RWO",
    "ReadOnlyMany": "ROX",
    "ReadWriteMany": "RWX",
    "ReadWriteOncePod": "RWOP",
}


def _access_modes(modes: Any) -> str:
    return ",".join(_ACCESS_MODES.get(m, m) for m in modes or ())


def _ingress_hosts(obj: Mapping[str, Any]) -> str:
    hosts = [r.get("host") for r in _get(obj, "spec", "rules") or () if r.get("host")]
    return ",".join(hosts) or "*"


def _ingress_ports(obj: Mapping[str, Any]) -> str:
    return "80, 443" if _get(obj, "spec", "tls") else "80"


def _or_none(value: Any, none: str = "<none>") -> str:
    return none if value in (None, "") else str(value)


def _ready_of_replicas(obj: Mapping[str, Any]) -> str:
    return f"{_int(obj, 'status', 'readyReplicas')}/{_int(obj, 'spec', 'replicas')}"


# ------------------------------------------------------------------------------ the table

_WORKLOAD_WIDE: Final = (
    Column("Containers", _containers, priority=1, description="Names of each container."),
    Column("Images", _images, priority=1, description="Images referenced by each container."),
    Column(
        "Selector",
        lambda o: _label_selector(_get(o, "spec", "selector")),
        priority=1,
        description="The label selector of the workload.",
    ),
)

# (group, kind) → the columns after NAME (AGE is placed where Kubernetes places it: "Age"
# entries below are filled by the table builder).
AGE: Final = Column("Age", lambda o: None, description="CreationTimestamp of the object.")

PRINTERS: Final[dict[tuple[str, str], tuple[Column, ...]]] = {
    ("apps", "Deployment"): (
        Column(
            "Ready", lambda o: f"{_int(o, 'status', 'readyReplicas')}/{_int(o, 'spec', 'replicas')}"
        ),
        Column("Up-to-date", lambda o: _int(o, "status", "updatedReplicas"), "integer"),
        Column("Available", lambda o: _int(o, "status", "availableReplicas"), "integer"),
        AGE,
        *_WORKLOAD_WIDE,
    ),
    ("apps", "ReplicaSet"): (
        Column("Desired", lambda o: _int(o, "spec", "replicas"), "integer"),
        Column("Current", lambda o: _int(o, "status", "replicas"), "integer"),
        Column("Ready", lambda o: _int(o, "status", "readyReplicas"), "integer"),
        AGE,
        *_WORKLOAD_WIDE,
    ),
    ("apps", "StatefulSet"): (
        Column(
            "Ready", lambda o: f"{_int(o, 'status', 'readyReplicas')}/{_int(o, 'spec', 'replicas')}"
        ),
        AGE,
        *_WORKLOAD_WIDE[:2],
    ),
    ("apps", "DaemonSet"): (
        Column("Desired", lambda o: _int(o, "status", "desiredNumberScheduled"), "integer"),
        Column("Current", lambda o: _int(o, "status", "currentNumberScheduled"), "integer"),
        Column("Ready", lambda o: _int(o, "status", "numberReady"), "integer"),
        Column("Up-to-date", lambda o: _int(o, "status", "updatedNumberScheduled"), "integer"),
        Column("Available", lambda o: _int(o, "status", "numberAvailable"), "integer"),
        Column("Node Selector", lambda o: _map_selector(_pod_spec(o).get("nodeSelector"))),
        AGE,
        *_WORKLOAD_WIDE,
    ),
    ("batch", "Job"): (
        Column(
            "Completions",
            lambda o: f"{_int(o, 'status', 'succeeded')}/{_get(o, 'spec', 'completions') or 1}",
        ),
        Column("Duration", lambda o: ""),
        AGE,
        *_WORKLOAD_WIDE,
    ),
    ("batch", "CronJob"): (
        Column("Schedule", lambda o: str(_get(o, "spec", "schedule") or "")),
        Column("Timezone", lambda o: _or_none(_get(o, "spec", "timeZone"))),
        Column("Suspend", lambda o: "True" if _get(o, "spec", "suspend") else "False"),
        Column("Active", lambda o: _count(o, "status", "active"), "integer"),
        Column("Last Schedule", lambda o: _or_none(_get(o, "status", "lastScheduleTime"))),
        AGE,
        *_WORKLOAD_WIDE,
    ),
    ("", "Pod"): (
        Column(
            "Ready",
            lambda o: f"0/{len(_get(o, 'spec', 'containers') or ())}",
        ),
        Column("Status", lambda o: str(_get(o, "status", "phase") or "")),
        Column("Restarts", lambda o: "0"),
        AGE,
        Column("IP", lambda o: _or_none(_get(o, "status", "podIP")), priority=1),
        Column("Node", lambda o: _or_none(_get(o, "spec", "nodeName")), priority=1),
    ),
    ("", "Namespace"): (
        Column("Status", lambda o: str(_get(o, "status", "phase") or "")),
        AGE,
    ),
    ("", "Service"): (
        Column("Type", lambda o: str(_get(o, "spec", "type") or "ClusterIP")),
        Column("Cluster-IP", lambda o: _or_none(_get(o, "spec", "clusterIP"))),
        Column("External-IP", _service_external_ip),
        Column("Port(s)", _service_ports),
        AGE,
        Column("Selector", lambda o: _map_selector(_get(o, "spec", "selector")), priority=1),
    ),
    ("", "ConfigMap"): (
        Column("Data", lambda o: _count(o, "data") + _count(o, "binaryData"), "integer"),
        AGE,
    ),
    ("", "Secret"): (
        Column("Type", lambda o: str(o.get("type") or "Opaque")),
        Column("Data", lambda o: _count(o, "data") + _count(o, "stringData"), "integer"),
        AGE,
    ),
    ("", "ServiceAccount"): (AGE,),
    ("", "PersistentVolumeClaim"): (
        Column("Status", lambda o: str(_get(o, "status", "phase") or "")),
        Column("Volume", lambda o: str(_get(o, "spec", "volumeName") or "")),
        Column("Capacity", lambda o: str(_get(o, "status", "capacity", "storage") or "")),
        Column("Access Modes", lambda o: _access_modes(_get(o, "status", "accessModes"))),
        Column("StorageClass", lambda o: str(_get(o, "spec", "storageClassName") or "")),
        AGE,
        Column("VolumeMode", lambda o: str(_get(o, "spec", "volumeMode") or ""), priority=1),
    ),
    ("", "PersistentVolume"): (
        Column("Capacity", lambda o: str(_get(o, "spec", "capacity", "storage") or "")),
        Column("Access Modes", lambda o: _access_modes(_get(o, "spec", "accessModes"))),
        Column(
            "Reclaim Policy", lambda o: str(_get(o, "spec", "persistentVolumeReclaimPolicy") or "")
        ),
        Column("Status", lambda o: str(_get(o, "status", "phase") or "")),
        Column(
            "Claim",
            lambda o: "/".join(
                str(_get(o, "spec", "claimRef", k))
                for k in ("namespace", "name")
                if _get(o, "spec", "claimRef", k)
            ),
        ),
        Column("StorageClass", lambda o: str(_get(o, "spec", "storageClassName") or "")),
        Column("Reason", lambda o: str(_get(o, "status", "reason") or "")),
        AGE,
    ),
    ("networking.k8s.io", "Ingress"): (
        Column("Class", lambda o: _or_none(_get(o, "spec", "ingressClassName"))),
        Column("Hosts", _ingress_hosts),
        Column("Address", lambda o: ""),
        Column("Ports", _ingress_ports),
        AGE,
    ),
    ("networking.k8s.io", "NetworkPolicy"): (
        Column(
            "Pod-Selector",
            lambda o: _label_selector(_get(o, "spec", "podSelector")).replace("<none>", ""),
        ),
        AGE,
    ),
    ("rbac.authorization.k8s.io", "RoleBinding"): (
        Column(
            "Role",
            lambda o: f"{_get(o, 'roleRef', 'kind')}/{_get(o, 'roleRef', 'name')}",
        ),
        AGE,
    ),
    ("rbac.authorization.k8s.io", "ClusterRoleBinding"): (
        Column(
            "Role",
            lambda o: f"{_get(o, 'roleRef', 'kind')}/{_get(o, 'roleRef', 'name')}",
        ),
        AGE,
    ),
    ("autoscaling", "HorizontalPodAutoscaler"): (
        Column(
            "Reference",
            lambda o: (
                f"{_get(o, 'spec', 'scaleTargetRef', 'kind')}/"
                f"{_get(o, 'spec', 'scaleTargetRef', 'name')}"
            ),
        ),
        Column("MinPods", lambda o: _get(o, "spec", "minReplicas") or 1, "integer"),
        Column("MaxPods", lambda o: _int(o, "spec", "maxReplicas"), "integer"),
        Column("Replicas", lambda o: _int(o, "status", "currentReplicas"), "integer"),
        AGE,
    ),
    ("policy", "PodDisruptionBudget"): (
        Column(
            "Min Available",
            lambda o: _or_none(_get(o, "spec", "minAvailable")).replace("<none>", "N/A"),
        ),
        Column(
            "Max Unavailable",
            lambda o: _or_none(_get(o, "spec", "maxUnavailable")).replace("<none>", "N/A"),
        ),
        Column("Allowed Disruptions", lambda o: _int(o, "status", "disruptionsAllowed"), "integer"),
        AGE,
    ),
}

NAME: Final = Column(
    "Name",
    lambda o: str(_get(o, "metadata", "name") or ""),
    format="name",
    description="Name must be unique within a namespace.",
)


# ------------------------------------------------------------------------------ JSONPath

_SEGMENT = re.compile(
    r"""\.(?P<field>[A-Za-z0-9_\-$@]+)
      | \[(?P<index>-?\d+|\*)\]
      | \[\?\(@\.(?P<filter>[A-Za-z0-9_.\-]+)\s*==\s*(?P<quote>["'])(?P<value>.*?)(?P=quote)\)\]
      | \['(?P<quoted>[^']+)'\]
    """,
    re.VERBOSE,
)


def jsonpath(obj: Any, path: str) -> list[Any]:
    """The values at a CRD printer column's ``jsonPath`` (the subset CRDs use: ``.a.b``,
    ``[n]``, ``[*]``, ``['a.b']`` and ``[?(@.type=="Ready")]``)."""
    expression = path.strip()
    if expression.startswith("{") and expression.endswith("}"):
        expression = expression[1:-1]
    expression = expression.removeprefix("$")
    values = [obj]
    position = 0
    while position < len(expression):
        match = _SEGMENT.match(expression, position)
        if match is None:
            return []
        position = match.end()
        found: list[Any] = []
        for value in values:
            if match["field"] is not None or match["quoted"] is not None:
                key = match["field"] if match["field"] is not None else match["quoted"]
                if isinstance(value, Mapping) and key in value:
                    found.append(value[key])
            elif match["index"] is not None and isinstance(value, list):
                if match["index"] == "*":
                    found += value
                elif -len(value) <= int(match["index"]) < len(value):
                    found.append(value[int(match["index"])])
            elif match["filter"] is not None and isinstance(value, list):
                for item in value:
                    selected = jsonpath(item, "." + match["filter"])
                    if selected and str(selected[0]) == match["value"]:
                        found.append(item)
        values = found
    return values


def _custom_cell(column: PrinterColumn, obj: Mapping[str, Any], now: datetime) -> Cell:
    values = jsonpath(obj, column.json_path)
    if not values:
        return None
    value = values[0]
    if column.type == "date":
        return age_of(value, now)
    if column.type in ("integer", "number", "boolean") and isinstance(value, int | float | bool):
        return value
    if len(values) > 1:
        return ",".join(v if isinstance(v, str) else json.dumps(v) for v in values)
    return value if isinstance(value, str) else json.dumps(value)


# ------------------------------------------------------------------------------ tables


def columns_for(resource: ShadowResource) -> list[Column]:
    """NAME then the kind's columns (AGE included) for built-ins and other kinds."""
    return [NAME, *PRINTERS.get((resource.group, resource.kind), (AGE,))]


def _definition(column: Column) -> dict[str, Any]:
    return {
        "name": column.name,
        "type": column.type,
        "format": column.format,
        "description": column.description,
        "priority": column.priority,
    }


def _custom_definition(column: PrinterColumn) -> dict[str, Any]:
    return {
        "name": column.name,
        "type": column.type,
        "format": column.format,
        "description": column.description,
        "priority": column.priority,
    }


def wants_table(accept: str) -> bool:
    """Whether the first JSON media type the client accepts is a ``meta.k8s.io`` Table."""
    for media_range in accept.split(","):
        media_type, *parameters = (part.strip() for part in media_range.split(";"))
        if media_type not in ("application/json", "*/*"):
            continue
        params = dict(p.partition("=")[::2] for p in parameters)
        return params.get("as") == "Table" and params.get("g", "meta.k8s.io") == "meta.k8s.io"
    return False


def row_object(obj: Mapping[str, Any], include_object: str) -> Object | None:
    if include_object == "None":
        return None
    if include_object == "Object":
        return dict(obj)
    return {
        "kind": "PartialObjectMetadata",
        "apiVersion": TABLE_API_VERSION,
        "metadata": obj.get("metadata") or {},
    }


def table(
    resource: ShadowResource,
    objects: Iterable[Mapping[str, Any]],
    *,
    include_object: str = "Metadata",
    metadata: Mapping[str, Any] | None = None,
    now: datetime | None = None,
    with_headers: bool = True,
) -> Object:
    """The ``meta.k8s.io/v1`` Table of ``objects`` (templates of ``resource``)."""
    now = now or datetime.now(UTC)
    rows = []
    if resource.custom:
        custom: Sequence[PrinterColumn] = resource.printer_columns or (
            PrinterColumn("Age", "date", ".metadata.creationTimestamp"),
        )
        definitions = [_definition(NAME), *(_custom_definition(c) for c in custom)]
        for obj in objects:
            cells: list[Cell] = [NAME.cell(obj), *(_custom_cell(c, obj, now) for c in custom)]
            rows.append(_row(cells, obj, include_object))
    else:
        columns = columns_for(resource)
        definitions = [_definition(c) for c in columns]
        for obj in objects:
            cells = [
                age_of(_get(obj, "metadata", "creationTimestamp"), now) if c is AGE else c.cell(obj)
                for c in columns
            ]
            rows.append(_row(cells, obj, include_object))
    result: Object = {
        "kind": "Table",
        "apiVersion": TABLE_API_VERSION,
        "metadata": dict(metadata or {}),
        "rows": rows,
    }
    # Watch events after the first carry rows only, as kube-apiserver's do.
    result["columnDefinitions"] = definitions if with_headers else None
    return result


def _row(cells: list[Cell], obj: Mapping[str, Any], include_object: str) -> Object:
    row: Object = {"cells": cells}
    embedded = row_object(obj, include_object)
    if embedded is not None:
        row["object"] = embedded
    return row
