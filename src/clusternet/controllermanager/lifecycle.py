"""Cluster health and scheduling taints as a pure function of a ManagedCluster and the time.

An agent reports its cluster's status every ``heartbeatFrequencySeconds``; three missed
reports (nine minutes when the agent does not say how often it reports) mean the parent no
longer knows the cluster's state: Ready turns Unknown and the health flags false.  The
``clusters.clusternet.io/unschedulable`` taint mirrors the Ready condition and
``clusters.clusternet.io/initialization`` the ClusterInit condition, so the scheduler keeps
new work away from such clusters.  Taints of other owners are left as they are.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from clusternet.apis import known

Object = dict[str, Any]

MISSED_HEARTBEATS: Final = 3
DEFAULT_GRACE_PERIOD: Final = timedelta(minutes=9)
# While initialisation is pending the Descriptions' phases decide; they are watched, this is
# only a safety net.
CLUSTER_INIT_RECHECK_SECONDS: Final = 30.0

_INIT_STATUS = {
    known.REASON_CLUSTER_INIT_DISABLED: ("True", "Cluster initialization is disabled."),
    known.REASON_CLUSTER_INIT_DONE: ("True", "Cluster initialization is done."),
    known.REASON_CLUSTER_INIT_WAITING: (
        "False",
        "Waiting for the workloads of the cluster initialization Base to be deployed.",
    ),
}
# Taint key -> the condition it mirrors.
MANAGED_TAINTS: Final = {
    known.TAINT_CLUSTER_UNSCHEDULABLE: known.CONDITION_READY,
    known.TAINT_CLUSTER_INITIALIZATION: known.CONDITION_CLUSTER_INIT,
}


@dataclass(frozen=True)
class Evaluation:
    status: Object | None
    """The whole new status, or None when it stays as it is."""
    taints: list[Object] | None
    """The whole new ``spec.taints``, or None when they stay as they are."""
    requeue_after: float | None
    """Seconds until the cluster must be looked at again even if nothing changes (the
    heartbeat deadline), or None."""


def evaluate(
    cluster: Object, now: datetime, *, init_reason: str = known.REASON_CLUSTER_INIT_DISABLED
) -> Evaluation:
    """What the lifecycle controller writes for ``cluster`` at ``now``.

    ``init_reason`` is the ClusterInit reason found by :func:`cluster_init_reason`.
    """
    old_status = cluster.get("status") or {}
    status = copy.deepcopy(old_status)
    conditions: list[Object] = status.get("conditions") or []
    requeue_after: float | None = None

    observed = parse_time(status.get("lastObservedTime"))
    since = observed or parse_time(cluster["metadata"].get("creationTimestamp"))
    if since is not None:
        deadline = since + grace_period(status)
        if now >= deadline:
            if observed is None:
                reason = known.REASON_CLUSTER_STATUS_NEVER_UPDATED
                message = "Clusternet agent never posted cluster status."
            else:
                reason = known.REASON_CLUSTER_STATUS_UNKNOWN
                message = "Clusternet agent stopped posting cluster status."
            _set_condition(conditions, known.CONDITION_READY, "Unknown", reason, message, now)
            status.update(healthz=False, livez=False, readyz=False)
        else:
            requeue_after = (deadline - now).total_seconds()

    init_status, init_message = _INIT_STATUS[init_reason]
    _set_condition(
        conditions, known.CONDITION_CLUSTER_INIT, init_status, init_reason, init_message, now
    )
    if init_status != "True":
        recheck = CLUSTER_INIT_RECHECK_SECONDS
        requeue_after = recheck if requeue_after is None else min(requeue_after, recheck)
    status["conditions"] = conditions

    old_taints = (cluster.get("spec") or {}).get("taints") or []
    taints = desired_taints(old_taints, conditions)
    return Evaluation(
        status=status if status != old_status else None,
        taints=taints if taints != old_taints else None,
        requeue_after=requeue_after,
    )


def grace_period(status: Object) -> timedelta:
    frequency = status.get("heartbeatFrequencySeconds")
    if frequency is None:
        return DEFAULT_GRACE_PERIOD
    return timedelta(seconds=MISSED_HEARTBEATS * int(frequency))


def desired_taints(taints: Iterable[Object], conditions: Iterable[Object]) -> list[Object]:
    """``taints`` with the managed ones mirroring ``conditions``, all changes at once (upstream
    removed only one taint per pass, spec §12.6): a managed taint is present, with the
    condition's reason as its value, iff its condition is False or Unknown."""
    by_type = {c.get("type"): c for c in conditions}
    wanted: dict[str, Object] = {}
    for key, condition_type in MANAGED_TAINTS.items():
        condition = by_type.get(condition_type)
        if condition is not None and condition.get("status") in ("False", "Unknown"):
            wanted[key] = {"key": key, "value": condition.get("reason", ""), "effect": "NoSchedule"}
    result = []
    for taint in taints:
        if taint.get("key") not in MANAGED_TAINTS or taint.get("effect") != "NoSchedule":
            result.append(taint)  # not ours
            continue
        replacement = wanted.pop(taint["key"], None)  # pop: a duplicate of ours is dropped
        if replacement is not None:
            result.append(taint if taint.get("value") == replacement["value"] else replacement)
    result.extend(wanted.values())
    return result


