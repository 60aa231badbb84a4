"""The agent's tunnel to the hub (gate ``SocketConnection``, spec §3.2 step 7, §6.2).

The agent dials ``wss://<parent>/apis/proxies.clusternet.io/v1alpha1/sockets/<clusterID>``
with its dedicated parent credentials; the parent authorizes the upgrade (``sockets``,
resourceName = cluster ID) and hands it to clusternet-hub.  Unlike upstream, the parent's
certificate is verified (with the CA the registration returned), and the hub may only open
streams to this cluster's own API server and the predictor: an allow-list rather than any
address reachable from inside the child.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from urllib.parse import urlsplit, urlunsplit

from clusternet.apis import known
from clusternet.kube import ClusterConfig, tls_context
from clusternet.tunnel import AllowFunc, TunnelClient
from clusternet.tunnel._session import join_host_port

__all__ = ["allow_only", "allowed_addresses", "new_tunnel_client", "tunnel_url"]

_DEFAULT_PORTS = {"http": 80, "https": 443}
_DIAL_PROTOCOLS = frozenset({"tcp", "tcp4", "tcp6"})


def tunnel_url(parent_server: str, cluster_id: str) -> str:
    """The websocket URL of the cluster's socket: http→ws, https→wss, any path prefix kept."""
    parts = urlsplit(parent_server)
    scheme = {"https": "wss", "http": "ws"}[parts.scheme]
    path = f"{parts.path.rstrip('/')}/apis/{known.PROXIES_GROUP}/v1alpha1/sockets/{cluster_id}"
    return urlunsplit((scheme, parts.netloc, path, "", ""))


def allowed_addresses(urls: Iterable[str]) -> frozenset[str]:
    """``host:port`` of each URL, as Connect frames name them (``[::1]:443`` for IPv6)."""
    addresses = set()
    for url in urls:
        parts = urlsplit(url)
        if parts.hostname and parts.scheme in _DEFAULT_PORTS:
            port = parts.port or _DEFAULT_PORTS[parts.scheme]
            addresses.add(join_host_port(parts.hostname, port))
    return frozenset(addresses)


def allow_only(addresses: frozenset[str]) -> AllowFunc:
    def allow(proto: str, address: str) -> bool:
        return proto in _DIAL_PROTOCOLS and address in addresses

    return allow


def new_tunnel_client(
    parent: ClusterConfig,
    cluster_id: str,
    *,
    child_server: str,
    predictor_address: str | None,
    verbose: bool = False,
) -> TunnelClient:
    """A client for the cluster's socket, authenticating with the dedicated parent identity."""
    if verbose:
        logging.getLogger("clusternet.tunnel").setLevel(logging.DEBUG)
    token = parent.token
    if token is None and parent.token_file is not None:
        token = parent.token_file.read_text().strip()
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    targets = [child_server, *([predictor_address] if predictor_address else [])]
    return TunnelClient(
        tunnel_url(parent.server, cluster_id),
        allow=allow_only(allowed_addresses(targets)),
        headers=headers,
        ssl_context=tls_context(parent),
        name=f"cluster {cluster_id}",
    )
