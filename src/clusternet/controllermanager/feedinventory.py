"""The ``FeedInventory`` controller (spec §4.10; runs under ``deployer`` with gate FeedInventory).

For every Dividing Subscription it keeps a FeedInventory of the same name listing each feed
with its desired replicas and per-replica requirements, parsed from the feed's Manifest in
the reserved namespace (:mod:`.feedinventory_parsers`).  Triggers: the Subscription's spec,
its FeedInventory (deleted or edited by hand) and the Manifests of its feeds, matched by
their ``config.*`` labels through indexes (no back-reference labels needed, so a Manifest
created after its Subscription is picked up at once).

Fixed against upstream: HelmChart feeds (no Manifest) no longer stop the FeedInventory from
being written (spec §12 item 8); they are listed without replicas.
"""

from __future__ import annotations

from typing import Final

import structlog
from prometheus_client import REGISTRY, CollectorRegistry
from pydantic import ValidationError

from clusternet.apis import known
from clusternet.apis.apps.v1alpha1 import (
    GROUP,
    VERSION,
    Feed,
    FeedInventory,
    SchedulingStrategy,
    Subscription,
)
from clusternet.controllermanager.feedinventory_parsers import feed_order
from clusternet.kube import AlreadyExists, Conflict, KubeClient, NotFound, Object
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

NAME: Final = "feedinventory"
APPS_API_VERSION: Final = f"{GROUP}/{VERSION}"
_BY_FEED: Final = "feed-identity"
HELM_CHART_API_VERSION: Final = APPS_API_VERSION


def feed_identity(api_version: str, kind: str, namespace: str | None, name: str) -> str:
    """What a feed and its Manifest's ``config.*`` labels have in common."""
    group, _, version = api_version.rpartition("/")
    return f"{group}/{version}/{kind}/{namespace or ''}/{name}"


def manifest_identity(manifest: Object) -> list[str]:
    labels = manifest["metadata"].get("labels") or {}
    try:
        group = labels.get(known.CONFIG_GROUP_LABEL, "")
        api_version = (
            f"{group}/{labels[known.CONFIG_VERSION_LABEL]}"
            if group
            else labels[known.CONFIG_VERSION_LABEL]
        )
        return [
            feed_identity(
                api_version,
                labels[known.CONFIG_KIND_LABEL],
                labels.get(known.CONFIG_NAMESPACE_LABEL),
                labels[known.CONFIG_NAME_LABEL],
            )
        ]
    except KeyError:
        return []  # not a feed Manifest


def subscription_feed_identities(sub: Object) -> list[str]:
    """The identities of a Dividing Subscription's feeds (others need no inventory)."""
    spec = sub.get("spec") or {}
    if spec.get("schedulingStrategy") != SchedulingStrategy.DIVIDING:
        return []
    return [
        feed_identity(
            f.get("apiVersion", ""), f.get("kind", ""), f.get("namespace"), f.get("name", "")
        )
        for f in spec.get("feeds") or ()
    ]


def is_helm_chart(feed: Feed) -> bool:
    return feed.api_version == HELM_CHART_API_VERSION and feed.kind == "HelmChart"


def desired_inventory(sub: Subscription, templates: dict[str, Object | None]) -> FeedInventory:
    """The FeedInventory for ``sub`` given each feed's Manifest template (by feed key)."""
    meta = sub.metadata
    return FeedInventory.model_validate(
        {
            "metadata": {
                "name": meta.name,
                "namespace": meta.namespace,
                "labels": {
                    known.OBJECT_CREATED_BY_LABEL: known.CLUSTERNET_CONTROLLER_MANAGER_NAME,
                    known.CONFIG_SUBSCRIPTION_NAME_LABEL: meta.name,
                    known.CONFIG_SUBSCRIPTION_NAMESPACE_LABEL: meta.namespace,
                    known.CONFIG_SUBSCRIPTION_UID_LABEL: meta.uid,
                },
                "ownerReferences": [
                    {
                        "apiVersion": APPS_API_VERSION,
                        "kind": "Subscription",
                        "name": meta.name,
                        "uid": meta.uid,
                        "controller": True,
                        "blockOwnerDeletion": True,
                    }
                ],
            },
            "spec": {
                "feeds": [
                    feed_order(feed, templates.get(feed.key)).to_dict() for feed in sub.spec.feeds
                ]
            },
        }
    )


