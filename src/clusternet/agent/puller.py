"""The agent-side Generic deployer (spec §4.7, "Pull"): when the cluster's sync mode says the
agent deploys (Pull, or Dual with gate AppPusher off), watch the Descriptions of this
cluster's dedicated namespace in the parent and apply them to this cluster with the shared
:mod:`clusternet.deployer` (server-side apply, prune, offload on deletion, status, events as
``clusternet-agent``).  The agent's own child client applies: it is the agent's identity in
its own cluster, so no token has to be read back from the parent.
"""

from __future__ import annotations

from typing import Final

import structlog
from prometheus_client import REGISTRY, CollectorRegistry

from clusternet.apis import known
from clusternet.deployer import DescriptionSync, is_deleting, is_generic
from clusternet.kube import KubeClient, Object
from clusternet.runtime import (
    DeletedFinalStateUnknown,
    Informer,
    Result,
    WorkQueue,
    object_key,
    run_workers,
)

log = structlog.get_logger(__name__)

NAME: Final = "puller"


class Puller:
    def __init__(
        self,
        child: KubeClient,
        descriptions: Informer,
        sync: DescriptionSync,
        *,
        registry: CollectorRegistry | None = REGISTRY,
    ) -> None:
        self.child = child
        self.sync = sync
        self.descriptions = descriptions
        self.queue: WorkQueue[str] = WorkQueue(NAME, registry=registry)
        descriptions.add_event_handler(
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
        obj = self.descriptions.store.get(key)
        if obj is None or not is_generic(obj):
            return None
        if is_deleting(obj):
            if known.APP_FINALIZER in (obj["metadata"].get("finalizers") or ()):
                await self.sync.remove(self.child, obj)
            return None
        await self.sync.deploy(self.child, obj)
        return None
