"""DefaultBinder: writes the placement to the Subscription's status (spec §4.2).

One merge patch of the status subresource: ``bindingClusters`` (sorted, replica lists permuted
along), ``replicas``, ``specHash``, ``desiredReleases``, plus whatever status fields the
scheduler put in the cycle state under :data:`STATE_STATUS_EXTRA` (the ``Scheduled``
condition), so that a decision costs one API call.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from clusternet.apis.apps.v1alpha1 import Subscription
from clusternet.kube import ApiError, NotFound
from clusternet.scheduler.framework import SUCCESS, CycleState, Handle, Status, TargetClusters
from clusternet.scheduler.spechash import spec_hash

NAME: Final = "DefaultBinder"
STATE_STATUS_EXTRA: Final = "clusternet.io/status-extra"


def binding_patch(sub: Subscription, targets: TargetClusters) -> dict[str, Any]:
    """The status merge patch binding ``sub`` to ``targets`` (pure, for tests)."""
    bound = targets.sorted()
    # A merge patch merges maps: feeds that are gone must be deleted explicitly (null).
    replicas: dict[str, list[int] | None] = dict.fromkeys(sub.status.replicas or {})
    replicas.update(bound.replicas)
    return {
        "status": {
            "bindingClusters": bound.clusters,
            "replicas": replicas,
            "specHash": spec_hash(sub),
            "desiredReleases": len(bound.clusters),
        }
    }


class DefaultBinder:
    name = NAME

    def __init__(self, handle: Handle) -> None:
        self.handle = handle

    async def bind(self, state: CycleState, sub: Subscription, targets: TargetClusters) -> Status:
        patch = binding_patch(sub, targets)
        patch["status"].update(state.get(STATE_STATUS_EXTRA) or {})
        try:
            await self.handle.client.patch(
                sub.api_version,
                sub.kind,
                sub.metadata.name,
                patch,
                namespace=sub.metadata.namespace,
                subresource="status",
            )
        except NotFound:
            return Status.unschedulable("the Subscription was deleted", resolvable=False)
        except ApiError as err:
            return Status.error(f"patching the status failed: {err}")
        return SUCCESS


def new(_args: Mapping[str, Any], handle: Handle | None) -> DefaultBinder:
    if handle is None:
        raise ValueError("DefaultBinder needs the scheduler's API client")
    return DefaultBinder(handle)
