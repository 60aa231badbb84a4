"""Pure decisions of the deployers (spec §4.7): what to apply, what to prune, which status to
write, who deploys a Description, and whether a deployed object drifted.

No I/O here: everything is a function of API objects (plain dicts), tested table-driven.
"""

from __future__ import annotations

import base64
import binascii
import copy
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final, NamedTuple

from clusternet.apis import known
from clusternet.apis.apps.v1alpha1 import DescriptionDeployer, DescriptionPhase
from clusternet.apis.clusters.v1beta1 import ClusterSyncMode

Object = dict[str, Any]

FIELD_MANAGER: Final = "clusternet-deployer"
KUBECTL_LAST_APPLIED_ANNOTATION: Final = "kubectl.kubernetes.io/last-applied-configuration"
# Metadata the API server owns: never sent back to a child.
SYSTEM_METADATA: Final = (
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "managedFields",
    "selfLink",
    "ownerReferences",
)
# Applied before everything else: objects in a Namespace, or of a CRD's kind, need them.
_FIRST_KINDS: Final = {("v1", "Namespace"), ("apiextensions.k8s.io/v1", "CustomResourceDefinition")}
MAX_REASON_LENGTH: Final = 4096


class ObjectRef(NamedTuple):
    """Identity of one object in a child (what prune and Recovery key on)."""

    api_version: str
    kind: str
    namespace: str
    name: str

    def __str__(self) -> str:
        where = f"{self.namespace}/" if self.namespace else ""
        return f"{self.kind} {where}{self.name}"

    @property
    def group(self) -> str:
        return self.api_version.rpartition("/")[0]

    def same_object(self, other: ObjectRef) -> bool:
        """One object whatever the version it is served at (apps/v1 vs apps/v1beta1)."""
        return (self.group, self.kind, self.namespace, self.name) == (
            other.group,
            other.kind,
            other.namespace,
            other.name,
        )


def ref_of(obj: Mapping[str, Any]) -> ObjectRef:
    meta = obj.get("metadata") or {}
    return ObjectRef(
        str(obj.get("apiVersion", "")),
        str(obj.get("kind", "")),
        str(meta.get("namespace") or ""),
        str(meta.get("name", "")),
    )


def owner_value(description: Mapping[str, Any]) -> str:
    """The owned-by annotation value: ``<descNamespace>.<descName>``."""
    meta = description["metadata"]
    return f"{meta['namespace']}.{meta['name']}"


def owner_key(owner: str, namespace: str) -> str | None:
    """The ``namespace/name`` key of the Description an owned-by value names, if it lives in
    ``namespace`` (namespace names have no dots, so the first dot splits)."""
    ns, dot, name = owner.partition(".")
    if not dot or ns != namespace or not name:
        return None
    return f"{ns}/{name}"


# ---------------------------------------------------------------- decoding and preparation


@dataclass(frozen=True)
class Decoded:
    objects: list[Object]
    errors: list[str]  # one per undecodable raw entry


def decode_raw(raw: Sequence[Any] | None) -> Decoded:
    """Decode ``spec.raw`` (base64 of JSON objects, as on the wire; already-decoded dicts
    are accepted too).  Bad entries become errors; the good ones are still returned."""
    objects: list[Object] = []
    errors: list[str] = []
    for index, entry in enumerate(raw or ()):
        try:
            if isinstance(entry, dict):
                obj: Any = entry
            else:
                data = base64.b64decode(entry, validate=True) if isinstance(entry, str) else entry
                obj = json.loads(data)
        except (binascii.Error, ValueError, TypeError) as err:
            errors.append(f"raw[{index}]: not base64 of a JSON object: {err}")
            continue
        if not isinstance(obj, dict):
            errors.append(f"raw[{index}]: not a JSON object")
            continue
        meta = obj.get("metadata")
        if not obj.get("apiVersion") or not obj.get("kind") or not isinstance(meta, dict):
            errors.append(f"raw[{index}]: apiVersion, kind and metadata are required")
            continue
        if not meta.get("name"):
            errors.append(f"raw[{index}]: {obj['kind']} has no metadata.name")
            continue
        objects.append(obj)
    return Decoded(objects, errors)


