"""The scenarios of ``python -m bench``; each one adds a section to the report.

They reuse the standalone scripts of this folder (``bench_registration``, ``bench_propagation``,
``bench_scheduler``, ``bench_proxy``) for the measuring itself, and drive the system only
through the Kubernetes API (plus stopping and starting an agent process for failover).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from bench import bench_propagation as propagation
from bench import bench_proxy as proxy
from bench import bench_registration as registration
from bench import bench_scheduler as scheduler
from bench import plots, profile
from bench import requests as api_requests
from bench.report import (
    LATENCY_HEADERS,
    Report,
    Section,
    Table,
    fmt_number,
    fmt_seconds,
    latency_row,
    linear_fit,
    percentile,
    throughput,
)
from bench.usage import Meter, Usage
from clusternet.apis import known
from clusternet.kube import AlreadyExists, KubeClient, PatchType, load_kubeconfig
from clusternet.local.environment import LocalEnvironment

CLUSTERS = f"{known.CLUSTERS_GROUP}/v1beta1"
APPS = "apps.clusternet.io/v1alpha1"
SIMULATED = "**(simulated clusters)**"


@dataclass
class Context:
    """What every scenario gets: the sizes, the report, and the environment under test."""

    args: Any  # the parsed command line
    report: Report
    images: Path  # folder of this report's PNGs
    image_prefix: str  # their path relative to the report
    kubeconfig: Path | None = None  # contexts parent, child1..N
    env: LocalEnvironment | None = None  # None: a kubeconfig without the environment's state
    children: list[str] = field(default_factory=list)
    modes: dict[str, str] = field(default_factory=dict)  # child -> sync mode of its agent
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:5])  # unique object names

    def processes(self) -> dict[str, int]:
        """Process name -> pid of the running environment (re-read: restarts are followed)."""
        if self.env is None:
            return {}
        state = self.env.load_state()
        if state is None:
            return {}
        found: dict[str, int] = {}
        for record in state.processes:
            if record.alive() and (pid := record.component_pid()) is not None:
                found[record.name] = pid  # the component, not its supervisor
        return found

    def meter(self) -> Meter:
        return Meter(self.processes)

    def client(self, context: str) -> KubeClient:
        assert self.kubeconfig is not None
        return KubeClient(load_kubeconfig(self.kubeconfig, context=context), cluster=context)

    def plot(self, section: Section, name: str, made: Path | None, alt: str) -> None:
        if made is not None:
            section.images.append((alt, f"{self.image_prefix}/{name}"))


def harness_children() -> dict[str, int]:
    """Processes this harness started itself (a private environment, its own scheduler or
    agents), named by program: ``python -m clusternet.agent`` → ``clusternet.agent``."""
    me = os.getpid()
    found: dict[str, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
            if ppid != me:
                continue
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError):
            continue
        words = [a.decode(errors="replace") for a in argv if a]
        program = Path(words[0]).name if words else "?"
        if "-m" in words[:-1]:
            program = words[words.index("-m") + 1]
        name = f"harness:{program}"
        index = 1
        while name in found:
            index += 1
            name = f"harness:{program} #{index}"
        found[name] = int(entry.name)
    return found


def usage_table(section: Section, caption: str, usage: dict[str, Usage], wall: float) -> None:
    table = section.table(
        caption, Table(["process", "CPU seconds", "CPU cores (mean)", "peak RSS MiB"])
    )
    for name, used in usage.items():
        table.add(
            name.removeprefix("harness:"),
            fmt_number(used.cpu_seconds, 2),
            fmt_number(used.cpu_seconds / wall if wall > 0 else None, 2),
            fmt_number(used.peak_rss_mib, 0),
        )


# --- 1. registration (real agents) ----------------------------------------------------------


def registration_real(ctx: Context) -> None:
    section = ctx.report.section("1. Registration: agent start → ManagedCluster Ready")
    section.note(
        f"Real agents: {ctx.args.registration_runs} run(s) of a fresh parent and 3 children "
        "(`clusternet local up` code without Clusternet); the controller-manager starts first, "
        "then the three `clusternet-agent` processes at once. Latency runs from each agent's "
        "spawn (Python start-up included) to its ManagedCluster served Ready=True (a watch). "
        "Simulated registrations are in section 1b (they share the scale run of section 7)."
    )
    with Meter(harness_children) as meter:
        samples = registration.real_agents(ctx.args.registration_runs)
    table = section.table("", Table(LATENCY_HEADERS))
    table.add(*latency_row("real agent: start → Ready", samples))
    usage_table(
        section,
        "processes of the private environments, whole scenario (all clusters' API servers summed)",
        meter.stop(),
        meter.wall,
    )
    made = plots.latency_cdf(
        ctx.images / "registration-real.png", "real agents: start → Ready", {"real": samples}
    )
    ctx.plot(section, "registration-real.png", made, "registration latency, real agents")


# --- 2 + 3. propagation and template update ---------------------------------------------------


def distribution(ctx: Context, *, push_pull: bool, template: bool) -> None:
    asyncio.run(_distribution(ctx, push_pull=push_pull, template=template))


async def _distribution(ctx: Context, *, push_pull: bool, template: bool) -> None:
    args = ctx.args
    children = ctx.children
    parent = ctx.client("parent")
    clients = {c: ctx.client(c) for c in children}
    seen = propagation.Seen(children)
    watchers = propagation.watch_children(clients, seen)
    by_mode: dict[str, list[str]] = {}
    for child in children:
        by_mode.setdefault(ctx.modes.get(child, "Dual"), []).append(child)
    modes = ", ".join(f"{c}: {ctx.modes.get(c, 'Dual')}" for c in children)
    try:
        await propagation.create_namespace(parent)
        runs = max(args.runs, args.template_runs if template else 0)
        meter = ctx.meter()
        meter.start()
        results = await propagation.sequential(parent, seen, runs, children, tag=ctx.tag)
        seq_usage, seq_wall = meter.stop(), meter.wall
        if push_pull:
            section = ctx.report.section("2. Propagation: Subscription → objects in children")
            section.note(
                f"{len(children)} real children ({modes}). Sequential: {runs} runs; each writes "
                "a Deployment template (1 replica) to the shadow API, then the clock starts and "
                "a Replication Subscription selecting the children is created. Watches opened "
                "on every child beforehand record when the Deployment appears (present) and "
                "when readyReplicas = replicas (ready; pods run by kwok). A row's latency is "
                "the slowest child of its group."
            )
            table = section.table("sequential", Table(LATENCY_HEADERS))
            series: dict[str, list[float]] = {}
            groups = [("all children", children)] + [
                (f"{mode} children", names) for mode, names in sorted(by_mode.items())
            ]
            for label, names in groups:
                present = [max(run[c][0] for c in names) for run in results]
                ready = [max(run[c][1] for c in names) for run in results]
                table.add(*latency_row(f"present, {label}", present))
                table.add(*latency_row(f"ready, {label}", ready))
                if label != "all children" or len(by_mode) == 1:
                    series[f"present, {label}"] = present
            usage_table(section, "processes during the sequential runs", seq_usage, seq_wall)

            requests_before = await api_requests.read(parent)
            with ctx.meter() as meter:
                created, total = await propagation.burst(
                    parent, seen, args.burst, children, tag=ctx.tag
                )
            # Writes still under way (late status reports) are counted as well.
            mix = api_requests.difference(requests_before, await api_requests.read(parent))
            burst = section.table(
                f"burst: {args.burst} ConfigMap Subscriptions created at once (50 in flight)",
                Table(["measure", "value"]),
            )
            burst.add("all Subscriptions created", fmt_seconds(created))
            burst.add("every ConfigMap present in every child", fmt_seconds(total))
            burst.add("throughput", fmt_number(throughput(args.burst, total), 1, "Subscriptions/s"))
            burst.add(
                "objects delivered",
                fmt_number(throughput(args.burst * len(children), total), 1, "objects/s"),
            )
            usage_table(section, "processes during the burst", meter.stop(), meter.wall)
            # The next scenarios (failover above all: a lost cluster's every Subscription is
            # rescheduled) must not carry the burst along.
            removed = await propagation.remove_burst(parent, args.burst, tag=ctx.tag)
            burst.add(
                "all Subscriptions deleted → their Descriptions gone (objects removed)",
                fmt_seconds(removed),
            )
            requests_table = section.table(
                "parent API server requests during the burst (`apiserver_request_total`, "
                "the shadow API and proxies included)",
                Table(["request (verb, resource, code)", "count", "per Subscription"]),
            )
            for row in api_requests.rows(mix, args.burst):
                requests_table.add(*row)
            made = plots.latency_cdf(
                ctx.images / "propagation.png", "Subscription → Deployment present", series
            )
            ctx.plot(section, "propagation.png", made, "propagation latency")
            if args.profile:
                await profile_burst(ctx, section, parent, seen)

        if template:
            section = ctx.report.section("3. Template update → change visible in all children")
            section.note(
                f"For {args.template_runs} of the propagated Deployments, one at a time: a "
                f"merge patch of the template in the shadow API sets the label "
                f"`{propagation.REVISION_LABEL}`; latency runs from the patch call to the "
                "label seen in every child's watch (slowest child)."
            )
            latencies: dict[str, list[float]] = {"all children": []}
            for mode in by_mode:
                latencies[f"{mode} children"] = []
            with ctx.meter() as meter:
                for i in range(args.template_runs):
                    name = f"web{ctx.tag}-{i}"
                    start = time.monotonic()
                    await parent.request(
                        "PATCH",
                        f"{propagation.SHADOW}/namespaces/{propagation.NAMESPACE}"
                        f"/deployments/{name}",
                        body={"metadata": {"labels": {propagation.REVISION_LABEL: "1"}}},
                        content_type=PatchType.MERGE,
                    )
                    key = (name, "1")
                    await seen.until(lambda k=key: len(seen.revisions.get(k, {})) == len(children))  # type: ignore[misc]
                    times = seen.revisions[key]
                    latencies["all children"].append(max(times.values()) - start)
                    for mode, names in by_mode.items():
                        latencies[f"{mode} children"].append(max(times[c] for c in names) - start)
            table = section.table("", Table(LATENCY_HEADERS))
            for label, values in latencies.items():
                table.add(*latency_row(f"update visible, {label}", values))
            usage_table(section, "processes during the updates", meter.stop(), meter.wall)
            made = plots.latency_cdf(
                ctx.images / "template-update.png", "template update → visible", latencies
            )
            ctx.plot(section, "template-update.png", made, "template update latency")
    finally:
        for task in watchers:
            task.cancel()
        await asyncio.gather(*watchers, return_exceptions=True)
        await parent.aclose()
        for client in clients.values():
            await client.aclose()


async def profile_burst(
    ctx: Context, section: Section, parent: KubeClient, seen: propagation.Seen
) -> None:
    """The burst once more, with py-spy on every Clusternet process (``--profile``)."""
    if not profile.available() or ctx.env is None:
        section.note(
            "**Profile** skipped: it needs py-spy (`pip install py-spy`) and the environment's "
            "pids (`--run-dir`)."
        )
        return
    folder = ctx.images / "profile"
    with profile.Profiler(ctx.processes, folder) as profiler:
        await propagation.burst(parent, seen, ctx.args.burst, ctx.children, tag=f"{ctx.tag}p")
    await propagation.remove_burst(parent, ctx.args.burst, tag=f"{ctx.tag}p")
    section.note(
        f"**Profile of the burst.** The burst once more ({ctx.args.burst} Subscriptions, not "
        f"measured above), with py-spy sampling each Clusternet process {profile.RATE} times a "
        "second while it is runnable (on a core, or waiting for one: on a busy machine the "
        "second counts too, so samples are not CPU seconds). *Layer* is where a sample's top "
        "frame is; *inclusive* counts a function wherever it is on the stack. The collapsed "
        f"stacks (for flame-graph tools) are written to `{ctx.image_prefix}/profile/` as "
        "gzip files and not committed."
    )
    ordered = sorted(profiler.profiles.items(), key=lambda item: -item[1].samples)
    for name, found in ordered:
        if not found.samples:
            continue
        caption = f"profile: {name} ({found.samples:,} samples)"
        table = section.table(caption, Table(["layer / function", "share of samples"]))
        for layer, count in found.layers.most_common(6):
            table.add(f"layer: {layer}", f"{found.share(count):.0%}")
        for function, count in found.inclusive.most_common(8):
            table.add(f"inclusive: `{function}`", f"{found.share(count):.0%}")


# --- 4. scheduling ---------------------------------------------------------------------------


def scheduling(ctx: Context) -> None:
    args = ctx.args
    section = ctx.report.section(f"4. Scheduling {SIMULATED}")
    section.note(
        f"{args.subscriptions} Subscriptions over {', '.join(map(str, args.clusters))} "
        "simulated ManagedClusters (objects with a Ready status, no agent): 60% Replication "
        "by region label, 20% Replication over two regions tolerating a taint, 20% static "
        "Dividing 1:2 with a FeedInventory; one cluster in 7 tainted NoSchedule, another "
        "PreferNoSchedule (`bench/bench_scheduler.py`). *In-process*: the scheduler's "
        "algorithm over informer-fed stores, API writes replaced by no-ops (not through the "
        "API: the scheduler's own cost). *End to end*: a private parent with Clusternet's "
        "CRDs and `clusternet-scheduler` as a process, all Subscriptions created at once; "
        "latency from each create call to a watch seeing it bound (mostly the wait behind "
        "the burst: throughput is the figure to read). Dynamic dividing needs agents' "
        "predictors and is not part of this scenario."
    )
    table = section.table(
        "",
        Table(["mode", "clusters", "n", "p50", "p90", "p99", "Subscriptions/s"]),
    )
    samples: dict[str, list[float]] = {}
    curves: dict[str, list[float]] = {}
    for n in args.clusters:
        values: list[float] = []
        result = asyncio.run(scheduler.in_process(n, args.subscriptions, values))
        samples[f"in-process, {n} clusters"] = values
        curves.setdefault("in-process p99 (ms)", []).append(result["p99_ms"])
        _scheduling_row(table, "in-process", n, values, result)
    if not args.no_scheduler_e2e:
        with (
            tempfile.TemporaryDirectory(prefix="bench-scheduler-") as tmp,
            scheduler.scheduler_parent(Path(tmp)) as parent,
            Meter(harness_children) as meter,
        ):
            for n in args.clusters:
                values = []
                result = asyncio.run(
                    scheduler.end_to_end(
                        parent, n, args.subscriptions, Path(tmp) / f"scheduler-{n}.log", values
                    )
                )
                samples[f"end to end, {n} clusters"] = values
                curves.setdefault("end-to-end Subscriptions/s", []).append(result["per_s"])
                _scheduling_row(table, "end to end", n, values, result)
        usage_table(
            section,
            "processes of the private parent, end-to-end part (all sizes)",
            meter.stop(),
            meter.wall,
        )
    made = plots.latency_cdf(
        ctx.images / "scheduling.png", "scheduling latency", samples, unit="ms"
    )
    ctx.plot(section, "scheduling.png", made, "scheduling latency")
    if len(args.clusters) > 1:
        made = plots.scaling(
            ctx.images / "scheduling-scaling.png",
            "scheduling vs number of clusters",
            "simulated clusters",
            "value",
            args.clusters,
            curves,
        )
        ctx.plot(section, "scheduling-scaling.png", made, "scheduling scaling")


def _scheduling_row(
    table: Table, mode: str, clusters: int, values: list[float], result: dict[str, float]
) -> None:
    row = latency_row(mode, values)
    table.add(mode, clusters, row[1], row[2], row[3], row[4], fmt_number(result["per_s"], 0))


# --- 5. proxy --------------------------------------------------------------------------------


def proxy_scenario(ctx: Context) -> None:
    assert ctx.env is not None
    args = ctx.args
    child = ctx.children[0]
    section = ctx.report.section("5. Proxy: child API through the hub")
    section.note(
        f"Against {child}: the same requests straight to its API server (its deployer's token) "
        "and through parent → aggregator → clusternet-hub → tunnel → child "
        "(`/apis/proxies.clusternet.io/v1alpha1/sockets/<id>/proxy/direct`, impersonating "
        "`clusternet`). Small GET: `/api/v1/namespaces/default`, sequential, kept-alive. "
        "Watch: a ConfigMap created directly, latency until the ADDED event arrives on a watch "
        "opened directly / through the hub. Large list: ConfigMaps of 1 KiB in one response."
    )
    direct, proxied = proxy.configs(ctx.env, child)
    with ctx.meter() as meter:
        direct_gets = asyncio.run(proxy.latencies(direct, args.requests))
        proxied_gets = asyncio.run(proxy.latencies(proxied, args.requests))
        direct_watch = asyncio.run(watch_latency(direct, direct, args.watch_events))
        proxied_watch = asyncio.run(watch_latency(direct, proxied, args.watch_events))
        lists = asyncio.run(proxy.large_list(direct, proxied, args.configmaps))
    table = section.table("", Table(LATENCY_HEADERS))
    table.add(*latency_row("small GET, direct", direct_gets))
    table.add(*latency_row("small GET, through the hub", proxied_gets))
    table.add(*latency_row("watch event, direct", direct_watch))
    table.add(*latency_row("watch event, through the hub", proxied_watch))
    ratios = section.table("", Table(["measure", "direct", "through the hub", "ratio"]))
    for q, label in ((0.5, "small GET p50"), (0.99, "small GET p99")):
        d, p = percentile(direct_gets, q), percentile(proxied_gets, q)
        ratios.add(label, fmt_seconds(d), fmt_seconds(p), f"x{p / d:.2f}")
    (items, size, d_time), (_, _, p_time) = lists["direct"], lists["proxied"]
    ratios.add(
        f"list of {items} ConfigMaps ({size / 2**20:.1f} MiB)",
        f"{fmt_seconds(d_time)} ({size / 2**20 / d_time:.0f} MiB/s)",
        f"{fmt_seconds(p_time)} ({size / 2**20 / p_time:.0f} MiB/s)",
        f"x{p_time / d_time:.2f}",
    )
    usage_table(section, "processes during the scenario", meter.stop(), meter.wall)
    made = plots.latency_cdf(
        ctx.images / "proxy.png",
        "direct vs through the hub",
        {
            "GET direct": direct_gets,
            "GET via hub": proxied_gets,
            "watch direct": direct_watch,
            "watch via hub": proxied_watch,
        },
        unit="ms",
    )
    ctx.plot(section, "proxy.png", made, "proxy latency")


async def watch_latency(writer_config: Any, watch_config: Any, events: int) -> list[float]:
    """Seconds from a ConfigMap's create call to its ADDED event on a watch opened with
    ``watch_config`` (directly, or through the hub)."""
    namespace = "bench-watch"
    async with KubeClient(writer_config) as writer, KubeClient(watch_config) as watcher:
        with contextlib.suppress(AlreadyExists):
            await writer.create(
                {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}
            )
        listed = await watcher.list("v1", "ConfigMap", namespace=namespace)
        version = listed["metadata"]["resourceVersion"]
        sent: dict[str, float] = {}
        received: dict[str, float] = {}
        arrived = asyncio.Event()

        async def consume() -> None:
            async with watcher.watch(
                "v1", "ConfigMap", namespace=namespace, resource_version=version
            ) as stream:
                async for event in stream:
                    name = event.object.get("metadata", {}).get("name")
                    if event.type == "ADDED" and name in sent:
                        received.setdefault(name, time.perf_counter())
                        arrived.set()

        task = asyncio.create_task(consume())
        try:
            tag = uuid.uuid4().hex[:6]
            for i in range(events):
                name = f"w-{tag}-{i}"
                sent[name] = time.perf_counter()
                await writer.create(
                    {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}},
                    namespace=namespace,
                )
                async with asyncio.timeout(30):
                    while name not in received:
                        arrived.clear()
                        await arrived.wait()
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        return [received[n] - sent[n] for n in sent]


# --- 6. failover -----------------------------------------------------------------------------


class Latest:
    """The latest version of one object in each of several clusters, from watches."""

    def __init__(self) -> None:
        self.objects: dict[str, dict[str, Any]] = {}
        self.changed = asyncio.Event()

    def set(self, where: str, obj: dict[str, Any] | None) -> None:
        if obj is None:
            self.objects.pop(where, None)
        else:
            self.objects[where] = obj
        self.changed.set()

    async def until(self, check: Callable[[], bool], limit: float) -> float:
        """Waits for ``check`` to hold; returns time.monotonic() when it did."""
        async with asyncio.timeout(limit):
            while not check():
                self.changed.clear()
                await self.changed.wait()
        return time.monotonic()


async def follow(
    client: KubeClient,
    where: str,
    latest: Latest,
    api_version: str,
    kind: str,
    namespace: str,
    name: str,
) -> None:
    """Keeps ``latest[where]`` equal to the object (list, then watch from its version)."""
    selector = f"metadata.name={name}"
    while True:
        try:
            listed = await client.list(
                api_version, kind, namespace=namespace, field_selector=selector
            )
            items = listed.get("items") or []
            latest.set(where, items[0] if items else None)
            async with client.watch(
                api_version,
                kind,
                namespace=namespace,
                field_selector=selector,
                resource_version=listed["metadata"]["resourceVersion"],
            ) as events:
                async for event in events:
                    if event.type != "BOOKMARK":
                        latest.set(where, None if event.type == "DELETED" else event.object)
        except asyncio.CancelledError:
            raise
        except Exception:  # a child API server unreachable for a moment: list again
            await asyncio.sleep(0.5)


def failover(ctx: Context) -> None:
    asyncio.run(_failover(ctx))


async def _failover(ctx: Context) -> None:
    assert ctx.env is not None
    args = ctx.args
    children = ctx.children
    victim = args.failover_child or children[0]
    healthy = [c for c in children if c != victim]
    replicas = 2 * len(children)
    name = f"failover{ctx.tag}"
    feed_key = f"apps/v1/Deployment/{propagation.NAMESPACE}/{name}"
    section = ctx.report.section("6. Failover: an agent stops → replicas move")
    section.note(
        f"A Deployment of {replicas} replicas divided statically (weight 1 each) over the "
        f"{len(children)} real children ({replicas // len(children)} each). Then "
        f"`{victim}/clusternet-agent` is stopped (`LocalEnvironment.stop_process`) and its "
        "ManagedCluster's status is patched to claim a 1 s heartbeat, so that the lifecycle "
        "controller declares it lost after 3 s instead of the default 9 min (3 missed "
        "reports of 180 s; add that grace period to read a real deployment's figure). "
        "Times run from the agent's stop. *Rescheduled*: the Subscription's status divides "
        "the replicas over the healthy children only; *recovered*: every healthy child's "
        "Deployment has its new replicas ready. Then the agent is started again: *rejoined* "
        "(Ready again) and *rebalanced* (the original division ready again). A rebalance "
        "within 30 s of the failover's reschedule waits for the rest of those 30 s: the "
        "scheduler rate-limits cluster-caused reschedules per Subscription (anti-flapping, "
        "`min_reschedule_interval`)."
    )
    parent = ctx.client("parent")
    clients = {c: ctx.client(c) for c in children}
    latest = Latest()
    tasks: list[asyncio.Task[None]] = []
    try:
        await propagation.create_namespace(parent)
        deployment = propagation.deployment(name)
        deployment["spec"]["replicas"] = replicas
        await parent.request(
            "POST",
            f"{propagation.SHADOW}/namespaces/{propagation.NAMESPACE}/deployments",
            body=deployment,
        )
        feed = {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "namespace": propagation.NAMESPACE,
            "name": name,
        }
        sub = propagation.subscription(name, [feed], children)
        sub["spec"]["schedulingStrategy"] = "Dividing"
        sub["spec"]["dividingScheduling"] = {"type": "Static"}
        sub["spec"]["subscribers"][0]["weight"] = 1
        for child, client in clients.items():
            tasks.append(
                asyncio.create_task(
                    follow(
                        client, child, latest, "apps/v1", "Deployment", propagation.NAMESPACE, name
                    )
                )
            )
        tasks.append(
            asyncio.create_task(
                follow(parent, "subscription", latest, APPS, "Subscription", "default", name)
            )
        )
        clusters = (await parent.list(CLUSTERS, "ManagedCluster"))["items"]
        keys = {
            (c["metadata"].get("labels") or {}).get(known.CLUSTER_NAME_LABEL): (
                f"{c['metadata']['namespace']}/{c['metadata']['name']}"
            )
            for c in clusters
        }
        victim_namespace, victim_name = keys[victim].split("/")
        tasks.append(
            asyncio.create_task(
                follow(
                    parent, "victim", latest, CLUSTERS, "ManagedCluster", victim_namespace,
                    victim_name,
                )
            )
        )  # fmt: skip

        def ready_as(division: dict[str, int], skip: str | None = None) -> Callable[[], bool]:
            """Each child runs its share, ready (``skip``: a lost child, whose leftovers
            cannot be removed while it is unreachable and do not matter)."""

            def check() -> bool:
                for child in children:
                    if child == skip:
                        continue
                    want = division.get(child, 0)
                    obj = latest.objects.get(child)
                    if want == 0:
                        if obj is not None and (obj.get("spec") or {}).get("replicas", 0) > 0:
                            return False
                        continue
                    if obj is None or obj["spec"].get("replicas") != want:
                        return False
                    if (obj.get("status") or {}).get("readyReplicas", 0) != want:
                        return False
                return True

            return check

        def divided_over(names: list[str]) -> Callable[[], bool]:
            wanted = {keys[c] for c in names}

            def check() -> bool:
                status = (latest.objects.get("subscription") or {}).get("status") or {}
                bound = status.get("bindingClusters") or []
                counts = (status.get("replicas") or {}).get(feed_key) or []
                placed = {b for b, n in zip(bound, counts, strict=False) if n}
                return placed == wanted

            return check

        def victim_ready(expected: str) -> Callable[[], bool]:
            def check() -> bool:
                obj = latest.objects.get("victim") or {}
                conditions = (obj.get("status") or {}).get("conditions") or []
                return any(
                    c.get("type") == "Ready" and c.get("status") == expected for c in conditions
                )

            return check

        even = dict.fromkeys(children, replicas // len(children))
        moved = {c: replicas // len(healthy) for c in healthy}
        moved[healthy[0]] += replicas - sum(moved.values())
        start = time.monotonic()
        await parent.create(sub)
        placed = await latest.until(ready_as(even), args.timeout) - start

        meter = ctx.meter()
        meter.start()
        start = time.monotonic()
        await asyncio.to_thread(ctx.env.stop_process, f"{victim}/clusternet-agent")
        stopped = time.monotonic() - start
        await parent.patch(
            CLUSTERS,
            "ManagedCluster",
            victim_name,
            {"status": {"heartbeatFrequencySeconds": 1}},
            namespace=victim_namespace,
            subresource="status",
        )
        lost = await latest.until(victim_ready("Unknown"), args.timeout) - start
        rescheduled = await latest.until(divided_over(healthy), args.timeout) - start
        recovered = await latest.until(ready_as(moved, skip=victim), args.timeout) - start

        start = time.monotonic()
        await asyncio.to_thread(ctx.env.start_process, f"{victim}/clusternet-agent")
        rejoined = await latest.until(victim_ready("True"), args.timeout) - start
        divided_again = await latest.until(divided_over(children), args.timeout) - start
        rebalanced = await latest.until(ready_as(even), args.timeout) - start
        usage = meter.stop()

        table = section.table("", Table(["step", "seconds"]))
        table.add("initial placement: Subscription created → all replicas ready", f"{placed:.2f}")
        for label, value in (
            ("agent process stopped", stopped),
            ("cluster lost (Ready Unknown, 3 s grace)", lost),
            ("rescheduled to healthy children", rescheduled),
            ("recovered: replicas ready on healthy children", recovered),
            ("agent started again → Ready", rejoined),
            ("agent started again → rescheduled over all children", divided_again),
            ("rebalanced: original division ready again", rebalanced),
        ):
            table.add(label, f"{value:.2f}")
        usage_table(section, "processes from the stop to the rebalance", usage, meter.wall)
        await parent.delete(APPS, "Subscription", name, namespace="default")
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await parent.aclose()
        for client in clients.values():
            await client.aclose()


# --- 7. scale (and simulated registration) ---------------------------------------------------


COMPONENTS = (
    "clusternet-hub",
    "clusternet-controller-manager",
    "clusternet-scheduler",
    "parent kube-apiserver",
    "etcd",
)


def scale(ctx: Context) -> None:
    asyncio.run(_scale(ctx))


async def _scale(ctx: Context) -> None:
    assert ctx.env is not None
    assert ctx.kubeconfig is not None
    args = ctx.args
    state = ctx.env.load_state()
    assert state is not None
    assert state.bootstrap_token is not None
    steps = sorted({s for s in args.scale_steps if s > 0})
    registration_section = ctx.report.section(f"1b. Registration of simulated agents {SIMULATED}")
    registration_section.note(
        "Simulated agents (`bench/bench_registration.py`): tasks of the harness that speak "
        "the agent's API to the parent (ClusterRegistrationRequest with the bootstrap token, "
        "wait for approval with the agent's back-off, write a Ready status with the "
        "credentials they were given), each batch started at the same instant, into the "
        f"running environment (3 real children already registered). Batches: {steps}."
    )
    section = ctx.report.section(f"7. Scale: cost per managed cluster {SIMULATED}")
    section.note(
        f"After each batch of simulated registrations every simulated cluster heartbeats "
        f"(a status patch) every {args.heartbeat:.0f} s (a real agent's default is 180 s); "
        f"after {args.scale_settle:.0f} s to settle, the parent's processes are measured "
        f"for {args.scale_window:.0f} s: mean CPU cores and RSS at the end of the window. "
        "Simulated clusters open no tunnel and receive no workloads, so the hub's figure "
        "is its cost for a registered but idle cluster; per-cluster cost is the slope of a "
        "least-squares line over the steps (the 3 real children are present at every step); "
        "a slope near zero or negative means no cost measurable above the noise."
    )
    parent_config = load_kubeconfig(ctx.kubeconfig, context="parent")
    bootstrap_config = replace(
        parent_config, client_cert_data=None, client_key_data=None, token=state.bootstrap_token
    )
    registered: list[registration.SimulatedCluster] = []
    stop = asyncio.Event()
    beats: list[asyncio.Task[int]] = []
    points: list[tuple[int, dict[str, Usage], float]] = []
    reg_table = registration_section.table("", Table([*LATENCY_HEADERS, "registrations/s"]))
    all_ready: dict[str, list[float]] = {}
    try:
        await asyncio.sleep(args.scale_settle)  # the scenario before has quieted down
        points.append((0, *await _window(ctx, args.scale_window)))
        async with KubeClient(bootstrap_config, cluster="bootstrap") as bootstrap:
            for step in steps:
                batch = range(len(registered), step)
                with ctx.meter() as meter:
                    started = time.monotonic()
                    new = await asyncio.gather(
                        *(
                            registration.register_simulated(
                                i, bootstrap, parent_config, f"sim{ctx.tag}", int(args.heartbeat)
                            )
                            for i in batch
                        )
                    )
                    wall = time.monotonic() - started
                usage = meter.stop()
                ready = [c.ready_after for c in new]
                approved = [c.approved_after for c in new]
                label = f"{len(batch)} at once ({len(registered)} → {step})"
                all_ready[label] = ready
                reg_table.add(
                    *latency_row(f"→ Ready, {label}", ready),
                    fmt_number(throughput(len(batch), wall), 1),
                )
                reg_table.add(*latency_row(f"→ Approved, {label}", approved), "")
                usage_table(
                    registration_section,
                    f"processes while {label} registered",
                    usage,
                    meter.wall,
                )
                registered += new
                beats += [
                    asyncio.create_task(registration.heartbeat(c, args.heartbeat, stop))
                    for c in new
                ]
                await asyncio.sleep(args.scale_settle)  # the fleet's first reports land
                points.append((step, *await _window(ctx, args.scale_window)))
    finally:
        stop.set()
        reports = await asyncio.gather(*beats, return_exceptions=True)
    made = plots.latency_cdf(
        ctx.images / "registration-simulated.png", "simulated agents → Ready", all_ready
    )
    ctx.plot(registration_section, "registration-simulated.png", made, "simulated registration")

    table = section.table(
        "RSS MiB at the end of each window / mean CPU cores over it",
        Table(["simulated clusters", *COMPONENTS]),
    )
    for count, usage, wall in points:
        table.add(
            count,
            *(
                f"{usage[c].last_rss_mib:.0f} / {usage[c].cpu_seconds / wall:.3f}"
                if c in usage
                else "n/a"
                for c in COMPONENTS
            ),
        )
    slopes = section.table(
        "per managed cluster (slope over the steps)",
        Table(["process", "RSS KiB per cluster", "CPU millicores per cluster"]),
    )
    xs = [float(count) for count, _, _ in points]
    rss_curves: dict[str, list[float]] = {}
    cpu_curves: dict[str, list[float]] = {}
    for component in COMPONENTS:
        if not all(component in usage for _, usage, _ in points):
            continue
        rss = [usage[component].last_rss_mib for _, usage, _ in points]
        cpu = [usage[component].cpu_seconds / wall for _, usage, wall in points]
        rss_curves[component] = rss
        cpu_curves[component] = [c * 1000 for c in cpu]
        rss_fit, cpu_fit = linear_fit(xs, rss), linear_fit(xs, cpu)
        slopes.add(
            component,
            fmt_number(rss_fit[0] * 1024 if rss_fit else None, 1),
            fmt_number(cpu_fit[0] * 1000 if cpu_fit else None, 3),
        )
    sent = sum(r for r in reports if isinstance(r, int))
    section.note(f"Heartbeats sent by the simulated clusters during the run: {sent}.")
    made = plots.scaling(
        ctx.images / "scale-rss.png",
        "RSS vs managed clusters (simulated)",
        "simulated clusters (+3 real)",
        "RSS (MiB)",
        xs,
        rss_curves,
    )
    ctx.plot(section, "scale-rss.png", made, "RSS per cluster")
    made = plots.scaling(
        ctx.images / "scale-cpu.png",
        "CPU vs managed clusters (simulated)",
        "simulated clusters (+3 real)",
        "CPU (millicores, mean)",
        xs,
        cpu_curves,
    )
    ctx.plot(section, "scale-cpu.png", made, "CPU per cluster")


async def _window(ctx: Context, seconds: float) -> tuple[dict[str, Usage], float]:
    """The processes' usage over ``seconds`` of steady state (a measurement window)."""
    meter = ctx.meter()
    meter.start()
    await asyncio.sleep(seconds)
    usage = meter.stop()
    return usage, meter.wall
