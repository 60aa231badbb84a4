"""Feed finalizers and in-use protection (spec §4.1, §4.8; runs under ``deployer``).

Every Manifest in the reserved namespace and every HelmChart carries the finalizer
``apps.clusternet.io/finalizer``, plus ``apps.clusternet.io/feed-protection`` with the gate
FeedInUseProtection.  When such a feed is deleted:

* with the gate, while a live (not deleting) Subscription lists it in ``spec.feeds``, the
  deletion stays blocked and the feed's annotation ``apps.clusternet.io/feed-protection`` says
  by which Subscriptions (a shadow GET shows it); once none does, the finalizers are dropped;
* without the gate, the feed is removed from every referencing Subscription's ``spec.feeds``
  (a JSON patch that tests each entry before removing it), then the finalizers are dropped.
  A Subscription whose only feed it is cannot lose it (``feeds`` needs one item): the
  deletion then stays blocked, said in the same annotation, until that Subscription is
  edited or deleted (upstream retried the invalid patch forever, without a word).

Referencing Subscriptions are found through an index over their feeds (the identity shared
with :mod:`.feedinventory`), not through back-reference labels, which this project does not
write.  A Subscription that is deleted, or whose feeds change, brings back the feeds it
referenced that are being deleted: nothing polls.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

import structlog
from prometheus_client import REGISTRY, CollectorRegistry

from clusternet.apis import known
from clusternet.apis.apps.v1alpha1 import GROUP, VERSION
from clusternet.controllermanager.feedinventory import feed_identity, manifest_identity
from clusternet.kube import (
    BadRequest,
    Conflict,
    Invalid,
    KubeClient,
    NotFound,
    Object,
    PatchType,
)
from clusternet.runtime import (
    DeletedFinalStateUnknown,
    EventRecorder,
    Result,
    SharedInformerFactory,
    WorkQueue,
    object_key,
    run_workers,
)

log = structlog.get_logger(__name__)

NAME: Final = "feedprotection"
APPS_API_VERSION: Final = f"{GROUP}/{VERSION}"
MANIFEST: Final = "Manifest"
HELM_CHART: Final = "HelmChart"
_SUBSCRIPTIONS_BY_FEED: Final = "feedprotection/feed-identity"
_FEEDS_BY_IDENTITY: Final = "feedprotection/feed-identity"
OURS: Final = (known.APP_FINALIZER, known.FEED_PROTECTION_FINALIZER)

Item = tuple[str, str]  # (Manifest | HelmChart, namespace/name)


# --- pure decisions -------------------------------------------------------------------------


def subscription_feed_identities(sub: Object) -> list[str]:
    """The identities of every feed of a Subscription (any strategy)."""
    return [
        feed_identity(
            str(f.get("apiVersion") or ""),
            str(f.get("kind") or ""),
            f.get("namespace"),
            str(f.get("name") or ""),
        )
        for f in (sub.get("spec") or {}).get("feeds") or ()
        if isinstance(f, Mapping)
    ]


def feed_of(kind: str, obj: Object) -> tuple[str | None, str]:
    """(identity, kind shown to users) of a feed object: a Manifest is the template's kind."""
    if kind == HELM_CHART:
        return chart_identity(obj)[0], HELM_CHART
    identities = manifest_identity(obj)
    template = obj.get("template") if isinstance(obj.get("template"), Mapping) else {}
    shown = str(
        (template or {}).get("kind")
        or (obj["metadata"].get("labels") or {}).get(known.CONFIG_KIND_LABEL)
        or MANIFEST
    )
    return (identities[0] if identities else None), shown


def describe(identity: str) -> str:
    """``apps/v1/Deployment/shop/web`` → ``apps/v1 Deployment shop/web``, for messages."""
    group, version, kind, namespace, name = identity.split("/", 4)
    api_version = f"{group}/{version}" if group else version
    return f"{api_version} {kind} {namespace + '/' if namespace else ''}{name}"


def chart_identity(chart: Object) -> list[str]:
    meta = chart["metadata"]
    return [feed_identity(APPS_API_VERSION, HELM_CHART, meta.get("namespace"), meta["name"])]


def wanted_finalizers(finalizers: Sequence[str], protection: bool) -> list[str] | None:
    """The finalizers a live feed should have (others' kept, in order), or None if it has them."""
    wanted = [known.APP_FINALIZER] + ([known.FEED_PROTECTION_FINALIZER] if protection else [])
    kept = [f for f in finalizers if f not in OURS or f in wanted]
    updated = kept + [f for f in wanted if f not in kept]
    return None if updated == list(finalizers) else updated


def released_finalizers(finalizers: Sequence[str]) -> list[str] | None:
    """``finalizers`` without ours, or None if none of ours is there."""
    kept = [f for f in finalizers if f not in OURS]
    return None if len(kept) == len(finalizers) else kept


