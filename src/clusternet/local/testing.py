"""pytest fixtures that give tests real clusters started by ``clusternet local up``.

Load with ``pytest_plugins = ["clusternet.local.testing"]``.  One environment (a parent and
two children by default, ``CLUSTERNET_TEST_CHILDREN`` to change) is shared by the whole
session and always torn down at the end; each test gets a fresh namespace.  Tests that must
break a control plane start an environment of their own with :func:`start_environment`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
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
from clusternet.local.environment import LocalEnvironment, Options, State

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
