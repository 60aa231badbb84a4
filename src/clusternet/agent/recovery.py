"""Recovery (gate ``Recovery``, spec §4.7): keep what the deployers applied in this cluster
as the Descriptions say, and report the objects' status back.

For every kind a Description of this cluster has deployed (``status.manifestStatuses``) one
informer is started in the child, on first need and never stopped, selecting the objects the
deployers labelled ``apps.clusternet.io/deployed-by=clusternet``.  Each event maps back to its
Description through the owned-by annotation:

* object deleted, or a field the deployer set (spec, data, labels, annotations) changed →
  re-apply the Description (server-side apply takes the hand edit back);
* status-only change → refresh ``status.manifestStatuses[].observedStatus``; writes are
  coalesced through the work queue (one per Description per second at most).

It runs in every sync mode.  In push modes the agent re-applies through its own child client,
not through the parent: drift must be repaired quickly and the agent is next to the cluster;
both sides use the same field manager, so ownership stays one.  Before re-applying, the
Description is read fresh from the parent and skipped if it is being deleted, so Recovery does
not resurrect what offload or prune just removed.
"""

from __future__ import annotations

import asyncio
from typing import Final, Literal

import structlog
from prometheus_client import REGISTRY, CollectorRegistry

from clusternet.apis import known
from clusternet.apis.apps.v1alpha1 import GROUP, VERSION
from clusternet.deployer import (
    DescriptionSync,
    ObjectRef,
    decode_raw,
    drifted,
    is_deleting,
    is_generic,
    owner_key,
    previous_refs,
    ref_of,
    refreshed_statuses,
    stale_refs,
)
from clusternet.kube import KubeClient, NotFound, Object
from clusternet.runtime import (
    DeletedFinalStateUnknown,
    Informer,
    Result,
    SharedInformerFactory,
    WorkQueue,
    last_state,
    object_key,
    run_workers,
)

log = structlog.get_logger(__name__)

NAME: Final = "recovery"
API_VERSION: Final = f"{GROUP}/{VERSION}"
SELECTOR: Final = f"{known.DEPLOYED_BY_LABEL}={known.DEPLOYED_BY_CLUSTERNET}"
STATUS_COALESCE_SECONDS: Final = 1.0
SYNC_TIMEOUT: Final = 30.0

Action = Literal["check", "apply", "status"]
Item = tuple[Action, str]


class Recovery:
    def __init__(
        self,
        parent: KubeClient,
        child: KubeClient,
        descriptions: Informer,
        sync: DescriptionSync,
        namespace: str,
        *,
        registry: CollectorRegistry | None = REGISTRY,
    ) -> None:
        self.parent = parent
        self.child = child
        self.sync = sync
        self.namespace = namespace
        self.descriptions = descriptions
        self.queue: WorkQueue[Item] = WorkQueue(NAME, registry=registry)
        self.objects = SharedInformerFactory(child, registry=registry)
        self._watched: dict[tuple[str, str], Informer] = {}
        # Only what the deployers report as deployed matters here: a spec change is theirs
        # to apply, and its new objects are checked once the status lists them.
        descriptions.add_event_handler(
            on_add=lambda obj: self.queue.add(("check", object_key(obj))),
            on_update=lambda old, new: (
                self.queue.add(("check", object_key(new)))
                if previous_refs(old) != previous_refs(new)
                else None
            ),
        )

    async def run(self, workers: int = 2) -> None:
        self.objects.start()
        try:
            await run_workers(self.queue, self.reconcile, workers=workers)
        finally:
            self.queue.shut_down()
            await self.objects.stop()

    # ------------------------------------------------------------------ child events

    def _watch(self, ref: ObjectRef) -> Informer:
        gvk = (ref.api_version, ref.kind)
        informer = self._watched.get(gvk)
        if informer is None:
            informer = self.objects.informer(ref.api_version, ref.kind, label_selector=SELECTOR)
            self._watched[gvk] = informer
            informer.add_event_handler(
                on_add=lambda obj: self._on_change(None, obj),
                on_update=self._on_change,
                on_delete=self._on_delete,
            )
            log.info("recovery watches a new kind", api_version=ref.api_version, kind=ref.kind)
        return informer

    def _description_key(self, obj: Object) -> str | None:
        annotations = obj["metadata"].get("annotations") or {}
        owner = annotations.get(known.OWNED_BY_DESCRIPTION_ANNOTATION)
        return owner_key(owner, self.namespace) if owner else None

    def _on_change(self, old: Object | None, new: Object) -> None:
        key = self._description_key(new)
        if key is None or new["metadata"].get("deletionTimestamp"):
            return
        if drifted(new):
            self.queue.add(("apply", key))
        elif old is None or old.get("status") != new.get("status"):
            self.queue.add_after(("status", key), STATUS_COALESCE_SECONDS)

    def _on_delete(self, obj: Object | DeletedFinalStateUnknown) -> None:
        key = self._description_key(last_state(obj))
        if key is not None:
            self.queue.add(("apply", key))

    # ------------------------------------------------------------------ reconcile

    async def reconcile(self, item: Item) -> Result | None:
        action, key = item
        desc = self.descriptions.store.get(key)
        if desc is None or not is_generic(desc) or is_deleting(desc):
            return None
        if action == "check":
            return await self._check(desc)
        if action == "apply":
            return await self._reapply(key)
        await self._refresh_status(desc)
        return None

    async def _check(self, desc: Object) -> Result | None:
        """Watch the kinds the Description deployed; re-apply if any object is missing or
        drifted (e.g. changed while the agent was down), else refresh the status."""
        refs = previous_refs(desc)
        listed = [ref_of(obj) for obj in decode_raw((desc.get("spec") or {}).get("raw")).objects]
        if stale_refs(refs, listed):
            # Deployed objects the Description no longer lists (e.g. a re-apply of an older
            # version raced a prune): applying the current version prunes them.
            return await self._reapply(object_key(desc))
        informers = {ref: self._watch(ref) for ref in refs}
        async with asyncio.timeout(SYNC_TIMEOUT):
            for informer in set(informers.values()):
                await informer.wait_for_sync()
        for ref, informer in informers.items():
            live = informer.store.get(_store_key(ref))
            if live is None or drifted(live):
                return await self._reapply(object_key(desc))
        await self._refresh_status(desc)
        return None

    async def _reapply(self, key: str) -> Result | None:
        namespace, _, name = key.partition("/")
        try:
            fresh = await self.parent.get(API_VERSION, "Description", name, namespace=namespace)
        except NotFound:
            return None
        if is_deleting(fresh) or not is_generic(fresh):
            return None  # offload is under way: do not bring its objects back
        log.info("re-applying a Description whose objects drifted", description=key)
        await self.sync.deploy(self.child, fresh)
        for ref in previous_refs(fresh):
            self._watch(ref)
        return None

    async def _refresh_status(self, desc: Object) -> None:
        statuses = (desc.get("status") or {}).get("manifestStatuses") or []
        observed = {}
        for ref in previous_refs(desc):
            informer = self._watched.get((ref.api_version, ref.kind))
            live = informer.store.get(_store_key(ref)) if informer is not None else None
            if live is not None:
                observed[ref_of({**live, "apiVersion": ref.api_version, "kind": ref.kind})] = (
                    live.get("status")
                )
        refreshed = refreshed_statuses(statuses, observed)
        if refreshed != statuses:
            await self.sync.write_status(desc, {"manifestStatuses": refreshed})


def _store_key(ref: ObjectRef) -> str:
    return f"{ref.namespace}/{ref.name}" if ref.namespace else ref.name