def protection_message(kind: str, subscriptions: Iterable[str]) -> str:
    """Upstream's annotation text (spec §4.8), word for word."""
    return (
        f"block deleting current {kind} until all Subscriptions (including "
        f"{', '.join(sorted(subscriptions))}) that refer this as a feed get deleted"
    )


def last_feed_message(kind: str, subscriptions: Iterable[str]) -> str:
    return (
        f"block deleting current {kind}: it is the only feed of Subscriptions (including "
        f"{', '.join(sorted(subscriptions))}), which cannot be left without feeds; edit or "
        f"delete them"
    )


def removal_patch(sub: Object, identity: str) -> list[dict[str, Any]]:
    """JSON patch removing every entry of ``spec.feeds`` with ``identity``; each removal is
    preceded by a ``test`` of the entry, so a concurrently edited list is not damaged."""
    feeds = (sub.get("spec") or {}).get("feeds") or []
    ops: list[dict[str, Any]] = []
    for index in range(len(feeds) - 1, -1, -1):  # from the end: earlier indexes stay valid
        feed = feeds[index]
        if isinstance(feed, Mapping) and subscription_feed_identities(
            {"spec": {"feeds": [feed]}}
        ) == [identity]:
            path = f"/spec/feeds/{index}"
            ops += [{"op": "test", "path": path, "value": feed}, {"op": "remove", "path": path}]
    return ops


@dataclass(frozen=True)
class Decision:
    """What to do with one feed object."""

    action: Literal["none", "finalize", "block", "detach", "release"]
    finalizers: list[str] | None = None  # finalize / release: the new list
    message: str = ""  # block: the annotation
    detach: list[str] = field(default_factory=list)  # detach: Subscription keys to edit


def decide(
    obj: Object,
    *,
    kind: str,
    protection: bool,
    referencing: Mapping[str, Object],
    identity: str | None,
) -> Decision:
    """The decision table of §4.8 for a feed object and its live referencing Subscriptions
    (by key)."""
    meta = obj["metadata"]
    finalizers = list(meta.get("finalizers") or ())
    if not meta.get("deletionTimestamp"):
        wanted = wanted_finalizers(finalizers, protection)
        return Decision("finalize", wanted) if wanted is not None else Decision("none")
    released = released_finalizers(finalizers)
    if released is None:
        return Decision("none")  # not ours to hold
    if referencing and protection:
        return Decision("block", message=protection_message(kind, referencing))
    if referencing and identity is not None:
        stuck = [
            key
            for key, sub in referencing.items()
            if len(removal_patch(sub, identity)) // 2
            >= len((sub.get("spec") or {}).get("feeds") or ())
        ]
        if stuck:
            return Decision("block", message=last_feed_message(kind, stuck))
        return Decision("detach", released, detach=sorted(referencing))
    return Decision("release", released)


# --- controller -----------------------------------------------------------------------------


