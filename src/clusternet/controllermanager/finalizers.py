"""Finalizer and dependent-object plumbing shared by the pipeline controllers.

A Subscription holds its Bases, and a Base its Descriptions, with the finalizer
``apps.clusternet.io/finalizer``: the controller puts it on, and on deletion deletes the
dependents and drops the finalizer once its cache has seen the last of them go (each
dependent's delete event brings the owner back; nothing polls).  Putting the finalizer on is a
JSON patch guarded by ``test`` ops on the finalizers and labels (a status write meanwhile does
not make it fail); dropping it is an update that carries the cached ``resourceVersion``.  A
``Conflict`` propagates and the key is retried with backoff (the change that caused it may be
one the controller's event filter ignores).
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from typing import Any

import structlog

from clusternet.apis import known
from clusternet.kube import Conflict, Invalid, KubeClient, NotFound, Object, PatchType
from clusternet.runtime import object_key

log = structlog.get_logger(__name__)


def finalizer_patch(
    obj: Object,
    *,
    finalizer: str = known.APP_FINALIZER,
    labels: Mapping[str, str] | None = None,
) -> list[dict[str, Any]]:
    """The JSON patch (RFC 6902) putting ``finalizer`` and ``labels`` on ``obj``; empty when
    nothing is missing.

    Each change is guarded by a ``test`` of what the cache saw, so a write by someone else
    to the same list or map fails the patch (and the caller retries after the newer object)
    instead of being overwritten; a change elsewhere, such as the scheduler's status write on
    a new Subscription, does not.  An update with the cached ``resourceVersion`` met that
    write on about a third of the Subscriptions of a burst: a 409 and a retry each.  An
    absent list or map is tested as ``null``, which the API server's JSON patch accepts for
    a missing member."""
    meta = obj["metadata"]
    ops: list[dict[str, Any]] = []
    finalizers = meta.get("finalizers") or []
    if finalizer not in finalizers:
        if finalizers:
            ops.append({"op": "test", "path": "/metadata/finalizers", "value": finalizers})
            ops.append({"op": "add", "path": "/metadata/finalizers/-", "value": finalizer})
        else:
            ops.append({"op": "test", "path": "/metadata/finalizers", "value": None})
            ops.append({"op": "add", "path": "/metadata/finalizers", "value": [finalizer]})
    current_labels = meta.get("labels") or {}
    missing = {k: v for k, v in (labels or {}).items() if current_labels.get(k) != v}
    if missing and not current_labels:
        ops.append({"op": "test", "path": "/metadata/labels", "value": None})
        ops.append({"op": "add", "path": "/metadata/labels", "value": dict(missing)})
    elif missing:
        for key, value in missing.items():
            path = f"/metadata/labels/{_pointer_token(key)}"
            # add replaces a member that exists: a label of ours with another value.
            ops.append({"op": "add", "path": path, "value": value})
    return ops


def _pointer_token(key: str) -> str:
    """A map key as a JSON-pointer reference token (RFC 6901: ``~`` → ``~0``, ``/`` → ``~1``)."""
    return key.replace("~", "~0").replace("/", "~1")


async def ensure_finalizer(
    client: KubeClient,
    obj: Object,
    *,
    finalizer: str = known.APP_FINALIZER,
    labels: Mapping[str, str] | None = None,
) -> Object | None:
    """``obj`` with ``finalizer`` (and ``labels``) on it: ``obj`` itself when nothing is
    missing, else the object as patched, or None when it was deleted meanwhile.  A failed
    guard (someone else changed the finalizers or labels) or a deletion begun meanwhile
    raises :class:`Conflict`, to be retried with backoff after the newer object reaches the
    cache; a label the API server rejects raises :class:`Invalid`."""
    ops = finalizer_patch(obj, finalizer=finalizer, labels=labels)
    if not ops:
        return obj
    meta = obj["metadata"]
    try:
        result: Object = await client.patch(
            obj["apiVersion"],
            obj["kind"],
            meta["name"],
            ops,
            patch_type=PatchType.JSON,
            namespace=meta.get("namespace"),
        )
    except NotFound:
        return None
    except Invalid as err:
        if _cache_was_behind(err):
            raise Conflict(err.code, err.status) from err
        raise  # a label the API server rejects: not something a retry fixes
    return result


def _cache_was_behind(err: Invalid) -> bool:
    """A failed ``test`` op, or a finalizer added to an object whose deletion began meanwhile."""
    return err.failed_patch_test or "no new finalizers can be added" in err.message


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
