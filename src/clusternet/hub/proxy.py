"""``sockets/<clusterID>/proxy/...``: a reverse proxy to a child cluster through its tunnel.

``direct/<path>`` goes to the cluster's API server (ManagedCluster ``status.apiserverURL``),
``<scheme>/<host[:port]>/<path>`` to any address the agent allows (spec §6.3).  TLS ends at
the target: the hub relays ciphertext through the tunnel, so what it sees of a child is what
any HTTP proxy sees.  Requests and responses stream in both directions (watches, chunked
lists, uploads); ``Connection: Upgrade`` requests (exec, attach, port-forward over websocket
or SPDY) are answered with the child's ``101`` and then spliced as raw bytes.

Credentials for the child come from user extras that kube-apiserver forwards after
impersonation: ``clusternet-token`` becomes ``Authorization: Bearer``, ``clusternet-certificate``
+ ``clusternet-privatekey`` (base64 PEM) a client certificate.  Identity and impersonation
headers meant for the parent are never forwarded.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import ssl
import tempfile
from collections import deque
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

import httpcore2
import httpx2
import structlog
from aiohttp import web
from multidict import CIMultiDict

from clusternet.apis import known
from clusternet.hub.authn import RequestHeaderConfig, UserInfo, is_identity_header
from clusternet.hub.peers import FORWARDED_HEADER, TunnelLeases, peer_headers
from clusternet.hub.status import socket_details, status_response
from clusternet.runtime import Informer
from clusternet.tunnel import TunnelServer, TunnelTransport
from clusternet.tunnel._session import join_host_port

__all__ = [
    "ChildCredentials",
    "ClusterDirectory",
    "InvalidProxyPath",
    "ProxyTarget",
    "SocketProxy",
    "credentials_from_extra",
    "forwarded_request_headers",
    "forwarded_response_headers",
    "parse_proxy_path",
]

log = structlog.get_logger(__name__)

CLUSTER_ID_INDEX: Final = "cluster-id"
_DEFAULT_PORTS = {"http": 80, "https": 443}
# RFC 9110 §7.6.1 hop-by-hop headers, plus Host (set from the target).
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
    }
)
# httpx adds these to every request unless told otherwise; the caller's choice must win
# (an unrequested gzip body would reach kubectl undecoded).
_CLIENT_DEFAULT_HEADERS = ("accept", "accept-encoding", "user-agent")
_RELAY_CHUNK = 64 * 1024
# Answers up to this size (with a Content-Length) are read whole and sent in one write.
_WHOLE_BODY_LIMIT = 1024 * 1024
_CLIENT_BUFFER_LIMIT = 256 * 1024
_FORWARDED_LOWER = FORWARDED_HEADER.lower()


class InvalidProxyPath(ValueError):
    """The part after ``proxy/`` names no target."""


class NoAPIServerURL(LookupError):
    """``direct`` was asked for but the cluster has not reported its API server URL yet."""


@dataclass(frozen=True)
class ProxyTarget:
    scheme: str
    host: str
    port: int
    path: str  # as received: still percent-encoded, starts with "/"

    @property
    def address(self) -> str:
        return join_host_port(self.host, self.port)

    def url(self, query_string: str = "") -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        query = f"?{query_string}" if query_string else ""
        return f"{self.scheme}://{host}:{self.port}{self.path}{query}"


def parse_proxy_path(rest: str, apiserver_url: str | None) -> ProxyTarget:
    """The target of ``.../proxy/<rest>``.

    ``direct[/<path>]`` joins ``<path>`` to ``apiserver_url`` (keeping its path prefix);
    ``http|https/<host[:port]>[/<path>]`` names the target outright.
    """
    head, _, tail = rest.partition("/")
    if head == "direct":
        if not apiserver_url:
            raise NoAPIServerURL("the cluster has not reported status.apiserverURL yet")
        base = urlsplit(apiserver_url)
        if base.scheme not in _DEFAULT_PORTS or not base.hostname:
            raise InvalidProxyPath(f"status.apiserverURL {apiserver_url!r} is not an http(s) URL")
        return ProxyTarget(
            base.scheme,
            base.hostname,
            base.port or _DEFAULT_PORTS[base.scheme],
            f"{base.path.rstrip('/')}/{tail}",
        )
    if head in _DEFAULT_PORTS:
        host_port, _, path = tail.partition("/")
        try:
            parsed = urlsplit(f"//{host_port}")
            host, port = parsed.hostname, parsed.port
        except ValueError as err:
            raise InvalidProxyPath(f"{host_port!r} is not a host[:port]: {err}") from None
        if not host:
            raise InvalidProxyPath(f"no host after {head}/")
        return ProxyTarget(head, host, port or _DEFAULT_PORTS[head], f"/{path}")
    raise InvalidProxyPath(
        f"unknown proxy target {head!r}: expected direct/<path> or "
        "<http|https>/<host[:port]>/<path>"
    )


@dataclass(frozen=True)
class ChildCredentials:
    token: str | None = None
    client_cert_pem: bytes | None = None
    client_key_pem: bytes | None = None


def credentials_from_extra(extra: Mapping[str, tuple[str, ...]]) -> ChildCredentials:
    """The child credentials in a caller's user extras; ValueError if they are malformed."""
    token = next(iter(extra.get("clusternet-token", ())), None)
    cert_b64 = next(iter(extra.get("clusternet-certificate", ())), None)
    key_b64 = next(iter(extra.get("clusternet-privatekey", ())), None)
    if (cert_b64 is None) != (key_b64 is None):
        raise ValueError("clusternet-certificate and clusternet-privatekey must come together")
    if cert_b64 is None or key_b64 is None:
        return ChildCredentials(token=token or None)
    try:
        cert = base64.b64decode(cert_b64, validate=True)
        key = base64.b64decode(key_b64, validate=True)
    except (binascii.Error, ValueError) as err:
        raise ValueError(f"clusternet-certificate/privatekey are not base64: {err}") from None
    if b"-----BEGIN" not in cert or b"-----BEGIN" not in key:
        raise ValueError("clusternet-certificate/privatekey must be base64-encoded PEM")
    return ChildCredentials(token=token or None, client_cert_pem=cert, client_key_pem=key)


