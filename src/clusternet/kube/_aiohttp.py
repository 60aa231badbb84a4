"""An httpx2 transport that sends requests with aiohttp.

Why: profiling the controller-manager under a burst of Subscriptions (bench/results,
"Profile") showed the HTTP stack as its largest cost. httpcore2 on anyio spends about
0.9 ms of CPU per small request on 2 cores, a third of it checking every idle pooled
connection for readability (``anyio`` rebuilds a dict of socket attributes, with a
``getpeername`` call, for each check) and wrapping TLS in Python. aiohttp's connector
knows a dropped connection from its protocol callbacks, parses HTTP in C and uses
asyncio's TLS, at about 0.2 ms per request. httpx2 stays the client's interface (auth
flows, URL building, response decoding, MockTransport in tests, the tunnel's transport);
only the wire moves.

Errors are mapped to httpx2's, so callers keep catching ``httpx2.RequestError``.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any

import aiohttp
import httpx2
from yarl import URL

__all__ = ["AiohttpTransport"]

_READ_SIZE = 64 * 1024


@contextmanager
def _mapped(request: httpx2.Request, *, reading: bool) -> Iterator[None]:
    """aiohttp's and asyncio's errors as the httpx2 errors callers handle."""
    try:
        yield
    except aiohttp.ConnectionTimeoutError as exc:
        raise httpx2.ConnectTimeout(str(exc) or "timed out", request=request) from exc
    except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
        # sock_read: waiting for the response headers or the next part of the body
        raise httpx2.ReadTimeout(str(exc) or "timed out", request=request) from exc
    except aiohttp.ClientConnectorError as exc:
        raise httpx2.ConnectError(str(exc), request=request) from exc
    except (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError) as exc:
        raise httpx2.RemoteProtocolError(str(exc) or type(exc).__name__, request=request) from exc
    except aiohttp.ClientResponseError as exc:
        raise httpx2.RemoteProtocolError(str(exc), request=request) from exc
    except (aiohttp.ClientError, ConnectionError, ssl.SSLError) as exc:
        error = httpx2.ReadError if reading else httpx2.ConnectError
        raise error(str(exc) or type(exc).__name__, request=request) from exc


class _ResponseStream(httpx2.AsyncByteStream):
    def __init__(self, response: aiohttp.ClientResponse, request: httpx2.Request) -> None:
        self._response = response
        self._request = request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _mapped(self._request, reading=True):
            while chunk := await self._response.content.read(_READ_SIZE):
                yield chunk

    async def aclose(self) -> None:
        if self._response.content.at_eof():
            self._response.release()  # back to the pool
        else:
            self._response.close()  # a watch or an unread body: the connection goes


class AiohttpTransport(httpx2.AsyncBaseTransport):
    """httpx2 requests over an aiohttp ClientSession, made on first use (it needs a loop).

    ``ssl_context`` carries the cluster's CA and client certificate; an ``sni_hostname``
    request extension (kubeconfig ``tls-server-name``) becomes aiohttp's
    ``server_hostname``. Connections are not capped: every open watch holds one, and API
    Priority and Fairness on the server bounds concurrency.
    """

    def __init__(self, ssl_context: ssl.SSLContext, *, keepalive_timeout: float = 60.0) -> None:
        self._ssl = ssl_context
        self._keepalive_timeout = keepalive_timeout
        self._session: aiohttp.ClientSession | None = None

    def _session_for_loop(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                ssl=self._ssl,
                limit=0,
                limit_per_host=0,
                keepalive_timeout=self._keepalive_timeout,
                use_dns_cache=False,  # 127.0.0.1 or names a resolver answers at once
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                auto_decompress=False,  # httpx2 decodes by Content-Encoding
                skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
                cookie_jar=aiohttp.DummyCookieJar(),
                trust_env=False,
            )
        return self._session

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        session = self._session_for_loop()
        timeouts: dict[str, float | None] = request.extensions.get("timeout", {})
        options: dict[str, Any] = {}
        if sni := request.extensions.get("sni_hostname"):
            options["server_hostname"] = sni
        body = await request.aread()
        with _mapped(request, reading=False):
            response = await session.request(
                request.method,
                URL(str(request.url), encoded=True),
                headers=[
                    (k.decode("latin-1"), v.decode("latin-1"))
                    for k, v in request.headers.raw
                    if k.lower() != b"host"  # aiohttp writes Host from the URL
                ],
                data=body or None,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(
                    total=None,
                    connect=timeouts.get("connect"),
                    sock_read=timeouts.get("read"),
                ),
                **options,
            )
        return httpx2.Response(
            status_code=response.status,
            headers=[(bytes(k), bytes(v)) for k, v in response.raw_headers],
            stream=_ResponseStream(response, request),
            extensions={
                "http_version": b"HTTP/1.1",
                "reason_phrase": (response.reason or "").encode(),
            },
        )

    async def aclose(self) -> None:
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()
