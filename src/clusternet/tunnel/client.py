"""The agent's end of the tunnel: keep one websocket to the hub and serve its Connects."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections.abc import Mapping

import aiohttp

from clusternet.runtime._backoff import Backoff
from clusternet.tunnel._session import DEFAULT_FLOW, AllowFunc, FlowControl, Session

__all__ = ["TunnelClient"]

log = logging.getLogger(__name__)

_HANDSHAKE_HINTS = {
    401: "the hub did not accept the agent's credentials",
    403: "the agent's credentials may not open this cluster's socket",
    404: "no tunnel endpoint at this URL (is the SocketConnection gate on in the hub?)",
}


class TunnelClient:
    """Connects to ``url`` (``wss://<parent>/apis/proxies.clusternet.io/v1alpha1/sockets/<id>``)
    and serves the hub's Connect requests for addresses ``allow`` accepts, until stopped.

    A lost or refused connection is retried after an exponential backoff with jitter; the
    backoff starts over only once a session has stayed up for ``stable_after`` seconds, so
    a hub that accepts and drops at once is not hammered.  ``heartbeat`` is the ping
    interval (remotedialer pings every 5 s; an unanswered ping ends the session).
    """

    def __init__(
        self,
        url: str,
        *,
        allow: AllowFunc,
        headers: Mapping[str, str] | None = None,
        ssl_context: ssl.SSLContext | bool = True,
        heartbeat: float = 5.0,
        connect_timeout: float = 30.0,
        dial_timeout: float = 30.0,
        backoff: Backoff | None = None,
        stable_after: float = 10.0,
        flow: FlowControl = DEFAULT_FLOW,
        name: str = "",
    ) -> None:
        self.url = url
        self.name = name or url
        self._allow = allow
        self._headers = dict(headers or {})
        self._ssl = ssl_context
        self._heartbeat = heartbeat
        self._connect_timeout = connect_timeout
        self._dial_timeout = dial_timeout
        self._backoff = backoff or Backoff(initial=0.5, cap=30.0, jitter=0.5)
        self._stable_after = stable_after
        self._flow = flow
        self._session: Session | None = None
        self._changed = asyncio.Condition()
        self._stopping = asyncio.Event()

    @property
    def session(self) -> Session | None:
        return self._session

    def is_connected(self) -> bool:
        return self._session is not None

    async def wait_connected(self) -> Session:
        async with self._changed:
            await self._changed.wait_for(lambda: self._session is not None)
            assert self._session is not None
            return self._session

    async def run(self) -> None:
        """Connect, serve, reconnect — until :meth:`stop`."""
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=self._connect_timeout)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            while not self._stopping.is_set():
                problem = await self._connect_once(http)
                if self._stopping.is_set():
                    break
                delay = self._backoff.next_delay()
                log.warning("tunnel to %s: %s; reconnecting in %.1fs", self.url, problem, delay)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await self._stopping.wait()

    async def stop(self) -> None:
        self._stopping.set()
        if self._session is not None:
            await self._session.close("agent stopping")

    async def _connect_once(self, http: aiohttp.ClientSession) -> str:
        """One connection attempt and, if it succeeds, its session; returns what ended it."""
        try:
            ws = await http.ws_connect(
                self.url, headers=self._headers, ssl=self._ssl, heartbeat=self._heartbeat
            )
        except aiohttp.WSServerHandshakeError as exc:
            hint = _HANDSHAKE_HINTS.get(exc.status, "")
            return f"websocket upgrade refused: HTTP {exc.status} {exc.message}. {hint}".strip()
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            return f"cannot connect: {exc!r}"
        async with ws:
            session = Session(
                ws,
                name=self.name,
                allow=self._allow,
                dial_timeout=self._dial_timeout,
                flow=self._flow,
            )
            if self._stopping.is_set():
                return "agent stopping"
            log.info("tunnel to %s connected", self.url)
            started = time.monotonic()
            await self._set_session(session)
            try:
                await session.run()
            finally:
                await self._set_session(None)
            if time.monotonic() - started >= self._stable_after:
                self._backoff.reset()
            return f"connection lost: {session.close_reason}"

    async def _set_session(self, session: Session | None) -> None:
        async with self._changed:
            self._session = session
            self._changed.notify_all()
