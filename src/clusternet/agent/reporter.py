"""The heartbeat (spec §3.5): observe the child every collect period, write the
ManagedCluster status every update period, and once right after registration.

Nodes come from an informer (watch-driven; nothing is relisted per period); only the
apiserver's ``/version`` and health endpoints are asked each collect period, as there is
nothing to watch for them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import structlog

from clusternet.agent.registration import Registration
from clusternet.agent.status import (
    Probes,
    ReportSettings,
    aggregate_node_labels,
    compute_status,
    discover_cidrs,
    label_patch,
    merged_status,
)
from clusternet.apis import known
from clusternet.kube import ApiError, ClusterUnreachable, Conflict, KubeClient, NotFound, Object
from clusternet.runtime import Informer

log = structlog.get_logger(__name__)

MANAGED_CLUSTER_API_VERSION = f"{known.CLUSTERS_GROUP}/v1beta1"
_CONFLICT_RETRIES = 5
# Where control-plane Pods reveal the CIDRs in their flags (kubeadm, kops and most distros).
_CIDR_POD_SELECTORS = (
    "component in (kube-apiserver,kube-controller-manager)",
    "app.kubernetes.io/component in (kube-apiserver,kube-controller-manager)",
    "k8s-app=kube-proxy",
)


@dataclass(frozen=True)
class Observation:
    version: Mapping[str, Any]
    probes: Probes
    observed_at: datetime


class StatusReporter:
    def __init__(
        self,
        *,
        child: KubeClient,
        parent: KubeClient,
        registration: Registration,
        nodes: Informer,
        settings: ReportSettings,
        collect_frequency: float,
        update_frequency: float,
        label_prefixes: tuple[str, ...],
        label_threshold: float,
        environ: Mapping[str, str],
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._child = child
        self._clock = clock
        self._parent = parent
        self._registration = registration
        self._nodes = nodes
        self._settings = settings
        self._collect_frequency = collect_frequency
        self._update_frequency = update_frequency
        self._label_prefixes = label_prefixes
        self._label_threshold = label_threshold
        self._environ = environ
        self._cluster_name: str | None = None  # found by cluster-id label, then cached
        self._cidrs: tuple[str | None, str | None] = (None, None)
        self._version: Mapping[str, Any] = {}
        self._observation: Observation | None = None

    async def run(self) -> None:
        await self._nodes.wait_for_sync()
        self._cidrs = discover_cidrs(await self._control_plane_pods(), self._environ)
        await self._collect()
        await self._report()  # at once, so that a newly registered cluster turns Ready now
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(_every(self._collect_frequency, self._collect))
            tasks.create_task(_every(self._update_frequency, self._report))

    async def _collect(self) -> None:
        try:
            self._version = await self._child.request("GET", "/version")
        except (ApiError, ClusterUnreachable) as err:
            log.warning("cannot read the child's version", error=str(err))
        healthz, livez, readyz = await asyncio.gather(
            self._probe("/healthz"), self._probe("/livez"), self._probe("/readyz")
        )
        probes = Probes(healthz=healthz, livez=livez, readyz=readyz)
        self._observation = Observation(self._version, probes, datetime.now(UTC))

    async def _probe(self, path: str) -> bool:
        try:
            return str(await self._child.request("GET", path)).strip() == "ok"
        except (ApiError, ClusterUnreachable):
            return False

    async def _report(self) -> None:
        try:
            await self._write_status()
        except (ApiError, ClusterUnreachable) as err:
            log.warning("failed to report the cluster status", error=str(err))

    async def _write_status(self) -> None:
        observation = self._observation
        if observation is None:
            return
        for _ in range(_CONFLICT_RETRIES):
            cluster = await self._managed_cluster()
            if cluster is None:
                log.warning(
                    "no ManagedCluster with our cluster ID in the dedicated namespace",
                    namespace=self._registration.namespace,
                )
                return
            cluster = await self._aggregate_labels(cluster)
            nodes = self._nodes.store.list()
            current = cluster.get("status") or {}
            reported = compute_status(
                version=observation.version,
                nodes=nodes,
                probes=observation.probes,
                cidrs=self._cidrs,
                settings=self._settings,
                previous_conditions=current.get("conditions") or [],
                # The heartbeat is this write, not the last collection: with an update period
                # shorter than the collect period, lastObservedTime would otherwise lag by up
                # to a collect period and the cluster flap Unknown (3 missed heartbeats).
                now=self._clock(),
            )
            try:
                await self._parent.update_status(
                    {**cluster, "status": merged_status(current, reported)}
                )
            except Conflict:
                continue  # written meanwhile (e.g. by the lifecycle controller): read again
            log.debug("reported the cluster status", ready=observation.probes.ready)
            return
        log.warning("the ManagedCluster kept changing; status not written this period")

    async def _managed_cluster(self) -> Object | None:
        namespace = self._registration.namespace
        if self._cluster_name is not None:
            try:
                return await self._parent.get(
                    MANAGED_CLUSTER_API_VERSION,
                    "ManagedCluster",
                    self._cluster_name,
                    namespace=namespace,
                )
            except NotFound:
                self._cluster_name = None
        found = await self._parent.list(
            MANAGED_CLUSTER_API_VERSION,
            "ManagedCluster",
            namespace=namespace,
            label_selector=f"{known.CLUSTER_ID_LABEL}={self._registration.cluster_id}",
        )
        items: list[Object] = found.get("items") or []
        if not items:
            return None
        self._cluster_name = items[0]["metadata"]["name"]
        return items[0]

    async def _aggregate_labels(self, cluster: Object) -> Object:
        """Lift the labels most worker nodes share onto the ManagedCluster (spec §3.6)."""
        aggregated = aggregate_node_labels(
            self._nodes.store.list(), self._label_prefixes, self._label_threshold
        )
        labels = cluster["metadata"].get("labels") or {}
        patch = label_patch(labels, aggregated, self._label_prefixes)
        if patch is None:
            return cluster
        patched: Object = await self._parent.patch(
            MANAGED_CLUSTER_API_VERSION,
            "ManagedCluster",
            cluster["metadata"]["name"],
            {"metadata": {"labels": patch}},
            namespace=self._registration.namespace,
        )
        return patched

    async def _control_plane_pods(self) -> list[Object]:
        pods: list[Object] = []
        for selector in _CIDR_POD_SELECTORS:
            try:
                listed = await self._child.list(
                    "v1", "Pod", namespace="kube-system", label_selector=selector
                )
            except (ApiError, ClusterUnreachable) as err:
                log.info("cannot look for CIDRs in control-plane Pods", error=str(err))
                continue
            pods.extend(listed.get("items") or [])
        return pods


async def _every(period: float, action: Callable[[], Awaitable[None]]) -> None:
    while True:
        await asyncio.sleep(period)
        await action()
