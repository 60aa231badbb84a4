"""Registration latency: agent start → ManagedCluster Ready.

    python bench/bench_registration.py [--runs 3] [--simulated 200]

1. Real agents: a parent and 3 children (kwok); the controller-manager is started first, then
   the three `clusternet-agent` processes at once; each latency runs from the agent's spawn to
   the moment the parent serves its ManagedCluster with Ready=True (seen through a watch).
2. Simulated agents: N lightweight tasks that speak the agent's API against one parent
   (create the ClusterRegistrationRequest with the bootstrap token, wait for approval, write a
   Ready status with the credentials they were given), all started at once; plus the CPU time
   and memory the parent's processes (kube-apiserver, etcd, controller-manager) spent on them.
Prints tables. Binaries must be built (`clusternet local build`).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from clusternet.apis import known
from clusternet.kube import ClusterConfig, KubeClient, NotFound, TooManyRequests, load_kubeconfig
from clusternet.local import components, processes
from clusternet.local.environment import LocalEnvironment, Options, State
from clusternet.local.pki import PKI

T = TypeVar("T")

CLUSTERS = f"{known.CLUSTERS_GROUP}/v1beta1"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def prepare(env: LocalEnvironment, state: State) -> tuple[str, processes.ProcessRecord]:
    """Install Clusternet, make a bootstrap token and start the controller-manager."""
    for cluster in state.clusters:
        components.install(Path(cluster.kubeconfig), child=cluster.role == "child")
    parent = state.cluster("parent")
    token = components.new_bootstrap_token()
    pki = PKI(Path(state.run_dir) / "pki")
    components.create_objects(
        env.client(parent),
        components.bootstrap_manifests(token, parent.server, pki.ca_cert.read_bytes()),
    )
    argv = components.controller_manager_argv(parent.kubeconfig, 0)
    log = Path(state.run_dir) / "logs" / "bench-controller-manager.log"
    return token, processes.start("bench/controller-manager", argv, log)


def is_ready(obj: dict[str, Any]) -> bool:
    conditions = obj.get("status", {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


async def patient(call: Callable[[], Awaitable[T]]) -> T:
    """``call()`` again while the API server sheds load (429, honouring Retry-After), as the
    agent's client and every client-go client do; at hundreds of registrations at once
    the priority-and-fairness limits of a 2-core parent answer 429."""
    delay = 0.2
    while True:
        try:
            return await call()
        except TooManyRequests as busy:
            await asyncio.sleep(busy.retry_after or delay)
            delay = min(delay * 2, 5.0)


async def watch_ready(kubeconfig: str, names: set[str], spawned: dict[str, float]) -> list[float]:
    """Seconds from each agent's spawn to its ManagedCluster served as Ready."""
    latencies: dict[str, float] = {}
    async with KubeClient.from_kubeconfig(kubeconfig) as client:
        # (a CRD just created answers 429 until its watch cache is ready)
        listed = await patient(lambda: client.list(CLUSTERS, "ManagedCluster"))
        version = listed["metadata"]["resourceVersion"]
        async with client.watch(CLUSTERS, "ManagedCluster", resource_version=version) as events:
            async for event in events:
                name = event.object.get("metadata", {}).get("name")
                if name in names and name not in latencies and is_ready(event.object):
                    latencies[name] = time.monotonic() - spawned[name]
                    if len(latencies) == len(names):
                        break
    return list(latencies.values())


async def start_agents(
    state: State, token: str, records: list[processes.ProcessRecord], logs: Path
) -> list[float]:
    parent = state.cluster("parent")
    names = {c.name for c in state.children}
    spawned: dict[str, float] = {}
    watcher = asyncio.create_task(watch_ready(parent.kubeconfig, names, spawned))
    await asyncio.sleep(1.0)  # the watch is open before the first agent starts
    for child in state.children:
        token_file = components.write_token_file(Path(child.kubeconfig).parent, token)
        argv = components.agent_argv(child.kubeconfig, child.name, parent.server, token_file, 0)
        spawned[child.name] = time.monotonic()
        log = logs / f"{child.name}-agent.log"
        records.append(processes.start(f"bench/{child.name}", argv, log))
    async with asyncio.timeout(120):
        return await watcher


