"""`clusternet install` puts CRDs, namespaces and RBAC into parent and child, idempotently."""

from __future__ import annotations

import subprocess
import sys

from clusternet.apis.install import BOOTSTRAP_GROUP, parent_manifests
from clusternet.local.testing import Clusters


def install(clusters: Clusters, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "clusternet.cli.main",
            "install",
            "--kubeconfig",
            str(clusters.kubeconfig),
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def test_parent_install_is_idempotent_and_enables_registration(clusters: Clusters) -> None:
    first = install(clusters, "--context", "parent")
    assert first.returncode == 0, first.stderr
    again = install(clusters, "--context", "parent")
    assert again.returncode == 0, again.stderr
    assert f"{len(parent_manifests())} objects, 0 changed" in again.stderr

    kubectl = clusters.kubectl("parent")
    crds = kubectl.json("get", "crd")["items"]
    clusternet = [c for c in crds if c["spec"]["group"].endswith("clusternet.io")]
    assert len(clusternet) == 11
    for crd in clusternet:
        assert {"type": "Established", "status": "True"}.items() <= next(
            c for c in crd["status"]["conditions"] if c["type"] == "Established"
        ).items()
    for namespace in ("clusternet-system", "clusternet-reserved"):
        kubectl("get", "namespace", namespace)
    can = kubectl(
        "auth",
        "can-i",
        "create",
        "clusterregistrationrequests.clusters.clusternet.io",
        "--as",
        "system:bootstrap:abcdef",
        "--as-group",
        BOOTSTRAP_GROUP,
        "--as-group",
        "system:authenticated",
        check=False,
    )
    assert can.stdout.strip() == "yes"
    cannot = kubectl(
        "auth",
        "can-i",
        "list",
        "secrets",
        "-A",
        "--as",
        "system:bootstrap:abcdef",
        "--as-group",
        BOOTSTRAP_GROUP,
        check=False,
    )
    assert cannot.stdout.strip() == "no"


def test_child_install_gives_the_deployer_identity(clusters: Clusters) -> None:
    result = install(clusters, "--context", "child1", "--child")
    assert result.returncode == 0, result.stderr
    kubectl = clusters.kubectl("child1")
    kubectl("get", "crd", "serviceexports.multicluster.x-k8s.io")
    # kube-controller-manager fills the token Secret of the deployer ServiceAccount.
    kubectl(
        "wait",
        "-n",
        "clusternet-system",
        "secret/clusternet-app-deployer",
        "--for=jsonpath={.data.token}",
        "--timeout=60s",
    )
    can = kubectl(
        "auth",
        "can-i",
        "*",
        "*",
        "--as",
        "system:serviceaccount:clusternet-system:clusternet-app-deployer",
        check=False,
    )
    assert can.stdout.strip() == "yes"


def test_unknown_context_is_a_clear_error(clusters: Clusters) -> None:
    result = install(clusters, "--context", "nowhere")
    assert result.returncode == 1
    assert "kubeconfig has no context 'nowhere'" in result.stderr
    assert "Traceback" not in result.stderr
