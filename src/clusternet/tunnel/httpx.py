# The timeout parameters are httpcore2's network interface, not ours to replace.
# ruff: noqa: ASYNC109
"""HTTP through the tunnel: an httpcore2 network backend whose connections are tunnel streams.

TLS still ends at the target (a child cluster's API server): it runs over the stream with
``ssl.MemoryBIO``, so the hub and the tunnel only ever see ciphertext.
"""

from __future__ import annotations

import asyncio
import functools
import ssl
from collections.abc import Awaitable, Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import httpcore2
import httpx2

from clusternet.tunnel._session import TunnelStream
from clusternet.tunnel.server import TunnelServer

__all__ = ["TunnelNetworkBackend", "TunnelNetworkStream", "TunnelTransport", "transport_factory"]

Dialer = Callable[[str, int], Awaitable[TunnelStream]]
_T = TypeVar("_T")
_READ_SIZE = 64 * 1024
# Every open watch holds an HTTP/1.1 connection, so the pool must not cap connections.
_DEFAULT_LIMITS = httpx2.Limits(max_connections=None, max_keepalive_connections=20)


@contextmanager
def _mapped(timeout_error: type[Exception], other: type[Exception]) -> Iterator[None]:
    try:
        yield
    except TimeoutError as exc:
        raise timeout_error(str(exc) or "timed out") from exc
    except (ConnectionError, ssl.SSLError) as exc:
        raise other(str(exc)) from exc


class TunnelNetworkStream(httpcore2.AsyncNetworkStream):
    """A tunnel stream as httpcore2 sees a socket."""

    def __init__(self, stream: TunnelStream) -> None:
        self._stream = stream

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        with _mapped(httpcore2.ReadTimeout, httpcore2.ReadError):
            async with asyncio.timeout(timeout):
                return await self._stream.read(max_bytes)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        with _mapped(httpcore2.WriteTimeout, httpcore2.WriteError):
            async with asyncio.timeout(timeout):
                self._stream.write(buffer)
                await self._stream.drain()

    async def aclose(self) -> None:
        self._stream.close()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore2.AsyncNetworkStream:
        tls = _TLSStream(self._stream, ssl_context, server_hostname)
        try:
            with _mapped(httpcore2.ConnectTimeout, httpcore2.ConnectError):
                async with asyncio.timeout(timeout):
                    await tls.handshake()
        except BaseException:
            self._stream.abort("TLS handshake failed")
            raise
        return tls

    def get_extra_info(self, info: str) -> Any:
        # An idle pooled connection whose stream is readable can only be at its end.
        if info == "is_readable":
            return self._stream.at_eof() or self._stream.buffered > 0
        return None


class _TLSStream(TunnelNetworkStream):
    """TLS over a tunnel stream: the SSL object reads and writes memory buffers that are
    filled from and flushed to the stream."""

    def __init__(
        self, stream: TunnelStream, context: ssl.SSLContext, server_hostname: str | None
    ) -> None:
        super().__init__(stream)
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._ssl = context.wrap_bio(
            self._incoming, self._outgoing, server_hostname=server_hostname
        )

    async def handshake(self) -> None:
        await self._call(self._ssl.do_handshake)

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        with _mapped(httpcore2.ReadTimeout, httpcore2.ReadError):
            async with asyncio.timeout(timeout):
                try:
                    return await self._call(functools.partial(self._ssl.read, max_bytes))
                except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                    # Servers often close without close_notify; HTTP framing tells truncation.
                    return b""

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        with _mapped(httpcore2.WriteTimeout, httpcore2.WriteError):
            async with asyncio.timeout(timeout):
                await self._call(functools.partial(self._ssl.write, buffer))

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore2.AsyncNetworkStream:
        raise httpcore2.UnsupportedProtocol("TLS inside TLS is not supported on a tunnel stream")

    def get_extra_info(self, info: str) -> Any:
        if info == "ssl_object":
            return self._ssl
        if info == "is_readable":
            return self._ssl.pending() > 0 or super().get_extra_info(info)
        return None

    async def _call(self, operation: Callable[[], _T]) -> _T:
        """Run an SSL operation, moving ciphertext to and from the stream until it completes."""
        while True:
            try:
                result = operation()
            except ssl.SSLWantReadError:
                await self._flush()
                data = await self._stream.read(_READ_SIZE)
                if data:
                    self._incoming.write(data)
                else:
                    self._incoming.write_eof()
            else:
                await self._flush()
                return result

    async def _flush(self) -> None:
        if data := self._outgoing.read():
            self._stream.write(data)
            await self._stream.drain()


class TunnelNetworkBackend(httpcore2.AsyncNetworkBackend):
    """Opens every connection with ``dial(host, port)``, e.g. ``TunnelServer.dial`` bound to
    one cluster id."""

    def __init__(self, dial: Dialer) -> None:
        self._dial = dial

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore2.SOCKET_OPTION] | None = None,
    ) -> httpcore2.AsyncNetworkStream:
        with _mapped(httpcore2.ConnectTimeout, httpcore2.ConnectError):
            async with asyncio.timeout(timeout):
                return TunnelNetworkStream(await self._dial(host, port))

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore2.SOCKET_OPTION] | None = None,
    ) -> httpcore2.AsyncNetworkStream:
        raise httpcore2.UnsupportedProtocol("the tunnel dials TCP only")

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class TunnelTransport(httpx2.AsyncHTTPTransport):
    """An httpx2 transport whose connections ride the tunnel."""

    def __init__(
        self,
        dial: Dialer,
        *,
        verify: ssl.SSLContext,
        http2: bool = False,
        limits: httpx2.Limits = _DEFAULT_LIMITS,
    ) -> None:
        super().__init__(verify=verify, http2=http2, limits=limits, trust_env=False)
        # httpx2 takes no network backend, so swap in the pool it would have built plus ours.
        self._pool = httpcore2.AsyncConnectionPool(
            ssl_context=verify,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            http1=True,
            http2=http2,
            network_backend=TunnelNetworkBackend(dial),
        )


def transport_factory(
    server: TunnelServer, cluster_id: str, *, http2: bool = False
) -> Callable[[ssl.SSLContext], httpx2.AsyncBaseTransport]:
    """For ``KubeClient(transport_factory=...)``: reach ``cluster_id``'s API server through
    its agent's tunnel, with the TLS settings the client derived from its config."""

    def build(tls: ssl.SSLContext) -> httpx2.AsyncBaseTransport:
        return TunnelTransport(functools.partial(server.dial, cluster_id), verify=tls, http2=http2)

    return build