def real_agents(runs: int) -> list[float]:
    samples: list[float] = []
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as tmp:
            env = LocalEnvironment(Path(tmp) / "run", Path(tmp) / "kubeconfig")
            state = env.up(Options(children=3, clusternet=False))
            records: list[processes.ProcessRecord] = []
            try:
                token, manager = prepare(env, state)
                records.append(manager)
                samples += asyncio.run(start_agents(state, token, records, Path(tmp)))
            finally:
                processes.stop(records)
                env.down()
    return samples


@dataclass
class SimulatedCluster:
    """A simulated agent's registration: its own credentials and ManagedCluster."""

    index: int
    config: ClusterConfig  # the parent, with the token the approval gave this cluster
    namespace: str
    name: str
    ready_after: float  # seconds from the request's creation to its Ready status written
    approved_after: float


def simulated_status(frequency: int = 180) -> dict[str, Any]:
    """The status a healthy agent reports (a Ready condition, healthz, heartbeat time)."""
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "k8sVersion": "v1.36.3",
        "platform": "linux/amd64",
        "healthz": True,
        "livez": True,
        "readyz": True,
        "heartbeatFrequencySeconds": frequency,
        "lastObservedTime": now,
        "conditions": [
            {
                "type": "Ready",
                "status": "True",
                "reason": "ManagedClusterReady",
                "message": "managed cluster is ready.",
                "lastTransitionTime": now,
            }
        ],
    }


async def register_simulated(
    index: int,
    bootstrap: KubeClient,
    config: ClusterConfig,
    prefix: str = "sim",
    heartbeat: int = 180,
) -> SimulatedCluster:
    """One registration the way the agent does it, named ``<prefix>-<index>``."""
    started = time.monotonic()
    cluster_id = str(uuid.uuid4())
    name = f"clusternet-{cluster_id}"
    cluster_name = f"{prefix}-{index}"
    request = {
        "apiVersion": CLUSTERS,
        "kind": "ClusterRegistrationRequest",
        "metadata": {
            "name": name,
            "labels": {
                known.CLUSTER_REGISTERED_BY_LABEL: known.CLUSTERNET_AGENT_NAME,
                known.CLUSTER_ID_LABEL: cluster_id,
                known.CLUSTER_NAME_LABEL: cluster_name,
            },
        },
        "spec": {"clusterId": cluster_id, "clusterName": cluster_name, "syncMode": "Pull"},
    }
    await patient(lambda: bootstrap.create(request))
    delay = 0.1
    while True:  # the bootstrap identity may only GET its own request, as a real agent
        got = await patient(lambda: bootstrap.get(CLUSTERS, "ClusterRegistrationRequest", name))
        status = got.get("status") or {}
        if status.get("result") == "Approved" and status.get("token"):
            break
        await asyncio.sleep(delay)
        delay = min(delay * 2, 1.0)  # as the agent does in its first 30 s
    approved = time.monotonic() - started
    own = replace(
        config,
        client_cert_data=None,
        client_key_data=None,
        token=base64.b64decode(status["token"]).decode(),
        ca_data=base64.b64decode(status["caCertificate"]),
    )
    namespace = status["dedicatedNamespace"]
    async with KubeClient(own, cluster=cluster_name) as parent:
        while True:
            try:
                cluster = await patient(
                    lambda: parent.get(
                        CLUSTERS,
                        "ManagedCluster",
                        status["managedClusterName"],
                        namespace=namespace,
                    )
                )
                break
            except NotFound:  # created just before the approval: visible a moment later
                await asyncio.sleep(0.05)
        cluster["status"] = simulated_status(heartbeat)
        await patient(lambda: parent.update_status(cluster))
    return SimulatedCluster(
        index,
        own,
        namespace,
        status["managedClusterName"],
        time.monotonic() - started,
        approved,
    )


