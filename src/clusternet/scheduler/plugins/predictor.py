"""Predictor: asks each cluster's replica predictor (spec §5.5) how many replicas of every
workload feed it can still take, for dynamic dividing.

Only direct access is implemented: the cluster must report ``predictorDirectAccess: true``
(or the plugin is configured with ``directAccess: true``).  Reaching predictors through
clusternet-hub's socket proxy comes with the hub.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import aiohttp

from clusternet.apis.apps.v1alpha1 import FeedInventory, Subscription
from clusternet.scheduler.framework import (
    SUCCESS,
    ClusterInfo,
    CycleState,
    FeedReplicas,
    Handle,
    Status,
)

NAME: Final = "Predictor"
PREDICT_PATH: Final = "/replicas/predict"
CLUSTER_ID_HEADER: Final = "Cluster-ID"
DEFAULT_TIMEOUT: Final = 20.0


class Predictor:
    name = NAME

    def __init__(self, *, timeout: float = DEFAULT_TIMEOUT, direct_access: bool = False) -> None:
        self.timeout = timeout
        self.direct_access = direct_access
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))
        return self._session

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def predict(
        self, state: CycleState, sub: Subscription, inventory: FeedInventory, cluster: ClusterInfo
    ) -> tuple[FeedReplicas, Status]:
        if not cluster.predictor_enabled or not cluster.predictor_address:
            return {}, Status.unschedulable("cluster(s) had no replica predictor enabled")
        if not (cluster.predictor_direct_access or self.direct_access):
            return {}, Status.error(
                f"the predictor of {cluster.key} is only reachable through clusternet-hub, "
                "which this scheduler does not use yet (set the Predictor plugin's "
                "directAccess: true if it is reachable)"
            )
        url = cluster.predictor_address.rstrip("/") + PREDICT_PATH
        headers = {CLUSTER_ID_HEADER: cluster.cluster_id}
        replicas: FeedReplicas = {}
        answers: dict[str, int] = {}  # same requirements, one request
        try:
            for order in inventory.spec.feeds:
                if order.desired_replicas is None:
                    continue
                body = order.replica_requirements.to_dict() if order.replica_requirements else {}
                cache_key = repr(sorted(body.items()))
                if cache_key not in answers:
                    answers[cache_key] = await self._ask(url, headers, body)
                replicas[order.key] = answers[cache_key]
        except (aiohttp.ClientError, TimeoutError, ValueError) as err:
            return {}, Status.error(f"predictor of {cluster.key} at {url}: {err}")
        return replicas, SUCCESS

    async def _ask(self, url: str, headers: Mapping[str, str], body: Mapping[str, Any]) -> int:
        async with self._client().post(url, json=body, headers=headers) as response:
            if response.status != 200:
                text = (await response.text())[:200]
                raise ValueError(f"HTTP {response.status}: {text}")
            answer = await response.json()
        by_topology = answer.get("replicas") if isinstance(answer, dict) else None
        if not isinstance(by_topology, dict) or not by_topology:
            raise ValueError(f"unexpected answer {answer!r}")
        # Keyed by topology; predictors produce only "default" so far.
        value = by_topology.get("default", sum(by_topology.values()))
        return max(0, int(value))


def new(args: Mapping[str, Any], _handle: Handle | None) -> Predictor:
    timeout = float(args.get("timeoutSeconds", args.get("timeout_seconds", DEFAULT_TIMEOUT)))
    direct = bool(args.get("directAccess", args.get("direct_access", False)))
    return Predictor(timeout=timeout, direct_access=direct)


__all__ = ["NAME", "Predictor", "new"]
