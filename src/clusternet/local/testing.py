"""pytest fixtures that give tests real clusters started by ``clusternet local up``.

Load with ``pytest_plugins = ["clusternet.local.testing"]``.  One environment (a parent and
two children by default, ``CLUSTERNET_TEST_CHILDREN`` to change) is shared by the whole
session and always torn down at the end; each test gets a fresh namespace.  Tests that must
break a control plane start an environment of their own with :func:`start_environment`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

from clusternet.apis import known
from clusternet.local.binaries import Toolbox
from clusternet.local.environment import LocalEnvironment, Options, State, free_port

T = TypeVar("T")


@dataclass
class Kubectl:
    """Runs the real kubectl against one context of a local environment."""

    kubeconfig: Path
    context: str
    binary: str = "kubectl"

    def __call__(
        self, *args: str, check: bool = True, input: str | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        cmd = [self.binary, f"--kubeconfig={self.kubeconfig}", f"--context={self.context}", *args]
        result = subprocess.run(
            cmd, capture_output=True, text=True, input=input, timeout=timeout, check=False
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"{' '.join(cmd)} failed ({result.returncode}):\n{result.stdout}{result.stderr}"
            )
        return result

    def json(self, *args: str) -> Any:
        return json.loads(self(*args, "-o", "json").stdout)

    def apply(self, manifest: str, *args: str) -> subprocess.CompletedProcess[str]:
        return self("apply", "-f", "-", *args, input=manifest)


@dataclass
class Clusters:
    """What a test gets: the environment, its kubeconfig and a kubectl per context."""

    env: LocalEnvironment
    state: State

    @property
    def kubeconfig(self) -> Path:
        return Path(self.state.kubeconfig)

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.state.clusters]

    @property
    def children(self) -> list[str]:
        return [c.name for c in self.state.children]

    def kubectl(self, context: str = "parent") -> Kubectl:
        return Kubectl(self.kubeconfig, context, kubectl_binary())

    def managed_clusters(self) -> dict[str, dict[str, Any]]:
        """This environment's children → their ManagedCluster in the parent (tests may
        register clusters of their own, e.g. without an agent: those are left out)."""
        listed = self.kubectl("parent").json("get", "managedclusters.clusters.clusternet.io", "-A")
        found = {
            item["metadata"].get("labels", {}).get(known.CLUSTER_NAME_LABEL): item
            for item in listed["items"]
        }
        return {name: found[name] for name in self.children if name in found}

    def dedicated_namespaces(self) -> dict[str, str]:
        """This environment's children → their dedicated namespace in the parent."""
        return {name: mc["metadata"]["namespace"] for name, mc in self.managed_clusters().items()}

    def plugin(
        self, *args: str, check: bool = True, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """``kubectl clusternet <args> --context parent``, run by the real kubectl, which finds
        the ``kubectl-clusternet`` of this Python environment on $PATH."""
        path = [str(Path(sys.executable).parent), str(Path(kubectl_binary()).parent)]
        env = {
            **os.environ,
            "PATH": os.pathsep.join([*path, os.environ.get("PATH", "")]),
            "KUBECONFIG": str(self.kubeconfig),
        }
        cmd = [kubectl_binary(), "clusternet", *args, "--context", "parent"]
        result = subprocess.run(
            cmd, capture_output=True, text=True, input=input, env=env, timeout=120, check=False
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"{' '.join(cmd)} failed ({result.returncode}):\n{result.stdout}{result.stderr}"
            )
        return result


def wait_until(
    condition: Callable[[], T | None], what: str, timeout: float = 60, interval: float = 0.2
) -> T:
    """Call ``condition`` until it returns something truthy, and return that; fail naming
    ``what`` after ``timeout`` seconds.  For state with no watch to wait on (a log, a CLI's
    output, a proxy's answer)."""
    deadline = time.monotonic() + timeout
    while not (outcome := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what} after {timeout:.0f}s")
        time.sleep(interval)
    return outcome


def kubectl_binary() -> str:
    """kubectl of the servers' exact version (built with them), else the one on $PATH."""
    found = Toolbox().locate("kubectl") or shutil.which("kubectl")
    if found is None:
        raise RuntimeError("kubectl is not installed (the real-cluster tests drive it)")
    return str(found)


class Relay:
    """A TCP relay on 127.0.0.1 for network faults: it spreads connections over ``backends``
    in turn, skipping one that refuses (a stopped replica), like a Service in front of
    several pods; :meth:`cut` drops every connection and refuses new ones, as a broken link
    would, and :meth:`heal` listens again on the same port."""

    def __init__(self, backends: Sequence[int]) -> None:
        self.backends = list(backends)
        self.port = free_port()
        self._turn = 0
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.StreamWriter] = set()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def __enter__(self) -> Relay:
        self._thread.start()
        self.heal()
        return self

    def __exit__(self, *_: object) -> None:
        self.cut()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def cut(self) -> None:
        """Close the listener and every relayed connection (both sides see a reset)."""
        self._call(self._cut())

    def heal(self) -> None:
        self._call(self._listen())

    def _call(self, coroutine: Any) -> None:
        asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(10)

    async def _listen(self) -> None:
        if self._server is None:
            self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def _cut(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for writer in list(self._connections):
            writer.transport.abort()
        self._connections.clear()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        backends = list(self.backends)
        upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        for _ in range(len(backends)):
            port = backends[self._turn % len(backends)]
            self._turn += 1
            with contextlib.suppress(OSError):
                upstream = await asyncio.open_connection("127.0.0.1", port)
                break
        if upstream is None or self._server is None:
            writer.transport.abort()
            if upstream is not None:
                upstream[1].transport.abort()
            return
        self._connections.update((writer, upstream[1]))

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            with contextlib.suppress(OSError):
                dst.close()

        try:
            await asyncio.gather(pump(reader, upstream[1]), pump(upstream[0], writer))
        finally:
            self._connections.difference_update((writer, upstream[1]))


@contextmanager
def start_environment(run_dir: Path, options: Options | None = None) -> Iterator[Clusters]:
    """A local environment of its own, always stopped on exit (even on failure)."""
    env = LocalEnvironment(run_dir=run_dir / "run", kubeconfig=run_dir / "kubeconfig")
    try:
        state = env.up(options or Options())
        yield Clusters(env, state)
    finally:
        env.down()


@pytest.fixture(scope="session")
def clusters(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Clusters]:
    children = int(os.environ.get("CLUSTERNET_TEST_CHILDREN", "2"))
    with start_environment(
        tmp_path_factory.mktemp("clusternet-local"), Options(children=children, nodes_per_child=2)
    ) as env:
        yield env


@pytest.fixture
def namespace(clusters: Clusters) -> Iterator[str]:
    """A fresh namespace, created in the parent and every child, deleted afterwards."""
    name = f"t-{uuid.uuid4().hex[:8]}"
    contexts: Sequence[str] = clusters.names
    for context in contexts:
        clusters.kubectl(context)("create", "namespace", name)
    yield name
    for context in contexts:
        clusters.kubectl(context)("delete", "namespace", name, "--wait=false", check=False)