async def heartbeat(cluster: SimulatedCluster, every: float, stop: asyncio.Event) -> int:
    """Report the simulated cluster's status every ``every`` seconds (as the agent's status
    reporter does) until ``stop``; returns the number of reports."""
    reports = 0
    async with KubeClient(cluster.config, cluster=f"sim-{cluster.index}") as parent:
        # Spread the fleet's reports over the period, as agents started at different times.
        delay = every * ((cluster.index * 0.618) % 1.0)
        while True:
            try:
                async with asyncio.timeout(delay):
                    await stop.wait()
                return reports
            except TimeoutError:
                pass
            await patient(
                lambda: parent.patch(
                    CLUSTERS,
                    "ManagedCluster",
                    cluster.name,
                    {"status": simulated_status(int(every))},
                    namespace=cluster.namespace,
                    subresource="status",
                )
            )
            reports += 1
            delay = every


async def simulated_agent(
    index: int, bootstrap: KubeClient, config: ClusterConfig
) -> tuple[float, float]:
    """One registration the way the agent does it; (seconds to Ready, seconds to approval)."""
    cluster = await register_simulated(index, bootstrap, config)
    return cluster.ready_after, cluster.approved_after


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100.0  # utime + stime, in clock ticks


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def simulated_agents(count: int) -> tuple[list[float], list[float], dict[str, tuple[float, float]]]:
    with tempfile.TemporaryDirectory() as tmp:
        env = LocalEnvironment(Path(tmp) / "run", Path(tmp) / "kubeconfig")
        state = env.up(Options(children=1, clusternet=False))
        manager = None
        try:
            token, manager = prepare(env, state)
            parent = state.cluster("parent")
            watched = {
                "kube-apiserver": next(
                    p for p in state.processes if p.name == "parent/kube-apiserver"
                ).pid,
                "etcd": next(p for p in state.processes if p.name == "etcd").pid,
                "controller-manager": manager.pid,
            }
            time.sleep(2)  # let the controller-manager start and sync before measuring
            before = {k: cpu_seconds(pid) for k, pid in watched.items()}
            config = load_kubeconfig(parent.kubeconfig)
            bootstrap_config = replace(
                config, client_cert_data=None, client_key_data=None, token=token
            )

            async def run() -> list[tuple[float, float]]:
                async with KubeClient(bootstrap_config, cluster="bootstrap") as bootstrap:
                    return await asyncio.gather(
                        *(simulated_agent(i, bootstrap, config) for i in range(count))
                    )

            started = time.monotonic()
            results = asyncio.run(run())
            wall = time.monotonic() - started
            usage = {
                k: ((cpu_seconds(pid) - before[k]) / wall, rss_mib(pid))
                for k, pid in watched.items()
            }
        finally:
            if manager is not None:
                processes.stop([manager])
            env.down()
    return [r[0] for r in results], [r[1] for r in results], usage


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3, help="runs of 3 real agents")
    parser.add_argument("--simulated", type=int, default=200)
    args = parser.parse_args()

    real = real_agents(args.runs)
    ready, approved, usage = simulated_agents(args.simulated)
    print(f"{'agents':<24} {'n':>4} {'p50 s':>7} {'p99 s':>7} {'max s':>7}")
    for label, values in (
        ("real: start → Ready", real),
        (f"simulated ({args.simulated} at once): → Ready", ready),
        ("simulated: → Approved", approved),
    ):
        print(
            f"{label:<24} {len(values):>4} {statistics.median(values):7.2f} "
            f"{percentile(values, 0.99):7.2f} {max(values):7.2f}"
        )
    print(f"\nparent-side cost during the {args.simulated} simulated registrations:")
    print(f"{'process':<20} {'CPU (cores)':>12} {'RSS MiB':>8}")
    for name, (cores, rss) in usage.items():
        print(f"{name:<20} {cores:12.2f} {rss:8.0f}")


if __name__ == "__main__":
    main()