def prepare(obj: Mapping[str, Any], owner: str) -> Object:
    """The object as the deployer applies it: system metadata and status wiped, kubectl's
    last-applied annotation dropped, the owned-by and last-applied annotations and the
    deployed-by label set.  ``obj`` is not changed."""
    prepared = copy.deepcopy(dict(obj))
    prepared.pop("status", None)
    meta = prepared.setdefault("metadata", {})
    for key in SYSTEM_METADATA:
        meta.pop(key, None)
    annotations = dict(meta.get("annotations") or {})
    annotations.pop(KUBECTL_LAST_APPLIED_ANNOTATION, None)
    annotations.pop(known.LAST_APPLIED_CONFIG_ANNOTATION, None)
    annotations[known.OWNED_BY_DESCRIPTION_ANNOTATION] = owner
    labels = dict(meta.get("labels") or {})
    labels[known.DEPLOYED_BY_LABEL] = known.DEPLOYED_BY_CLUSTERNET
    meta["labels"] = labels
    meta["annotations"] = annotations
    # The last-applied configuration is the object as it is sent, minus this annotation.
    annotations[known.LAST_APPLIED_CONFIG_ANNOTATION] = json.dumps(
        prepared, sort_keys=True, separators=(",", ":")
    )
    return prepared


def apply_waves(objects: Sequence[Object]) -> list[list[Object]]:
    """Namespaces and CRDs first, then everything else (each wave applied concurrently)."""
    first = [o for o in objects if (o.get("apiVersion"), o.get("kind")) in _FIRST_KINDS]
    rest = [o for o in objects if (o.get("apiVersion"), o.get("kind")) not in _FIRST_KINDS]
    return [wave for wave in (first, rest) if wave]


def previous_refs(description: Mapping[str, Any]) -> list[ObjectRef]:
    """What the Description deployed last time: its ``status.manifestStatuses``."""
    statuses = (description.get("status") or {}).get("manifestStatuses") or ()
    return [
        ObjectRef(
            str(s.get("apiVersion", "")),
            str(s.get("kind", "")),
            str(s.get("namespace") or ""),
            str(s.get("name", "")),
        )
        for s in statuses
        if s.get("kind") and s.get("name")
    ]


def stale_refs(previous: Iterable[ObjectRef], current: Iterable[ObjectRef]) -> list[ObjectRef]:
    """Objects deployed before that the Description no longer lists (to prune)."""
    wanted = list(current)
    stale: list[ObjectRef] = []
    for ref in previous:
        if not any(ref.same_object(w) for w in wanted) and ref not in stale:
            stale.append(ref)
    return stale


def owned_by(live: Mapping[str, Any], owner: str) -> bool:
    annotations = (live.get("metadata") or {}).get("annotations") or {}
    return annotations.get(known.OWNED_BY_DESCRIPTION_ANNOTATION) == owner


# ---------------------------------------------------------------- status


@dataclass(frozen=True)
class ObjectResult:
    ref: ObjectRef
    error: str | None = None
    observed_status: Any = None


def manifest_status(ref: ObjectRef, observed_status: Any) -> Object:
    entry: Object = {"apiVersion": ref.api_version, "kind": ref.kind, "name": ref.name}
    if ref.namespace:
        entry["namespace"] = ref.namespace
    if observed_status:
        entry["observedStatus"] = observed_status
    return entry


def build_status(
    results: Sequence[ObjectResult], errors: Sequence[str] = (), kept: Sequence[ObjectRef] = ()
) -> Object:
    """``status`` after one apply: Success iff every object applied and nothing else failed;
    ``reason`` aggregates the errors; ``manifestStatuses`` lists the objects deployed (and
    ``kept``: stale ones whose prune failed, so that the next pass prunes them again)."""
    messages = [*errors, *(f"{r.ref}: {r.error}" for r in results if r.error)]
    statuses = [manifest_status(r.ref, r.observed_status) for r in results if r.error is None]
    statuses += [manifest_status(ref, None) for ref in kept]
    status: Object = {
        "phase": DescriptionPhase.FAILURE if messages else DescriptionPhase.SUCCESS,
        "reason": _truncate("; ".join(messages)) if messages else None,
        "manifestStatuses": statuses or None,
    }
    return status


def _truncate(text: str) -> str:
    return text if len(text) <= MAX_REASON_LENGTH else text[: MAX_REASON_LENGTH - 3] + "..."


def status_patch(current: Mapping[str, Any] | None, desired: Mapping[str, Any]) -> Object | None:
    """The merge patch that turns ``current`` status into ``desired`` (only the deployer's
    fields), or None when nothing changes."""
    current = current or {}
    patch: Object = {}
    for key in ("phase", "reason", "manifestStatuses"):
        if key in desired and current.get(key) != desired[key]:
            patch[key] = desired[key]
    return patch or None


