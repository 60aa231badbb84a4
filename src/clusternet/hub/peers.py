"""Several hub replicas: who holds which agent's tunnel, and forwarding to that replica.

A replica that accepts an agent's tunnel records it in the parent as a Lease
``clusternet-system/clusternet-hub-tunnel-<clusterID>`` (``holderIdentity``: the replica,
annotation :data:`PEER_URL_ANNOTATION`: where peers reach it), renewed while the tunnel lasts
and deleted when it ends.  Every replica watches these Leases; a proxy request for a cluster
whose tunnel another replica holds is forwarded there over HTTPS with a front-proxy client
certificate and the ``X-Remote-*`` headers of the already authenticated caller, exactly as the
aggregator does, plus :data:`FORWARDED_HEADER` so that it is never forwarded again.
See docs/hub.md, "Several replicas".
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import ssl
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote

import httpx2
import structlog

from clusternet.apis import known
from clusternet.kube import ApiError, ClusterUnreachable, KubeClient, NotFound, Preconditions
from clusternet.runtime import Informer, InformerKey

log = structlog.get_logger(__name__)

LEASE_API: Final = "coordination.k8s.io/v1"
LEASE_PREFIX: Final = "clusternet-hub-tunnel-"
PEER_URL_ANNOTATION: Final = "proxies.clusternet.io/hub-peer-url"
FORWARDED_HEADER: Final = "X-Clusternet-Hub-Forwarded"
LEASE_SECONDS: Final = 30


def lease_name(cluster_id: str) -> str:
    return f"{LEASE_PREFIX}{cluster_id}"


@dataclass(frozen=True)
class PeerConfig:
    identity: str  # this replica, e.g. its pod name or host:port
    url: str  # where peers reach this replica's secure port
    client_cert_file: Path | None
    client_key_file: Path | None
    ca_file: Path | None = None  # verifies peers' serving certificates; None: not verified
    # the name peers' certificates are verified for, instead of their address (replicas
    # behind one Service share a certificate for <service>.<namespace>.svc, not pod IPs)
    tls_server_name: str | None = None

    def request_extensions(self) -> dict[str, str]:
        return {"sni_hostname": self.tls_server_name} if self.tls_server_name else {}


def lease_holder(lease: Mapping[str, Any] | None, identity: str, now: dt.datetime) -> str | None:
    """The peer URL to forward to, or None: no lease, held by ``identity``, or expired."""
    if not lease:
        return None
    spec = lease.get("spec") or {}
    holder = spec.get("holderIdentity")
    if not holder or holder == identity:
        return None
    url = ((lease.get("metadata") or {}).get("annotations") or {}).get(PEER_URL_ANNOTATION)
    renewed = spec.get("renewTime") or spec.get("acquireTime")
    if not url or not renewed:
        return None
    try:
        renew_time = dt.datetime.fromisoformat(str(renewed).replace("Z", "+00:00"))
    except ValueError:
        return None
    duration = int(spec.get("leaseDurationSeconds") or LEASE_SECONDS)
    if renew_time + dt.timedelta(seconds=duration) < now:
        return None
    return str(url)


def _micro_time(now: dt.datetime) -> str:
    return now.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def lease_object(cluster_id: str, config: PeerConfig, now: dt.datetime) -> dict[str, Any]:
    stamp = _micro_time(now)
    return {
        "apiVersion": LEASE_API,
        "kind": "Lease",
        "metadata": {
            "name": lease_name(cluster_id),
            "namespace": known.SYSTEM_NAMESPACE,
            "labels": {known.CLUSTER_ID_LABEL: cluster_id},
            "annotations": {PEER_URL_ANNOTATION: config.url},
        },
        "spec": {
            "holderIdentity": config.identity,
            "leaseDurationSeconds": LEASE_SECONDS,
            "acquireTime": stamp,
            "renewTime": stamp,
        },
    }


def peer_headers(
    headers: Mapping[str, str] | list[tuple[str, str]],
    name: str,
    groups: tuple[str, ...],
    extra: Mapping[str, tuple[str, ...]],
) -> list[tuple[str, str]]:
    """``headers`` (already stripped of identity headers) plus the caller's identity as the
    aggregator sends it, and the loop marker."""
    items = list(headers.items()) if isinstance(headers, Mapping) else list(headers)
    out = [(k, v) for k, v in items if k.lower() != FORWARDED_HEADER.lower()]
    out.append(("X-Remote-User", name))
    out += [("X-Remote-Group", group) for group in groups]
    for key, values in extra.items():
        out += [(f"X-Remote-Extra-{quote(key, safe='')}", value) for value in values]
    out.append((FORWARDED_HEADER, "1"))
    return out


class TunnelLeases:
    """Writes this replica's tunnel Leases and reads everyone's from an informer."""

    def __init__(self, parent: KubeClient, config: PeerConfig) -> None:
        self.parent = parent
        self.config = config
        self.informer = Informer(
            parent, InformerKey(LEASE_API, "Lease", namespace=known.SYSTEM_NAMESPACE)
        )
        self._client: httpx2.AsyncClient | None = None

    def peer_url(self, cluster_id: str) -> str | None:
        lease = self.informer.store.get(f"{known.SYSTEM_NAMESPACE}/{lease_name(cluster_id)}")
        return lease_holder(lease, self.config.identity, dt.datetime.now(dt.UTC))

    @contextlib.asynccontextmanager
    async def holding(self, cluster_id: str) -> AsyncIterator[None]:
        """Hold the cluster's Lease while the body runs (the tunnel is served)."""
        renewer = asyncio.create_task(self._renew(cluster_id))
        try:
            yield
        finally:
            renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewer
            await self._release(cluster_id)

    async def _renew(self, cluster_id: str) -> None:
        while True:
            now = dt.datetime.now(dt.UTC)
            lease = lease_object(cluster_id, self.config, now)
            try:
                try:
                    await self.parent.patch(
                        LEASE_API,
                        "Lease",
                        lease_name(cluster_id),
                        {"metadata": lease["metadata"], "spec": lease["spec"]},
                        namespace=known.SYSTEM_NAMESPACE,
                    )
                except NotFound:
                    await self.parent.create(lease)
            except (ApiError, ClusterUnreachable) as err:
                log.warning("cannot renew tunnel lease", cluster=cluster_id, error=str(err))
            # Renewing is a heartbeat, not a poll: a third of the duration.
            await asyncio.sleep(LEASE_SECONDS / 3)

    async def _release(self, cluster_id: str) -> None:
        """Delete the Lease if this replica still holds it (a newer tunnel elsewhere may)."""
        try:
            lease = await self.parent.get(
                LEASE_API, "Lease", lease_name(cluster_id), namespace=known.SYSTEM_NAMESPACE
            )
            if (lease.get("spec") or {}).get("holderIdentity") != self.config.identity:
                return
            await self.parent.delete(
                LEASE_API,
                "Lease",
                lease_name(cluster_id),
                namespace=known.SYSTEM_NAMESPACE,
                preconditions=Preconditions(
                    resource_version=lease["metadata"].get("resourceVersion")
                ),
            )
        except (ApiError, ClusterUnreachable) as err:
            # Left to expire: peers ignore a Lease past renewTime + duration.
            log.info("tunnel lease not released", cluster=cluster_id, error=str(err))

    def client(self) -> httpx2.AsyncClient:
        if self._client is None:
            context = ssl.create_default_context()
            if self.config.ca_file is not None:
                context.load_verify_locations(self.config.ca_file)
            else:
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            if self.config.client_cert_file and self.config.client_key_file:
                context.load_cert_chain(self.config.client_cert_file, self.config.client_key_file)
            self._client = httpx2.AsyncClient(
                verify=context,
                timeout=httpx2.Timeout(connect=10.0, read=None, write=None, pool=10.0),
                follow_redirects=False,
                trust_env=False,
            )
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None
