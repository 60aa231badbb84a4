"""The deployers' pure decisions (spec §4.7): preparation, prune sets, status, who deploys,
drift."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from clusternet.apis import known
from clusternet.deployer import (
    ObjectRef,
    ObjectResult,
    PushDecision,
    agent_pulls,
    apply_waves,
    build_status,
    cluster_lost,
    decode_raw,
    drifted,
    owner_key,
    owner_value,
    prepare,
    previous_refs,
    push_decision,
    refreshed_statuses,
    stale_refs,
    status_patch,
)

DESC = {"metadata": {"namespace": "clusternet-abcde", "name": "web-x1y2z-generic"}}
OWNER = "clusternet-abcde.web-x1y2z-generic"


def b64(obj: Any) -> str:
    return base64.b64encode(json.dumps(obj).encode()).decode()


def cm(name: str = "c", ns: str | None = "shop", **extra: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if ns:
        meta["namespace"] = ns
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, **extra}


# ---------------------------------------------------------------- decoding, preparation


def test_decode_keeps_good_entries_and_reports_bad_ones() -> None:
    decoded = decode_raw(
        [b64(cm("a")), "%%%not-base64", b64([1, 2]), b64({"kind": "X"}), b64(cm("")), cm("b")]
    )
    assert [o["metadata"]["name"] for o in decoded.objects] == ["a", "b"]
    assert [e.split(":")[0] for e in decoded.errors] == ["raw[1]", "raw[2]", "raw[3]", "raw[4]"]


def test_decode_of_nothing() -> None:
    assert decode_raw(None).objects == []
    assert decode_raw([]).errors == []


def test_prepare_wipes_system_metadata_and_stamps_ours() -> None:
    obj = cm(
        "c",
        data={"k": "v"},
        status={"x": 1},
    )
    obj["metadata"].update(
        uid="u",
        resourceVersion="7",
        generation=3,
        creationTimestamp="t",
        managedFields=[{}],
        selfLink="/x",
        ownerReferences=[{"uid": "o"}],
        labels={"app": "web", known.OBJECT_CREATED_BY_LABEL: known.CLUSTERNET_HUB_NAME},
        annotations={"kubectl.kubernetes.io/last-applied-configuration": "{}", "keep": "me"},
    )
    prepared = prepare(obj, OWNER)
    meta = prepared["metadata"]
    assert set(meta) == {"name", "namespace", "labels", "annotations"}
    assert "status" not in prepared
    assert meta["labels"] == {
        "app": "web",
        known.OBJECT_CREATED_BY_LABEL: known.CLUSTERNET_HUB_NAME,
        known.DEPLOYED_BY_LABEL: known.DEPLOYED_BY_CLUSTERNET,
    }
    assert meta["annotations"]["keep"] == "me"
    assert meta["annotations"][known.OWNED_BY_DESCRIPTION_ANNOTATION] == OWNER
    assert "kubectl.kubernetes.io/last-applied-configuration" not in meta["annotations"]
    last = json.loads(meta["annotations"][known.LAST_APPLIED_CONFIG_ANNOTATION])
    assert last["data"] == {"k": "v"}
    assert known.LAST_APPLIED_CONFIG_ANNOTATION not in last["metadata"]["annotations"]
    assert obj["metadata"]["uid"] == "u"  # the input is untouched


def test_namespaces_and_crds_go_first() -> None:
    deploy = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"}}
    ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}}
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "x"},
    }
    assert apply_waves([deploy, ns, cm(), crd]) == [[ns, crd], [deploy, cm()]]
    assert apply_waves([cm()]) == [[cm()]]
    assert apply_waves([]) == []


@pytest.mark.parametrize(
    ("owner", "namespace", "key"),
    [
        (OWNER, "clusternet-abcde", "clusternet-abcde/web-x1y2z-generic"),
        ("clusternet-abcde.a.b", "clusternet-abcde", "clusternet-abcde/a.b"),
        (OWNER, "clusternet-other", None),
        ("nodot", "nodot", None),
        ("clusternet-abcde.", "clusternet-abcde", None),
    ],
)
def test_owner_key(owner: str, namespace: str, key: str | None) -> None:
    assert owner_key(owner, namespace) == key


def test_owner_value() -> None:
    assert owner_value(DESC) == OWNER


# ---------------------------------------------------------------- prune set


def ref(kind: str, name: str, ns: str = "shop", api_version: str = "v1") -> ObjectRef:
    return ObjectRef(api_version, kind, ns, name)


@pytest.mark.parametrize(
    ("previous", "current", "stale"),
    [
        ([], [ref("ConfigMap", "a")], []),
        ([ref("ConfigMap", "a")], [ref("ConfigMap", "a")], []),
        ([ref("ConfigMap", "a"), ref("ConfigMap", "b")], [ref("ConfigMap", "a")],
         [ref("ConfigMap", "b")]),
        ([ref("ConfigMap", "a")], [ref("ConfigMap", "a", ns="other")], [ref("ConfigMap", "a")]),
        ([ref("ConfigMap", "a")], [ref("Secret", "a")], [ref("ConfigMap", "a")]),
        # the same object at another version of its group is not stale
        ([ref("Deployment", "d", api_version="apps/v1beta2")],
         [ref("Deployment", "d", api_version="apps/v1")], []),
        ([ref("ConfigMap", "a"), ref("ConfigMap", "a")], [], [ref("ConfigMap", "a")]),
    ],
)  # fmt: skip
def test_stale_refs(
    previous: list[ObjectRef], current: list[ObjectRef], stale: list[ObjectRef]
) -> None:
    assert stale_refs(previous, current) == stale


def test_previous_refs_come_from_manifest_statuses() -> None:
    desc = {
        "status": {
            "manifestStatuses": [
                {"apiVersion": "v1", "kind": "Namespace", "name": "shop"},
                {"apiVersion": "v1", "kind": "ConfigMap", "namespace": "shop", "name": "c"},
                {"apiVersion": "v1", "kind": ""},
            ]
        }
    }
    assert previous_refs(desc) == [ref("Namespace", "shop", ns=""), ref("ConfigMap", "c")]
    assert previous_refs({}) == []


# ---------------------------------------------------------------- status


def test_status_success() -> None:
    results = [
        ObjectResult(ref("ConfigMap", "c"), observed_status=None),
        ObjectResult(ref("Namespace", "shop", ns=""), observed_status={"phase": "Active"}),
    ]
    assert build_status(results) == {
        "phase": "Success",
        "reason": None,
        "manifestStatuses": [
            {"apiVersion": "v1", "kind": "ConfigMap", "namespace": "shop", "name": "c"},
            {"apiVersion": "v1", "kind": "Namespace", "name": "shop",
             "observedStatus": {"phase": "Active"}},
        ],
    }  # fmt: skip


def test_status_failure_aggregates_and_keeps_what_failed_to_prune() -> None:
    results = [
        ObjectResult(ref("ConfigMap", "c")),
        ObjectResult(ref("ConfigMap", "Bad"), error='ConfigMap "Bad" is invalid'),
    ]
    status = build_status(results, ["raw[2]: not a JSON object"], [ref("Secret", "old")])
    assert status["phase"] == "Failure"
    assert status["reason"] == (
        'raw[2]: not a JSON object; ConfigMap shop/Bad: ConfigMap "Bad" is invalid'
    )
    assert [e["name"] for e in status["manifestStatuses"]] == ["c", "old"]


def test_status_of_empty_description() -> None:
    assert build_status([]) == {"phase": "Success", "reason": None, "manifestStatuses": None}


def test_long_reason_is_truncated() -> None:
    status = build_status([], ["x" * 10000])
    assert len(status["reason"]) == 4096


@pytest.mark.parametrize(
    ("current", "desired", "patch"),
    [
        (None, {"phase": "Success", "reason": None}, {"phase": "Success"}),
        ({"phase": "Success"}, {"phase": "Success", "reason": None}, None),
        ({"phase": "Failure", "reason": "x"}, {"phase": "Success", "reason": None},
         {"phase": "Success", "reason": None}),
        ({"phase": "Success", "manifestStatuses": [1]}, {"manifestStatuses": [2]},
         {"manifestStatuses": [2]}),
        # fields of others (e.g. a Helm phase writer's) are left alone
        ({"phase": "Success", "other": 1}, {"phase": "Success"}, None),
    ],
)  # fmt: skip
def test_status_patch(
    current: dict[str, Any] | None, desired: dict[str, Any], patch: dict[str, Any] | None
) -> None:
    assert status_patch(current, desired) == patch


def test_refreshed_statuses() -> None:
    entries: list[dict[str, Any]] = [
        {"apiVersion": "v1", "kind": "ConfigMap", "namespace": "shop", "name": "c"},
        {"apiVersion": "apps/v1", "kind": "Deployment", "namespace": "shop", "name": "d",
         "observedStatus": {"replicas": 1}},
        {"apiVersion": "v1", "kind": "Secret", "namespace": "shop", "name": "s",
         "observedStatus": {"old": True}},
    ]  # fmt: skip
    observed = {
        ref("Deployment", "d", api_version="apps/v1"): {"replicas": 2, "readyReplicas": 2},
        ref("Secret", "s"): None,
    }
    assert refreshed_statuses(entries, observed) == [
        entries[0],
        {**entries[1], "observedStatus": {"replicas": 2, "readyReplicas": 2}},
        {"apiVersion": "v1", "kind": "Secret", "namespace": "shop", "name": "s"},
    ]


# ---------------------------------------------------------------- who deploys (§4.7 table)


def mcl(mode: str, app_pusher: bool | None) -> dict[str, Any]:
    status = {} if app_pusher is None else {"appPusher": app_pusher}
    return {"spec": {"syncMode": mode}, "status": status}


@pytest.mark.parametrize(
    ("mode", "app_pusher", "parent", "agent"),
    [
        ("Push", True, PushDecision.PUSH, False),
        ("Pull", True, PushDecision.NOT_OURS, True),
        ("Pull", False, PushDecision.NOT_OURS, True),
        ("Pull", None, PushDecision.NOT_OURS, True),
        ("Dual", True, PushDecision.PUSH, False),
        ("Dual", False, PushDecision.NOT_OURS, True),
        ("Dual", None, PushDecision.WAIT, True),
        ("Push", None, PushDecision.WAIT, False),
        ("Bogus", True, PushDecision.NOT_OURS, False),
    ],
)
def test_decision_table(
    mode: str, app_pusher: bool | None, parent: PushDecision, agent: bool
) -> None:
    assert push_decision(mcl(mode, app_pusher)) is parent
    # The agent decides from its own flag and gate (None: the gate off, not reported yet).
    assert agent_pulls(mode, bool(app_pusher)) is agent


def ready(status: str | None, deleting: bool = False) -> dict[str, Any]:
    conditions = [] if status is None else [{"type": "Ready", "status": status}]
    meta = {"deletionTimestamp": "t"} if deleting else {}
    return {"metadata": meta, "status": {"conditions": conditions}}


@pytest.mark.parametrize(
    ("cluster", "lost"),
    [
        (None, True),
        (ready("True"), False),
        (ready("True", deleting=True), True),
        (ready("Unknown"), True),
        (ready("False"), True),
        (ready(None), True),
    ],
)
def test_cluster_lost(cluster: dict[str, Any] | None, lost: bool) -> None:
    assert cluster_lost(cluster) is lost


# ---------------------------------------------------------------- drift (Recovery)


def deployed(obj: dict[str, Any]) -> dict[str, Any]:
    """What the child holds after an apply: the prepared object plus server additions."""
    live = prepare(obj, OWNER)
    live["metadata"]["uid"] = "u"
    live["metadata"]["labels"]["added-by-someone"] = "x"
    live["status"] = {"replicas": 2}
    return live


def deployment(replicas: int = 2) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "d", "namespace": "shop", "labels": {"app": "web"}},
        "spec": {
            "replicas": replicas,
            "template": {"spec": {"containers": [{"name": "c", "ports": [{"containerPort": 80}]}]}},
        },
    }


def edit(live: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    *parents, last = path.split(".")
    node: Any = live
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node[key]
    if value is _DELETE:
        del node[last]
    elif isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return live


_DELETE = object()


@pytest.mark.parametrize(
    ("path", "value", "drift"),
    [
        ("status.replicas", 9, False),  # status is not drift
        ("spec.replicas", 5, True),  # kubectl scale
        ("spec.strategy", {"type": "Recreate"}, False),  # a default the server added
        ("spec.template.spec.containers.0.ports.0.protocol", "TCP", False),
        ("spec.template.spec.containers.0.ports.0.containerPort", 81, True),
        ("spec.template.spec.containers.0.name", "other", True),
        ("metadata.labels.app", "other", True),
        ("metadata.labels.app", _DELETE, True),
        ("metadata.labels.added-by-someone", _DELETE, False),
        ("spec", _DELETE, True),
    ],
)
def test_drift(path: str, value: Any, drift: bool) -> None:
    assert drifted(edit(deployed(deployment()), path, value)) is drift


def test_annotations_drift_like_labels() -> None:
    live = deployed(deployment())
    live["metadata"]["annotations"]["someone.else/added"] = "x"
    assert drifted(live) is False
    live["metadata"]["annotations"][known.OWNED_BY_DESCRIPTION_ANNOTATION] = "other.desc"
    assert drifted(live) is True


def test_no_drift_without_last_applied() -> None:
    assert drifted(deployment()) is False
    live = deployed(deployment())
    live["metadata"]["annotations"][known.LAST_APPLIED_CONFIG_ANNOTATION] = "{not json"
    assert drifted(live) is False


def test_numbers_compare_by_value() -> None:
    live = deployed(cm(data={"n": "1"}, spec={"weight": 1}))
    live["spec"]["weight"] = 1.0
    assert drifted(live) is False
    live["spec"]["weight"] = True
    assert drifted(live) is True


def test_empty_values_the_server_drops_are_no_drift() -> None:
    obj = deployment()
    obj["spec"]["template"]["metadata"] = {"creationTimestamp": None}
    obj["spec"]["template"]["spec"]["containers"][0]["resources"] = {}
    obj["spec"]["template"]["spec"]["volumes"] = []
    live = deployed(obj)
    del live["spec"]["template"]["metadata"]
    del live["spec"]["template"]["spec"]["containers"][0]["resources"]
    del live["spec"]["template"]["spec"]["volumes"]
    assert drifted(live) is False
