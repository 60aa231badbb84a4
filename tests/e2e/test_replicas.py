"""Two controller-manager replicas against one parent: one leads, the other waits; killing
the leader (SIGKILL, so it cannot release its Lease) hands over within a lease duration and
the work goes on (a new Subscription is deployed to the child)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest

from clusternet.local.environment import Options
from clusternet.local.testing import Clusters, Kubectl, start_environment, wait_until

LEASE = ("--leader-elect-lease-duration=4s", "--leader-elect-renew-deadline=3s",
         "--leader-elect-retry-period=1s")  # fmt: skip
FEATURE_GATES = (
    "--feature-gates=Deployer=true,FeedInUseProtection=true,FeedInventory=true,"
    "SocketConnection=true"
)


@pytest.fixture(scope="module")
def clusters(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Clusters]:
    with start_environment(tmp_path_factory.mktemp("replicas"), Options(children=1)) as c:
        c.env.stop_process("parent/clusternet-controller-manager")
        yield c


@contextmanager
def controller_manager(c: Clusters, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [
                sys.executable, "-m", "clusternet.controllermanager",
                f"--kubeconfig={c.state.cluster('parent').kubeconfig}",
                "--secure-port=0", "--leader-elect=true", *LEASE, FEATURE_GATES,
            ],
            stdout=sink, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            yield process
        finally:
            process.kill()
            process.wait()
            print(f"--- {log}\n{log.read_text()}")  # shown by pytest when the test fails


def leading(log: Path) -> bool:
    return "acquired the lease" in log.read_text()


def deploy_configmap(c: Clusters, kc: Kubectl, namespace: str, name: str) -> None:
    """A ConfigMap template through the shadow API, and a Subscription of it to every child;
    returns once the ConfigMap is in the child."""
    shadow = f"/apis/shadow/v1alpha1/namespaces/{namespace}/configmaps"
    configmap = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace},
        "data": {"k": name},
    }
    kc("create", "--raw", shadow, "-f", "-", input=json.dumps(configmap))
    subscription = {
        "apiVersion": "apps.clusternet.io/v1alpha1", "kind": "Subscription",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"subscribers": [{"clusterAffinity": {}}],
                 "feeds": [{"apiVersion": "v1", "kind": "ConfigMap", "name": name,
                            "namespace": namespace}]},
    }  # fmt: skip
    kc.apply(json.dumps(subscription))
    child = c.kubectl(c.children[0])
    wait_until(
        lambda: child("get", "configmap", name, "-n", namespace, check=False).returncode == 0,
        f"ConfigMap {name} to reach the child",
        timeout=120,
    )


def test_controller_manager_leader_fails_over(clusters: Clusters, tmp_path: Path) -> None:
    c = clusters
    kc = c.kubectl("parent")
    namespace = f"t-{uuid.uuid4().hex[:8]}"
    kc("create", "namespace", namespace)
    c.kubectl(c.children[0])("create", "namespace", namespace)
    logs = [tmp_path / "manager-a.log", tmp_path / "manager-b.log"]
    with ExitStack() as stack:
        processes = [stack.enter_context(controller_manager(c, log)) for log in logs]
        leaders = wait_until(
            lambda: [i for i, log in enumerate(logs) if leading(log)],
            "one replica to acquire the lease",
        )
        assert len(leaders) == 1, "both replicas lead"
        leader = leaders[0]
        follower = 1 - leader
        deploy_configmap(c, kc, namespace, "before")
        assert not leading(logs[follower])

        processes[leader].send_signal(signal.SIGKILL)
        processes[leader].wait()
        wait_until(lambda: leading(logs[follower]), "the other replica to take over", timeout=60)
        deploy_configmap(c, kc, namespace, "after")
