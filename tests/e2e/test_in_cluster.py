"""Components in in-cluster mode: no ``--kubeconfig``, a ServiceAccount from the Pod's files.

The Pod filesystem is simulated: a folder with ``token`` (a real bound ServiceAccount token
of the parent, from the TokenRequest API, for a ServiceAccount with exactly the RBAC the
Helm chart grants), ``ca.crt`` and ``namespace``, named by ``CLUSTERNET_SERVICEACCOUNT_DIR``,
and ``KUBERNETES_SERVICE_HOST``/``PORT`` pointing at the parent.  The environment's own
scheduler and controller manager are stopped; the real processes started here take over
(leader election included) and a Subscription gets scheduled and deployed to the child.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from clusternet.kube import load_kubeconfig
from clusternet.local.binaries import Toolbox
from clusternet.local.environment import Options
from clusternet.local.testing import Clusters, start_environment, wait_until

CHARTS = Path(__file__).resolve().parents[2] / "deploy" / "charts"
NAMESPACE = "clusternet-system"
RELEASE = "clusternet"


def chart_rbac(chart: str, *values: str) -> str:
    """The ServiceAccount and RBAC objects the chart would install (``values``: --set k=v)."""
    helm = Toolbox().locate("helm")
    if helm is None:
        pytest.skip("helm is not built: run `clusternet local build`")
    rendered = subprocess.run(
        [
            str(helm), "template", RELEASE, str(CHARTS / chart), "--namespace", NAMESPACE,
            "--show-only", "templates/serviceaccount.yaml", "--show-only", "templates/rbac.yaml",
            *(arg for value in values for arg in ("--set", value)),
        ],
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    return rendered.stdout


def pod_filesystem(
    c: Clusters, chart: str, folder: Path, cluster: str = "parent", *values: str
) -> dict[str, str]:
    """Install ``chart``'s ServiceAccount + RBAC in ``cluster`` and lay out what the kubelet
    would mount there; returns the Pod's environment."""
    kubectl = c.kubectl(cluster)
    kubectl.apply(chart_rbac(chart, *values))
    account = f"{RELEASE}-{chart}"
    token = kubectl("create", "token", account, "-n", NAMESPACE, "--duration=1h").stdout.strip()
    config = load_kubeconfig(c.state.cluster(cluster).kubeconfig)
    assert config.ca_data is not None
    folder.mkdir(parents=True)
    (folder / "token").write_text(token)
    (folder / "ca.crt").write_bytes(config.ca_data)
    (folder / "namespace").write_text(NAMESPACE)
    server = urlsplit(config.server)
    env = {k: v for k, v in os.environ.items() if k not in ("KUBECONFIG",)}
    env.update(
        KUBERNETES_SERVICE_HOST=server.hostname or "127.0.0.1",
        KUBERNETES_SERVICE_PORT=str(server.port),
        CLUSTERNET_SERVICEACCOUNT_DIR=str(folder),
    )
    return env


@contextmanager
def component(
    module: str, env: dict[str, str], log: Path, *args: str
) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", module, "--secure-port=0", *args],
            stdout=sink, stderr=subprocess.STDOUT, env=env,
        )  # fmt: skip
        try:
            yield process
        finally:
            process.kill()
            process.wait()
            print(f"--- {log}\n{log.read_text()}")  # shown by pytest when the test fails


@pytest.fixture(scope="module")
def clusters(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Clusters]:
    with start_environment(tmp_path_factory.mktemp("in-cluster"), Options(children=1)) as c:
        c.env.stop_process("parent/clusternet-scheduler")
        c.env.stop_process("parent/clusternet-controller-manager")
        yield c


def test_scheduler_and_controller_manager_in_cluster_mode(
    clusters: Clusters, tmp_path: Path
) -> None:
    c = clusters
    scheduler_env = pod_filesystem(c, "clusternet-scheduler", tmp_path / "scheduler-sa")
    manager_env = pod_filesystem(c, "clusternet-controller-manager", tmp_path / "manager-sa")
    feature_gates = (
        "--feature-gates=Deployer=true,FeedInUseProtection=true,FeedInventory=true,"
        "SocketConnection=true"
    )
    kc = c.kubectl("parent")
    namespace = f"t-{uuid.uuid4().hex[:8]}"
    kc("create", "namespace", namespace)
    c.kubectl(c.children[0])("create", "namespace", namespace)
    # Feeds are templates stored through the hub's shadow API (Manifests), not live objects.
    shadow = f"/apis/shadow/v1alpha1/namespaces/{namespace}/configmaps"
    configmap = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "greeting", "namespace": namespace},
        "data": {"hello": "world"},
    }
    wait_until(
        lambda: (
            kc(
                "create", "--raw", shadow, "-f", "-", input=json.dumps(configmap), check=False
            ).returncode
            == 0
        ),
        "the shadow API to store the ConfigMap",
    )
    with (
        component("clusternet.scheduler", scheduler_env, tmp_path / "scheduler.log"),
        component(
            "clusternet.controllermanager", manager_env, tmp_path / "manager.log", feature_gates
        ),
    ):
        kc.apply(
            json.dumps(
                {
                    "apiVersion": "apps.clusternet.io/v1alpha1",
                    "kind": "Subscription",
                    "metadata": {"name": "greeting", "namespace": namespace},
                    "spec": {
                        "subscribers": [{"clusterAffinity": {}}],
                        "feeds": [
                            {
                                "apiVersion": "v1",
                                "kind": "ConfigMap",
                                "name": "greeting",
                                "namespace": namespace,
                            },
                        ],
                    },
                }
            )
        )

        def bound() -> list[str]:
            sub = kc.json("get", "subscription", "greeting", "-n", namespace)
            return list((sub.get("status") or {}).get("bindingClusters") or [])

        # The scheduler (in-cluster credentials) placed it on the one child ...
        assert len(wait_until(bound, "the Subscription to be scheduled", timeout=120)) == 1
        # ... and the controller manager (in-cluster credentials) deployed it there.
        child = c.kubectl(c.children[0])

        def deployed() -> bool:
            got = child("get", "configmap", "greeting", "-n", namespace, check=False)
            return got.returncode == 0

        wait_until(deployed, "the ConfigMap to reach the child", timeout=120)
        # Both hold their leases under the identities of their ServiceAccounts' Pods.
        leases = kc.json("get", "leases", "-n", NAMESPACE)["items"]
        holders = {
            lease["metadata"]["name"]: lease["spec"].get("holderIdentity") for lease in leases
        }
        assert holders.get("clusternet-scheduler")
        assert holders.get("clusternet-controller-manager")


