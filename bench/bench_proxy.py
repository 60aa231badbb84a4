"""The socket proxy on real local clusters (a benchmark, not a test).

    python bench/bench_proxy.py [--requests 300] [--configmaps 2000]

Starts its own environment (``clusternet local up``, three children) and measures:

* latency of a small GET (``/api/v1/namespaces/default``) proxied through
  parent → aggregator → hub → tunnel → child, against the same GET straight to the child:
  p50/p99 and their ratio (sequential, kept-alive connections);
* throughput of a proxied large list (``--configmaps`` ConfigMaps of 1 KiB in one list);
* hub memory (RSS) with 1, 2 and 3 connected clusters: the hub is restarted with only the
  first N agents running, so the difference is what each connected cluster costs.

Everything shares two cores with three API servers, etcd and the agents, so the numbers
compare configurations rather than predict a deployment.
"""

from __future__ import annotations

import argparse
import asyncio
import ssl
import statistics
import tempfile
import time
import urllib.request
from functools import partial
from pathlib import Path

from clusternet.kube import AlreadyExists, ClusterConfig, Impersonation, KubeClient
from clusternet.local import components
from clusternet.local.environment import LocalEnvironment, Options
from clusternet.local.pki import PKI
from clusternet.local.testing import start_environment

SOCKETS = "/apis/proxies.clusternet.io/v1alpha1/sockets"


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def configs(env: LocalEnvironment, child: str) -> tuple[ClusterConfig, ClusterConfig]:
    """(direct to the child as its deployer, through the hub impersonating clusternet)."""
    state = env.load_state()
    assert state is not None
    pki = PKI(env.run_dir / "pki")
    token = components.child_deployer_token(env.client(child))
    child_id = components.cluster_ids(env.client("parent"))[child]
    direct = ClusterConfig(
        server=state.cluster(child).server, ca_data=pki.ca_cert.read_bytes(), token=token
    )
    proxied = ClusterConfig(
        server=f"{state.cluster('parent').server}{SOCKETS}/{child_id}/proxy/direct",
        ca_data=pki.ca_cert.read_bytes(),
        client_cert_data=pki.admin_cert.read_bytes(),
        client_key_data=pki.admin_key.read_bytes(),
        impersonate=Impersonation("clusternet", extra={"clusternet-token": (token,)}),
    )
    return direct, proxied


async def latencies(config: ClusterConfig, requests: int) -> list[float]:
    async with KubeClient(config) as client:
        await client.request("GET", "/api/v1/namespaces/default")  # connect, warm caches
        samples = []
        for _ in range(requests):
            started = time.perf_counter()
            await client.request("GET", "/api/v1/namespaces/default")
            samples.append(time.perf_counter() - started)
        return samples


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def large_list(
    direct: ClusterConfig, proxied: ClusterConfig, count: int
) -> dict[str, tuple[int, int, float]]:
    """Lists ``count`` ConfigMaps of 1 KiB directly and through the hub; per path
    (items, bytes, seconds).  The ConfigMaps are created first (once per child)."""
    namespace = "bench-large-list"
    results: dict[str, tuple[int, int, float]] = {}
    async with KubeClient(direct) as client:
        try:
            await client.create(
                {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}
            )
        except AlreadyExists:
            await client.delete_collection("v1", "ConfigMap", namespace=namespace)
        payload = "x" * 1024
        for start in range(0, count, 50):
            await asyncio.gather(
                *(
                    client.create(
                        {
                            "apiVersion": "v1",
                            "kind": "ConfigMap",
                            "metadata": {"name": f"cm-{i}"},
                            "data": {"payload": payload},
                        },
                        namespace=namespace,
                    )
                    for i in range(start, min(count, start + 50))
                )
            )
    for name, config in (("direct", direct), ("proxied", proxied)):
        async with KubeClient(config, timeout=120) as client:
            await client.request("GET", f"/api/v1/namespaces/{namespace}/configmaps?limit=1")
            started = time.perf_counter()
            body = await client.request("GET", f"/api/v1/namespaces/{namespace}/configmaps")
            elapsed = time.perf_counter() - started
        size = len(str(body).encode())
        results[name] = (len(body["items"]), size, elapsed)
        print(
            f"large list {name:8} {len(body['items'])} items, ~{size / 2**20:.1f} MiB: "
            f"{elapsed * 1000:.0f} ms ({size / 2**20 / elapsed:.1f} MiB/s)"
        )
    return results


def hub_memory(env: LocalEnvironment, children: list[str]) -> None:
    """Hub RSS with 1..N connected agents: stop all agents, restart the hub, add them back."""
    parent = env.client("parent")
    ids = components.cluster_ids(parent)
    for child in children:
        env.stop_process(f"{child}/clusternet-agent")
    env.restart_process("parent/clusternet-hub")
    hub = env._live_state_process("parent/clusternet-hub")
    port = next(a.split("=")[1] for a in hub.argv if a.startswith("--secure-port="))
    tls = ssl.create_default_context(cafile=PKI(env.run_dir / "pki").ca_cert)
    _wait(partial(_ready, f"https://localhost:{port}/readyz", tls), "the hub to be ready")
    hub_pid = hub.component_pid() or hub.pid
    print(f"hub RSS, 0 clusters connected: {rss_kib(hub_pid) / 1024:.1f} MiB")
    for count, child in enumerate(children, start=1):
        env.start_process(f"{child}/clusternet-agent")
        _wait(lambda c=child: components.tunnel_works(parent, ids[c]), f"{child}'s tunnel")
        # A few proxied requests so each tunnel has a pooled connection, as in real use.
        for _ in range(5):
            components.tunnel_works(parent, ids[child])
        print(f"hub RSS, {count} clusters connected: {rss_kib(hub_pid) / 1024:.1f} MiB")


def _ready(url: str, tls: ssl.SSLContext) -> bool:
    try:
        with urllib.request.urlopen(url, context=tls, timeout=2) as response:
            return bool(response.read() == b"ok")
    except OSError:
        return False


def _wait(condition: object, what: str, timeout: float = 120.0) -> None:
    assert callable(condition)
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--configmaps", type=int, default=2000)
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory(prefix="bench-proxy-") as folder,
        start_environment(Path(folder), Options(children=3)) as clusters,
    ):
        env = clusters.env
        direct, proxied = configs(env, "child1")
        direct_samples = asyncio.run(latencies(direct, args.requests))
        proxied_samples = asyncio.run(latencies(proxied, args.requests))
        for name, fraction in (("p50", 0.5), ("p99", 0.99)):
            d, p = percentile(direct_samples, fraction), percentile(proxied_samples, fraction)
            print(
                f"small GET {name}: direct {d * 1000:.2f} ms, proxied {p * 1000:.2f} ms "
                f"(x{p / d:.1f})"
            )
        print(
            f"small GET mean: direct {statistics.mean(direct_samples) * 1000:.2f} ms, "
            f"proxied {statistics.mean(proxied_samples) * 1000:.2f} ms"
        )
        asyncio.run(large_list(direct, proxied, args.configmaps))
        hub_memory(env, clusters.children)


if __name__ == "__main__":
    main()