def _connection_tokens(headers: CIMultiDict[str]) -> set[str]:
    """Header names listed in ``Connection`` (hop-by-hop for this connection only)."""
    values = headers.getall("Connection", [])
    return {t.strip().lower() for v in values for t in v.split(",") if t.strip()}


def is_upgrade(headers: CIMultiDict[str]) -> bool:
    return "upgrade" in _connection_tokens(headers) and bool(headers.get("Upgrade"))


def forwarded_request_headers(
    headers: CIMultiDict[str],
    requestheader: RequestHeaderConfig | None,
    credentials: ChildCredentials,
) -> list[tuple[str, str]]:
    """What goes to the child: the caller's headers minus hop-by-hop, identity and
    impersonation headers and any credential for the parent; plus the child credentials."""
    upgrade = is_upgrade(headers)
    named_hop = _connection_tokens(headers)
    forwarded: list[tuple[str, str]] = []
    for name, value in headers.items():
        lowered = name.lower()
        if lowered in _HOP_BY_HOP or lowered in named_hop or lowered == "authorization":
            continue
        if lowered == _FORWARDED_LOWER:  # between replicas only; set again by _forward
            continue
        if is_identity_header(name, requestheader):
            continue
        forwarded.append((name, value))
    if upgrade:
        forwarded += [("Connection", "Upgrade"), ("Upgrade", headers["Upgrade"])]
    if credentials.token:
        forwarded.append(("Authorization", f"Bearer {credentials.token}"))
    return forwarded


def forwarded_response_headers(headers: httpx2.Headers, *, upgrade: bool) -> CIMultiDict[str]:
    """The child's response headers for the caller (hop-by-hop ones stay, for a 101)."""
    named_hop = {t.strip().lower() for v in headers.get_list("connection") for t in v.split(",")}
    kept: CIMultiDict[str] = CIMultiDict()
    for name, value in headers.multi_items():
        lowered = name.lower()
        hop_by_hop = lowered in _HOP_BY_HOP or lowered in named_hop
        if not hop_by_hop or (upgrade and lowered in ("connection", "upgrade")):
            kept.add(name, value)
    return kept


class ClusterDirectory:
    """ManagedClusters by cluster ID, from an informer in the parent."""

    def __init__(self, informer: Informer) -> None:
        self.informer = informer
        informer.add_indexer(CLUSTER_ID_INDEX, _cluster_id_index)

    def get(self, cluster_id: str) -> dict[str, Any] | None:
        found = self.informer.by_index(CLUSTER_ID_INDEX, cluster_id)
        return found[0] if found else None


