"""What every component process gets: health and metrics endpoints, and a graceful shutdown.

The endpoints behave like Kubernetes components':

* ``/livez`` runs the liveness checks, ``/readyz`` the liveness and readiness checks, and
  ``/healthz`` (the older aggregate) the same as ``/readyz``;
* they answer ``200 ok``; ``?verbose`` lists every check as ``[+]name ok``; a failure
  answers 500 with that list, failing checks as ``[-]name failed: reason withheld`` (the
  reason goes to the log, not to unauthenticated callers); ``?exclude=name`` skips a check;
* ``/metrics`` is the Prometheus text exposition of a registry.

:func:`run_component` runs a component's main coroutine until it returns or the process gets
SIGTERM/SIGINT, then cancels it, runs the shutdown hooks in reverse order and exits.  From the
first signal on ``/readyz`` fails (check ``shutdown``) so that load balancers stop routing
while the hooks run; a second signal exits at once.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Collection, Coroutine, Iterable
from typing import Any, NoReturn

import structlog
from aiohttp import web
from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.aiohttp import make_aiohttp_handler

from clusternet.runtime.logging import LogFormat, configure_logging

log = structlog.get_logger(__name__)

HealthCheck = Callable[[], bool | Awaitable[bool]]
ShutdownHook = Callable[[], Awaitable[None] | None]
ComponentMain = Callable[["Component"], Coroutine[Any, Any, None]]


class HealthChecks:
    """Named checks behind ``/livez`` and ``/readyz``: one fails by returning False or raising."""

    def __init__(self) -> None:
        self._liveness: dict[str, HealthCheck] = {"ping": lambda: True}
        self._readiness: dict[str, HealthCheck] = {}

    def add_liveness_check(self, name: str, check: HealthCheck) -> None:
        """A failing liveness check gets the process restarted: only for unrecoverable states."""
        self._add(self._liveness, name, check)

    def add_readiness_check(self, name: str, check: HealthCheck) -> None:
        """E.g. ``informers-synced`` or ``leader``: not ready yet, or not ready any more."""
        self._add(self._readiness, name, check)

    def _add(self, checks: dict[str, HealthCheck], name: str, check: HealthCheck) -> None:
        if name in self._liveness or name in self._readiness:
            raise ValueError(f"health check {name!r} is registered already")
        checks[name] = check

    async def run(
        self, *, readiness: bool, exclude: Collection[str] = ()
    ) -> dict[str, bool | None]:
        """Every liveness check, and with ``readiness`` every readiness check.

        Name -> passed, or None for an excluded check, which is not run.
        """
        checks = {**self._liveness, **self._readiness} if readiness else self._liveness
        return {
            name: None if name in exclude else await _passes(name, check)
            for name, check in checks.items()
        }


async def _passes(name: str, check: HealthCheck) -> bool:
    try:
        outcome = check()
        if inspect.isawaitable(outcome):
            outcome = await outcome
    except Exception:
        log.warning("health check failed", check=name, exc_info=True)
        return False
    return bool(outcome)


class ComponentServer:
    """The aiohttp server for health and metrics; ``port=0`` binds a free port."""

    def __init__(
        self,
        checks: HealthChecks,
        *,
        port: int,
        host: str = "127.0.0.1",
        registry: CollectorRegistry = REGISTRY,
    ) -> None:
        self.checks = checks
        self.host = host
        self.requested_port = port
        self.registry = registry
        self._runner: web.AppRunner | None = None

    def application(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/healthz", self._endpoint("healthz", readiness=True))
        app.router.add_get("/livez", self._endpoint("livez", readiness=False))
        app.router.add_get("/readyz", self._endpoint("readyz", readiness=True))
        app.router.add_get("/metrics", make_aiohttp_handler(self.registry))
        return app

    async def start(self) -> None:
        # Probes and scrapes arrive every few seconds: an access log would drown the real one.
        self._runner = web.AppRunner(self.application(), access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self.requested_port).start()
        log.info("serving health and metrics", address=f"{self.host}:{self.port}")

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def port(self) -> int:
        """The bound port, known once started."""
        if self._runner is None or not self._runner.addresses:
            raise RuntimeError("the server is not started")
        port: int = self._runner.addresses[0][1]
        return port

    def _endpoint(
        self, endpoint: str, *, readiness: bool
    ) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def handle(request: web.Request) -> web.Response:
            excluded = set(request.query.getall("exclude", []))
            results = await self.checks.run(readiness=readiness, exclude=excluded)
            listing = "".join(
                f"[+]{name} excluded: ok\n"
                if passed is None
                else f"[+]{name} ok\n"
                if passed
                else f"[-]{name} failed: reason withheld\n"
                for name, passed in results.items()
            )
            headers = {"X-Content-Type-Options": "nosniff"}
            if False in results.values():
                log.info("health endpoint failing", endpoint=endpoint, checks=results)
                text = f"{listing}{endpoint} check failed\n"
                return web.Response(status=500, text=text, headers=headers)
            text = f"{listing}{endpoint} check passed\n" if "verbose" in request.query else "ok"
            return web.Response(text=text, headers=headers)

        return handle


class Component:
    """What a component's main coroutine gets from :func:`run_component`."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.shutting_down = False
        self.health = HealthChecks()
        self.health.add_readiness_check("shutdown", lambda: not self.shutting_down)
        self._shutdown_hooks: list[ShutdownHook] = []
        self._shutdown_requested = asyncio.Event()

    def add_shutdown_hook(self, hook: ShutdownHook) -> None:
        """Run ``hook`` after main has stopped; hooks run in reverse order of registration."""
        self._shutdown_hooks.append(hook)

    def request_shutdown(self) -> None:
        """Stop the component as a signal would."""
        self.shutting_down = True
        self._shutdown_requested.set()

    async def _run_shutdown_hooks(self) -> bool:
        clean = True
        while self._shutdown_hooks:
            hook = self._shutdown_hooks.pop()
            try:
                outcome = hook()
                if inspect.isawaitable(outcome):
                    await outcome
            except Exception:
                log.exception("shutdown hook failed", hook=getattr(hook, "__qualname__", hook))
                clean = False
        return clean


