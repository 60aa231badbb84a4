"""``kubectl clusternet`` run by the real kubectl against a parent with clusternet running.

`clusternet local up` runs the hub with the shadow API (gate ShadowAPI), so every test here
expects it: a parent without it is a failure, not a reason to skip.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

from clusternet.apis import naming
from clusternet.local.testing import Clusters, kubectl_binary, wait_until

MANIFEST = "manifests.apps.clusternet.io"
RESERVED = "clusternet-reserved"


def plugin_env(clusters: Clusters, **extra: str) -> dict[str, str]:
    """kubectl finds `kubectl-clusternet` in the venv, and the plugin finds kubectl."""
    path = [str(Path(sys.executable).parent), str(Path(kubectl_binary()).parent)]
    return {
        **os.environ,
        "PATH": os.pathsep.join([*path, os.environ.get("PATH", "")]),
        "KUBECONFIG": str(clusters.kubeconfig),
        **extra,
    }


def plugin(
    clusters: Clusters, *args: str, stdin: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`kubectl clusternet <args>`: kubectl hands a plugin only the flags after its name, so
    callers put `--context parent` after the verb."""
    return subprocess.run(
        [kubectl_binary(), "clusternet", *args],
        capture_output=True,
        text=True,
        input=stdin,
        env=env or plugin_env(clusters),
        timeout=120,
        check=False,
    )


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, f"exit {result.returncode}:\n{result.stdout}{result.stderr}"
    return result.stdout


def require_shadow_api(clusters: Clusters) -> None:
    served = clusters.kubectl("parent")("get", "--raw", "/apis/shadow/v1alpha1", check=False)
    assert served.returncode == 0, f"the shadow API is not served: {served.stderr}"


def test_help_through_kubectl() -> None:
    path = [str(Path(sys.executable).parent), str(Path(kubectl_binary()).parent)]
    env = {**os.environ, "PATH": os.pathsep.join([*path, os.environ.get("PATH", "")])}
    out = ok(
        subprocess.run(
            [kubectl_binary(), "clusternet", "--help"],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
            check=False,
        )
    )
    for command in ("apply", "get", "clusters", "kubeconfig", "approve", "version"):
        assert command in out


def test_clusters_lists_every_child_ready(clusters: Clusters) -> None:

    def all_ready() -> tuple[list[str], dict[str, list[str]]] | None:
        rows = ok(plugin(clusters, "clusters", "--context", "parent")).splitlines()
        by_name = {row.split()[1]: row.split() for row in rows[1:]}
        ready = all(by_name.get(child, [""] * 6)[5] == "True" for child in clusters.children)
        return (rows, by_name) if ready else None

    # Ready comes with the agents' first status report.
    rows, by_name = wait_until(all_ready, "every child Ready in `clusters`", timeout=120)
    assert rows[0].split()[:3] == ["NAMESPACE", "NAME", "CLUSTER"]
    for child in clusters.children:
        namespace, _, cluster_id, sync_mode, version = by_name[child][:5]
        assert namespace.startswith("clusternet-")
        assert cluster_id
        assert sync_mode in {"Push", "Pull", "Dual"}
        assert version.startswith("v1.")


