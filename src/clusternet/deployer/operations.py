"""What the deployers do to a child cluster: apply a Description's objects, prune what it no
longer lists, offload everything when it is deleted.

Apply is **server-side apply** with one field manager (:data:`FIELD_MANAGER`) and
``force=True``, on both sides (controller-manager pushing, agent pulling, agent recovering):
the API server does the three-way merge upstream computes by hand, so a field dropped from
the template is removed (the manager owned it) and a hand edit of a managed field is taken
back.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import structlog

from clusternet.deployer.objects import (
    FIELD_MANAGER,
    Object,
    ObjectRef,
    ObjectResult,
    apply_waves,
    build_status,
    decode_raw,
    owned_by,
    owner_value,
    prepare,
    previous_refs,
    ref_of,
    stale_refs,
)
from clusternet.kube import (
    ApiError,
    ClusterUnreachable,
    KubeClient,
    NotFound,
    Preconditions,
    PropagationPolicy,
    UnknownKind,
    condition_true,
    wait_for,
)

log = structlog.get_logger(__name__)

CONCURRENCY: Final = 8  # objects of one Description applied at the same time
CRD_ESTABLISH_TIMEOUT: Final = 30.0


@dataclass
class DeployOutcome:
    """The status to write after an apply, and what failed."""

    status: Object
    results: list[ObjectResult] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return bool(self.errors) or any(r.error for r in self.results)

    @property
    def message(self) -> str:
        return str(self.status.get("reason") or "")


def error_text(err: BaseException) -> str:
    """What a child said, as a user reads it (the 422 text, 'cluster unreachable', ...)."""
    if isinstance(err, ApiError):
        return err.message or f"{err.reason} ({err.code})"
    if isinstance(err, ClusterUnreachable):
        return f"child cluster unreachable: {err}"
    if isinstance(err, TimeoutError):
        return "timed out talking to the child cluster"
    return str(err) or type(err).__name__


async def apply_description(
    client: KubeClient,
    description: Mapping[str, Any],
    *,
    field_manager: str = FIELD_MANAGER,
    concurrency: int = CONCURRENCY,
) -> DeployOutcome:
    """Apply every object of a Generic Description, then prune the objects it deployed
    before and no longer lists.  Errors are collected per object, never raised (except
    cancellation): the valid objects are applied whatever the others do."""
    owner = owner_value(description)
    decoded = decode_raw((description.get("spec") or {}).get("raw"))
    errors = list(decoded.errors)
    limit = asyncio.Semaphore(concurrency)

    async def apply_one(obj: Object) -> ObjectResult:
        ref = ref_of(obj)
        async with limit:
            try:
                applied = await client.apply(prepare(obj, owner), field_manager=field_manager,
                                             force=True)  # fmt: skip
            except (ApiError, ClusterUnreachable, UnknownKind, ValueError, TimeoutError) as err:
                return ObjectResult(ref, error=error_text(err))
        return ObjectResult(ref, observed_status=applied.get("status"))

    results: list[ObjectResult] = []
    waves = apply_waves(decoded.objects)
    for index, wave in enumerate(waves):
        done = await asyncio.gather(*(apply_one(obj) for obj in wave))
        results += done
        crds = [
            r.ref.name for r in done if r.ref.kind == "CustomResourceDefinition" and not r.error
        ]
        if crds and index < len(waves) - 1:
            try:
                await _wait_established(client, crds)
            except (ApiError, ClusterUnreachable, TimeoutError) as err:
                errors.append(f"CustomResourceDefinitions not established: {error_text(err)}")
    current = [ref_of(obj) for obj in decoded.objects]
    # manifestStatuses in the order of spec.raw (the feed order), whatever the apply order.
    order = {ref: index for index, ref in reversed(list(enumerate(current)))}
    results.sort(key=lambda r: order.get(r.ref, len(order)))
    kept: list[ObjectRef] = []
    for ref in stale_refs(previous_refs(description), current):
        try:
            await prune(client, ref, owner)
        except (ApiError, ClusterUnreachable, UnknownKind, ValueError, TimeoutError) as err:
            errors.append(f"cannot prune {ref}: {error_text(err)}")
            kept.append(ref)
    return DeployOutcome(build_status(results, errors, kept), results, errors)


async def _wait_established(client: KubeClient, names: Sequence[str]) -> None:
    async with asyncio.timeout(CRD_ESTABLISH_TIMEOUT):
        await asyncio.gather(
            *(
                wait_for(
                    client,
                    "apiextensions.k8s.io/v1",
                    "CustomResourceDefinition",
                    name,
                    condition_true("Established"),
                )
                for name in names
            )
        )
    await client.mapper.refresh()  # the new kinds, before objects of them are applied


async def prune(client: KubeClient, ref: ObjectRef, owner: str) -> bool:
    """Delete ``ref`` if it still belongs to ``owner`` (background propagation, and only
    the very object looked at: uid precondition).  True if a delete was sent."""
    try:
        live = await client.get(
            ref.api_version, ref.kind, ref.name, namespace=ref.namespace or None
        )
    except (NotFound, UnknownKind):
        return False
    if not owned_by(live, owner):
        log.info("not pruning an object another Description owns now", object=str(ref))
        return False
    try:
        await client.delete(
            ref.api_version,
            ref.kind,
            ref.name,
            namespace=ref.namespace or None,
            propagation_policy=PropagationPolicy.BACKGROUND,
            preconditions=Preconditions(uid=live["metadata"].get("uid")),
        )
    except NotFound:
        return False
    return True


async def offload(client: KubeClient, description: Mapping[str, Any]) -> list[str]:
    """Delete every object of the Description (listed in ``raw`` or deployed before) that
    it still owns; NotFound is fine.  Returns the errors (empty: all gone or going)."""
    owner = owner_value(description)
    decoded = decode_raw((description.get("spec") or {}).get("raw"))
    refs = [ref_of(obj) for obj in decoded.objects]
    refs += stale_refs(previous_refs(description), refs)
    # Namespaces last: deleting one first would take the other objects with it anyway,
    # but their own deletes would then race the namespace's finalization.
    refs.sort(key=lambda r: r.kind == "Namespace")
    errors: list[str] = []
    for ref in refs:
        try:
            await prune(client, ref, owner)
        except (ApiError, ClusterUnreachable, ValueError, TimeoutError) as err:
            errors.append(f"cannot delete {ref}: {error_text(err)}")
    return errors
