"""The ``aggregatestatus`` controller (spec §4.9; runs under ``deployer``).

Writes ``Subscription.status.aggregatedStatuses`` (one entry per feed, a row per bound cluster)
and the ``Deployed`` condition from the Descriptions of the Subscription, which carry the
``subs.*`` labels (upstream dropped ``subs.name``, §12.1, so its controller never ran).

Triggers, all from informers: a Description created, deleted or with a changed status or
labels (found by index over its ``subs.uid``, or ``subs.namespace``/``subs.name`` when it has
no UID label); the Subscription's feeds or ``bindingClusters`` changing (or its aggregated
fields being overwritten); a bound ManagedCluster appearing, going away or changing its ID.

Description events are coalesced: the Subscription is queued ``coalesce`` seconds after the
first event of a burst, so thousands of Descriptions reporting at once make one write.  Writes
are JSON patches of ``aggregatedStatuses`` and ``conditions`` on the status subresource,
guarded by ``test`` ops on what they were computed from (the generation, ``bindingClusters``,
the conditions they replace), so the scheduler's fields (bindingClusters, replicas, specHash,
the ``Scheduled`` condition) are never overwritten with stale values, while a write elsewhere
on the Subscription (its finalizer) does not fail them as a resourceVersion precondition
did; a failed test is retried once the cache has caught up.  Nothing is written when nothing
changed.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Final

import structlog
from prometheus_client import REGISTRY, CollectorRegistry

from clusternet.apis import known
from clusternet.apis.apps.v1alpha1 import GROUP, VERSION
from clusternet.controllermanager import aggregation
from clusternet.controllermanager.registration import CLUSTERS_API_VERSION
from clusternet.kube import ApiError, Conflict, Invalid, KubeClient, NotFound, Object, PatchType
from clusternet.runtime import (
    Clock,
    DeletedFinalStateUnknown,
    EventRecorder,
    Result,
    SharedInformerFactory,
    WorkQueue,
    last_state,
    object_key,
    run_workers,
)

log = structlog.get_logger(__name__)

NAME: Final = "aggregatestatus"
APPS_API_VERSION: Final = f"{GROUP}/{VERSION}"
# Index names are per controller: informers are shared, and so are their index namespaces.
_DESCRIPTIONS_BY_SUBSCRIPTION: Final = "aggregatestatus/subscription"
_SUBSCRIPTIONS_BY_UID: Final = "aggregatestatus/uid"
_SUBSCRIPTIONS_BY_CLUSTER: Final = "aggregatestatus/binding-cluster"
_BASES_BY_SUBSCRIPTION: Final = "aggregatestatus/base-subscription"
DEFAULT_COALESCE: Final = 0.5  # seconds a burst of Description events is gathered for


def description_subscription(description: Object) -> list[str]:
    """Index values of a Description: ``uid/<subs.uid>``, else ``key/<namespace>/<name>``."""
    labels = description["metadata"].get("labels") or {}
    uid = labels.get(known.CONFIG_SUBSCRIPTION_UID_LABEL)
    if uid:
        return [f"uid/{uid}"]
    owner = aggregation.subscription_of(description)
    return [f"key/{owner[0]}/{owner[1]}"] if owner else []


def _render_error(base: Object) -> Any:
    return (base["metadata"].get("annotations") or {}).get(known.RENDER_ERROR_ANNOTATION)


def _subscription_uid(sub: Object) -> list[str]:
    uid = sub["metadata"].get("uid")
    return [f"uid/{uid}"] if uid else []


def _binding_clusters(sub: Object) -> list[str]:
    return [str(c) for c in (sub.get("status") or {}).get("bindingClusters") or ()]


def _deployed_condition(sub: Object) -> Any:
    for condition in (sub.get("status") or {}).get("conditions") or ():
        if isinstance(condition, dict) and condition.get("type") == aggregation.CONDITION_DEPLOYED:
            return condition
    return None


def subscription_changed(old: Object, new: Object) -> bool:
    """Whether a Subscription update touches what the aggregation reads or writes."""
    old_status, new_status = old.get("status") or {}, new.get("status") or {}
    return (
        (old.get("spec") or {}).get("feeds") != (new.get("spec") or {}).get("feeds")
        or old["metadata"].get("generation") != new["metadata"].get("generation")
        or old_status.get("bindingClusters") != new_status.get("bindingClusters")
        or old_status.get("aggregatedStatuses") != new_status.get("aggregatedStatuses")
        or _deployed_condition(old) != _deployed_condition(new)
    )


def description_changed(old: Object, new: Object) -> bool:
    return (
        old.get("status") != new.get("status")
        or old["metadata"].get("labels") != new["metadata"].get("labels")
        or old["metadata"].get("deletionTimestamp") != new["metadata"].get("deletionTimestamp")
    )


class AggregateStatusController:
    def __init__(
        self,
        client: KubeClient,
        informers: SharedInformerFactory,
        recorder: EventRecorder,
        *,
        coalesce: float = DEFAULT_COALESCE,
        registry: CollectorRegistry | None = REGISTRY,
        clock: Clock | None = None,
    ) -> None:
        self.client = client
        self.recorder = recorder
        self.coalesce = coalesce
        self.queue: WorkQueue[str] = WorkQueue(NAME, registry=registry, clock=clock)
        self.subscriptions = informers.informer(APPS_API_VERSION, "Subscription")
        self.descriptions = informers.informer(APPS_API_VERSION, "Description")
        self.clusters = informers.informer(CLUSTERS_API_VERSION, "ManagedCluster")
        # The Base controller's record of bad input (missing templates, bad overrides).
        self.bases = informers.informer(APPS_API_VERSION, "Base")
        self.descriptions.add_indexer(_DESCRIPTIONS_BY_SUBSCRIPTION, description_subscription)
        # Bases carry the same subs.* labels as their Descriptions.
        self.bases.add_indexer(_BASES_BY_SUBSCRIPTION, description_subscription)
        self.subscriptions.add_indexer(_SUBSCRIPTIONS_BY_UID, _subscription_uid)
        self.subscriptions.add_indexer(_SUBSCRIPTIONS_BY_CLUSTER, _binding_clusters)
        self.subscriptions.add_event_handler(
            on_add=self._subscription_added,
            # Gathered like Description events: a new binding is followed within the window
            # by the Descriptions' first reports, and one status write then says both.
            on_update=lambda old, new: (
                self.queue.add_after(object_key(new), self.coalesce)
                if subscription_changed(old, new)
                else None
            ),
        )
        self.descriptions.add_event_handler(
            on_add=self._enqueue_owner,
            on_update=self._description_updated,
            on_delete=self._enqueue_owner,
        )
        self.bases.add_event_handler(
            on_add=lambda base: self._enqueue_owner(base) if _render_error(base) else None,
            on_update=lambda old, new: (
                self._enqueue_owner(new) if _render_error(old) != _render_error(new) else None
            ),
            on_delete=self._enqueue_owner,
        )
        self.clusters.add_event_handler(
            on_add=self._enqueue_bound,
            on_update=lambda old, new: (
                self._enqueue_bound(new)
                if (old.get("spec") or {}).get("clusterId")
                != (new.get("spec") or {}).get("clusterId")
                else None
            ),
            on_delete=self._enqueue_bound,
        )

    async def run(self, workers: int) -> None:
        try:
            await run_workers(self.queue, self.reconcile, workers=workers)
        finally:
            self.queue.shut_down()

    # -- event handlers ------------------------------------------------------------------

    def _enqueue(self, obj: Object | DeletedFinalStateUnknown) -> None:
        self.queue.add(object_key(obj))

    def _subscription_added(self, sub: Object) -> None:
        if _binding_clusters(sub) or (sub.get("status") or {}).get("conditions"):
            self._enqueue(sub)  # known already (a restart's first list): at once
        else:
            # Just created: the scheduler binds it within milliseconds.  Writing
            # NothingToDeploy at once cost a write per Subscription, and the scheduler's
            # binding, made from a cache without it, replaced the conditions it was in.
            self.queue.add_after(object_key(sub), self.coalesce)

    def _description_updated(self, old: Object, new: Object) -> None:
        if description_changed(old, new):
            self._enqueue_owner(old)
            if description_subscription(old) != description_subscription(new):
                self._enqueue_owner(new)

    def _enqueue_owner(self, obj: Object | DeletedFinalStateUnknown) -> None:
        """Queue the Subscription of a Description or Base (they carry the same labels)."""
        for value in description_subscription(last_state(obj)):
            if value.startswith("key/"):
                keys = [value.removeprefix("key/")]
            else:
                keys = self.subscriptions.store.index_keys(_SUBSCRIPTIONS_BY_UID, value)
            for key in keys:
                # The earliest pending add wins: a burst within the window is one reconcile.
                self.queue.add_after(key, self.coalesce)

    def _enqueue_bound(self, cluster: Object | DeletedFinalStateUnknown) -> None:
        key = object_key(cluster)
        for sub_key in self.subscriptions.store.index_keys(_SUBSCRIPTIONS_BY_CLUSTER, key):
            self.queue.add(sub_key)

    # -- reconcile -----------------------------------------------------------------------

    def _descriptions_of(self, sub: Object) -> list[Object]:
        meta = sub["metadata"]
        found = self.descriptions.by_index(_DESCRIPTIONS_BY_SUBSCRIPTION, f"uid/{meta['uid']}")
        # Descriptions without a UID label (made by hand or by an older controller).
        found += self.descriptions.by_index(
            _DESCRIPTIONS_BY_SUBSCRIPTION, f"key/{meta['namespace']}/{meta['name']}"
        )
        return found

    def _cluster_ids(self, keys: list[str]) -> dict[str, str]:
        ids = {}
        for key in keys:
            cluster = self.clusters.store.get(key)
            cluster_id = ((cluster or {}).get("spec") or {}).get("clusterId")
            if cluster_id:
                ids[key] = str(cluster_id)
        return ids

    async def reconcile(self, key: str) -> Result | None:
        sub = self.subscriptions.store.get(key)
        if sub is None or sub["metadata"].get("deletionTimestamp"):
            return None
        binding = _binding_clusters(sub)
        clusters = aggregation.bound_clusters(binding, self._cluster_ids(binding))
        bases = self.bases.by_index(_BASES_BY_SUBSCRIPTION, f"uid/{sub['metadata']['uid']}")
        status = aggregation.status_patch(
            sub, clusters, self._descriptions_of(sub), datetime.now(UTC), bases
        )
        if status is None:
            return None
        meta = sub["metadata"]
        try:
            await self.client.patch(
                APPS_API_VERSION,
                "Subscription",
                meta["name"],
                aggregation.guarded_status_patch(sub, status),
                patch_type=PatchType.JSON,
                namespace=meta["namespace"],
                subresource="status",
            )
        except NotFound:
            return None  # deleted meanwhile
        except Conflict:
            self.queue.add_rate_limited(key)
            return None
        except Invalid as err:
            if err.failed_patch_test:
                # Our cache is behind (new feeds, a new binding, or conditions written
                # meanwhile): the newer Subscription is on its way; retry after it.
                self.queue.add_rate_limited(key)
                return None
            # Not something a retry fixes; the next change of the inputs brings it back.
            self.recorder.event(sub, "Warning", "FailedAggregatingStatus", err.message)
            return None
        except ApiError as err:
            log.warning("could not write the aggregated status", error=str(err))
            raise
        if "conditions" in status:
            self._announce(sub, status["conditions"])
        return None

    def _announce(self, sub: Object, conditions: list[dict[str, Any]]) -> None:
        """An event when the Deployed condition changes reason (not on every new count).

        Events are writes to the parent like any other: under a burst of new Subscriptions
        an event per rollout start would cost the API server as much as the status itself.
        """
        written = next(
            (c for c in conditions if c.get("type") == aggregation.CONDITION_DEPLOYED), None
        )
        before = _deployed_condition(sub) or {}
        if written is None or before.get("reason") == written.get("reason"):
            return
        if not before and written.get("reason") == "Pending":
            return  # a first rollout under way is not news; its end or failure is
        self.recorder.event(
            sub,
            "Warning" if written.get("reason") in ("Failed", "InvalidInput") else "Normal",
            str(written["reason"]),
            str(written["message"]),
        )