def _cluster_id_index(obj: dict[str, Any]) -> list[str]:
    label = (obj.get("metadata", {}).get("labels") or {}).get(known.CLUSTER_ID_LABEL)
    return [label] if label else []


class _ProxyError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


class SocketProxy:
    """Serves ``sockets/<id>/proxy/<rest>`` once the caller is authenticated and authorized."""

    def __init__(
        self,
        tunnels: TunnelServer,
        clusters: ClusterDirectory,
        requestheader: RequestHeaderConfig | None,
        *,
        connect_timeout: float = 30.0,
        response_header_timeout: float = 90.0,
        peers: TunnelLeases | None = None,
    ) -> None:
        self._peers = peers
        self._tunnels = tunnels
        self._clusters = clusters
        self._requestheader = requestheader
        self._connect_timeout = connect_timeout
        # Kube-apiserver ends ordinary requests after 60 s and sends the headers of
        # watches, logs and upgrades at once, so this only catches a child that hangs.
        self._response_header_timeout = response_header_timeout
        self._clients: dict[str, httpx2.AsyncClient] = {}

    async def aclose(self) -> None:
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            await client.aclose()

    def forget(self, cluster_id: str) -> None:
        """Drop the pooled connections of a cluster (its ManagedCluster is gone)."""
        client = self._clients.pop(cluster_id, None)
        if client is not None:
            task = asyncio.ensure_future(client.aclose())
            task.add_done_callback(lambda t: t.exception() if not t.cancelled() else None)

    async def handle(
        self, request: web.Request, cluster_id: str, rest: str, user: UserInfo
    ) -> web.StreamResponse:
        if (
            self._peers is not None
            and not self._tunnels.is_connected(cluster_id)
            and FORWARDED_HEADER not in request.headers  # forwarded once at most
            and (peer := self._peers.peer_url(cluster_id)) is not None
        ):
            return await self._forward(request, cluster_id, peer, user)
        try:
            target = self._target(cluster_id, rest)
            credentials = credentials_from_extra(user.extra)
            tls = _upstream_tls(credentials) if credentials.client_cert_pem else None
        except _ProxyError as err:
            return status_response(err.code, str(err), details=socket_details(cluster_id))
        except ValueError as err:
            return status_response(400, str(err), details=socket_details(cluster_id))
        headers = forwarded_request_headers(
            CIMultiDict(request.headers), self._requestheader, credentials
        )
        url = target.url(request.rel_url.raw_query_string)
        async with self._client(cluster_id, tls) as client:
            upstream = client.build_request(
                request.method,
                url,
                headers=headers,
                content=_body(request) if request.body_exists else None,
            )
            for name in _CLIENT_DEFAULT_HEADERS:
                if name not in request.headers:
                    del upstream.headers[name]
            try:
                async with asyncio.timeout(self._response_header_timeout):
                    response = await client.send(upstream, stream=True)
            except TimeoutError:
                return status_response(
                    504,
                    f"{target.address} in cluster {cluster_id} sent no response within "
                    f"{self._response_header_timeout:.0f}s",
                )
            except httpx2.TimeoutException as err:
                return status_response(
                    504, f"timed out connecting to {target.address} in cluster {cluster_id}: {err}"
                )
            except httpx2.TransportError as err:
                return self._unreachable(cluster_id, target, err)
            try:
                if response.status_code == 101:
                    return await self._splice(request, response)
                return await self._relay(request, response)
            finally:
                await response.aclose()

    async def _forward(
        self, request: web.Request, cluster_id: str, peer: str, user: UserInfo
    ) -> web.StreamResponse:
        """Relay to the replica that holds the cluster's tunnel, as the aggregator would
        (front-proxy client certificate, the caller's identity in ``X-Remote-*``)."""
        assert self._peers is not None
        log.debug("forwarding to the replica holding the tunnel", cluster=cluster_id, peer=peer)
        headers = peer_headers(
            forwarded_request_headers(
                CIMultiDict(request.headers), self._requestheader, ChildCredentials()
            ),
            user.name,
            user.groups,
            user.extra,
        )
        query = request.rel_url.raw_query_string
        url = f"{peer.rstrip('/')}{request.rel_url.raw_path}" + (f"?{query}" if query else "")
        client = self._peers.client()
        upstream = client.build_request(
            request.method,
            url,
            headers=headers,
            content=_body(request) if request.body_exists else None,
            extensions=self._peers.config.request_extensions(),
        )
        for name in _CLIENT_DEFAULT_HEADERS:
            if name not in request.headers:
                del upstream.headers[name]
        try:
            async with asyncio.timeout(self._response_header_timeout):
                response = await client.send(upstream, stream=True)
        except (TimeoutError, httpx2.TransportError) as err:
            return status_response(
                503,
                f"cannot reach the hub replica {peer} that holds the tunnel of cluster "
                f"{cluster_id}: {err or type(err).__name__}",
                details=socket_details(cluster_id),
            )
        try:
            if response.status_code == 101:
                return await self._splice(request, response)
            return await self._relay(request, response)
        finally:
            await response.aclose()

    def _target(self, cluster_id: str, rest: str) -> ProxyTarget:
        cluster = self._clusters.get(cluster_id)
        if cluster is None:
            raise _ProxyError(404, f"cluster {cluster_id} is not found")
        status = cluster.get("status") or {}
        if not self._tunnels.is_connected(cluster_id):
            if status.get("useSocket"):
                raise _ProxyError(
                    400, f"cannot proxy through cluster {cluster_id}, whose agent is disconnected"
                )
            raise _ProxyError(
                400,
                f"cannot proxy through cluster {cluster_id}: its agent does not open a tunnel "
                "(status.useSocket is not true; is the SocketConnection gate on in the agent?)",
            )
        try:
            return parse_proxy_path(rest, status.get("apiserverURL"))
        except NoAPIServerURL as err:
            raise _ProxyError(503, f"cluster {cluster_id}: {err}") from None
        except InvalidProxyPath as err:
            raise _ProxyError(400, str(err)) from None

    @contextlib.asynccontextmanager
    async def _client(
        self, cluster_id: str, client_tls: ssl.SSLContext | None
    ) -> AsyncIterator[httpx2.AsyncClient]:
        """The pooled client of the cluster, or with a client certificate one of its own
        (the TLS context differs per certificate, and such callers are rare)."""
        if client_tls is None:
            client = self._clients.get(cluster_id)
            if client is None:
                client = self._clients[cluster_id] = self._new_client(cluster_id, None)
            yield client
            return
        async with self._new_client(cluster_id, client_tls) as client:
            yield client

    def _new_client(self, cluster_id: str, tls: ssl.SSLContext | None) -> httpx2.AsyncClient:
        tls = tls or _upstream_tls(None)
        transport = TunnelTransport(partial(self._tunnels.dial, cluster_id), verify=tls)
        return httpx2.AsyncClient(
            transport=transport,
            timeout=httpx2.Timeout(
                connect=self._connect_timeout, read=None, write=None, pool=self._connect_timeout
            ),
            follow_redirects=False,
            trust_env=False,
        )

    def _unreachable(
        self, cluster_id: str, target: ProxyTarget, err: httpx2.TransportError
    ) -> web.Response:
        reason = str(err) or type(err).__name__
        if "connect not allowed" in reason:
            return status_response(
                403,
                f"the agent of cluster {cluster_id} does not allow connections to {target.address}",
            )
        if not self._tunnels.is_connected(cluster_id):
            return status_response(
                400, f"cannot proxy through cluster {cluster_id}, whose agent is disconnected"
            )
        return status_response(
            503, f"cannot reach {target.address} in cluster {cluster_id}: {reason}"
        )

    async def _relay(self, request: web.Request, response: httpx2.Response) -> web.StreamResponse:
        length = response.headers.get("Content-Length", "")
        if length.isdigit() and int(length) <= _WHOLE_BODY_LIMIT:
            # A small answer of known size (most GETs): headers and body leave in one write
            # instead of one per piece, which is most of what a relay costs on loopback.
            try:
                body = await response.aread()
            except httpx2.TransportError as err:
                return status_response(502, f"the child's response broke off: {err}")
            return web.Response(
                status=response.status_code,
                reason=response.reason_phrase or None,
                headers=forwarded_response_headers(response.headers, upgrade=False),
                body=body,
            )
        out = web.StreamResponse(
            status=response.status_code,
            reason=response.reason_phrase or None,
            headers=forwarded_response_headers(response.headers, upgrade=False),
        )
        await out.prepare(request)
        try:
            # No chunk size: each piece goes out as it arrives (a watch event must not wait
            # for the next ones to fill a buffer).
            async for chunk in response.aiter_raw():
                await out.write(chunk)
        except httpx2.TransportError as err:
            # The status is sent already: all that is left is to cut the response short,
            # so the caller sees a truncated body rather than a clean end.
            log.info("upstream response broke off", url=str(response.url), error=str(err))
            if request.transport is not None:
                request.transport.abort()
            return out
        await out.write_eof()
        return out

    async def _splice(self, request: web.Request, response: httpx2.Response) -> web.StreamResponse:
        """After the child's ``101``: raw bytes both ways until either side closes."""
        upstream: httpcore2.AsyncNetworkStream = response.extensions["network_stream"]
        transport = request.transport
        if transport is None:  # the caller left while the child answered
            return web.Response(status=499)
        from_client = _ClientBytes(request)
        # Before the 101 is written: from then on the caller may send bytes, and they must
        # not reach aiohttp's HTTP parser (it does not treat SPDY/3.1 as an upgrade).
        request.protocol.set_parser(from_client)  # type: ignore[arg-type]  # duck-typed parser
        request.protocol.keep_alive(False)
        out = web.StreamResponse(
            status=101,
            reason=response.reason_phrase or "Switching Protocols",
            headers=forwarded_response_headers(response.headers, upgrade=True),
        )
        writer = await out.prepare(request)
        assert writer is not None

        async def client_to_child() -> None:
            while data := await from_client.read():
                await upstream.write(data)

        async def child_to_client() -> None:
            while data := await upstream.read(_RELAY_CHUNK):
                transport.write(data)
                await writer.drain()

        pumps = [asyncio.create_task(client_to_child()), asyncio.create_task(child_to_client())]
        try:
            done, _ = await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if not task.cancelled() and (error := task.exception()) is not None:
                    log.debug("upgraded connection ended", error=str(error))
        finally:
            for task in pumps:
                task.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)
            with contextlib.suppress(Exception):
                await upstream.aclose()
            transport.close()
        return out


