"""Predictor: asks each cluster's replica predictor (spec §5.5) how many replicas of every
workload feed it can still take, for dynamic dividing.

A cluster reporting ``predictorDirectAccess: true`` (or every cluster, when the plugin is
configured with ``directAccess: true``) is asked directly at its ``predictorAddress``.  Any
other is asked through clusternet-hub's socket proxy on the parent,
``/apis/proxies.clusternet.io/v1alpha1/sockets/<clusterID>/proxy/<scheme>/<host:port>/...``,
with the scheduler's own parent credentials: the caller needs ``create`` on ``sockets/proxy``
for that cluster ID (docs/scheduling.md), and the agent's tunnel must allow the predictor's
address (it allows exactly the one it advertises).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final
from urllib.parse import urlsplit

import aiohttp

from clusternet.apis import known
from clusternet.apis.apps.v1alpha1 import FeedInventory, Subscription
from clusternet.kube import ApiError, ClusterUnreachable, KubeClient
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
_DEFAULT_PORTS: Final = {"http": 80, "https": 443}

Ask = Callable[[Mapping[str, Any]], Awaitable[Any]]
"""POST one ReplicaRequirements body to a predictor; the decoded JSON answer."""


class NotAProxyTarget(ValueError):
    """A predictor address the hub's socket proxy cannot name (not an http(s) URL)."""


def hub_proxy_path(cluster_id: str, predictor_address: str) -> str:
    """The parent path that reaches ``predictor_address``'s ``/replicas/predict`` through the
    cluster's tunnel: ``.../sockets/<id>/proxy/<scheme>/<host:port><prefix>/replicas/predict``.

    The port is always explicit: the agent's tunnel allow-list names ``host:port``.
    """
    parts = urlsplit(predictor_address)
    not_a_target = NotAProxyTarget(f"predictorAddress {predictor_address!r} is not an http(s) URL")
    if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
        raise not_a_target
    try:
        port = parts.port or _DEFAULT_PORTS[parts.scheme]
    except ValueError:  # a port out of range or not a number
        raise not_a_target from None
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return (
        f"/apis/{known.PROXIES_GROUP}/v1alpha1/sockets/{cluster_id}/proxy/"
        f"{parts.scheme}/{host}:{port}{parts.path.rstrip('/')}{PREDICT_PATH}"
    )


class Predictor:
    name = NAME

    def __init__(
        self,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        direct_access: bool = False,
        parent: KubeClient | None = None,
    ) -> None:
        self.timeout = timeout
        self.direct_access = direct_access
        self.parent = parent
        """The scheduler's client of the parent, for predictors reached through the hub."""
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
        if cluster.predictor_direct_access or self.direct_access:
            where = cluster.predictor_address.rstrip("/") + PREDICT_PATH
            ask = self._direct(where, cluster.cluster_id)
        elif self.parent is None:
            return {}, Status.error(
                f"the predictor of {cluster.key} is only reachable through clusternet-hub and "
                "this scheduler has no client of the parent"
            )
        else:
            try:
                where = hub_proxy_path(cluster.cluster_id, cluster.predictor_address)
            except NotAProxyTarget as err:
                return {}, Status.error(f"predictor of {cluster.key}: {err}")
            ask = self._through_hub(self.parent, where, cluster.cluster_id)
        replicas: FeedReplicas = {}
        answers: dict[str, int] = {}  # same requirements, one request
        try:
            for order in inventory.spec.feeds:
                if order.desired_replicas is None:
                    continue
                body = order.replica_requirements.to_dict() if order.replica_requirements else {}
                cache_key = repr(sorted(body.items()))
                if cache_key not in answers:
                    answers[cache_key] = _replicas(await ask(body))
                replicas[order.key] = answers[cache_key]
        except TimeoutError:
            return {}, Status.error(
                f"predictor of {cluster.key} at {where}: no answer within {self.timeout:g}s"
            )
        except (aiohttp.ClientError, ApiError, ClusterUnreachable, ValueError) as err:
            return {}, Status.error(f"predictor of {cluster.key} at {where}: {err}")
        return replicas, SUCCESS

    def _direct(self, url: str, cluster_id: str) -> Ask:
        async def ask(body: Mapping[str, Any]) -> Any:
            headers = {CLUSTER_ID_HEADER: cluster_id}
            async with self._client().post(url, json=body, headers=headers) as response:
                if response.status != 200:
                    text = (await response.text())[:200]
                    raise ValueError(f"HTTP {response.status}: {text}")
                return await response.json()

        return ask

    def _through_hub(self, parent: KubeClient, path: str, cluster_id: str) -> Ask:
        async def ask(body: Mapping[str, Any]) -> Any:
            # The hub relays the predictor's status and body: an error answer is an ApiError.
            async with asyncio.timeout(self.timeout):
                return await parent.request(
                    "POST", path, body=body, headers={CLUSTER_ID_HEADER: cluster_id}
                )

        return ask


def _replicas(answer: Any) -> int:
    by_topology = answer.get("replicas") if isinstance(answer, dict) else None
    if not isinstance(by_topology, dict) or not by_topology:
        raise ValueError(f"unexpected answer {answer!r}")
    # Keyed by topology; predictors produce only "default" so far.
    value = by_topology.get("default", sum(by_topology.values()))
    return max(0, int(value))


def new(args: Mapping[str, Any], handle: Handle | None) -> Predictor:
    timeout = float(args.get("timeoutSeconds", args.get("timeout_seconds", DEFAULT_TIMEOUT)))
    direct = bool(args.get("directAccess", args.get("direct_access", False)))
    parent = handle.client if handle is not None else None
    return Predictor(timeout=timeout, direct_access=direct, parent=parent)


__all__ = ["NAME", "NotAProxyTarget", "Predictor", "hub_proxy_path", "new"]
