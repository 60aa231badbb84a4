"""clusternet-agent against real control planes: registration, status, restarts, bad tokens.

One private environment (parent + 2 children of 2 kwok nodes with 4 CPUs / 8Gi each) without
the components `local up` would start: this module runs the real controller-manager and the
agents itself, so that it can stop and restart them.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from clusternet.local import components
from clusternet.local.binaries import KUBERNETES_VERSION
from clusternet.local.environment import Options
from clusternet.local.pki import PKI
from clusternet.local.testing import Clusters, Kubectl, start_environment

CRR = "clusterregistrationrequests.clusters.clusternet.io"
MC = "managedclusters.clusters.clusternet.io"
ID_LABEL = "clusters.clusternet.io/cluster-id"


class Process:
    """A component process whose JSON log lines the test can wait for."""

    def __init__(self, argv: list[str], log: Path) -> None:
        self.log = log
        self._file = log.open("ab")
        self.popen = subprocess.Popen(argv, stdout=self._file, stderr=subprocess.STDOUT)

    def events(self) -> list[dict[str, Any]]:
        events = []
        for line in self.log.read_text().splitlines():
            try:
                events.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return events

    def wait_for(self, condition: Any, timeout: float = 120) -> list[dict[str, Any]]:
        """Wait until ``condition(events)`` holds for the events logged so far."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            events = self.events()
            if condition(events):
                return events
            assert self.popen.poll() is None, f"exited {self.popen.returncode}:\n{self.tail()}"
            time.sleep(0.2)
        raise AssertionError(f"the log did not show it within {timeout}s:\n{self.tail()}")

    def wait_for_event(self, name: str, contains: str = "") -> dict[str, Any]:
        """The first event ``name`` whose reason mentions ``contains``, once logged."""
        events = self.wait_for(lambda events: _matching(events, name, contains))
        return _matching(events, name, contains)[0]

    def tail(self) -> str:
        return "\n".join(self.log.read_text().splitlines()[-30:])

    def stop(self) -> int:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        self._file.close()
        return self.popen.returncode


def _matching(events: list[dict[str, Any]], name: str, contains: str) -> list[dict[str, Any]]:
    return [e for e in events if e.get("event") == name and contains in e.get("reason", "")]


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Clusters, str]]:
    """The environment, Clusternet installed, a bootstrap token, the controller-manager."""
    root = tmp_path_factory.mktemp("agent")
    options = Options(
        children=2, nodes_per_child=2, node_cpu="4", node_memory="8Gi", clusternet=False
    )
    with start_environment(root, options) as c:
        for context, child in (("parent", []), ("child1", ["--child"]), ("child2", ["--child"])):
            subprocess.run(
                [sys.executable, "-m", "clusternet.cli.main", "install",
                 f"--kubeconfig={c.kubeconfig}", f"--context={context}", *child],
                check=True, capture_output=True, timeout=180,
            )  # fmt: skip
        token = components.new_bootstrap_token()
        parent = c.state.cluster("parent")
        ca = PKI(c.env.run_dir / "pki").ca_cert.read_bytes()
        components.create_objects(
            c.env.client("parent"), components.bootstrap_manifests(token, parent.server, ca)
        )
        manager = Process(
            [sys.executable, "-m", "clusternet.controllermanager",
             f"--kubeconfig={parent.kubeconfig}", "--secure-port=0", "--leader-elect=false",
             "--log-format=json"],
            root / "controller-manager.log",
        )  # fmt: skip
        try:
            yield c, token
        finally:
            manager.stop()


def start_agent(c: Clusters, child: str, token: str, log: Path, *extra: str) -> Process:
    return Process(
        [
            sys.executable, "-m", "clusternet.agent",
            f"--kubeconfig={c.state.cluster(child).kubeconfig}",
            f"--cluster-reg-parent-url={c.state.cluster('parent').server}",
            f"--cluster-reg-token={token}",
            "--secure-port=0",
            "--log-format=json",
            "--cluster-status-update-frequency=1s",
            "--cluster-status-collect-frequency=1s",
            *extra,
        ],
        log,
    )  # fmt: skip


def cluster_id(c: Clusters, child: str) -> str:
    kubectl = c.kubectl(child)
    kubectl("wait", "--for=create", "-n", "clusternet-system", "lease/clusternet-agent",
            "--timeout=120s")  # fmt: skip
    lease = kubectl.json("get", "lease", "-n", "clusternet-system", "clusternet-agent")
    return str(lease["metadata"]["uid"])