def test_kubeconfig_reaches_the_child_through_the_hub(clusters: Clusters, tmp_path: Path) -> None:
    child = clusters.children[0]
    only_in_child = f"t-{uuid.uuid4().hex[:8]}"
    clusters.kubectl(child)("create", "namespace", only_in_child)
    try:
        target = tmp_path / "via-hub"
        result = plugin(clusters, "kubeconfig", child, "--context", "parent", "-o", str(target))
        ok(result)
        assert oct(target.stat().st_mode & 0o777) == "0o600"  # it holds the child's token
        listed = subprocess.run(
            [kubectl_binary(), f"--kubeconfig={target}", "get", "ns", "-o", "name"],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout.split()
        assert f"namespace/{only_in_child}" in listed
        parent = clusters.kubectl("parent")("get", "ns", "-o", "name").stdout.split()
        assert f"namespace/{only_in_child}" not in parent
    finally:
        clusters.kubectl(child)("delete", "namespace", only_in_child, "--wait=false")


def test_kubeconfig_of_an_unknown_cluster_fails_like_kubectl(clusters: Clusters) -> None:
    result = plugin(clusters, "kubeconfig", "no-such-cluster", "--context", "parent")
    assert result.returncode == 1
    assert result.stderr.strip() == (
        'Error from server (NotFound): managedclusters.clusters.clusternet.io "no-such-cluster" '
        "not found"
    )


def workload(namespace: str) -> str:
    return f"""\
apiVersion: v1
kind: Namespace
metadata:
  name: {namespace}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: {namespace}
spec:
  replicas: 2
  selector:
    matchLabels: {{app: web}}
  template:
    metadata:
      labels: {{app: web}}
    spec:
      containers:
      - name: web
        image: nginx:1.25
---
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: {namespace}
spec:
  selector: {{app: web}}
  ports:
  - port: 80
---
apiVersion: multicluster.x-k8s.io/v1alpha1
kind: ServiceExport
metadata:
  name: web
  namespace: {namespace}
"""


def test_templates_live_in_the_shadow_api_only(clusters: Clusters, tmp_path: Path) -> None:
    require_shadow_api(clusters)
    namespace = f"baz-{uuid.uuid4().hex[:6]}"
    parent = clusters.kubectl("parent")
    files = tmp_path / "workload"
    files.mkdir()
    (files / "all.yaml").write_text(workload(namespace))
    try:
        applied = ok(plugin(clusters, "apply", "-f", str(files), "--context", "parent"))
        assert "deployment.apps/web created" in applied
        assert f"namespace/{namespace} created" in applied

        # the template, as kubectl shows a Deployment (server-side printing)
        shown = plugin(clusters, "get", "deploy", "-n", namespace, "--context", "parent")
        table = ok(shown)
        assert table.splitlines()[0].split() == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
        assert table.splitlines()[1].split()[:2] == ["web", "0/2"]
        assert "Warning" not in shown.stderr, shown.stderr
        assert ok(
            plugin(clusters, "get", "deploy/web", "-n", namespace, "-o", "name", "--context=parent")
        ) == ("deployment.apps/web\n")
        template = json.loads(
            ok(
                plugin(
                    clusters, "get", "deploy/web", "-n", namespace, "-o", "json", "--context=parent"
                )
            )
        )
        assert template["apiVersion"] == "apps/v1"
        assert template["spec"]["replicas"] == 2

        # ...and nothing real in the parent
        real = parent("get", "deploy", "-n", namespace, "-o", "name", check=False)
        assert real.stdout.strip() == ""
        assert namespace not in parent("get", "ns", "-o", "name").stdout

        # edit through the plugin: the Manifest's template changes
        manifest_name = naming.manifest_name("deployments", "web", namespace)
        before = parent.json("get", MANIFEST, "-n", RESERVED, manifest_name)
        env = plugin_env(clusters, KUBE_EDITOR="sed -i -e 's/replicas: 2/replicas: 5/'")
        ok(plugin(clusters, "edit", "deploy/web", "-n", namespace, "--context=parent", env=env))
        after = parent.json("get", MANIFEST, "-n", RESERVED, manifest_name)
        assert int(after["metadata"]["resourceVersion"]) > int(
            before["metadata"]["resourceVersion"]
        )
        assert after["template"]["spec"]["replicas"] == 5

        # editing a container image is a strategic merge patch with a list
        env = plugin_env(clusters, KUBE_EDITOR="sed -i -e 's/image: nginx:1.25/image: nginx:1.26/'")
        ok(plugin(clusters, "edit", "deploy/web", "-n", namespace, "--context=parent", env=env))
        edited = parent.json("get", MANIFEST, "-n", RESERVED, manifest_name)
        containers = edited["template"]["spec"]["template"]["spec"]["containers"]
        assert [(c["name"], c["image"]) for c in containers] == [("web", "nginx:1.26")]

        # client-side apply of a changed file patches the existing template (three-way
        # strategic merge computed by kubectl): a container added, the image set back
        changed = workload(namespace).replace(
            "        image: nginx:1.25\n",
            "        image: nginx:1.27\n      - name: sidecar\n        image: busybox\n",
        )
        (files / "all.yaml").write_text(changed)
        reapplied = ok(plugin(clusters, "apply", "-f", str(files), "--context", "parent"))
        assert "deployment.apps/web configured" in reapplied
        applied = parent.json("get", MANIFEST, "-n", RESERVED, manifest_name)
        containers = applied["template"]["spec"]["template"]["spec"]["containers"]
        assert [(c["name"], c["image"]) for c in containers] == [
            ("web", "nginx:1.27"),
            ("sidecar", "busybox"),
        ]

        # server-side apply: creates a template, then updates it
        config = workload(namespace).split("---\n")[1].replace("name: web\n", "name: ssa\n", 1)
        ssa = ["apply", "--server-side", "-f", "-", "--context=parent"]
        assert "deployment.apps/ssa serverside-applied" in ok(plugin(clusters, *ssa, stdin=config))
        ssa_manifest = naming.manifest_name("deployments", "ssa", namespace)
        assert (
            parent.json("get", MANIFEST, "-n", RESERVED, ssa_manifest)["template"]["spec"][
                "replicas"
            ]
            == 2
        )
        ok(plugin(clusters, *ssa, stdin=config.replace("replicas: 2", "replicas: 3")))
        assert (
            parent.json("get", MANIFEST, "-n", RESERVED, ssa_manifest)["template"]["spec"][
                "replicas"
            ]
            == 3
        )
        assert parent("get", "deploy", "ssa", "-n", namespace, check=False).returncode != 0
        ok(plugin(clusters, "delete", "deploy", "ssa", "-n", namespace, "--context=parent"))

        # delete through the plugin: the template and its Manifest are gone
        ok(plugin(clusters, "delete", "-f", str(files / "all.yaml"), "--context", "parent"))
        missing = plugin(clusters, "get", "deploy", "web", "-n", namespace, "--context=parent")
        assert missing.returncode == 1
        assert missing.stderr.startswith("Error from server (NotFound):"), missing.stderr
        gone = parent("get", MANIFEST, "-n", RESERVED, manifest_name, check=False)
        assert gone.returncode != 0 or "deletionTimestamp" in gone.stdout
    finally:
        plugin(clusters, "delete", "-f", str(files), "--ignore-not-found", "--context=parent")