def test_agent_in_cluster_mode_registers_and_reports(clusters: Clusters, tmp_path: Path) -> None:
    """The agent of child1 replaced by one with the agent chart's ServiceAccount in child1:
    it keeps the cluster's identity (its Lease) and reports the cluster Ready again."""
    c = clusters
    child = c.children[0]
    parent_url = c.state.cluster("parent").server
    token = c.state.bootstrap_token
    assert token is not None
    env = pod_filesystem(
        c, "clusternet-agent", tmp_path / "agent-sa", child,
        f"parent.url={parent_url}", f"registrationToken.value={token}",
    )  # fmt: skip
    token_file = tmp_path / "registration" / "token"
    token_file.parent.mkdir()
    token_file.write_text(token)
    kc = c.kubectl("parent")
    c.env.stop_process(f"{child}/clusternet-agent")
    before = c.managed_clusters()[child]  # the last word of the stopped agent
    with component(
        "clusternet.agent", env, tmp_path / "agent.log",
        f"--cluster-reg-parent-url={parent_url}", f"--cluster-reg-token-file={token_file}",
        f"--cluster-reg-name={child}", "--cluster-status-update-frequency=2s",
        "--feature-gates=AppPusher=true,SocketConnection=true",
    ):  # fmt: skip

        def reported() -> bool:
            now = c.managed_clusters().get(child) or {}
            status = now.get("status") or {}
            ready = any(
                cond.get("type") == "Ready" and cond.get("status") == "True"
                for cond in status.get("conditions") or ()
            )
            return ready and status.get("lastObservedTime", "") > (before.get("status") or {}).get(
                "lastObservedTime", ""
            )

        wait_until(reported, "the in-cluster agent's heartbeat", timeout=120)
        after = c.managed_clusters()[child]
        # Same cluster (the ID is the agent Lease's UID in the child), not a new registration.
        assert after["spec"]["clusterId"] == before["spec"]["clusterId"]
        assert after["metadata"]["uid"] == before["metadata"]["uid"]
        assert len(kc.json("get", "managedclusters", "-A")["items"]) == len(c.children)


def test_hub_in_cluster_mode_serves_behind_the_aggregator(
    clusters: Clusters, tmp_path: Path
) -> None:
    """The environment's hub replaced by one with the hub chart's ServiceAccount (same port,
    same serving certificate): the parent's aggregator reaches it and the shadow API stores
    templates with its credentials."""
    c = clusters
    env = pod_filesystem(c, "clusternet-hub", tmp_path / "hub-sa")
    (record,) = [p for p in c.state.processes if p.name == "parent/clusternet-hub"]
    args = [a for a in record.argv[3:] if not a.startswith("--kubeconfig=")]
    c.env.stop_process("parent/clusternet-hub")
    kc = c.kubectl("parent")
    namespace = f"t-{uuid.uuid4().hex[:8]}"
    shadow = f"/apis/shadow/v1alpha1/namespaces/{namespace}/configmaps"
    configmap = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "from-the-pod", "namespace": namespace},
        "data": {"served": "in-cluster"},
    }
    try:
        with component("clusternet.hub", env, tmp_path / "hub.log", *args):
            wait_until(
                lambda: kc("get", "--raw", "/apis/shadow/v1alpha1", check=False).returncode == 0,
                "the in-cluster hub behind the aggregator",
                timeout=120,
            )
            wait_until(
                lambda: (
                    kc(
                        "create",
                        "--raw",
                        shadow,
                        "-f",
                        "-",
                        input=json.dumps(configmap),
                        check=False,
                    ).returncode
                    == 0
                ),
                "a template stored through the in-cluster hub",
                timeout=60,
            )
            stored = json.loads(kc("get", "--raw", f"{shadow}/from-the-pod").stdout)
            assert stored["data"] == {"served": "in-cluster"}
            manifests = kc.json("get", "manifests", "-n", "clusternet-reserved")["items"]
            assert f"configmaps.{namespace}.from-the-pod" in {
                m["metadata"]["name"] for m in manifests
            }
            # Everything the hub reads is allowed by the chart's RBAC (a missing rule shows as
            # a list/watch retry in its log; the APIService rule was missing once).
            assert "forbidden" not in (tmp_path / "hub.log").read_text().lower()
    finally:
        c.env.start_process("parent/clusternet-hub")