def wait_ready(kubectl: Kubectl, namespace: str, name: str, status: str = "True") -> Any:
    kubectl("wait", "-n", namespace, f"{MC}/{name}", f"--for=condition=Ready={status}",
            "--timeout=120s")  # fmt: skip
    return kubectl.json("get", "-n", namespace, MC, name)


def secret_data(secret: dict[str, Any]) -> dict[str, str]:
    return {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}


def test_agent_registers_reports_status_and_survives_restarts(
    env: tuple[Clusters, str], tmp_path: Path
) -> None:
    c, token = env
    parent, child = c.kubectl("parent"), c.kubectl("child1")
    agent = start_agent(c, "child1", token, tmp_path / "agent.log", "--cluster-reg-name=child1")
    try:
        identity = cluster_id(c, "child1")
        request = f"{CRR}/clusternet-{identity}"
        parent("wait", request, "--for=create", "--timeout=120s")
        parent("wait", request, "--for=jsonpath={.status.result}=Approved", "--timeout=120s")
        crr = parent.json("get", request)
        assert crr["metadata"]["labels"] == {
            "clusters.clusternet.io/registered-by": "clusternet-agent",
            ID_LABEL: identity,
            "clusters.clusternet.io/cluster-name": "child1",
        }
        assert crr["spec"] == {
            "clusterId": identity, "clusterName": "child1",
            "clusterType": "StandardCluster", "syncMode": "Pull",
        }  # fmt: skip
        namespace = crr["status"]["dedicatedNamespace"]

        cluster = wait_ready(parent, namespace, "child1")
        status = cluster["status"]
        version = child.json("version")["serverVersion"]
        assert status["k8sVersion"] == KUBERNETES_VERSION == version["gitVersion"]
        assert status["platform"] == version["platform"]
        assert status["apiserverURL"] == c.state.cluster("child1").server
        assert status["healthz"] is status["livez"] is status["readyz"] is True
        nodes = child.json("get", "nodes")["items"]
        assert len(nodes) == 2
        for node in nodes:
            assert node["status"]["allocatable"]["cpu"] == "4"
            assert node["status"]["allocatable"]["memory"] == "8Gi"
        assert status["capacity"] == {"cpu": "8", "memory": "16Gi"}
        assert status["allocatable"] == {"cpu": "8", "memory": "16Gi"}
        assert status["nodeStatistics"]["readyNodes"] == 2
        assert status["heartbeatFrequencySeconds"] == 1
        assert status["appPusher"] is False
        assert status["kubeQPS"] == 50
        assert status["kubeBurst"] == 100

        stored = child.json("get", "secret", "-n", "clusternet-system", "parent-cluster")
        assert stored["metadata"]["labels"] == {
            "clusters.clusternet.io/bootstrapping": "credentials-auto",
            ID_LABEL: identity,
            "clusters.clusternet.io/cluster-name": "child1",
        }
        data = secret_data(stored)
        assert data["apiserver-advertise-url"] == c.state.cluster("parent").server
        assert data["namespace"] == namespace
        assert data["token"]
        assert "BEGIN CERTIFICATE" in data["ca.crt"]

        parent("wait", "-n", namespace, "secret/child-cluster-deployer", "--for=create",
               "--timeout=120s")  # fmt: skip
        deployer = parent.json("get", "secret", "-n", namespace, "child-cluster-deployer")
        assert deployer["metadata"]["finalizers"] == ["apps.clusternet.io/finalizer"]
        assert deployer["metadata"]["annotations"]["clusternet.io/autoupdate"] == "true"
        assert deployer["metadata"]["labels"][ID_LABEL] == identity
        data = secret_data(deployer)
        account = child.json("get", "serviceaccount", "-n", "clusternet-system",
                             "clusternet-app-deployer")  # fmt: skip
        assert data["service-account.name"] == "clusternet-app-deployer"
        assert data["service-account.uid"] == account["metadata"]["uid"]
        assert data["apiserver-advertise-url"] == c.state.cluster("child1").server
        assert data["token"]
        assert "BEGIN CERTIFICATE" in data["ca.crt"]

        # The agent stops: the controller-manager notices the missing heartbeat.
        assert agent.stop() == 0
        wait_ready(parent, namespace, "child1", status="Unknown")

        # Restarted, it reuses its identity and credentials: no new request or cluster.
        agent = start_agent(c, "child1", token, tmp_path / "agent2.log")
        agent.wait_for_event("reusing stored parent credentials")
        wait_ready(parent, namespace, "child1")
        assert cluster_id(c, "child1") == identity
        assert parent.json("get", request)["metadata"]["uid"] == crr["metadata"]["uid"]
        clusters = parent.json("get", MC, "-A", "-l", f"{ID_LABEL}={identity}")["items"]
        assert [m["metadata"]["uid"] for m in clusters] == [cluster["metadata"]["uid"]]
        requests = parent.json("get", CRR, "-l", f"{ID_LABEL}={identity}")["items"]
        assert len(requests) == 1
    finally:
        agent.stop()


