"""One reconcile of one Generic Description against one child, shared by the pusher
(controller-manager), the puller and Recovery (agent): finalizer, apply + prune, status,
events; on deletion offload and release the finalizer.

Status lives in the API (``status.manifestStatuses`` is the set prune starts from), so any
process can pick the work up after a restart.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Mapping
from typing import Any, Final

import structlog

from clusternet.apis import known
from clusternet.apis.apps.v1alpha1 import GROUP, VERSION, DescriptionPhase
from clusternet.deployer.deferred import write_record
from clusternet.deployer.objects import FIELD_MANAGER, Object, is_deleting, status_patch
from clusternet.deployer.operations import DeployOutcome, apply_description, offload
from clusternet.kube import Conflict, KubeClient, NotFound
from clusternet.runtime import EventRecorder

log = structlog.get_logger(__name__)

API_VERSION: Final = f"{GROUP}/{VERSION}"
DEPLOY_TIMEOUT: Final = 120.0  # one Description against one child, all objects


class DeployFailed(Exception):
    """Raised out of a reconcile so that the work queue retries with backoff."""


class DescriptionSync:
    """Deploys Descriptions to a child given a client for it; writes back to the parent."""

    def __init__(
        self,
        parent: KubeClient,
        recorder: EventRecorder,
        *,
        field_manager: str = FIELD_MANAGER,
        timeout: float = DEPLOY_TIMEOUT,
    ) -> None:
        self.parent = parent
        self.recorder = recorder
        self.field_manager = field_manager
        self.timeout = timeout

    async def deploy(self, child: KubeClient, description: Object, *, events: bool = True) -> None:
        """Apply, prune, write the status; raise :class:`DeployFailed` if anything failed."""
        description = copy.deepcopy(description)  # never change an informer's cache
        if not await self.ensure_finalizer(description):
            return  # gone meanwhile
        try:
            async with asyncio.timeout(self.timeout):
                outcome = await apply_description(
                    child, description, field_manager=self.field_manager
                )
        except TimeoutError:
            message = f"timed out after {self.timeout:.0f}s applying to the child cluster"
            outcome = DeployOutcome(
                {"phase": DescriptionPhase.FAILURE, "reason": message}, errors=[message]
            )
        changed = await self.write_status(description, outcome.status)
        if outcome.failed:
            if events:
                self.recorder.event(
                    description, "Warning", "UnSuccessfullyDeployed", outcome.message
                )
            raise DeployFailed(outcome.message)
        if changed and events:
            self.recorder.event(
                description,
                "Normal",
                "SuccessfullyDeployed",
                "Description is deployed successfully",
            )

    async def remove(
        self, child: KubeClient | None, description: Object, *, defer_offload: bool = False
    ) -> None:
        """Offload and drop the finalizer.  With ``child`` None (the cluster is lost) nothing
        is deleted in the child; ``defer_offload`` records what to delete for when the
        cluster is back (:mod:`clusternet.deployer.deferred`)."""
        description = copy.deepcopy(description)
        if known.APP_FINALIZER not in (description["metadata"].get("finalizers") or ()):
            return
        if child is None:
            if defer_offload:
                await write_record(self.parent, description)
        else:
            try:
                async with asyncio.timeout(self.timeout):
                    errors = await offload(child, description)
            except TimeoutError:
                errors = [f"timed out after {self.timeout:.0f}s deleting from the child cluster"]
            if errors:
                message = "; ".join(errors)
                self.recorder.event(description, "Warning", "FailedOffloading", message)
                raise DeployFailed(message)
        await self.remove_finalizer(description)

    async def ensure_finalizer(self, description: Object) -> bool:
        meta = description["metadata"]
        finalizers = list(meta.get("finalizers") or ())
        if known.APP_FINALIZER in finalizers:
            return True
        patch = {
            "metadata": {
                "finalizers": [*finalizers, known.APP_FINALIZER],
                "resourceVersion": meta.get("resourceVersion"),
            }
        }
        try:
            updated = await self.parent.patch(
                API_VERSION, "Description", meta["name"], patch, namespace=meta["namespace"]
            )
        except NotFound:
            return False
        except Conflict as err:
            raise DeployFailed("the Description changed meanwhile") from err
        meta["finalizers"] = updated["metadata"].get("finalizers")
        meta["resourceVersion"] = updated["metadata"].get("resourceVersion")
        return True

    async def remove_finalizer(self, description: Object) -> None:
        meta = description["metadata"]
        finalizers = [f for f in meta.get("finalizers") or () if f != known.APP_FINALIZER]
        patch = {
            "metadata": {
                "finalizers": finalizers or None,
                "resourceVersion": meta.get("resourceVersion"),
            }
        }
        try:
            await self.parent.patch(
                API_VERSION, "Description", meta["name"], patch, namespace=meta["namespace"]
            )
        except NotFound:
            return
        except Conflict as err:
            raise DeployFailed("the Description changed meanwhile") from err
        log.info("released Description", description=f"{meta['namespace']}/{meta['name']}")

    async def write_status(self, description: Object, desired: Mapping[str, Any]) -> bool:
        """Merge-patch the status subresource if the deployer's fields change; True if so."""
        patch = status_patch(description.get("status"), desired)
        if patch is None:
            return False
        meta = description["metadata"]
        try:
            await self.parent.patch(
                API_VERSION,
                "Description",
                meta["name"],
                {"status": patch},
                namespace=meta["namespace"],
                subresource="status",
            )
        except NotFound:
            return False
        return True


def needs_offload(description: Mapping[str, Any]) -> bool:
    return is_deleting(description) and known.APP_FINALIZER in (
        description["metadata"].get("finalizers") or ()
    )
