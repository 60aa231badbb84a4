"""The scheduler loop: informers feed an in-memory view, the queue orders the work, and each
cycle runs :func:`~clusternet.scheduler.algorithm.schedule`, then binds asynchronously.

Everything is watch-driven (spec §5.1 and the rescheduling rules of spec §12 items 2-3):

* a Subscription is scheduled when it is added or its spec changes (its own status updates
  are ignored), and when its FeedInventory is added or changes;
* a ManagedCluster that is added or deleted, or whose labels, taints, readiness or predictor
  change, reschedules every Subscription that selects it (old or new labels) or is bound to
  it, Dividing ones included, so replicas leave a failed cluster and spread onto a new one.
  Those cluster-caused reschedules are rate limited per Subscription
  (``min_reschedule_interval``), so a flapping cluster cannot keep the fleet churning;
* a FitError keeps the current placement, records why (condition ``Scheduled=False`` with
  the reason histogram, event ``FailedScheduling``) and waits for a cluster change, with a
  retry after ``unschedulable_retry`` as a last resort (capacity is not watched);
* an error (API, predictor) is retried with backoff (1 s doubling to 10 s).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import structlog
from pydantic import ValidationError

from clusternet.apis.apps.v1alpha1 import GROUP as APPS_GROUP
from clusternet.apis.apps.v1alpha1 import VERSION as APPS_VERSION
from clusternet.apis.apps.v1alpha1 import FeedInventory, Subscription, SubscriptionStatus
from clusternet.apis.clusters.v1beta1 import GROUP as CLUSTERS_GROUP
from clusternet.apis.clusters.v1beta1 import VERSION as CLUSTERS_VERSION
from clusternet.kube import ApiError, KubeClient, NotFound, Object
from clusternet.runtime import (
    DeletedFinalStateUnknown,
    EventRecorder,
    SharedInformerFactory,
    object_key,
)
from clusternet.runtime.clock import Clock, MonotonicClock
from clusternet.scheduler import algorithm, status
from clusternet.scheduler.algorithm import FitError, SchedulingError
from clusternet.scheduler.framework import (
    STATE_PREVIOUS,
    ClusterInfo,
    CycleState,
    Framework,
    PreviousPlacement,
    TargetClusters,
)
from clusternet.scheduler.plugins.defaultbinder import STATE_STATUS_EXTRA
from clusternet.scheduler.queue import QueueShutDown, SchedulingQueue
from clusternet.scheduler.selectors import LabelMatcher, compile_selector
from clusternet.scheduler.spechash import spec_hash

log = structlog.get_logger(__name__)

APPS_API_VERSION: Final = f"{APPS_GROUP}/{APPS_VERSION}"
CLUSTERS_API_VERSION: Final = f"{CLUSTERS_GROUP}/{CLUSTERS_VERSION}"


@dataclass(frozen=True)
class SchedulerHandle:
    """What plugins get from the running scheduler (framework.Handle)."""

    client: KubeClient
    recorder: EventRecorder


@dataclass(frozen=True)
class _Selectors:
    """A Subscription's subscriber selectors, compiled once per spec change."""

    generation: Any
    matchers: tuple[LabelMatcher, ...]

    def match(self, labels: Mapping[str, str]) -> bool:
        return any(m(labels) for m in self.matchers)


def cluster_change_matters(old: ClusterInfo, new: ClusterInfo) -> bool:
    """Whether a ManagedCluster update can change any placement (heartbeats cannot)."""
    return (
        old.labels != new.labels
        or old.taints != new.taints
        or old.ready != new.ready
        or (old.predictor_enabled, old.predictor_address, old.predictor_direct_access)
        != (new.predictor_enabled, new.predictor_address, new.predictor_direct_access)
    )


_STATUS_FIELDS: Final = frozenset(
    field.alias or name for name, field in SubscriptionStatus.model_fields.items()
)