class FeedInventoryController:
    def __init__(
        self,
        client: KubeClient,
        informers: SharedInformerFactory,
        recorder: EventRecorder,
        *,
        reserved_namespace: str = known.RESERVED_NAMESPACE,
        registry: CollectorRegistry | None = REGISTRY,
    ) -> None:
        self.client = client
        self.recorder = recorder
        self.queue: WorkQueue[str] = WorkQueue(NAME, registry=registry)
        self.subscriptions = informers.informer(APPS_API_VERSION, "Subscription")
        self.inventories = informers.informer(APPS_API_VERSION, "FeedInventory")
        self.manifests = informers.informer(
            APPS_API_VERSION, "Manifest", namespace=reserved_namespace
        )
        self.subscriptions.add_indexer(_BY_FEED, subscription_feed_identities)
        self.manifests.add_indexer(_BY_FEED, manifest_identity)
        self.subscriptions.add_event_handler(
            on_add=self._enqueue,
            on_update=lambda old, new: (
                self._enqueue(new) if old.get("spec") != new.get("spec") else None
            ),
        )
        self.inventories.add_event_handler(
            on_update=lambda old, new: (
                self._enqueue(new) if old.get("spec") != new.get("spec") else None
            ),
            on_delete=self._enqueue,
        )
        self.manifests.add_event_handler(
            on_add=self._enqueue_subscribers,
            on_update=lambda old, new: (
                self._enqueue_subscribers(new)
                if old.get("template") != new.get("template")
                else None
            ),
            on_delete=self._enqueue_subscribers,
        )

    async def run(self, workers: int) -> None:
        try:
            await run_workers(self.queue, self.reconcile, workers=workers)
        finally:
            self.queue.shut_down()

    def _enqueue(self, obj: Object | DeletedFinalStateUnknown) -> None:
        self.queue.add(object_key(obj))

    def _enqueue_subscribers(self, manifest: Object | DeletedFinalStateUnknown) -> None:
        if isinstance(manifest, DeletedFinalStateUnknown):
            manifest = manifest.object
        for identity in manifest_identity(manifest):
            for key in self.subscriptions.store.index_keys(_BY_FEED, identity):
                self.queue.add(key)

    def _template(self, feed: Feed) -> Object | None:
        identity = feed_identity(feed.api_version, feed.kind, feed.namespace, feed.name)
        manifests = self.manifests.by_index(_BY_FEED, identity)
        if not manifests:
            return None
        # Two Manifests for one object (a legacy dash-named one and a new one): the newest.
        newest = max(manifests, key=lambda m: m["metadata"].get("creationTimestamp") or "")
        template = newest.get("template")
        return template if isinstance(template, dict) else None

    async def reconcile(self, key: str) -> Result | None:
        obj = self.subscriptions.store.get(key)
        if obj is None or obj["metadata"].get("deletionTimestamp"):
            return None  # the FeedInventory goes with its owner (garbage collection)
        try:
            sub = Subscription.model_validate(obj)
        except ValidationError as err:
            log.warning("invalid Subscription", subscription=key, error=str(err))
            return None
        if sub.spec.scheduling_strategy is not SchedulingStrategy.DIVIDING:
            return None
        templates: dict[str, Object | None] = {}
        missing = []
        for feed in sub.spec.feeds:
            if is_helm_chart(feed):
                templates[feed.key] = None
                continue
            template = self._template(feed)
            if template is None:
                missing.append(feed.key)
            templates[feed.key] = template
        if missing:
            # The Manifest's add event brings the Subscription back: no retry needed.
            self.recorder.event(
                obj,
                "Warning",
                "UnParseableFeeds",
                f"no Manifest in the reserved namespace for feed(s) {', '.join(missing)}",
            )
            return None
        try:
            desired = desired_inventory(sub, templates).to_dict()
        except ValidationError as err:
            # A template the inventory cannot represent: retrying would not change that;
            # the next edit of the Manifest or Subscription brings it back.
            self.recorder.event(obj, "Warning", "UnParseableFeeds", f"cannot parse feeds: {err}")
            return None
        current = self.inventories.store.get(key)
        try:
            if current is None:
                await self.client.create(desired)
            elif current.get("spec") != desired["spec"] or not _labels_cover(current, desired):
                updated = dict(current)
                updated["spec"] = desired["spec"]
                metadata = dict(current["metadata"])
                metadata["labels"] = {
                    **(metadata.get("labels") or {}),
                    **desired["metadata"]["labels"],
                }
                updated["metadata"] = metadata
                await self.client.update(updated)
            else:
                return None
        except (AlreadyExists, Conflict):
            # Someone else wrote it meanwhile: its event brings the key back.
            return None
        except NotFound:
            return None  # the namespace is being deleted
        except Exception as err:
            self.recorder.event(obj, "Warning", "FeedInventoryNotSynced", str(err))
            raise
        self.recorder.event(obj, "Normal", "FeedInventorySynced", "FeedInventory is synced")
        return None


def _labels_cover(current: Object, desired: Object) -> bool:
    labels = current["metadata"].get("labels") or {}
    return all(labels.get(k) == v for k, v in desired["metadata"]["labels"].items())
