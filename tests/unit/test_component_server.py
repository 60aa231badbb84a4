"""Health/metrics endpoints, structured logging and the shutdown of a component process."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import signal
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Iterator

import aiohttp
import pytest
import structlog
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry, Counter

from clusternet.runtime.logging import configure_logging, log_context
from clusternet.runtime.server import Component, ComponentServer, HealthChecks, serve_component


class Flags:
    synced = True
    leader = True


@pytest.fixture
def flags() -> Flags:
    return Flags()


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
async def client(
    flags: Flags, registry: CollectorRegistry
) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    async def is_leader() -> bool:
        return flags.leader

    checks = HealthChecks()
    checks.add_readiness_check("informers-synced", lambda: flags.synced)
    checks.add_readiness_check("leader", is_leader)
    server = ComponentServer(checks, port=0, registry=registry)
    async with TestClient(TestServer(server.application())) as test_client:
        yield test_client


ALL_PASS = "[+]ping ok\n[+]informers-synced ok\n[+]leader ok\n"


@pytest.mark.parametrize(
    ("synced", "leader", "path", "status", "body"),
    [
        (True, True, "/readyz", 200, "ok"),
        (True, True, "/livez", 200, "ok"),
        (True, True, "/healthz", 200, "ok"),
        (True, True, "/readyz?verbose", 200, ALL_PASS + "readyz check passed\n"),
        (True, True, "/livez?verbose", 200, "[+]ping ok\nlivez check passed\n"),
        (
            False,
            True,
            "/readyz",
            500,
            "[+]ping ok\n[-]informers-synced failed: reason withheld\n[+]leader ok\n"
            "readyz check failed\n",
        ),
        (
            True,
            False,
            "/healthz",
            500,
            "[+]ping ok\n[+]informers-synced ok\n[-]leader failed: reason withheld\n"
            "healthz check failed\n",
        ),
        (False, False, "/livez", 200, "ok"),  # readiness never restarts the process
        (True, False, "/readyz?exclude=leader", 200, "ok"),
        (
            True,
            False,
            "/readyz?verbose&exclude=leader",
            200,
            "[+]ping ok\n[+]informers-synced ok\n[+]leader excluded: ok\nreadyz check passed\n",
        ),
        (False, False, "/readyz?exclude=leader&exclude=informers-synced", 200, "ok"),
    ],
)
async def test_health_endpoints(
    client: TestClient[web.Request, web.Application],
    flags: Flags,
    synced: bool,
    leader: bool,
    path: str,
    status: int,
    body: str,
) -> None:
    flags.synced, flags.leader = synced, leader
    response = await client.get(path)
    assert (response.status, await response.text()) == (status, body)
    assert response.headers["Content-Type"].startswith("text/plain")


async def test_a_raising_check_fails() -> None:
    checks = HealthChecks()

    def broken() -> bool:
        raise ConnectionError("apiserver unreachable")

    checks.add_readiness_check("broken", broken)
    assert await checks.run(readiness=True) == {"ping": True, "broken": False}
    assert await checks.run(readiness=True, exclude={"broken"}) == {"ping": True, "broken": None}
    assert await checks.run(readiness=False) == {"ping": True}


def test_check_names_are_unique() -> None:
    checks = HealthChecks()
    checks.add_readiness_check("leader", lambda: True)
    with pytest.raises(ValueError, match="leader"):
        checks.add_liveness_check("leader", lambda: True)


async def test_metrics_endpoint(
    client: TestClient[web.Request, web.Application], registry: CollectorRegistry
) -> None:
    Counter("widgets_made", "Widgets.", registry=registry).inc(3)
    response = await client.get("/metrics")
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert "widgets_made_total 3.0" in (await response.text()).splitlines()


async def test_server_binds_loopback_and_a_free_port(registry: CollectorRegistry) -> None:
    server = ComponentServer(HealthChecks(), port=0, registry=registry)
    await server.start()
    try:
        assert server.host == "127.0.0.1"
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{server.port}/livez") as response,
        ):
            assert (response.status, await response.text()) == (200, "ok")
    finally:
        await server.stop()
    with pytest.raises(RuntimeError, match="not started"):
        _ = server.port


# -- serve_component, in process (signals are tested in a subprocess below) --------------------


async def test_shutdown_fails_readiness_cancels_main_and_runs_hooks_in_reverse() -> None:
    events: list[str] = []
    started = asyncio.Event()
    component_seen: list[Component] = []

    async def main(component: Component) -> None:
        component_seen.append(component)

        async def close_client() -> None:
            events.append(f"close client (ready: {await ready(component)})")

        component.add_shutdown_hook(lambda: events.append("flush"))
        component.add_shutdown_hook(close_client)
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            events.append("main cancelled")
            raise

    async def ready(component: Component) -> bool:
        return False not in (await component.health.run(readiness=True)).values()

    serving = asyncio.create_task(serve_component(main, name="tiny", port=None, signals=()))
    await started.wait()
    assert await ready(component_seen[0])
    component_seen[0].request_shutdown()
    assert not await ready(component_seen[0]), "not ready from the moment shutdown begins"
    assert await serving == 0
    assert events == ["main cancelled", "close client (ready: False)", "flush"]


async def test_main_that_raises_exits_1_after_the_hooks() -> None:
    hooks: list[str] = []

    async def main(component: Component) -> None:
        component.add_shutdown_hook(lambda: hooks.append("ran"))
        raise RuntimeError("boom")

    assert await serve_component(main, name="tiny", port=None, signals=()) == 1
    assert hooks == ["ran"]


async def test_main_that_returns_exits_0_and_a_failing_hook_exits_1() -> None:
    async def finish(component: Component) -> None:
        pass

    def broken_hook() -> None:
        raise OSError("cannot flush")

    async def finish_with_broken_hook(component: Component) -> None:
        component.add_shutdown_hook(broken_hook)

    assert await serve_component(finish, name="tiny", port=None, signals=()) == 0
    assert await serve_component(finish_with_broken_hook, name="tiny", port=None, signals=()) == 1


async def test_main_that_ignores_cancellation_is_abandoned_after_the_grace_period() -> None:
    started = asyncio.Event()
    release = asyncio.Event()
    components: list[Component] = []

    async def stubborn(component: Component) -> None:
        components.append(component)
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            await release.wait()

    serving = asyncio.create_task(
        serve_component(stubborn, name="tiny", port=None, grace_period=0.01, signals=())
    )
    await started.wait()
    components[0].request_shutdown()
    try:
        async with asyncio.timeout(5):
            assert await serving == 1
    finally:
        release.set()


COMPONENT = textwrap.dedent(
    """
    import asyncio
    from clusternet.runtime.server import run_component

    async def main(component):
        component.add_shutdown_hook(lambda: print("hook ran", flush=True))
        print("started", flush=True)
        await asyncio.Event().wait()

    run_component(main, name="tiny", port=0, log_format="json")
    """
)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_a_component_process_cleanly(signum: signal.Signals) -> None:
    process = subprocess.Popen(
        [sys.executable, "-c", COMPONENT],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline() == "started\n"
        process.send_signal(signum)
        stdout, stderr = process.communicate(timeout=30)
    finally:
        process.kill()
        process.wait()
    assert process.returncode == 0, stderr
    assert stdout == "hook ran\n"
    events = [json.loads(line)["event"] for line in stderr.splitlines()]
    assert events[-2:] == ["shutting down", "component stopped"]


# -- logging -------------------------------------------------------------------------------


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers, root.level = handlers, level
    structlog.reset_defaults()


@pytest.mark.usefixtures("restore_logging")
def test_json_logs_from_structlog_and_stdlib_carry_the_bound_context() -> None:
    stream = io.StringIO()
    configure_logging("json", "INFO", stream=stream)
    with log_context(cluster="child-1", key="default/web"):
        structlog.get_logger("clusternet.test").info("synced", objects=3)
        logging.getLogger("aiohttp.test").warning("from %s", "stdlib")
    structlog.get_logger("clusternet.test").debug("below the level")
    structlog.get_logger("clusternet.test").info("outside")

    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [(line["event"], line["level"], line["logger"]) for line in lines] == [
        ("synced", "info", "clusternet.test"),
        ("from stdlib", "warning", "aiohttp.test"),
        ("outside", "info", "clusternet.test"),
    ]
    assert lines[0]["objects"] == 3
    assert all(line["cluster"] == "child-1" for line in lines[:2])
    assert "cluster" not in lines[2]
    assert "timestamp" in lines[0]


@pytest.mark.usefixtures("restore_logging")
def test_console_logs_and_json_tracebacks() -> None:
    console = io.StringIO()
    configure_logging("console", "INFO", stream=console)
    structlog.get_logger("clusternet.test").info("hello", cluster="child-1")
    assert "hello" in console.getvalue()
    assert "cluster=child-1" in console.getvalue()
    assert not console.getvalue().lstrip().startswith("{")

    as_json = io.StringIO()
    configure_logging("json", "INFO", stream=as_json)
    try:
        raise ValueError("bad spec")
    except ValueError:
        structlog.get_logger("clusternet.test").exception("reconcile failed")
    [line] = [json.loads(text) for text in as_json.getvalue().splitlines()]
    assert line["exception"][0]["exc_type"] == "ValueError"