class FeedProtectionController:
    def __init__(
        self,
        client: KubeClient,
        informers: SharedInformerFactory,
        recorder: EventRecorder,
        *,
        protection: bool,
        reserved_namespace: str = known.RESERVED_NAMESPACE,
        registry: CollectorRegistry | None = REGISTRY,
    ) -> None:
        self.client = client
        self.recorder = recorder
        self.protection = protection
        self.queue: WorkQueue[Item] = WorkQueue(NAME, registry=registry)
        self.subscriptions = informers.informer(APPS_API_VERSION, "Subscription")
        self.manifests = informers.informer(
            APPS_API_VERSION, MANIFEST, namespace=reserved_namespace
        )
        self.charts = informers.informer(APPS_API_VERSION, HELM_CHART)
        self.subscriptions.add_indexer(_SUBSCRIPTIONS_BY_FEED, subscription_feed_identities)
        self.manifests.add_indexer(_FEEDS_BY_IDENTITY, manifest_identity)
        self.charts.add_indexer(_FEEDS_BY_IDENTITY, chart_identity)
        for kind, informer in ((MANIFEST, self.manifests), (HELM_CHART, self.charts)):
            informer.add_event_handler(
                on_add=self._enqueue_feed(kind),
                on_update=self._feed_updated(kind),
            )
        self.subscriptions.add_event_handler(
            on_update=self._subscription_updated, on_delete=self._enqueue_deleting_feeds
        )

    async def run(self, workers: int) -> None:
        try:
            await run_workers(self.queue, self.reconcile, workers=workers)
        finally:
            self.queue.shut_down()

    # -- event handlers ------------------------------------------------------------------

    def _enqueue_feed(self, kind: str) -> Callable[[Object], None]:
        def enqueue(obj: Object) -> None:
            self.queue.add((kind, object_key(obj)))

        return enqueue

    def _feed_updated(self, kind: str) -> Callable[[Object, Object], None]:
        def updated(old: Object, new: Object) -> None:
            before, after = old["metadata"], new["metadata"]
            if (
                before.get("finalizers") != after.get("finalizers")
                or before.get("deletionTimestamp") != after.get("deletionTimestamp")
                or before.get("labels") != after.get("labels")
                or (after.get("deletionTimestamp") and _annotation(old) != _annotation(new))
            ):
                self.queue.add((kind, object_key(new)))

        return updated

    def _subscription_updated(self, old: Object, new: Object) -> None:
        if old.get("spec") != new.get("spec") or bool(
            old["metadata"].get("deletionTimestamp")
        ) != bool(new["metadata"].get("deletionTimestamp")):
            self._enqueue_deleting_feeds(old)

    def _enqueue_deleting_feeds(self, sub: Object | DeletedFinalStateUnknown) -> None:
        """The feeds ``sub`` referenced that wait for their deletion: they may go now."""
        if isinstance(sub, DeletedFinalStateUnknown):
            sub = sub.object
        for identity in subscription_feed_identities(sub):
            for kind, informer in ((MANIFEST, self.manifests), (HELM_CHART, self.charts)):
                for feed in informer.by_index(_FEEDS_BY_IDENTITY, identity):
                    if feed["metadata"].get("deletionTimestamp"):
                        self.queue.add((kind, object_key(feed)))

    # -- reconcile -----------------------------------------------------------------------

    def _referencing(self, identity: str | None) -> dict[str, Object]:
        if identity is None:
            return {}
        return {
            object_key(sub): sub
            for sub in self.subscriptions.by_index(_SUBSCRIPTIONS_BY_FEED, identity)
            if not sub["metadata"].get("deletionTimestamp")
        }

    async def reconcile(self, item: Item) -> Result | None:
        kind, key = item
        informer = self.charts if kind == HELM_CHART else self.manifests
        obj = informer.store.get(key)
        if obj is None:
            return None
        identity, shown = feed_of(kind, obj)
        decision = decide(
            obj,
            kind=shown,
            protection=self.protection,
            referencing=self._referencing(identity),
            identity=identity,
        )
        try:
            if decision.action == "finalize" or decision.action == "release":
                await self._set_finalizers(kind, obj, decision.finalizers or [])
            elif decision.action == "block":
                await self._block(kind, obj, decision.message)
            elif decision.action == "detach":
                assert identity is not None
                for sub_key in decision.detach:
                    await self._detach(self.subscriptions.store.get(sub_key), identity)
                await self._set_finalizers(kind, obj, decision.finalizers or [])
        except NotFound:
            return None  # gone meanwhile
        except (Conflict, Invalid, BadRequest) as err:
            # A stale cache (resourceVersion precondition, failed JSON patch test): the
            # newer object is on its way; retry after it.
            log.info("retrying after a concurrent change", item=item, error=err.message)
            self.queue.add_rate_limited(item)
        return None

    async def _set_finalizers(self, kind: str, obj: Object, finalizers: list[str]) -> None:
        meta = obj["metadata"]
        await self.client.patch(
            APPS_API_VERSION,
            kind,
            meta["name"],
            {"metadata": {"finalizers": finalizers, "resourceVersion": meta["resourceVersion"]}},
            namespace=meta.get("namespace"),
        )

    async def _block(self, kind: str, obj: Object, message: str) -> None:
        if _annotation(obj) == message:
            return
        meta = obj["metadata"]
        await self.client.patch(
            APPS_API_VERSION,
            kind,
            meta["name"],
            {"metadata": {"annotations": {known.FEED_PROTECTION_ANNOTATION: message}}},
            namespace=meta.get("namespace"),
        )
        self.recorder.event(obj, "Warning", "FeedInUse", message)

    async def _detach(self, sub: Object | None, identity: str) -> None:
        if sub is None:
            return
        ops = removal_patch(sub, identity)
        if not ops:
            return
        meta = sub["metadata"]
        try:
            await self.client.patch(
                APPS_API_VERSION,
                "Subscription",
                meta["name"],
                ops,
                patch_type=PatchType.JSON,
                namespace=meta["namespace"],
            )
        except NotFound:
            return  # the Subscription went away: nothing left to edit
        self.recorder.event(
            sub,
            "Normal",
            "FeedRemoved",
            f"feed {describe(identity)} is being deleted; removed it from spec.feeds",
        )


def _annotation(obj: Object) -> str | None:
    annotations = obj["metadata"].get("annotations") or {}
    value = annotations.get(known.FEED_PROTECTION_ANNOTATION)
    return value if isinstance(value, str) else None