def test_a_wrong_token_is_retried_with_backoff_and_creates_nothing(
    env: tuple[Clusters, str], tmp_path: Path
) -> None:
    c, token = env
    ca_file = tmp_path / "parent-ca.crt"
    ca_file.write_bytes(PKI(c.env.run_dir / "pki").ca_cert.read_bytes())
    wrong = token.split(".")[0] + "." + "0" * 16  # the right token id, a wrong secret
    agent = start_agent(
        c, "child2", wrong, tmp_path / "agent.log", f"--cluster-reg-parent-ca-file={ca_file}"
    )
    retrying = "registration failed, retrying"
    try:
        events = agent.wait_for(lambda events: len(_matching(events, retrying, "(401)")) >= 3)
        # Backoff, not a hot loop: each retry waits longer than the one before.
        delays = [e["retry_in"] for e in _matching(events, retrying, "(401)")]
        assert delays[0] < delays[1] < delays[2]
        assert agent.popen.poll() is None  # still running
        identity = cluster_id(c, "child2")
        parent = c.kubectl("parent")
        assert parent.json("get", CRR, "-l", f"{ID_LABEL}={identity}")["items"] == []
        assert parent.json("get", MC, "-A", "-l", f"{ID_LABEL}={identity}")["items"] == []
        assert (
            "parent-cluster"
            not in c.kubectl("child2")(
                "get", "secrets", "-n", "clusternet-system", "-o", "name"
            ).stdout
        )
    finally:
        agent.stop()


def test_a_forged_cluster_info_signature_stops_the_bootstrap(
    env: tuple[Clusters, str], tmp_path: Path
) -> None:
    """Without a CA file, a token that does not match the parent's cluster-info signature
    means the parent cannot be trusted: the token is never sent, nothing is created."""
    c, token = env
    wrong = token.split(".")[0] + "." + "0" * 16
    agent = start_agent(c, "child2", wrong, tmp_path / "agent.log")
    try:
        agent.wait_for_event("registration failed, retrying", "invalid signature")
        identity = cluster_id(c, "child2")
        assert c.kubectl("parent").json("get", CRR, "-l", f"{ID_LABEL}={identity}")["items"] == []
    finally:
        agent.stop()


def test_a_denied_registration_ends_the_agent_with_the_reason(
    env: tuple[Clusters, str], tmp_path: Path
) -> None:
    c, token = env
    identity = cluster_id(c, "child2")
    parent = c.kubectl("parent")
    # A request under our name but for another cluster ID: the approver denies it.
    request = {
        "apiVersion": "clusters.clusternet.io/v1beta1",
        "kind": "ClusterRegistrationRequest",
        "metadata": {"name": f"clusternet-{identity}"},
        "spec": {"clusterId": "00000000-0000-4000-8000-000000000000", "clusterName": "c2"},
    }
    parent("create", "-f", "-", input=json.dumps(request))
    try:
        parent("wait", f"{CRR}/clusternet-{identity}", "--for=jsonpath={.status.result}=Denied",
               "--timeout=120s")  # fmt: skip
        agent = start_agent(c, "child2", token, tmp_path / "agent.log")
        try:
            assert agent.popen.wait(timeout=120) == 1
        finally:
            agent.stop()
        reason = "does not match spec.clusterId"
        assert _matching(agent.events(), "registration rejected by the parent", reason)
    finally:
        parent("delete", f"{CRR}/clusternet-{identity}", "--ignore-not-found")
