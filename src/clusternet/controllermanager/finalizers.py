"""Finalizer and dependent-object plumbing shared by the pipeline controllers.

A Subscription holds its Bases, and a Base its Descriptions, with the finalizer
``apps.clusternet.io/finalizer``: the controller puts it on, and on deletion deletes the
dependents and drops the finalizer once its cache has seen the last of them go (each
dependent's delete event brings the owner back; nothing polls).  Writes are updates that carry
the cached ``resourceVersion``: a ``Conflict`` propagates and the key is retried with backoff
(the change that caused it may be one the controller's event filter ignores).
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence

import structlog

from clusternet.apis import known
from clusternet.kube import KubeClient, NotFound, Object
from clusternet.runtime import object_key

log = structlog.get_logger(__name__)


async def ensure_finalizer(
    client: KubeClient,
    obj: Object,
    *,
    finalizer: str = known.APP_FINALIZER,
    labels: Mapping[str, str] | None = None,
) -> Object | None:
    """``obj`` with ``finalizer`` (and ``labels``) on it: ``obj`` itself when nothing is
    missing, else the object as updated, or None when it was deleted meanwhile."""
    meta = obj["metadata"]
    current_labels = meta.get("labels") or {}
    finalizers = list(meta.get("finalizers") or [])
    missing_labels = {k: v for k, v in (labels or {}).items() if current_labels.get(k) != v}
    if finalizer in finalizers and not missing_labels:
        return obj
    if finalizer not in finalizers:
        finalizers.append(finalizer)
    updated_meta = {**meta, "finalizers": finalizers}
    if missing_labels:
        updated_meta["labels"] = {**current_labels, **missing_labels}
    try:
        result: Object = await client.update({**obj, "metadata": updated_meta})
    except NotFound:
        return None
    return result


async def delete(client: KubeClient, obj: Object) -> str | None:
    """Delete ``obj`` (already gone is fine); the error to retry with, if any."""
    meta = obj["metadata"]
    try:
        await client.delete(
            obj["apiVersion"], obj["kind"], meta["name"], namespace=meta.get("namespace")
        )
    except NotFound:
        pass
    except Exception as err:
        return f"deleting {obj['kind']} {object_key(obj)}: {err}"
    return None


async def release_after_dependents(
    client: KubeClient,
    obj: Object,
    dependents: Sequence[Object],
    *,
    finalizer: str = known.APP_FINALIZER,
) -> bool:
    """The deletion of ``obj``: delete its ``dependents`` (from the cache), and once none is
    left drop ``finalizer``.  Returns whether ``obj`` is released; False while it waits for
    its dependents' delete events.  Failed deletes raise (retried with backoff)."""
    meta = obj["metadata"]
    if finalizer not in (meta.get("finalizers") or []):
        return True
    failures = [
        error
        for dependent in dependents
        if not dependent["metadata"].get("deletionTimestamp")
        and (error := await delete(client, dependent))
    ]
    if failures:
        raise RuntimeError("; ".join(failures))
    if dependents:
        log.info(
            "waiting for dependents to go",
            object=f"{obj['kind']} {object_key(obj)}",
            left=len(dependents),
        )
        return False
    updated = {
        **obj,
        "metadata": {**meta, "finalizers": [f for f in meta["finalizers"] if f != finalizer]},
    }
    with contextlib.suppress(NotFound):  # gone already
        await client.update(updated)
    return True