async def serve_component(
    main: ComponentMain,
    *,
    name: str,
    port: int | None,
    host: str = "127.0.0.1",
    registry: CollectorRegistry = REGISTRY,
    grace_period: float = 30.0,
    signals: Iterable[signal.Signals] = (signal.SIGTERM, signal.SIGINT),
) -> int:
    """Run ``main(component)`` until it returns or a signal arrives; the exit code.

    0 when main returned or stopped on request; 1 when it raised, outlived ``grace_period``
    after being cancelled, or a shutdown hook failed.  ``port=None`` serves no endpoints.
    Work that main starts should be its children (e.g. in a TaskGroup), so that cancelling
    main stops it before the shutdown hooks close what that work uses.
    """
    component = Component(name)
    if port is not None:
        server = ComponentServer(component.health, host=host, port=port, registry=registry)
        await server.start()
        component.add_shutdown_hook(server.stop)  # registered first, so it stops last

    loop = asyncio.get_running_loop()
    signals = tuple(signals)
    for signum in signals:
        loop.add_signal_handler(signum, _on_signal, component, signum)
    main_task = asyncio.create_task(main(component), name=f"{name}-main")
    shutdown_requested = asyncio.create_task(component._shutdown_requested.wait())
    exit_code = 0
    try:
        await asyncio.wait({main_task, shutdown_requested}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        component.shutting_down = True
        shutdown_requested.cancel()
        if not main_task.done():
            main_task.cancel()
            await asyncio.wait({main_task}, timeout=grace_period)
        if not main_task.done():
            log.error("main did not stop within the grace period", grace_period=grace_period)
            exit_code = 1
        elif not main_task.cancelled() and (error := main_task.exception()) is not None:
            log.error("component failed", component=name, exc_info=error)
            exit_code = 1
        if not await component._run_shutdown_hooks():
            exit_code = 1
        for signum in signals:
            loop.remove_signal_handler(signum)
    log.info("component stopped", component=name, exit_code=exit_code)
    return exit_code


def _on_signal(component: Component, signum: signal.Signals) -> None:
    if component.shutting_down:
        log.warning("second signal, exiting without cleanup", signal=signum.name)
        os._exit(1)
    log.info("shutting down", component=component.name, signal=signum.name)
    component.request_shutdown()


def run_component(
    main: ComponentMain,
    *,
    name: str,
    port: int | None,
    host: str = "127.0.0.1",
    log_format: LogFormat = "console",
    log_level: str = "INFO",
    grace_period: float = 30.0,
) -> NoReturn:
    """The entry point of a component process: logging, endpoints, signals, exit code."""
    configure_logging(log_format, log_level)
    code = asyncio.run(
        serve_component(main, name=name, port=port, host=host, grace_period=grace_period)
    )
    sys.exit(code)
