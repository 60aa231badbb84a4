"""Leader election between two processes contending for a Lease on a real kube-apiserver."""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path
from typing import Protocol

import pytest

from clusternet.kube import KubeClient
from clusternet.local.testing import Clusters

LEASE_NAME = "e2e-lock"

# A candidate process: says what happens on stdout, one line per event; SIGTERM resigns.
CANDIDATE = """
import asyncio, signal, sys
from clusternet.kube import KubeClient
from clusternet.runtime import LeaderElector
from clusternet.runtime.logging import configure_logging

kubeconfig, namespace, name, identity, lease, renew, retry = sys.argv[1:]

def say(line):
    print(line, flush=True)

async def lead():
    say(f"leading {identity}")
    await asyncio.Event().wait()

async def main():
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, asyncio.current_task().cancel)
    async with KubeClient.from_kubeconfig(kubeconfig, "parent") as client:
        elector = LeaderElector(
            client, name=name, namespace=namespace, identity=identity,
            on_started_leading=lead,
            on_stopped_leading=lambda: say("stopped"),
            on_new_leader=lambda leader: say(f"leader {leader}"),
            lease_duration=float(lease), renew_deadline=float(renew), retry_period=float(retry),
        )
        try:
            await elector.run()
        except asyncio.CancelledError:
            say("resigned")

configure_logging(stream=sys.stderr)
asyncio.run(main())
"""


class Candidate:
    def __init__(self, identity: str, process: asyncio.subprocess.Process) -> None:
        self.identity = identity
        self.process = process
        self.lines: list[str] = []
        self._new_line = asyncio.Condition()
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.process.stdout is not None
        async for raw in self.process.stdout:
            async with self._new_line:
                self.lines.append(raw.decode().strip())
                self._new_line.notify_all()

    async def close(self) -> None:
        if self.process.returncode is None:
            self.process.kill()
        await self.process.wait()
        await self._reader

    async def said(self, line: str, within: float = 60.0) -> None:
        async with asyncio.timeout(within), self._new_line:
            await self._new_line.wait_for(lambda: line in self.lines)


@pytest.fixture
async def parent(clusters: Clusters) -> AsyncIterator[KubeClient]:
    async with KubeClient.from_kubeconfig(clusters.kubeconfig, "parent") as client:
        yield client


class StartCandidate(Protocol):
    def __call__(
        self, identity: str, durations: tuple[float, float, float]
    ) -> Awaitable[Candidate]: ...


@pytest.fixture
async def start_candidate(
    clusters: Clusters, namespace: str, tmp_path: Path
) -> AsyncIterator[StartCandidate]:
    """Starts candidate processes (lease duration, renew deadline, retry period); kills
    those still running after the test."""
    started: list[Candidate] = []

    async def start(identity: str, durations: tuple[float, float, float]) -> Candidate:
        log = (tmp_path / f"{identity}.log").open("wb")  # the candidate's own log lines
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            CANDIDATE,
            str(clusters.kubeconfig),
            namespace,
            LEASE_NAME,
            identity,
            *map(str, durations),
            stdout=asyncio.subprocess.PIPE,
            stderr=log,
        )
        log.close()
        candidate = Candidate(identity, process)
        started.append(candidate)
        return candidate

    yield start
    for candidate in started:
        await candidate.close()


async def first_leader(a: Candidate, b: Candidate) -> tuple[Candidate, Candidate]:
    racing = {asyncio.create_task(c.said(f"leading {c.identity}")): c for c in (a, b)}
    done, pending = await asyncio.wait(racing, return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        task.cancel()
    leader = racing[done.pop()]
    return leader, b if leader is a else a


async def lease_spec(client: KubeClient, namespace: str) -> dict[str, object]:
    lease = await client.get("coordination.k8s.io/v1", "Lease", LEASE_NAME, namespace=namespace)
    spec: dict[str, object] = lease["spec"]
    return spec


async def test_one_leads_and_a_killed_leader_is_replaced_within_the_lease_duration(
    parent: KubeClient, namespace: str, start_candidate: StartCandidate
) -> None:
    lease, renew, retry = 3.0, 2.0, 0.5
    a = await start_candidate("a", (lease, renew, retry))
    b = await start_candidate("b", (lease, renew, retry))
    leader, follower = await first_leader(a, b)
    await follower.said(f"leader {leader.identity}")  # it has seen the Lease and lost
    spec = await lease_spec(parent, namespace)
    assert spec["holderIdentity"] == leader.identity
    assert f"leading {follower.identity}" not in follower.lines

    killed_at = time.monotonic()
    leader.process.send_signal(signal.SIGKILL)  # no chance to release
    await follower.said(f"leading {follower.identity}")
    took_over_after = time.monotonic() - killed_at

    spec_after = await lease_spec(parent, namespace)
    assert spec_after["holderIdentity"] == follower.identity
    assert spec_after["leaseTransitions"] == int(str(spec["leaseTransitions"])) + 1
    # The follower last saw the Lease change at most one (jittered) retry before the kill,
    # waits a lease duration from then, and takes it at its next retry: the bound of the
    # protocol, plus 2 s for two processes sharing a busy machine.
    max_retry_wait = retry * 2.2
    assert took_over_after <= max_retry_wait + lease + max_retry_wait + 2


async def test_a_terminated_leader_releases_the_lease_for_an_immediate_handover(
    parent: KubeClient, namespace: str, start_candidate: StartCandidate
) -> None:
    # A long lease: a takeover by expiry would need about 30 s, a release needs one retry.
    lease, renew, retry = 30.0, 20.0, 0.5
    a = await start_candidate("a", (lease, renew, retry))
    b = await start_candidate("b", (lease, renew, retry))
    leader, follower = await first_leader(a, b)
    await follower.said(f"leader {leader.identity}")
    before = await lease_spec(parent, namespace)

    leader.process.send_signal(signal.SIGTERM)
    await follower.said(f"leading {follower.identity}", within=lease / 2)

    assert await leader.process.wait() == 0
    assert leader.lines[-2:] == ["stopped", "resigned"]
    after = await lease_spec(parent, namespace)
    assert after["holderIdentity"] == follower.identity
    assert after["leaseTransitions"] == int(str(before["leaseTransitions"])) + 1