def refreshed_statuses(
    statuses: Sequence[Mapping[str, Any]], observe: Mapping[ObjectRef, Any]
) -> list[Object]:
    """``manifestStatuses`` with ``observedStatus`` replaced from ``observe`` (by object)."""
    refreshed: list[Object] = []
    for entry in statuses:
        ref = ObjectRef(
            str(entry.get("apiVersion", "")),
            str(entry.get("kind", "")),
            str(entry.get("namespace") or ""),
            str(entry.get("name", "")),
        )
        new = dict(entry)
        if ref in observe:
            if observe[ref]:
                new["observedStatus"] = observe[ref]
            else:
                new.pop("observedStatus", None)
        refreshed.append(new)
    return refreshed


# ---------------------------------------------------------------- who deploys


class PushDecision(StrEnum):
    PUSH = "push"
    NOT_OURS = "not-ours"  # the agent pulls
    WAIT = "wait"  # the agent has not reported status.appPusher yet


def push_decision(managed_cluster: Mapping[str, Any]) -> PushDecision:
    """Whether the parent pushes to this cluster (spec §4.7 decision table)."""
    mode = (managed_cluster.get("spec") or {}).get("syncMode")
    app_pusher = (managed_cluster.get("status") or {}).get("appPusher")
    if mode == ClusterSyncMode.PULL:
        return PushDecision.NOT_OURS
    if mode not in (ClusterSyncMode.PUSH, ClusterSyncMode.DUAL):
        return PushDecision.NOT_OURS  # unknown mode: leave it to nobody rather than fight
    if app_pusher is None:
        return PushDecision.WAIT
    return PushDecision.PUSH if app_pusher else PushDecision.NOT_OURS


def agent_pulls(sync_mode: ClusterSyncMode | str, app_pusher_gate: bool) -> bool:
    """Whether the agent applies its cluster's Descriptions (the other half of the table)."""
    if sync_mode == ClusterSyncMode.PULL:
        return True
    return sync_mode == ClusterSyncMode.DUAL and not app_pusher_gate


def cluster_lost(managed_cluster: Mapping[str, Any] | None) -> bool:
    """No ManagedCluster, or one being deleted, or not Ready: a deleting Description then
    just loses its finalizer (a lost cluster never blocks deletion, spec §3.7)."""
    if managed_cluster is None or (managed_cluster.get("metadata") or {}).get("deletionTimestamp"):
        return True
    conditions = (managed_cluster.get("status") or {}).get("conditions") or ()
    ready = next((c for c in conditions if c.get("type") == known.CONDITION_READY), None)
    return ready is None or ready.get("status") != "True"


def is_generic(description: Mapping[str, Any]) -> bool:
    return (description.get("spec") or {}).get("deployer") == DescriptionDeployer.GENERIC


def is_deleting(obj: Mapping[str, Any]) -> bool:
    return bool((obj.get("metadata") or {}).get("deletionTimestamp"))


# ---------------------------------------------------------------- drift (Recovery)


def last_applied(live: Mapping[str, Any]) -> Object | None:
    annotations = (live.get("metadata") or {}).get("annotations") or {}
    text = annotations.get(known.LAST_APPLIED_CONFIG_ANNOTATION)
    if not text:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def drifted(live: Mapping[str, Any]) -> bool:
    """Whether a deployed object no longer matches what was applied: a field the deployer
    set (anything but metadata and status, plus labels and annotations) has another value
    or is gone.  Fields added by the server or others (defaults, extra labels) are ignored,
    as upstream ignores "add" operations."""
    desired = last_applied(live)
    if desired is None:
        return False
    for key, value in desired.items():
        if key in ("apiVersion", "kind", "status"):
            continue
        if key == "metadata":
            meta = live.get("metadata") or {}
            for part in ("labels", "annotations"):
                wanted = dict(value.get(part) or {})
                wanted.pop(known.LAST_APPLIED_CONFIG_ANNOTATION, None)
                if not _covers(meta.get(part) or {}, wanted):
                    return True
            continue
        if not (_covers(live[key], value) if key in live else _empty(value)):
            return True
    return False


def _empty(value: Any) -> bool:
    """Sent but not kept by the server (``creationTimestamp: null``, ``resources: {}``)."""
    if isinstance(value, dict):
        return all(_empty(v) for v in value.values())
    return value is None or value == []


def _covers(live: Any, desired: Any) -> bool:
    """``live`` holds everything ``desired`` does (dicts may have more keys)."""
    if isinstance(desired, dict):
        return isinstance(live, dict) and all(
            _covers(live[k], v) if k in live else _empty(v) for k, v in desired.items()
        )
    if isinstance(desired, list):
        return (
            isinstance(live, list)
            and len(live) == len(desired)
            and all(_covers(a, b) for a, b in zip(live, desired, strict=True))
        )
    if isinstance(desired, bool) or isinstance(live, bool):
        return live is desired
    if isinstance(desired, int | float) and isinstance(live, int | float):
        return float(live) == float(desired)
    return bool(live == desired)
