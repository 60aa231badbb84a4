"""What the scheduler tells users: the ``Scheduled`` condition and event texts (pure)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Final

from clusternet.apis import known

CONDITION_SCHEDULED: Final = "Scheduled"
REASON_SCHEDULED: Final = "Scheduled"
REASON_UNSCHEDULABLE: Final = "Unschedulable"
REASON_SCHEDULING_ERROR: Final = "SchedulingError"
REASON_WAITING_FOR_INVENTORY: Final = "WaitingForFeedInventory"


def scheduled_condition(
    conditions: Sequence[Mapping[str, Any]] | None,
    *,
    ok: bool,
    reason: str,
    message: str,
    generation: int | None,
    now: datetime,
) -> dict[str, Any]:
    """The new ``Scheduled`` condition; ``lastTransitionTime`` moves only when the status
    flips, as for every Kubernetes condition."""
    status = "True" if ok else "False"
    previous = next((c for c in conditions or () if c.get("type") == CONDITION_SCHEDULED), None)
    transition = now.isoformat().replace("+00:00", "Z")
    if previous is not None and previous.get("status") == status:
        transition = previous.get("lastTransitionTime") or transition
    condition: dict[str, Any] = {
        "type": CONDITION_SCHEDULED,
        "status": status,
        "reason": reason,
        "message": message[:32768],
        "lastTransitionTime": transition,
    }
    if generation is not None:
        condition["observedGeneration"] = generation
    return condition


def same_condition(a: Mapping[str, Any] | None, b: Mapping[str, Any]) -> bool:
    """Equal but for the transition time (nothing a user would see changed)."""
    if a is None:
        return False
    keys = ("type", "status", "reason", "message", "observedGeneration")
    return all(a.get(k) == b.get(k) for k in keys)


def with_condition(
    conditions: Sequence[Mapping[str, Any]] | None, condition: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """``conditions`` with the one of the same type replaced (or appended)."""
    others = [dict(c) for c in conditions or () if c.get("type") != condition.get("type")]
    return [*others, dict(condition)]


def bound_message(clusters: Sequence[str], replicas: Mapping[str, Sequence[int]]) -> str:
    """``Successfully bound to 2 cluster(s): ns1/a, ns2/b; apps/v1/Deployment/x/y: [2, 4]``."""
    text = f"Successfully bound to {len(clusters)} cluster(s): {', '.join(clusters) or '-'}"
    divided = [f"{feed}: {list(values)}" for feed, values in sorted(replicas.items()) if values]
    if divided:
        text += "; replicas " + "; ".join(divided)
    return text[: known.EVENT_MESSAGE_LIMIT]
