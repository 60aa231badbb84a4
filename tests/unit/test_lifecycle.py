"""The cluster lifecycle rules (spec §3.7) as a pure function of a ManagedCluster and the time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from clusternet.apis import known
from clusternet.controllermanager.lifecycle import (
    cluster_init_reason,
    desired_taints,
    evaluate,
    format_time,
    init_base_name,
)

NOW = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)
CREATED = NOW - timedelta(hours=1)
UNSCHEDULABLE = known.TAINT_CLUSTER_UNSCHEDULABLE
INITIALIZATION = known.TAINT_CLUSTER_INITIALIZATION
OTHER_TAINT = {"key": "example.com/maintenance", "value": "yes", "effect": "NoSchedule"}


def ready(status: str, reason: str = known.REASON_CLUSTER_READY) -> dict[str, Any]:
    return {
        "type": "Ready",
        "status": status,
        "reason": reason,
        "message": "reported by the agent",
        "lastTransitionTime": format_time(CREATED),
    }


def cluster(
    *,
    seen_ago: timedelta | None = None,
    frequency: int | None = None,
    conditions: list[dict[str, Any]] | None = None,
    taints: list[dict[str, Any]] | None = None,
    annotations: dict[str, str] | None = None,
    created: datetime = CREATED,
) -> dict[str, Any]:
    status: dict[str, Any] = {"healthz": True, "livez": True, "readyz": True}
    if seen_ago is not None:
        status["lastObservedTime"] = format_time(NOW - seen_ago)
    if frequency is not None:
        status["heartbeatFrequencySeconds"] = frequency
    if conditions is not None:
        status["conditions"] = conditions
    return {
        "metadata": {
            "name": "edge-a",
            "namespace": "clusternet-abcde",
            "creationTimestamp": format_time(created),
            "annotations": annotations or {},
        },
        "spec": {"clusterId": "id", "syncMode": "Pull", "taints": taints or []},
        "status": status,
    }


def condition(status: dict[str, Any] | None, kind: str) -> dict[str, Any]:
    assert status is not None
    return next(c for c in status["conditions"] if c["type"] == kind)


def taint(key: str, value: str) -> dict[str, Any]:
    return {"key": key, "value": value, "effect": "NoSchedule"}


@pytest.mark.parametrize(
    ("name", "obj", "reason", "message"),
    [
        (
            "never reported, older than the default 9 minutes",
            cluster(),
            known.REASON_CLUSTER_STATUS_NEVER_UPDATED,
            "Clusternet agent never posted cluster status.",
        ),
        (
            "stale: last heartbeat over 3 x 60 s ago",
            cluster(seen_ago=timedelta(seconds=181), frequency=60, conditions=[ready("True")]),
            known.REASON_CLUSTER_STATUS_UNKNOWN,
            "Clusternet agent stopped posting cluster status.",
        ),
        (
            "stale at exactly the deadline",
            cluster(seen_ago=timedelta(seconds=30), frequency=10, conditions=[ready("True")]),
            known.REASON_CLUSTER_STATUS_UNKNOWN,
            "Clusternet agent stopped posting cluster status.",
        ),
        (
            "stale with the default grace period",
            cluster(seen_ago=timedelta(minutes=10), conditions=[ready("True")]),
            known.REASON_CLUSTER_STATUS_UNKNOWN,
            "Clusternet agent stopped posting cluster status.",
        ),
    ],
)
def test_a_silent_agent_makes_the_cluster_unknown_and_unschedulable(
    name: str, obj: dict[str, Any], reason: str, message: str
) -> None:
    result = evaluate(obj, NOW)

    ready_condition = condition(result.status, "Ready")
    assert ready_condition["status"] == "Unknown", name
    assert ready_condition["reason"] == reason
    assert ready_condition["message"] == message
    assert ready_condition["lastTransitionTime"] == format_time(NOW)
    assert result.status is not None
    assert (result.status["healthz"], result.status["livez"], result.status["readyz"]) == (
        False,
        False,
        False,
    )
    assert result.taints == [taint(UNSCHEDULABLE, reason)]
    assert result.requeue_after is None  # nothing to wait for: the next heartbeat is an event


@pytest.mark.parametrize(
    ("name", "obj", "requeue_after"),
    [
        (
            "fresh heartbeat, 60 s frequency",
            cluster(seen_ago=timedelta(seconds=20), frequency=60),
            160.0,
        ),
        ("fresh heartbeat, default grace period", cluster(seen_ago=timedelta(minutes=2)), 420.0),
        ("just created, never reported", cluster(created=NOW - timedelta(minutes=1)), 480.0),
    ],
)
def test_a_fresh_cluster_is_left_alone_until_its_deadline(
    name: str, obj: dict[str, Any], requeue_after: float
) -> None:
    obj["status"]["conditions"] = [
        ready("True"),
        {
            "type": "ClusterInit",
            "status": "True",
            "reason": known.REASON_CLUSTER_INIT_DISABLED,
            "message": "Cluster initialization is disabled.",
            "lastTransitionTime": format_time(CREATED),
        },
    ]

    result = evaluate(obj, NOW)

    assert result.status is None, name
    assert result.taints is None
    assert result.requeue_after == requeue_after


def test_an_unknown_cluster_is_not_rewritten_while_it_stays_silent() -> None:
    first = cluster(seen_ago=timedelta(hours=1), frequency=60, conditions=[ready("True")])
    after_first = evaluate(first, NOW)
    assert after_first.status is not None
    assert after_first.taints is not None
    second = {**first, "status": after_first.status, "spec": {"taints": after_first.taints}}

    again = evaluate(second, NOW + timedelta(minutes=5))

    assert again.status is None
    assert again.taints is None
    assert condition(second["status"], "Ready")["lastTransitionTime"] == format_time(NOW)


def test_the_taint_goes_when_the_agent_reports_ready_again_and_other_taints_stay() -> None:
    obj = cluster(
        seen_ago=timedelta(seconds=1),
        frequency=60,
        conditions=[ready("True")],
        taints=[OTHER_TAINT, taint(UNSCHEDULABLE, known.REASON_CLUSTER_STATUS_UNKNOWN)],
    )

    result = evaluate(obj, NOW)

    assert result.taints == [OTHER_TAINT]
    assert result.requeue_after == 179.0


def test_a_not_ready_report_taints_with_the_agents_reason_and_keeps_other_taints() -> None:
    obj = cluster(
        seen_ago=timedelta(seconds=1),
        frequency=60,
        conditions=[ready("False", known.REASON_CLUSTER_NOT_READY)],
        taints=[OTHER_TAINT],
    )

    result = evaluate(obj, NOW)

    assert result.taints == [OTHER_TAINT, taint(UNSCHEDULABLE, known.REASON_CLUSTER_NOT_READY)]
    assert condition(result.status, "Ready")["status"] == "False"  # the agent's, untouched


def test_every_managed_taint_changes_in_one_pass() -> None:
    """Upstream removed only one taint per pass (spec §12.6)."""
    conditions = [
        ready("True"),
        {"type": "ClusterInit", "status": "True", "reason": known.REASON_CLUSTER_INIT_DONE},
    ]
    taints = [
        taint(UNSCHEDULABLE, known.REASON_CLUSTER_STATUS_UNKNOWN),
        OTHER_TAINT,
        taint(INITIALIZATION, known.REASON_CLUSTER_INIT_WAITING),
        taint(UNSCHEDULABLE, known.REASON_CLUSTER_STATUS_UNKNOWN),  # a duplicate
    ]

    assert desired_taints(taints, conditions) == [OTHER_TAINT]


def test_a_stale_taint_value_follows_the_condition_reason() -> None:
    taints = [taint(UNSCHEDULABLE, known.REASON_CLUSTER_NOT_READY)]
    conditions = [ready("Unknown", known.REASON_CLUSTER_STATUS_UNKNOWN)]

    assert desired_taints(taints, conditions) == [
        taint(UNSCHEDULABLE, known.REASON_CLUSTER_STATUS_UNKNOWN)
    ]


def test_a_taint_with_our_key_but_another_effect_is_not_ours() -> None:
    foreign = {"key": UNSCHEDULABLE, "effect": "NoExecute"}

    assert desired_taints([foreign], [ready("True")]) == [foreign]


def test_cluster_init_off_is_reported_as_disabled_and_clears_the_init_taint() -> None:
    obj = cluster(
        seen_ago=timedelta(seconds=1),
        frequency=60,
        conditions=[ready("True")],
        taints=[taint(INITIALIZATION, known.REASON_CLUSTER_INIT_WAITING)],
    )

    result = evaluate(obj, NOW)

    init = condition(result.status, "ClusterInit")
    assert (init["status"], init["reason"]) == ("True", known.REASON_CLUSTER_INIT_DISABLED)
    assert result.taints == []


def test_pending_cluster_init_taints_and_rechecks_sooner_than_the_heartbeat() -> None:
    obj = cluster(seen_ago=timedelta(seconds=1), frequency=60, conditions=[ready("True")])

    result = evaluate(obj, NOW, init_reason=known.REASON_CLUSTER_INIT_WAITING)

    assert condition(result.status, "ClusterInit")["status"] == "False"
    assert result.taints == [taint(INITIALIZATION, known.REASON_CLUSTER_INIT_WAITING)]
    assert result.requeue_after == 30.0


def description(phase: str) -> dict[str, Any]:
    return {"metadata": {"name": "d"}, "status": {"phase": phase}}


BASE = {"metadata": {"name": "init", "uid": "u1"}}


@pytest.mark.parametrize(
    ("gate", "annotations", "base", "descriptions", "expected"),
    [
        (False, {}, BASE, [description("Pending")], known.REASON_CLUSTER_INIT_DISABLED),
        (
            True,
            {known.SKIP_CLUSTER_INIT_ANNOTATION: "true"},
            None,
            [],
            known.REASON_CLUSTER_INIT_DISABLED,
        ),
        (True, {}, None, [], known.REASON_CLUSTER_INIT_WAITING),
        (True, {}, BASE, [], known.REASON_CLUSTER_INIT_WAITING),
        (
            True,
            {},
            BASE,
            [description("Success"), description("Installing")],
            known.REASON_CLUSTER_INIT_WAITING,
        ),
        (
            True,
            {},
            BASE,
            [description("Success"), description("Success")],
            known.REASON_CLUSTER_INIT_DONE,
        ),
    ],
)
def test_cluster_init_reason(
    gate: bool,
    annotations: dict[str, str],
    base: dict[str, Any] | None,
    descriptions: list[dict[str, Any]],
    expected: str,
) -> None:
    obj = cluster(annotations=annotations)

    assert cluster_init_reason(obj, gate=gate, base=base, descriptions=descriptions) == expected


def test_init_base_name_prefers_the_spec_then_the_annotation_then_the_newest_default() -> None:
    def base(name: str, created: str, default: bool) -> dict[str, Any]:
        annotations = {known.IS_DEFAULT_CLUSTER_INIT_ANNOTATION: "true"} if default else {}
        return {
            "metadata": {"name": name, "creationTimestamp": created, "annotations": annotations}
        }

    bases = [
        base("old-default", "2025-01-01T10:00:00Z", True),
        base("new-default", "2025-01-01T11:00:00Z", True),
        base("newest-not-default", "2025-01-01T11:30:00Z", False),
    ]
    annotated = cluster(annotations={known.CLUSTER_INIT_BASE_ANNOTATION: "legacy"})
    named = {**annotated, "spec": {"clusterInitBaseName": "fixed"}}

    assert init_base_name(named, bases) == "fixed"
    assert init_base_name(annotated, bases) == "legacy"
    assert init_base_name(cluster(), bases) == "new-default"
    assert init_base_name(cluster(), bases[2:]) is None
