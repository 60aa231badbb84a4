"""Offload that waits for a lost cluster to come back.

A Description deleted while its cluster is lost (not Ready: a cut link, an agent gone) must
not block the deletion of its Subscription or namespace (spec §3.7), so its finalizer is
released without touching the child.  Upstream stops there and the objects stay in the
child for ever once it is back.  Here the finalizer goes only after a record of what to
delete is written: a ConfigMap in the cluster's dedicated namespace (labelled
:data:`DEFERRED_OFFLOAD_LABEL`) with the owned-by value and the object references.  When
the cluster is reachable again, the controller-manager deletes each listed object that is
still owned by that Description and that no live Description of the same name deploys again
(a Description re-created after a reschedule adopts its objects), then deletes the record.
All state is in the parent's API: a restart in between loses nothing.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Mapping
from typing import Any, Final

import structlog

from clusternet.apis import known
from clusternet.deployer.objects import (
    Object,
    ObjectRef,
    decode_raw,
    is_deleting,
    owner_key,
    owner_value,
    previous_refs,
    ref_of,
    stale_refs,
)
from clusternet.deployer.operations import error_text, prune
from clusternet.kube import (
    AlreadyExists,
    ApiError,
    ClusterUnreachable,
    KubeClient,
    NotFound,
    Preconditions,
)

log = structlog.get_logger(__name__)

DEFERRED_OFFLOAD_LABEL: Final = "apps.clusternet.io/deferred-offload"
_OWNER_KEY: Final = "owner"
_OBJECTS_KEY: Final = "objects"


def description_refs(description: Mapping[str, Any]) -> list[ObjectRef]:
    """Everything a Description deploys or deployed: its ``raw`` and its last status."""
    refs = [ref_of(obj) for obj in decode_raw((description.get("spec") or {}).get("raw")).objects]
    return refs + stale_refs(previous_refs(description), refs)


def record_name(description: Mapping[str, Any]) -> str:
    return f"clusternet-offload-{description['metadata']['uid']}"


def offload_record(description: Mapping[str, Any]) -> Object | None:
    """The ConfigMap that remembers what to delete (None: nothing was deployed)."""
    refs = description_refs(description)
    if not refs:
        return None
    meta = description["metadata"]
    labels = {DEFERRED_OFFLOAD_LABEL: "true"}
    for key in (known.CLUSTER_ID_LABEL, known.CLUSTER_NAME_LABEL):
        if value := (meta.get("labels") or {}).get(key):
            labels[key] = value
    objects = [
        {"apiVersion": r.api_version, "kind": r.kind, "namespace": r.namespace, "name": r.name}
        for r in refs
    ]
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": record_name(description),
            "namespace": meta["namespace"],
            "labels": labels,
        },
        "data": {_OWNER_KEY: owner_value(description), _OBJECTS_KEY: json.dumps(objects)},
    }


def record_refs(record: Mapping[str, Any]) -> tuple[str, list[ObjectRef]]:
    """(owner, objects) of a record; a malformed record lists nothing."""
    data = record.get("data") or {}
    try:
        entries = json.loads(data.get(_OBJECTS_KEY) or "[]")
        refs = [
            ObjectRef(
                str(e["apiVersion"]), str(e["kind"]), str(e.get("namespace") or ""), str(e["name"])
            )
            for e in entries
        ]
    except (ValueError, TypeError, KeyError):
        refs = []
    return str(data.get(_OWNER_KEY) or ""), refs


def to_delete(
    record: Mapping[str, Any], live_description: Mapping[str, Any] | None
) -> tuple[str, list[ObjectRef]]:
    """The record's objects minus those a live Description of the same name deploys again
    (pure)."""
    owner, refs = record_refs(record)
    if live_description is None or is_deleting(live_description):
        return owner, refs
    kept = description_refs(live_description)
    return owner, [r for r in refs if not any(r.same_object(k) for k in kept)]


async def write_record(parent: KubeClient, description: Mapping[str, Any]) -> None:
    """Before a lost cluster's Description loses its finalizer."""
    record = offload_record(description)
    if record is None:
        return
    try:
        await parent.create(record)
    except AlreadyExists:
        pass
    except ApiError as err:  # e.g. the namespace is going: deletion must go on regardless
        log.warning(
            "cannot defer the offload; objects may stay in the child",
            record=record["metadata"]["name"],
            error=str(err),
        )
        return
    log.info(
        "offload deferred until the cluster is back",
        record=record["metadata"]["name"],
        namespace=record["metadata"]["namespace"],
    )


async def sweep(
    parent: KubeClient,
    child: KubeClient,
    records: list[Object],
    description: Callable[[str], Object | None],
) -> list[str]:
    """Carry out the records of one cluster (``description`` looks a Description up by
    ``namespace/name``); each finished record is deleted.  Returns the errors."""
    errors: list[str] = []
    for record in records:
        meta = record["metadata"]
        owner, _ = record_refs(record)
        key = owner_key(owner, meta["namespace"])
        owner, refs = to_delete(record, description(key) if key else None)
        failed = False
        for ref in sorted(refs, key=lambda r: r.kind == "Namespace"):
            try:
                await prune(child, ref, owner)
            except (ApiError, ClusterUnreachable, ValueError, TimeoutError) as err:
                errors.append(f"cannot delete {ref}: {error_text(err)}")
                failed = True
        if failed:
            continue
        with contextlib.suppress(NotFound):
            await parent.delete(
                "v1",
                "ConfigMap",
                meta["name"],
                namespace=meta["namespace"],
                preconditions=Preconditions(uid=meta.get("uid")),
            )
        log.info(
            "deferred offload done",
            record=meta["name"],
            namespace=meta["namespace"],
            objects=len(refs),
        )
    return errors
