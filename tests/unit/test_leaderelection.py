"""Leader election's state machine against an in-memory Lease API, on a FakeClock."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from clusternet.kube import AlreadyExists, ClusterUnreachable, Conflict, NotFound
from clusternet.runtime import FakeClock, LeaderElector

Object = dict[str, Any]
LEASE = 15.0
RENEW = 10.0
RETRY = 2.0
MAX_RETRY_WAIT = RETRY * (1 + 1.2)  # a candidate's retries are jittered by up to 1.2x


class FakeLeases:
    """Leases by name with resourceVersion checks; ``down`` makes every call fail, and
    ``interleave`` yields to the loop inside reads so that two candidates can race."""

    def __init__(self) -> None:
        self.leases: dict[str, Object] = {}
        self.version = 0
        self.down = False
        self.interleave = False

    async def get(
        self, api_version: str, kind: str, name: str, *, namespace: str | None = None
    ) -> Object:
        assert (api_version, kind, namespace) == ("coordination.k8s.io/v1", "Lease", "system")
        self._check()
        found = copy.deepcopy(self.leases.get(name))
        if self.interleave:
            await asyncio.sleep(0)
        if found is None:
            raise NotFound(404, {"reason": "NotFound"})
        return found

    async def create(self, obj: Object) -> Object:
        self._check()
        name = obj["metadata"]["name"]
        if name in self.leases:
            raise AlreadyExists(409, {"reason": "AlreadyExists"})
        return self._store(obj)

    async def update(self, obj: Object) -> Object:
        self._check()
        current = self.leases[obj["metadata"]["name"]]
        if obj["metadata"]["resourceVersion"] != current["metadata"]["resourceVersion"]:
            raise Conflict(409, {"reason": "Conflict"})
        return self._store(obj)

    def spec(self) -> Object:
        return dict(self.leases["lock"]["spec"])

    def _store(self, obj: Object) -> Object:
        self.version += 1
        stored = copy.deepcopy(obj)
        stored["metadata"]["resourceVersion"] = str(self.version)
        self.leases[stored["metadata"]["name"]] = stored
        return copy.deepcopy(stored)

    def _check(self) -> None:
        if self.down:
            raise ClusterUnreachable("connection refused")


class Candidate:
    def __init__(self, api: FakeLeases, clock: FakeClock, identity: str, **options: Any) -> None:
        self.events: list[str] = []
        self.working = False
        self.elector = LeaderElector(
            api,
            name="lock",
            namespace="system",
            identity=identity,
            on_started_leading=self._work,
            on_stopped_leading=lambda: self.events.append("stopped"),
            on_new_leader=lambda leader: self.events.append(f"leader {leader}"),
            lease_duration=LEASE,
            renew_deadline=RENEW,
            retry_period=RETRY,
            clock=clock,
            registry=options.pop("registry", None),
            **options,
        )
        self.task = asyncio.create_task(self.elector.run())

    async def _work(self) -> None:
        self.working = True
        self.events.append("started")
        try:
            await asyncio.Event().wait()  # leads until cancelled
        finally:
            self.working = False


async def until(condition: Callable[[], bool]) -> None:
    """Let the loop run until ``condition`` holds; everything is in memory, so it either
    holds within a bounded number of steps or never."""
    for _ in range(500):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition never held")


async def settle() -> None:
    for _ in range(200):
        await asyncio.sleep(0)


async def advance(clock: FakeClock, seconds: float, step: float = 0.5) -> None:
    """Step time forward, letting the candidates react after every step."""
    for _ in range(round(seconds / step)):
        clock.advance(step)
        await settle()


@pytest.fixture
def api() -> FakeLeases:
    return FakeLeases()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def candidates(api: FakeLeases, clock: FakeClock) -> AsyncIterator[list[Candidate]]:
    started: list[Candidate] = []
    yield started
    for candidate in started:
        candidate.task.cancel()
    await asyncio.gather(*(c.task for c in started), return_exceptions=True)


async def test_exactly_one_candidate_leads_and_keeps_renewing(
    api: FakeLeases, clock: FakeClock, candidates: list[Candidate]
) -> None:
    a = Candidate(api, clock, "a")
    candidates.append(a)
    await until(lambda: a.working)
    b = Candidate(api, clock, "b")
    candidates.append(b)
    await until(lambda: b.elector.leader == "a")

    await advance(clock, 3 * LEASE)
    assert a.elector.is_leader
    assert not b.elector.is_leader
    assert a.events == ["leader a", "started"]
    assert b.events == ["leader a"]
    spec = api.spec()
    assert spec["holderIdentity"] == "a"
    assert spec["leaseTransitions"] == 0
    assert spec["leaseDurationSeconds"] == 15
    assert spec["renewTime"] > spec["acquireTime"]


async def test_a_crashed_leader_is_replaced_only_after_its_lease_expires(
    api: FakeLeases, clock: FakeClock, candidates: list[Candidate]
) -> None:
    a = Candidate(api, clock, "a", release_on_cancel=False)
    await until(lambda: a.working)
    b = Candidate(api, clock, "b")
    candidates.append(b)
    await until(lambda: b.elector.leader == "a")
    a.task.cancel()  # no release: as if the process died
    await settle()

    # a's last renewal was at most a retry period before it died, so b cannot have seen the
    # Lease unchanged for a whole lease duration yet.
    await advance(clock, LEASE - RETRY - 0.5)
    assert not b.elector.is_leader
    # b saw that renewal within one retry wait; it expires a lease duration later, and b
    # takes the Lease at its next retry.
    await advance(clock, MAX_RETRY_WAIT + LEASE + MAX_RETRY_WAIT - (LEASE - RETRY - 0.5) + 0.5)
    assert b.working
    spec = api.spec()
    assert spec["holderIdentity"] == "b"
    assert spec["leaseTransitions"] == 1


async def test_cancelling_the_leader_stops_its_work_then_releases_the_lease(
    api: FakeLeases, clock: FakeClock, candidates: list[Candidate]
) -> None:
    a = Candidate(api, clock, "a")
    await until(lambda: a.working)
    b = Candidate(api, clock, "b")
    candidates.append(b)
    await until(lambda: b.elector.leader == "a")

    a.task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await a.task
    assert not a.working
    assert a.events[-1] == "stopped"
    assert "holderIdentity" not in api.spec()
    assert api.spec()["leaseDurationSeconds"] == 1

    await advance(clock, MAX_RETRY_WAIT + 0.5)  # b's next retry: far less than a lease duration
    assert b.working
    assert api.spec()["holderIdentity"] == "b"


async def test_leader_steps_down_when_it_cannot_renew_before_the_deadline(
    api: FakeLeases, clock: FakeClock, candidates: list[Candidate]
) -> None:
    registry = CollectorRegistry()
    a = Candidate(api, clock, "a", registry=registry)
    candidates.append(a)
    await until(lambda: a.working)
    assert (
        registry.get_sample_value("clusternet_leader_election_master_status", {"name": "lock"}) == 1
    )

    api.down = True
    await advance(clock, RETRY + RENEW - 1)
    assert a.elector.is_leader
    assert a.working
    await advance(clock, 1.5)
    await until(a.task.done)
    assert not a.elector.is_leader
    assert not a.working
    assert a.events[-1] == "stopped"
    assert (
        registry.get_sample_value("clusternet_leader_election_master_status", {"name": "lock"}) == 0
    )


async def test_leader_steps_down_at_once_when_another_holder_appears(
    api: FakeLeases, clock: FakeClock, candidates: list[Candidate]
) -> None:
    a = Candidate(api, clock, "a")
    candidates.append(a)
    await until(lambda: a.working)
    stolen = copy.deepcopy(api.leases["lock"])
    stolen["spec"]["holderIdentity"] = "intruder"
    await api.update(stolen)

    await advance(clock, RETRY)
    await until(a.task.done)
    assert a.events[-2:] == ["leader intruder", "stopped"]
    assert api.spec()["holderIdentity"] == "intruder"  # not released: it is not ours


async def test_of_two_candidates_racing_for_a_free_lease_one_wins_by_resource_version(
    api: FakeLeases, clock: FakeClock, candidates: list[Candidate]
) -> None:
    await api.create({"metadata": {"name": "lock"}, "spec": {"leaseTransitions": 4}})
    api.interleave = True  # both read version 1 before either writes
    a, b = Candidate(api, clock, "a"), Candidate(api, clock, "b")
    candidates += [a, b]
    await until(lambda: a.working or b.working)
    await advance(clock, 3 * RETRY)
    assert a.working != b.working
    assert api.spec()["leaseTransitions"] == 5


async def test_health_check_fails_while_believing_to_lead_without_renewing(
    api: FakeLeases, clock: FakeClock, candidates: list[Candidate]
) -> None:
    a = Candidate(api, clock, "a")
    candidates.append(a)
    assert a.elector.check(tolerance=0)  # not leading: nothing to be unhealthy about
    await until(lambda: a.working)
    assert a.elector.check(tolerance=0)
    # Time passes while the loop is blocked: the renew loop gets no chance to run.
    clock.advance(RENEW + 1)
    assert not a.elector.check(tolerance=0)
    assert a.elector.check(tolerance=5)


async def test_work_that_returns_ends_the_term_and_releases(
    api: FakeLeases, clock: FakeClock
) -> None:
    done: list[str] = []

    async def work() -> None:
        done.append("worked")

    elector = LeaderElector(
        api,
        name="lock",
        namespace="system",
        identity="a",
        on_started_leading=work,
        clock=clock,
        registry=None,
    )
    await elector.run()
    assert done == ["worked"]
    assert not elector.is_leader
    assert "holderIdentity" not in api.spec()


async def test_work_that_fails_is_reraised_after_releasing(
    api: FakeLeases, clock: FakeClock
) -> None:
    async def work() -> None:
        raise RuntimeError("controller crashed")

    elector = LeaderElector(
        api,
        name="lock",
        namespace="system",
        identity="a",
        on_started_leading=work,
        clock=clock,
        registry=None,
    )
    with pytest.raises(RuntimeError, match="controller crashed"):
        await elector.run()
    assert "holderIdentity" not in api.spec()


@pytest.mark.parametrize(
    ("lease", "renew", "retry"), [(10, 10, 2), (15, 2, 2), (15, 10, 0), (15, 10, -1)]
)
def test_inconsistent_durations_are_refused(lease: float, renew: float, retry: float) -> None:
    async def work() -> None:
        pass

    with pytest.raises(ValueError, match="lease_duration > renew_deadline"):
        LeaderElector(
            FakeLeases(),
            name="l",
            namespace="n",
            identity="a",
            on_started_leading=work,
            lease_duration=lease,
            renew_deadline=renew,
            retry_period=retry,
        )
