"""The Subscription controller (spec §4.2-§4.4, §4.8; part of ``deployer``).

Turns each scheduled Subscription into one Base per bound cluster (:mod:`.bases` decides,
this module writes) and, for Dividing, into replica Localizations.  It puts the finalizer
``apps.clusternet.io/finalizer`` and the label ``<subUID>: Subscription`` on the Subscription;
on deletion it deletes the Bases and drops the finalizer once they are gone (each Base's
own finalizer first removes its Descriptions, see :mod:`.base`).

Watch-driven: a Subscription comes back when its placement, feeds or metadata change, when
one of its Bases or replica Localizations changes or goes away (found by the ``subs.uid``
label / ``<subUID>`` label through indexes), when its FeedInventory changes, and when a
bound cluster's dedicated namespace appears.  Bases just created but not yet in the cache
are remembered for a while ("expectations"), so that a second event cannot make a second
Base before the first is seen.
"""

from __future__ import annotations

import time
from typing import Any, Final

import structlog
from prometheus_client import REGISTRY, CollectorRegistry

from clusternet.apis import known, naming
from clusternet.controllermanager import bases as plan
from clusternet.controllermanager import finalizers
from clusternet.kube import AlreadyExists, Conflict, KubeClient, NotFound, Object
from clusternet.runtime import (
    DeletedFinalStateUnknown,
    EventRecorder,
    Result,
    SharedInformerFactory,
    StaleCache,
    WorkQueue,
    last_state,
    object_key,
    run_workers,
)

log = structlog.get_logger(__name__)

NAME: Final = "subscription"
APPS_API_VERSION: Final = plan.APPS_API_VERSION
BY_SUBSCRIPTION_UID: Final = "subscription-uid"
BY_BOUND_NAMESPACE: Final = "bound-namespace"
BY_UID: Final = "uid"
# How long a created Base may take to show up in the cache before it is created again.
EXPECTATION_SECONDS: Final = 60.0


def base_subscription_uid(base: Object) -> list[str]:
    """Index of Bases (and FeedInventories) by their Subscription's UID."""
    uid = (base["metadata"].get("labels") or {}).get(known.CONFIG_SUBSCRIPTION_UID_LABEL)
    return [uid] if uid else []


def localization_subscription_uid(loc: Object) -> list[str]:
    """Index of Localizations by the ``<subUID>: Subscription`` label of replica ones."""
    labels = loc["metadata"].get("labels") or {}
    return [key for key, value in labels.items() if value == "Subscription"]


def subscription_bound_namespaces(sub: Object) -> list[str]:
    return plan.bound_namespaces(sub)


def uid_index(obj: Object) -> list[str]:
    uid = obj["metadata"].get("uid")
    return [uid] if uid else []


def _watched(sub: Object) -> Any:
    """What the controller reads of a Subscription (status conditions and aggregated
    statuses change often and do not matter here)."""
    meta = sub["metadata"]
    status = sub.get("status") or {}
    return (
        (sub.get("spec") or {}).get("feeds"),
        (sub.get("spec") or {}).get("schedulingStrategy"),
        status.get("bindingClusters"),
        status.get("replicas"),
        status.get("specHash"),
        meta.get("deletionTimestamp"),
        meta.get("finalizers"),
        meta.get("labels"),
        (meta.get("annotations") or {}).get(known.IS_DEFAULT_CLUSTER_INIT_ANNOTATION),
    )


EVENT_LISTED: Final = 10  # Bases named in one event; the rest are counted


def _listed(bases: list[str]) -> str:
    """``Base a/x, b/y`` or ``Bases a/x, ... and 3 more`` for an event message."""
    shown = ", ".join(bases[:EVENT_LISTED])
    more = f" and {len(bases) - EVENT_LISTED} more" if len(bases) > EVENT_LISTED else ""
    return f"Base{'s' if len(bases) > 1 else ''} {shown}{more}"


