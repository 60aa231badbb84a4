"""Leader election on a ``coordination.k8s.io/v1`` Lease, with client-go's semantics.

Candidates read the Lease and take it when it is free (no holder: released) or expired; the
leader renews it every ``retry_period``.  Every write carries the resourceVersion that was
read, so of two candidates racing for a free Lease exactly one wins (the other gets 409).

Expiry is judged on the local clock, never on the timestamps in the Lease, which another
machine's clock wrote: a candidate notes *when it saw* the Lease record change and considers
it expired ``leaseDurationSeconds`` after that.  The leader steps down when it has not managed
to renew for ``renew_deadline`` (< ``lease_duration``), so it stops before any other candidate
can consider the Lease expired.  It steps down at once if it sees another holder.

On cancellation the leader stops its work, then releases the Lease (no holder, 1 s duration),
so the next candidate takes over at its next retry instead of after a lease duration.
"""

from __future__ import annotations

import asyncio
import random
import socket
import uuid
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from typing import Any, Protocol

import structlog
from prometheus_client import REGISTRY, CollectorRegistry, Gauge

from clusternet.kube import AlreadyExists, ApiError, Conflict, KubeClient, NotFound, Object
from clusternet.runtime._clockwait import before, cancel_and_wait, sleep
from clusternet.runtime.clock import Clock, MonotonicClock
from clusternet.runtime.flags import LeaderElection
from clusternet.runtime.metrics import PerRegistry
from clusternet.runtime.server import HealthChecks

log = structlog.get_logger(__name__)

LEASE_API_VERSION = "coordination.k8s.io/v1"
_JITTER = 1.2  # client-go: candidates retry every retry_period * (1 + up to 1.2)


class LeaseClient(Protocol):
    """The part of :class:`~clusternet.kube.KubeClient` leader election uses."""

    async def get(
        self, api_version: str, kind: str, name: str, *, namespace: str | None = None
    ) -> Object: ...

    async def create(self, obj: Object) -> Object: ...

    async def update(self, obj: Object) -> Object: ...


def _leader_families(registry: CollectorRegistry) -> Gauge:
    return Gauge(
        "clusternet_leader_election_master_status",
        "1 while this process holds the lease, else 0.",
        ["name"],
        registry=registry,
    )


_leader_status = PerRegistry(_leader_families)