class _ClientBytes:
    """Takes the place of aiohttp's payload parser once a connection is upgraded: the
    caller's raw bytes, with back-pressure on its socket."""

    def __init__(self, request: web.Request) -> None:
        self._protocol = request.protocol
        self._chunks: deque[bytes] = deque()
        self._size = 0
        self._eof = False
        self._paused = False
        self._readable = asyncio.Event()

    # The parser interface aiohttp's RequestHandler calls.
    def feed_data(self, data: bytes) -> tuple[bool, bytes]:
        if data:
            self._chunks.append(bytes(data))
            self._size += len(data)
            self._readable.set()
            if self._size > _CLIENT_BUFFER_LIMIT and not self._paused:
                self._paused = True
                self._protocol.pause_reading()
        return False, b""

    def feed_eof(self) -> None:
        self._eof = True
        self._readable.set()

    async def read(self) -> bytes:
        """Everything buffered, or b"" once the caller closed."""
        while not self._chunks:
            if self._eof:
                return b""
            self._readable.clear()
            await self._readable.wait()
        data = b"".join(self._chunks)
        self._chunks.clear()
        self._size = 0
        if self._paused:
            self._paused = False
            self._protocol.resume_reading()
        return data


async def _body(request: web.Request) -> AsyncIterator[bytes]:
    async for chunk in request.content.iter_any():
        yield chunk


def _upstream_tls(credentials: ChildCredentials | None) -> ssl.SSLContext:
    """TLS to the target: not verified (spec §6.3: the ManagedCluster carries no CA of the
    child, and ``https/<host>`` targets are arbitrary), with the caller's client cert."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    if credentials is not None and credentials.client_cert_pem and credentials.client_key_pem:
        # The ssl module loads key pairs only from files: a private folder for this call.
        with tempfile.TemporaryDirectory(prefix="clusternet-hub-") as folder:
            cert, key = Path(folder) / "tls.crt", Path(folder) / "tls.key"
            cert.write_bytes(credentials.client_cert_pem)
            key.touch(mode=0o600)
            key.write_bytes(credentials.client_key_pem)
            try:
                context.load_cert_chain(cert, key)
            except ssl.SSLError as err:
                raise ValueError(f"clusternet-certificate/privatekey are unusable: {err}") from err
    return context