class SubscriptionController:
    def __init__(
        self,
        client: KubeClient,
        informers: SharedInformerFactory,
        recorder: EventRecorder,
        *,
        registry: CollectorRegistry | None = REGISTRY,
    ) -> None:
        self.client = client
        self.recorder = recorder
        self.queue: WorkQueue[str] = WorkQueue(NAME, registry=registry)
        self.subscriptions = informers.informer(APPS_API_VERSION, "Subscription")
        self.bases = informers.informer(APPS_API_VERSION, "Base")
        self.localizations = informers.informer(APPS_API_VERSION, "Localization")
        self.inventories = informers.informer(APPS_API_VERSION, "FeedInventory")
        # Dedicated namespaces carry the cluster-id label (registration.py).
        self.namespaces = informers.informer(
            "v1", "Namespace", label_selector=known.CLUSTER_ID_LABEL
        )
        self.subscriptions.add_indexer(BY_BOUND_NAMESPACE, subscription_bound_namespaces)
        self.subscriptions.add_indexer(BY_UID, uid_index)
        self.bases.add_indexer(BY_SUBSCRIPTION_UID, base_subscription_uid)
        self.localizations.add_indexer(BY_SUBSCRIPTION_UID, localization_subscription_uid)
        # (subscription UID, namespace) -> (name of the created Base, when).
        # Subscription UID -> namespace -> when its Base was created (not in the cache yet).
        self._expected: dict[str, dict[str, float]] = {}

        self.subscriptions.add_event_handler(
            on_add=self._enqueue,
            on_update=lambda old, new: (
                self._enqueue(new) if _watched(old) != _watched(new) else None
            ),
        )
        self.bases.add_event_handler(
            on_add=self._base_added,
            on_update=lambda old, new: (
                self._enqueue_owner(new)
                if (old.get("spec"), old["metadata"].get("labels"))
                != (new.get("spec"), new["metadata"].get("labels"))
                or new["metadata"].get("deletionTimestamp")
                else None
            ),
            on_delete=self._enqueue_owner,
        )
        self.localizations.add_event_handler(
            on_update=lambda old, new: (
                self._enqueue_replica_owner(new) if old.get("spec") != new.get("spec") else None
            ),
            on_delete=self._enqueue_replica_owner,
        )
        self.inventories.add_event_handler(
            on_add=self._enqueue,
            on_update=lambda old, new: (
                self._enqueue(new) if old.get("spec") != new.get("spec") else None
            ),
        )
        self.namespaces.add_event_handler(on_add=self._enqueue_bound)

    async def run(self, workers: int) -> None:
        try:
            await run_workers(self.queue, self.reconcile, workers=workers)
        finally:
            self.queue.shut_down()

    # -- event handlers -------------------------------------------------------------------

    def _enqueue(self, obj: Object | DeletedFinalStateUnknown) -> None:
        self.queue.add(object_key(obj))

    def _enqueue_uid(self, uid: str) -> None:
        for key in self.subscriptions.store.index_keys(BY_UID, uid):
            self.queue.add(key)

    def _base_added(self, base: Object) -> None:
        for uid in base_subscription_uid(base):
            self._forget_expected(uid, base["metadata"]["namespace"])
        self._enqueue_owner(base)

    def _enqueue_owner(self, base: Object | DeletedFinalStateUnknown) -> None:
        for uid in base_subscription_uid(last_state(base)):
            self._enqueue_uid(uid)

    def _enqueue_replica_owner(self, loc: Object | DeletedFinalStateUnknown) -> None:
        for uid in localization_subscription_uid(last_state(loc)):
            self._enqueue_uid(uid)

    def _enqueue_bound(self, namespace: Object) -> None:
        for key in self.subscriptions.store.index_keys(
            BY_BOUND_NAMESPACE, namespace["metadata"]["name"]
        ):
            self.queue.add(key)

    # -- reconcile ------------------------------------------------------------------------

    async def reconcile(self, key: str) -> Result | None:
        sub = self.subscriptions.store.get(key)
        if sub is None:
            return None
        uid = sub["metadata"]["uid"]
        existing = self.bases.store.by_index(BY_SUBSCRIPTION_UID, uid)
        if sub["metadata"].get("deletionTimestamp"):
            await self._finalize(sub, existing)
            return None
        ref_key, ref_value = plan.subscription_back_reference(sub)
        sub = await finalizers.ensure_finalizer(self.client, sub, labels={ref_key: ref_value})
        if sub is None:
            return None  # deleted meanwhile
        now = time.monotonic()
        expected = self._expected.get(uid, {})
        for ns in [ns for ns, at in expected.items() if now - at >= EXPECTATION_SECONDS]:
            del expected[ns]  # never seen: created again below
        pending = list(expected)
        namespace_labels = {
            ns: (obj["metadata"].get("labels") or {})
            for ns in plan.bound_namespaces(sub)
            if (obj := self.namespaces.store.get(ns)) is not None
        }
        todo = plan.plan_bases(sub, existing, namespace_labels, pending)
        for namespace in todo.missing_namespaces:
            log.info("bound cluster has no dedicated namespace (yet)", namespace=namespace)
        failures: list[str] = []
        stale = False
        created_in: list[str] = []  # namespace/name
        for base in todo.create:
            namespace = base["metadata"]["namespace"]
            # Expected before the call: the informer may deliver the Base's add event (which
            # clears the expectation) before the create call returns.  Recorded after it, a
            # stale expectation held back the Base of a cluster bound again soon after.
            self._expected.setdefault(uid, {})[namespace] = now
            try:
                created = await self.client.create(base)
            except NotFound:
                self._forget_expected(uid, namespace)
                continue  # the namespace is going away
            except Exception as err:
                self._forget_expected(uid, namespace)
                failures.append(f"creating the Base in {namespace}: {err}")
                continue
            todo.kept[namespace] = created
            created_in.append(f"{namespace}/{created['metadata']['name']}")
        if created_in:
            # One event per reconcile, not per Base: under a burst of Subscriptions an
            # event per bound cluster was a fifth of the controller-manager's writes.
            self.recorder.event(
                sub, "Normal", "BaseCreated",
                f"{_listed(created_in)} created",
            )  # fmt: skip
        updated_in: list[str] = []
        for base in todo.update:
            where = f"{base['metadata']['namespace']}/{base['metadata']['name']}"
            try:
                await self.client.update(base)
            except NotFound:
                continue  # its delete event brings the Subscription back
            except Conflict:
                stale = True  # written meanwhile: retried with backoff
                continue
            except Exception as err:
                failures.append(f"updating Base {where}: {err}")
                continue
            updated_in.append(where)
        if updated_in:
            self.recorder.event(
                sub, "Normal", "BaseUpdated",
                f"{_listed(updated_in)} updated",
            )  # fmt: skip
        for base in todo.duplicates:
            where = f"{base['metadata']['namespace']}/{base['metadata']['name']}"
            self.recorder.event(
                sub, "Warning", "MultipleBases",
                f"more than one Base in {base['metadata']['namespace']}: deleting {where}",
            )  # fmt: skip
        for base in [*todo.duplicates, *todo.unbound]:
            error = await finalizers.delete(self.client, base)
            if error:
                failures.append(error)
        loc_failures, loc_stale, localizations = await self._sync_replica_localizations(
            sub, todo.kept
        )
        failures.extend(loc_failures)
        if localizations is not None and not loc_failures and not loc_stale:
            failures.extend(await self._release_bases(sub, todo.kept, localizations))
        if failures:
            message = "; ".join(failures)
            self.recorder.event(sub, "Warning", "FailedSyncingBase", message)
            raise RuntimeError(message)
        if stale or loc_stale:
            raise StaleCache(f"objects of Subscription {key} changed while syncing")
        if self._expected.get(uid):  # look again when expectations expire, should no add
            return Result(requeue_after=EXPECTATION_SECONDS)  # event come
        return None

    def _forget_expected(self, uid: str, namespace: str) -> None:
        expected = self._expected.get(uid)
        if expected is not None:
            expected.pop(namespace, None)
            if not expected:
                del self._expected[uid]

    async def _finalize(self, sub: Object, existing: list[Object]) -> None:
        """Delete the Bases; the finalizer goes once the cache has seen the last one go (each
        Base's delete event brings the Subscription back here)."""
        if await finalizers.release_after_dependents(self.client, sub, existing):
            self._expected.pop(sub["metadata"]["uid"], None)

    async def _sync_replica_localizations(
        self, sub: Object, bases: dict[str, Object]
    ) -> tuple[list[str], bool, list[Object] | None]:
        """Create, update and delete the replica Localizations of a Dividing Subscription;
        returns the failures, whether the cache was found behind (retry), and the
        Localizations wanted (None: cannot tell yet, the FeedInventory is not in the cache;
        its add event brings the Subscription back)."""
        uid = sub["metadata"]["uid"]
        inventory = self.inventories.store.get(object_key(sub))
        if inventory is None and plan.divides_replicas(sub):
            return [], False, None
        desired, errors = plan.replica_localizations(sub, bases, inventory)
        for error in errors:
            self.recorder.event(sub, "Warning", error.reason, str(error))
        current = {
            object_key(loc): loc
            for loc in self.localizations.store.by_index(BY_SUBSCRIPTION_UID, uid)
        }
        failures: list[str] = []
        stale = False
        for loc in desired:
            key = object_key(loc)
            existing = current.pop(key, None)
            try:
                if existing is None:
                    await self.client.create(loc)
                elif (updated := plan.localization_update(existing, loc)) is not None:
                    await self.client.update(updated)
            except NotFound:
                continue  # the Base's namespace is going away
            except (AlreadyExists, Conflict):
                stale = True  # the cache is behind: retried with backoff
            except Exception as err:
                failures.append(f"writing Localization {key}: {err}")
        if errors:
            # Feeds whose result is bad keep their last Localizations until it is fixed.
            failed = {e.feed_key for e in errors}
            current = {
                k: v
                for k, v in current.items()
                if naming.feed_key((v.get("spec") or {}).get("feed") or {}) not in failed
            }
        for loc in current.values():
            if failure := await finalizers.delete(self.client, loc):
                failures.append(failure)
        return failures, stale, desired

    async def _release_bases(
        self, sub: Object, bases: dict[str, Object], localizations: list[Object]
    ) -> list[str]:
        """Tell each Base which replica Localizations it must be rendered with (the Base
        controller waits for them in its cache), which also releases a new Base."""
        dividing = (sub.get("spec") or {}).get("schedulingStrategy") == "Dividing"
        failures: list[str] = []
        for base in bases.values():
            meta = base["metadata"]
            want = plan.replica_localizations_annotation(base, localizations, dividing)
            if (meta.get("annotations") or {}).get(known.REPLICA_LOCALIZATIONS_ANNOTATION) == want:
                continue
            patch = {"metadata": {"annotations": {known.REPLICA_LOCALIZATIONS_ANNOTATION: want}}}
            try:
                await self.client.patch(
                    APPS_API_VERSION, "Base", meta["name"], patch, namespace=meta["namespace"]
                )
            except NotFound:
                continue
            except Exception as err:
                failures.append(f"annotating Base {meta['namespace']}/{meta['name']}: {err}")
        return failures