def _micro_time() -> str:
    """Now as a ``metav1.MicroTime``: written for humans, never read back for decisions."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaderElector:
    """Campaign for the Lease ``namespace/name`` as ``identity``; run the work while leading.

    ``await run()`` waits to be elected, then runs ``on_started_leading()`` in a task while
    renewing.  It returns when leadership is lost (the work task is cancelled first) or when
    the work returns; it re-raises the work's exception.  Cancel ``run()`` to resign.
    ``on_stopped_leading`` is called after leading ends, ``on_new_leader(identity)`` whenever
    another holder (or this one) is observed; both must not block.
    """

    def __init__(
        self,
        client: LeaseClient,
        *,
        name: str,
        namespace: str,
        identity: str,
        on_started_leading: Callable[[], Coroutine[Any, Any, None]],
        on_stopped_leading: Callable[[], None] | None = None,
        on_new_leader: Callable[[str], None] | None = None,
        lease_duration: float = 15.0,
        renew_deadline: float = 10.0,
        retry_period: float = 2.0,
        release_on_cancel: bool = True,
        clock: Clock | None = None,
        registry: CollectorRegistry | None = REGISTRY,
    ) -> None:
        if not identity:
            raise ValueError("leader election needs a non-empty identity")
        if not lease_duration > renew_deadline > _JITTER * retry_period > 0:
            raise ValueError(
                "need lease_duration > renew_deadline > 1.2 * retry_period > 0, got "
                f"{lease_duration}/{renew_deadline}/{retry_period}"
            )
        self.name = name
        self.namespace = namespace
        self.identity = identity
        self.lease_duration = lease_duration
        self.renew_deadline = renew_deadline
        self.retry_period = retry_period
        self._client = client
        self._on_started_leading = on_started_leading
        self._on_stopped_leading = on_stopped_leading
        self._on_new_leader = on_new_leader
        self._release_on_cancel = release_on_cancel
        self._clock: Clock = clock or MonotonicClock()
        self._status = _leader_status(registry).labels(name) if registry is not None else None

        self._is_leader = False
        self._leader = ""  # the holder last observed in the Lease
        self._observed_spec: dict[str, Any] | None = None
        self._observed_at = 0.0  # local clock time when the Lease record last changed
        self._renewed_at = 0.0
        self._log = log.bind(lease=f"{namespace}/{name}", identity=identity)

    @property
    def is_leader(self) -> bool:
        return self._is_leader

    @property
    def leader(self) -> str:
        """The identity holding the Lease as last observed ("" if none)."""
        return self._leader

    def check(self, tolerance: float = 20.0) -> bool:
        """A health check: fails while we believe we lead but have not renewed for
        ``renew_deadline + tolerance`` seconds, i.e. the renew loop is stuck (the event loop
        blocked, a hung request) and another candidate may be leading already."""
        if not self._is_leader:
            return True
        return self._clock.now() - self._renewed_at <= self.renew_deadline + tolerance

    async def run(self) -> None:
        work: asyncio.Task[None] | None = None
        try:
            await self._acquire()
            work = asyncio.create_task(self._on_started_leading(), name=f"leading {self.name}")
            renewing = asyncio.create_task(self._renew(), name=f"renewing {self.name}")
            try:
                await asyncio.wait({work, renewing}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                await cancel_and_wait(renewing)
        finally:
            if work is not None:
                await cancel_and_wait(work)
                # The work has stopped: only now may another candidate take over.
                if self._is_leader and self._release_on_cancel:
                    await self._release()
                self._set_leader(False)
                if self._on_stopped_leading is not None:
                    self._on_stopped_leading()
        if work is not None and not work.cancelled() and (error := work.exception()):
            raise error

    # -- campaign --------------------------------------------------------------------------

    async def _acquire(self) -> None:
        self._log.info("campaigning for the lease")
        while not await self._attempt(self._clock.now() + self.renew_deadline):
            await self._sleep(self.retry_period * (1 + random.uniform(0, _JITTER)))
        self._set_leader(True)
        self._log.info("acquired the lease")

    async def _renew(self) -> None:
        """Renew every ``retry_period``; return once leadership is lost."""
        while True:
            await self._sleep(self.retry_period)
            deadline = self._clock.now() + self.renew_deadline
            while not await self._attempt(deadline):
                if self._leader not in ("", self.identity):
                    self._log.warning("lost the lease to another candidate", leader=self._leader)
                    self._set_leader(False)
                    return
                if self._clock.now() >= deadline:
                    self._log.warning("failed to renew the lease in time, stepping down")
                    self._set_leader(False)
                    return
                await self._sleep(min(self.retry_period, deadline - self._clock.now()))

    async def _attempt(self, deadline: float) -> bool:
        """One try to acquire or renew, given up at ``deadline``; errors count as failure."""
        try:
            return await before(self._clock, deadline, self._try_acquire_or_renew())
        except TimeoutError:
            self._log.warning("lease request timed out")
        except (ApiError, ConnectionError) as err:
            self._log.warning("lease request failed", error=str(err))
        return False

    async def _try_acquire_or_renew(self) -> bool:
        now = _micro_time()
        try:
            lease = await self._client.get(
                LEASE_API_VERSION, "Lease", self.name, namespace=self.namespace
            )
        except NotFound:
            spec = self._holder_spec(acquire_time=now, renew_time=now, transitions=0)
            fresh = {
                "apiVersion": LEASE_API_VERSION,
                "kind": "Lease",
                "metadata": {"name": self.name, "namespace": self.namespace},
                "spec": spec,
            }
            try:
                self._observe(await self._client.create(fresh))
            except AlreadyExists:
                return False  # another candidate created it first
            self._renewed_at = self._clock.now()
            return True
        self._observe(lease)
        spec = lease.get("spec") or {}
        holder = spec.get("holderIdentity") or ""
        if holder and holder != self.identity and not self._observed_expired(spec):
            return False
        transitions = int(spec.get("leaseTransitions") or 0)
        if holder == self.identity:
            updated_spec = self._holder_spec(spec.get("acquireTime") or now, now, transitions)
        else:
            updated_spec = self._holder_spec(now, now, transitions + 1)
        # The update carries the resourceVersion just read: a 409 means somebody else wrote
        # the Lease in between, and whoever that was won.
        try:
            self._observe(await self._client.update({**lease, "spec": updated_spec}))
        except Conflict:
            return False
        self._renewed_at = self._clock.now()
        return True

    async def _release(self) -> None:
        """Give the Lease up so that the next candidate need not wait for it to expire."""

        async def release() -> None:
            lease = await self._client.get(
                LEASE_API_VERSION, "Lease", self.name, namespace=self.namespace
            )
            spec = lease.get("spec") or {}
            if spec.get("holderIdentity") != self.identity:
                return
            released = {
                "leaseDurationSeconds": 1,
                "leaseTransitions": int(spec.get("leaseTransitions") or 0),
            }
            await self._client.update({**lease, "spec": released})

        try:
            await before(self._clock, self._clock.now() + self.renew_deadline, release())
        except (TimeoutError, ApiError, ConnectionError) as err:
            self._log.warning("failed to release the lease; it will expire", error=repr(err))
        else:
            self._log.info("released the lease")

    # -- bookkeeping -----------------------------------------------------------------------

    def _holder_spec(self, acquire_time: str, renew_time: str, transitions: int) -> Object:
        return {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": max(1, round(self.lease_duration)),
            "acquireTime": acquire_time,
            "renewTime": renew_time,
            "leaseTransitions": transitions,
        }

    def _observe(self, lease: Object) -> None:
        spec = lease.get("spec") or {}
        if spec != self._observed_spec:
            self._observed_spec = dict(spec)
            self._observed_at = self._clock.now()
        holder = spec.get("holderIdentity") or ""
        if holder != self._leader:
            self._leader = holder
            if holder:
                self._log.info("new leader observed", leader=holder)
                if self._on_new_leader is not None:
                    self._on_new_leader(holder)

    def _observed_expired(self, spec: Object) -> bool:
        duration = spec.get("leaseDurationSeconds") or self.lease_duration
        return self._clock.now() >= self._observed_at + float(duration)

    def _set_leader(self, leading: bool) -> None:
        self._is_leader = leading
        if self._status is not None:
            self._status.set(int(leading))

    async def _sleep(self, seconds: float) -> None:
        await sleep(self._clock, seconds)


class LeadershipLost(RuntimeError):
    """The lease was lost: exit so that the process restarts as a fresh candidate."""


async def run_while_leading(
    client: KubeClient,
    election: LeaderElection,
    work: Callable[[], Coroutine[Any, Any, None]],
    *,
    health: HealthChecks | None = None,
) -> None:
    """Run ``work`` as a component's flags say (``--leader-elect`` and friends, a
    :class:`clusternet.runtime.flags.LeaderElection`): directly, or only while holding the
    Lease.  Cancellation (SIGTERM) releases the lease and returns; losing it raises
    :class:`LeadershipLost`, as upstream's components exit to start over as candidates.
    """
    if not election.enabled:
        await work()
        return
    elector = LeaderElector(
        client,
        name=election.resource_name,
        namespace=election.resource_namespace,
        identity=f"{socket.gethostname()}_{uuid.uuid4()}",
        on_started_leading=work,
        lease_duration=election.lease_duration,
        renew_deadline=election.renew_deadline,
        retry_period=election.retry_period,
    )
    if health is not None:
        health.add_liveness_check("leader-election", elector.check)
    await elector.run()
    raise LeadershipLost(f"lost the lease {election.resource_namespace}/{election.resource_name}")