def cluster_init_reason(
    cluster: Object,
    *,
    gate: bool,
    base: Object | None,
    descriptions: Iterable[Object],
) -> str:
    """ClusterInit per spec §3.7: disabled by the gate or the skip annotation; done once
    every Description of the init Base has been deployed successfully."""
    annotations = cluster["metadata"].get("annotations") or {}
    if not gate or annotations.get(known.SKIP_CLUSTER_INIT_ANNOTATION) == "true":
        return known.REASON_CLUSTER_INIT_DISABLED
    phases = [(d.get("status") or {}).get("phase") for d in descriptions]
    if base is not None and phases and all(phase == "Success" for phase in phases):
        return known.REASON_CLUSTER_INIT_DONE
    return known.REASON_CLUSTER_INIT_WAITING


def init_base_name(cluster: Object, bases: Iterable[Object]) -> str | None:
    """The cluster's init Base: ``spec.clusterInitBaseName``, else the annotation
    ``apps.clusternet.io/cluster-init-base``, else the newest Base of its namespace annotated
    as the default (the path upstream never reached, spec §12.6)."""
    named = (cluster.get("spec") or {}).get("clusterInitBaseName")
    if named:
        return str(named)
    annotations = cluster["metadata"].get("annotations") or {}
    if annotations.get(known.CLUSTER_INIT_BASE_ANNOTATION):
        return str(annotations[known.CLUSTER_INIT_BASE_ANNOTATION])
    defaults = [
        b
        for b in bases
        if (b["metadata"].get("annotations") or {}).get(known.IS_DEFAULT_CLUSTER_INIT_ANNOTATION)
        == "true"
    ]
    if not defaults:
        return None
    newest = max(
        defaults, key=lambda b: (b["metadata"]["creationTimestamp"], b["metadata"]["name"])
    )
    return str(newest["metadata"]["name"])


def parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)


def format_time(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _set_condition(
    conditions: list[Object],
    condition_type: str,
    status: str,
    reason: str,
    message: str,
    now: datetime,
) -> None:
    """Set a condition in place; lastTransitionTime moves only when the status changes."""
    for condition in conditions:
        if condition.get("type") == condition_type:
            if condition.get("status") != status:
                condition["lastTransitionTime"] = format_time(now)
            condition.update(status=status, reason=reason, message=message)
            return
    conditions.append(
        {
            "type": condition_type,
            "status": status,
            "reason": reason,
            "message": message,
            "lastTransitionTime": format_time(now),
        }
    )
