"""A loopback HTTP proxy that puts kubectl in front of the shadow API.

kubectl talks to ``http://127.0.0.1:<port>/<one-off token>``; the proxy
authenticates to the parent with the user's own credentials and rewrites each request path
with :func:`clusternet.cli.plugin.rewrite.rewrite`.  Bodies and responses are streamed
unchanged, so Table output, protobuf, patches and watches (``get -w``) behave exactly as
they do against the parent.
"""

from __future__ import annotations

import hmac
import json
import secrets
from types import TracebackType
from typing import Any

import httpx2
from aiohttp import web

from clusternet.cli.plugin.rewrite import SHADOW_PREFIX, rewrite
from clusternet.kube import ClusterConfig, ClusterUnreachable, tls_context

# The parent is reached exactly as KubeClient reaches it (token file, exec plugin,
# impersonation), but a transparent proxy needs the raw stream, which KubeClient hides.
from clusternet.kube._auth import ExecAuth, TokenFileAuth
from clusternet.kube._client import _default_headers

# Hop-by-hop headers, credentials kubectl might send (the parent gets the user's own), and
# framing headers that both HTTP stacks recompute (httpx decodes the upstream body, aiohttp
# chunks what it sends).
_REQUEST_HEADERS_DROPPED = frozenset(
    {"host", "authorization", "connection", "keep-alive", "transfer-encoding",
     "content-length", "accept-encoding", "upgrade", "proxy-authorization", "te"}
)  # fmt: skip
_RESPONSE_HEADERS_DROPPED = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "content-length", "content-encoding"}
)


class ShadowAPINotServed(RuntimeError):
    """The parent has no ``shadow/v1alpha1``: the hub is down or runs without ShadowAPI."""


def status_body(code: int, reason: str, message: str) -> bytes:
    """A ``meta/v1 Status``, which kubectl prints as ``Error from server (<reason>): ...``."""
    status = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
              "message": message, "reason": reason, "code": code}  # fmt: skip
    return json.dumps(status).encode()


class ShadowProxy:
    """``async with ShadowProxy(config) as proxy:`` serves on ``proxy.url`` until exit.

    Only requests under ``proxy.url`` (whose path holds a random token) are forwarded, so
    other local users and processes cannot borrow the user's parent credentials.
    """

    def __init__(self, parent: ClusterConfig, *, user_agent: str = "kubectl-clusternet") -> None:
        self.parent = parent
        self.token = secrets.token_urlsafe(32)
        self.mirrored: frozenset[str] = frozenset()
        self.url = ""
        auth: httpx2.Auth | None = None
        if parent.token_file is not None:
            auth = TokenFileAuth(parent.token_file)
        elif parent.exec_plugin is not None and parent.token is None:
            auth = ExecAuth(parent.exec_plugin, parent)
        tls = tls_context(parent)
        self._http = httpx2.AsyncClient(
            base_url=parent.server,
            headers=_default_headers(parent, user_agent),
            auth=auth,
            verify=tls,
            # No read timeout: a watch (`get -w`) stays open as long as kubectl keeps it.
            timeout=httpx2.Timeout(None, connect=30.0),
            trust_env=False,
        )
        self._extensions = (
            {"sni_hostname": parent.tls_server_name} if parent.tls_server_name else {}
        )
        self._runner: web.AppRunner | None = None

    async def __aenter__(self) -> ShadowProxy:
        try:
            self.mirrored = await self.discover_shadow_resources()
            app = web.Application(client_max_size=0)  # request bodies are streamed through
            app.router.add_route("*", "/{tail:.*}", self._handle)
            self._runner = web.AppRunner(app, access_log=None)
            await self._runner.setup()
            site = web.TCPSite(self._runner, "127.0.0.1", 0)
            await site.start()
            host, port = self._runner.addresses[0][:2]
            self.url = f"http://{host}:{port}/{self.token}"
        except BaseException:
            await self.aclose()
            raise
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        await self._http.aclose()

    async def discover_shadow_resources(self) -> frozenset[str]:
        """The resources (and subresources, e.g. ``deployments/scale``) the shadow API
        mirrors, from its discovery document."""
        try:
            response = await self._http.get(
                SHADOW_PREFIX, headers={"Accept": "application/json"}, extensions=self._extensions
            )
        except httpx2.RequestError as err:
            raise ClusterUnreachable(f"{self.parent.server}: {err}") from err
        if response.status_code in (404, 503):
            raise ShadowAPINotServed(
                f"the server does not serve {SHADOW_PREFIX.removeprefix('/apis/')} "
                f"(HTTP {response.status_code}): is clusternet-hub running with the "
                "ShadowAPI feature gate?"
            )
        response.raise_for_status()
        document: dict[str, Any] = response.json()
        return frozenset(r["name"] for r in document.get("resources") or () if r.get("name"))

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        # The token is the first path segment: client-go sends no credentials to a plain
        # http:// server, but keeps a server's path prefix on every request.
        secret, _, rest = request.raw_path.removeprefix("/").partition("/")
        secret = secret.partition("?")[0]
        if not hmac.compare_digest(secret.encode(), self.token.encode()):
            return _status_response(401, "Unauthorized", "Unauthorized")
        target = rewrite(f"/{rest}", self.mirrored)
        headers = [
            (k, v) for k, v in request.headers.items() if k.lower() not in _REQUEST_HEADERS_DROPPED
        ]
        upstream = self._http.build_request(
            request.method,
            target,
            content=request.content.iter_any() if request.can_read_body else None,
            headers=headers,
            extensions=self._extensions,
        )
        try:
            response = await self._http.send(upstream, stream=True)
        except httpx2.RequestError as err:
            return _status_response(503, "ServiceUnavailable", f"{self.parent.server}: {err}")
        try:
            reply = web.StreamResponse(status=response.status_code)
            for key, value in response.headers.multi_items():
                if key.lower() not in _RESPONSE_HEADERS_DROPPED:
                    reply.headers.add(key, value)
            await reply.prepare(request)
            async for chunk in response.aiter_bytes():
                await reply.write(chunk)  # one chunk at a time: watch events arrive live
            await reply.write_eof()
            return reply
        finally:
            await response.aclose()


def _status_response(code: int, reason: str, message: str) -> web.Response:
    return web.Response(
        status=code, body=status_body(code, reason, message), content_type="application/json"
    )