def parse_subscription(obj: Object) -> Subscription:
    """The typed Subscription; status fields the model does not know (the ``conditions``
    this scheduler writes, until the API type carries them) are left out, not rejected."""
    status_ = {k: v for k, v in (obj.get("status") or {}).items() if k in _STATUS_FIELDS}
    return Subscription.model_validate({**obj, "status": status_})


def inventory_matches(sub: Subscription, inventory: FeedInventory | None) -> bool:
    """A FeedInventory is usable when it lists exactly the Subscription's feeds, in order."""
    if inventory is None:
        return False
    return [f.key for f in inventory.spec.feeds] == [f.key for f in sub.spec.feeds]


class Scheduler:
    def __init__(
        self,
        client: KubeClient,
        informers: SharedInformerFactory,
        recorder: EventRecorder,
        frameworks: Sequence[Framework],
        *,
        min_reschedule_interval: float = 30.0,
        unschedulable_retry: float = 300.0,
        max_concurrent_binds: int = 32,
        clock: Clock | None = None,
    ) -> None:
        self.client = client
        self.recorder = recorder
        self.frameworks = {f.scheduler_name: f for f in frameworks}
        self.min_reschedule_interval = min_reschedule_interval
        self.unschedulable_retry = unschedulable_retry
        self.clock: Clock = clock or MonotonicClock()
        self.queue: SchedulingQueue[str] = SchedulingQueue(clock=self.clock)
        self._bind_slots = asyncio.Semaphore(max_concurrent_binds)
        self._binds: set[asyncio.Task[None]] = set()

        self._clusters: dict[str, ClusterInfo] = {}
        self._cluster_list: list[ClusterInfo] | None = None  # sorted by key, rebuilt lazily
        self._selectors: dict[str, _Selectors] = {}
        self._assumed: dict[str, PreviousPlacement] = {}  # bound, not yet seen by the informer
        self._conditions: dict[str, dict[str, Any]] = {}  # last Scheduled condition written
        self._last_cluster_trigger: dict[str, float] = {}
        # Until the informers have synced, every Subscription is queued by its own add
        # event: matching each initial cluster against every Subscription would be wasted.
        self._synced = False

        self.subscriptions = informers.informer(APPS_API_VERSION, "Subscription")
        self.inventories = informers.informer(APPS_API_VERSION, "FeedInventory")
        self.managed_clusters = informers.informer(CLUSTERS_API_VERSION, "ManagedCluster")
        self.subscriptions.add_event_handler(
            on_add=self._on_subscription_add,
            on_update=self._on_subscription_update,
            on_delete=self._on_subscription_delete,
        )
        self.inventories.add_event_handler(
            on_add=self._on_inventory,
            on_update=lambda old, new: (
                self._on_inventory(new) if old.get("spec") != new.get("spec") else None
            ),
            on_delete=self._on_inventory,
        )
        self.managed_clusters.add_event_handler(
            on_add=self._on_cluster_add,
            on_update=self._on_cluster_update,
            on_delete=self._on_cluster_delete,
        )

    # -- event handlers (never block: they only queue keys) -------------------------------

    def _responsible(self, sub: Object) -> bool:
        name = (sub.get("spec") or {}).get("schedulerName") or "default"
        return name in self.frameworks and not sub["metadata"].get("deletionTimestamp")

    @staticmethod
    def _priority(sub: Object) -> int:
        return int((sub.get("spec") or {}).get("priority") or 0)

    def _on_subscription_add(self, sub: Object) -> None:
        if self._responsible(sub):
            self.queue.add(object_key(sub), self._priority(sub))

    def _on_subscription_update(self, old: Object, new: Object) -> None:
        key = object_key(new)
        assumed = self._assumed.get(key)
        if assumed is not None and PreviousPlacement.of_object(new) == assumed:
            del self._assumed[key]  # the informer caught up with our bind
        if old.get("spec") != new.get("spec") and self._responsible(new):
            self._selectors.pop(key, None)
            self.queue.add(key, self._priority(new))

    def _on_subscription_delete(self, sub: Object | DeletedFinalStateUnknown) -> None:
        key = object_key(sub)
        self.queue.remove(key)
        self._selectors.pop(key, None)
        self._assumed.pop(key, None)
        self._conditions.pop(key, None)
        self._last_cluster_trigger.pop(key, None)

    def _on_inventory(self, inventory: Object | DeletedFinalStateUnknown) -> None:
        # A FeedInventory has its Subscription's namespace and name.
        key = object_key(inventory)
        sub = self.subscriptions.store.get(key)
        if sub is not None and self._responsible(sub):
            self.queue.add(key, self._priority(sub))

    def _on_cluster_add(self, obj: Object) -> None:
        cluster = ClusterInfo.from_object(obj)
        self._set_cluster(cluster)
        self._reschedule_for(cluster, None)

    def _on_cluster_update(self, old_obj: Object, new_obj: Object) -> None:
        old = self._clusters.get(object_key(new_obj)) or ClusterInfo.from_object(old_obj)
        new = ClusterInfo.from_object(new_obj)
        if new_obj["metadata"].get("deletionTimestamp"):
            self._drop_cluster(new.key)
            self._reschedule_for(old, None)
            return
        self._set_cluster(new)
        if cluster_change_matters(old, new):
            self._reschedule_for(new, old)

    def _on_cluster_delete(self, obj: Object | DeletedFinalStateUnknown) -> None:
        key = object_key(obj)
        old = self._clusters.get(key)
        self._drop_cluster(key)
        if old is not None:
            self._reschedule_for(old, None)

    def _set_cluster(self, cluster: ClusterInfo) -> None:
        self._clusters[cluster.key] = cluster
        self._cluster_list = None

    def _drop_cluster(self, key: str) -> None:
        if self._clusters.pop(key, None) is not None:
            self._cluster_list = None

    def clusters(self) -> list[ClusterInfo]:
        """Every schedulable cluster, sorted by key (deterministic filter and tie order)."""
        if self._cluster_list is None:
            self._cluster_list = sorted(self._clusters.values(), key=lambda c: c.key)
        return self._cluster_list

    def _reschedule_for(self, cluster: ClusterInfo, other: ClusterInfo | None) -> None:
        """Queue the Subscriptions a change of ``cluster`` (previously ``other``) may affect."""
        if not self._synced:
            return
        now = self.clock.now()
        for sub in self.subscriptions.store.list():
            if not self._responsible(sub):
                continue
            key = object_key(sub)
            selectors = self._selectors_of(key, sub)
            bound = cluster.key in ((sub.get("status") or {}).get("bindingClusters") or ())
            if not (
                bound
                or selectors.match(cluster.labels)
                or (other is not None and selectors.match(other.labels))
            ):
                continue
            last = self._last_cluster_trigger.get(key)
            delay = 0.0 if last is None else last + self.min_reschedule_interval - now
            if delay <= 0:
                self._last_cluster_trigger[key] = now
                self.queue.add(key, self._priority(sub))
            else:
                # Flapping: one reschedule at the end of the interval covers every change.
                assert last is not None
                self._last_cluster_trigger[key] = last + self.min_reschedule_interval
                self.queue.add_after(key, delay, self._priority(sub))

    def _selectors_of(self, key: str, sub: Object) -> _Selectors:
        generation = sub["metadata"].get("generation") or sub["metadata"].get("resourceVersion")
        cached = self._selectors.get(key)
        if cached is not None and cached.generation == generation:
            return cached
        matchers: list[LabelMatcher] = []
        try:
            parsed = parse_subscription(sub)
            matchers = [compile_selector(s.cluster_affinity) for s in parsed.spec.subscribers]
        except ValidationError:
            pass  # the cycle reports it
        selectors = self._selectors[key] = _Selectors(generation, tuple(matchers))
        return selectors

    # -- the loop --------------------------------------------------------------------------

    async def run(self) -> None:
        """Schedule until cancelled; call once the informers have synced."""
        self._synced = True
        try:
            while True:
                try:
                    key = await self.queue.pop()
                except QueueShutDown:
                    return
                await self.schedule_one(key)
                await asyncio.sleep(0)  # let informers deliver between cycles
        finally:
            self.queue.shut_down()
            for task in list(self._binds):
                task.cancel()
            for task in list(self._binds):
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def settle(self) -> None:
        """Wait for the bindings and condition writes in flight (tests, benchmarks)."""
        while self._binds:
            await asyncio.gather(*list(self._binds), return_exceptions=True)

    async def schedule_one(self, key: str) -> None:
        """One scheduling cycle; the binding cycle continues in a task of its own."""
        handed_off = False
        try:
            handed_off = await self._schedule(key)
        except Exception:
            log.exception("scheduling cycle failed", subscription=key)
            self.queue.add_backoff(key)
        finally:
            if not handed_off:
                self.queue.done(key)

    async def _schedule(self, key: str) -> bool:
        obj = self.subscriptions.store.get(key)
        if obj is None or not self._responsible(obj):
            return False
        try:
            sub = parse_subscription(obj)
        except ValidationError as err:
            self._fail(obj, status.REASON_SCHEDULING_ERROR, f"invalid Subscription: {err}")
            return False
        framework = self.frameworks[sub.spec.scheduler_name]
        assumed = self._assumed.get(key)
        if assumed is not None:  # our last bind is not in the informer yet: build on it
            sub.status.binding_clusters = list(assumed.clusters)
            sub.status.replicas = {k: list(v) for k, v in assumed.replicas.items()}

        inventory = None
        if algorithm.is_dividing(sub):
            raw = self.inventories.store.get(key)
            inventory = FeedInventory.model_validate(raw) if raw is not None else None
            if not inventory_matches(sub, inventory):
                # Not an error: the FeedInventory controller is on it, and its event queues
                # this Subscription again.
                self._set_condition(
                    obj,
                    ok=False,
                    reason=status.REASON_WAITING_FOR_INVENTORY,
                    message="waiting for the FeedInventory listing this Subscription's feeds",
                )
                return False

        state = CycleState()
        try:
            result = await algorithm.schedule(framework, sub, inventory, self.clusters(), state)
        except FitError as err:
            # Keep the last good placement (upstream bound an empty one: spec §12 item 3).
            self._fail(obj, status.REASON_UNSCHEDULABLE, err.message)
            self.queue.forget(key)
            self.queue.add_after(key, self.unschedulable_retry)
            return False
        except SchedulingError as err:
            self._fail(obj, status.REASON_SCHEDULING_ERROR, str(err))
            self.queue.add_backoff(key)
            return False

        targets = result.targets.sorted()
        message = status.bound_message(targets.clusters, targets.replicas)
        if result.notes:
            message += "; " + "; ".join(result.notes)
        condition = status.scheduled_condition(
            (obj.get("status") or {}).get("conditions"),
            ok=True,
            reason=status.REASON_SCHEDULED,
            message=message,
            generation=obj["metadata"].get("generation"),
            now=datetime.now(UTC),
        )
        unchanged = (
            PreviousPlacement(tuple(targets.clusters), targets.replicas)
            == PreviousPlacement.of(sub)
            and (obj.get("status") or {}).get("specHash") == spec_hash(sub)
            and status.same_condition(self._current_condition(key, obj), condition)
        )
        self.queue.forget(key)
        if unchanged:
            return False
        state.write(
            STATE_STATUS_EXTRA,
            {"conditions": status.with_condition(self._conditions_of(obj), condition)},
        )
        reserved = framework.run_reserve(state, sub, targets)
        if not reserved.is_success:
            self._fail(obj, status.REASON_SCHEDULING_ERROR, f"reserve: {reserved.message}")
            self.queue.add_backoff(key)
            return False
        task = asyncio.create_task(
            self._bind(framework, state, sub, obj, targets, condition, key),
            name=f"bind {key}",
        )
        self._binds.add(task)
        task.add_done_callback(self._binds.discard)
        return True

    async def _bind(
        self,
        framework: Framework,
        state: CycleState,
        sub: Subscription,
        obj: Object,
        targets: TargetClusters,
        condition: dict[str, Any],
        key: str,
    ) -> None:
        """The binding cycle: Permit → PreBind → Bind → PostBind; failures unreserve and
        retry with backoff."""
        try:
            async with self._bind_slots:
                result = await framework.run_permit(state, sub, targets)
                if result.is_success:
                    result = await framework.run_pre_bind(state, sub, targets)
                if result.is_success:
                    result = await framework.run_bind(state, sub, targets)
            if not result.is_success:
                framework.run_unreserve(state, sub, targets)
                reason = f"{result.plugin}: {result.message}" if result.plugin else result.message
                self._fail(obj, status.REASON_SCHEDULING_ERROR, f"binding failed: {reason}")
                if not (result.is_unschedulable and "deleted" in result.message):
                    self.queue.add_backoff(key)
                return
            self._assumed[key] = PreviousPlacement(tuple(targets.clusters), targets.replicas)
            self._conditions[key] = condition
            previous: PreviousPlacement = state.get(STATE_PREVIOUS) or PreviousPlacement()
            if previous != self._assumed[key]:
                self.recorder.event(obj, "Normal", "Scheduled", condition["message"])
                # The event has the details; a log line per cluster list would not scale.
                log.info("bound", subscription=key, clusters=len(targets.clusters))
            await framework.run_post_bind(state, sub, targets)
        except Exception:
            log.exception("binding failed", subscription=key)
            framework.run_unreserve(state, sub, targets)
            self.queue.add_backoff(key)
        finally:
            self.queue.done(key)

    # -- reporting -------------------------------------------------------------------------

    def _fail(self, obj: Object, reason: str, message: str) -> None:
        key = object_key(obj)
        changed = self._set_condition(obj, ok=False, reason=reason, message=message)
        if changed:
            self.recorder.event(obj, "Warning", "FailedScheduling", message)
            log.info("not scheduled", subscription=key, reason=reason, message=message)

    def _current_condition(self, key: str, obj: Object) -> dict[str, Any] | None:
        for c in (obj.get("status") or {}).get("conditions") or ():
            if c.get("type") == status.CONDITION_SCHEDULED:
                return dict(c)
        return self._conditions.get(key)

    def _conditions_of(self, obj: Object) -> list[dict[str, Any]]:
        return list((obj.get("status") or {}).get("conditions") or ())

    def _set_condition(self, obj: Object, *, ok: bool, reason: str, message: str) -> bool:
        """Write the Scheduled condition if it changed; True if it did."""
        key = object_key(obj)
        condition = status.scheduled_condition(
            self._conditions_of(obj),
            ok=ok,
            reason=reason,
            message=message,
            generation=obj["metadata"].get("generation"),
            now=datetime.now(UTC),
        )
        if status.same_condition(self._current_condition(key, obj), condition):
            return False
        self._conditions[key] = condition
        task = asyncio.create_task(self._patch_condition(obj, condition), name=f"condition {key}")
        self._binds.add(task)
        task.add_done_callback(self._binds.discard)
        return True

    async def _patch_condition(self, obj: Object, condition: dict[str, Any]) -> None:
        patch = {
            "status": {"conditions": status.with_condition(self._conditions_of(obj), condition)}
        }
        meta = obj["metadata"]
        try:
            await self.client.patch(
                APPS_API_VERSION,
                "Subscription",
                meta["name"],
                patch,
                namespace=meta["namespace"],
                subresource="status",
            )
        except NotFound:
            pass
        except ApiError as err:
            # Best effort: the event carries the same text.
            log.warning("could not write the Scheduled condition", error=str(err))
            self._conditions.pop(object_key(obj), None)
