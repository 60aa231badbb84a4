"""The agent-side Helm deployer (spec §4.7 "Helm path", Pull): when this agent deploys (Pull,
or Dual with gate AppPusher off), reconcile the HelmReleases of the cluster's dedicated
namespace in the parent with the real helm binary against this cluster, using the agent's
own child credentials (a 0600 kubeconfig for helm, never a command-line flag).  Install or
upgrade only when something changed, uninstall on deletion, status and events in the parent
(:class:`clusternet.deployer.helmsync.ReleaseSync`, shared with the controller-manager).

A chart pull Secret is read from the parent with the agent's parent credentials; where
those may not read it, the HelmRelease fails with that reason.
"""

from __future__ import annotations

from typing import Final

import structlog
from prometheus_client import REGISTRY, CollectorRegistry

from clusternet.apis import known
from clusternet.deployer import is_deleting
from clusternet.deployer.helmsync import ReleaseSync
from clusternet.kube import ClusterConfig, Object
from clusternet.runtime import (
    DeletedFinalStateUnknown,
    Informer,
    Result,
    WorkQueue,
    object_key,
    run_workers,
)

log = structlog.get_logger(__name__)

NAME: Final = "helmpuller"


class HelmPuller:
    def __init__(
        self,
        child: ClusterConfig,
        releases: Informer,
        sync: ReleaseSync,
        *,
        registry: CollectorRegistry | None = REGISTRY,
    ) -> None:
        self.child = child
        self.sync = sync
        self.releases = releases
        self.queue: WorkQueue[str] = WorkQueue(NAME, registry=registry)
        releases.add_event_handler(
            on_add=self._enqueue,
            on_update=lambda old, new: (
                self._enqueue(new)
                if old.get("spec") != new.get("spec") or is_deleting(old) != is_deleting(new)
                else None
            ),
        )

    async def run(self, workers: int = 2) -> None:
        try:
            await run_workers(self.queue, self.reconcile, workers=workers)
        finally:
            self.queue.shut_down()

    def _enqueue(self, obj: Object | DeletedFinalStateUnknown) -> None:
        self.queue.add(object_key(obj))

    async def reconcile(self, key: str) -> Result | None:
        obj = self.releases.store.get(key)
        if obj is None:
            return None
        if is_deleting(obj):
            if known.APP_FINALIZER in (obj["metadata"].get("finalizers") or ()):
                await self.sync.remove(self.child, obj)
            return None
        await self.sync.deploy(self.child, obj)
        return None
