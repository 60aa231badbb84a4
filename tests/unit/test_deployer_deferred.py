"""Offloads deferred while a cluster is lost: the record and what it deletes (pure)."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from clusternet.apis import known
from clusternet.deployer.deferred import (
    DEFERRED_OFFLOAD_LABEL,
    offload_record,
    record_refs,
    to_delete,
)
from clusternet.deployer.objects import ObjectRef


def cm(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": "shop"},
    }


def description(
    *objects: dict[str, Any], deployed: tuple[str, ...] = (), **meta: Any
) -> dict[str, Any]:
    raw = [base64.b64encode(json.dumps(o).encode()).decode() for o in objects]
    statuses = [
        {"apiVersion": "v1", "kind": "ConfigMap", "namespace": "shop", "name": n} for n in deployed
    ]
    return {
        "metadata": {
            "name": "sub-1-generic",
            "namespace": "clusternet-abc",
            "uid": "u-1",
            "labels": {known.CLUSTER_NAME_LABEL: "child2", known.CLUSTER_ID_LABEL: "id-2"},
        },
        "spec": {"raw": raw},
        "status": {"manifestStatuses": statuses},
    }


def ref(name: str) -> ObjectRef:
    return ObjectRef("v1", "ConfigMap", "shop", name)


def test_the_record_lists_raw_and_what_was_deployed_before() -> None:
    record = offload_record(description(cm("a"), deployed=("a", "old")))
    assert record is not None
    assert record["metadata"]["name"] == "clusternet-offload-u-1"
    assert record["metadata"]["namespace"] == "clusternet-abc"
    assert record["metadata"]["labels"] == {
        DEFERRED_OFFLOAD_LABEL: "true",
        known.CLUSTER_NAME_LABEL: "child2",
        known.CLUSTER_ID_LABEL: "id-2",
    }
    assert record_refs(record) == ("clusternet-abc.sub-1-generic", [ref("a"), ref("old")])


def test_nothing_deployed_needs_no_record() -> None:
    assert offload_record(description()) is None


@pytest.mark.parametrize(
    "data",
    [{}, {"objects": "not json"}, {"objects": '[{"kind": "ConfigMap"}]'}, {"objects": "{}"}],
)
def test_a_malformed_record_lists_nothing(data: dict[str, str]) -> None:
    assert record_refs({"data": data})[1] == []


def deleting(desc: dict[str, Any]) -> dict[str, Any]:
    desc["metadata"]["deletionTimestamp"] = "2026-11-28T00:00:00Z"
    return desc


@pytest.mark.parametrize(
    ("live", "deleted"),
    [
        (None, ["a", "b"]),  # the Description is gone: everything
        (deleting(description(cm("a"))), ["a", "b"]),
        (description(cm("a")), ["b"]),  # re-created (a reschedule back): it adopts "a"
        (description(cm("a"), cm("b")), []),
    ],
)
def test_to_delete_spares_what_a_live_description_deploys_again(
    live: dict[str, Any] | None, deleted: list[str]
) -> None:
    record = offload_record(description(cm("a"), cm("b")))
    assert record is not None
    owner, refs = to_delete(record, live)
    assert owner == "clusternet-abc.sub-1-generic"
    assert refs == [ref(n) for n in deleted]
