"""The Generic deployers against real control planes (spec §4.7, §4.8): hand-made Descriptions
in a cluster's dedicated namespace are pushed through the hub by the controller-manager
(Dual mode, AppPusher on), repaired by the agent's Recovery, pruned, offloaded on deletion;
and pulled by the agent of a Pull-mode child.

Waits watch nothing by hand: :func:`wait_until` re-reads with kubectl (bounded), never a
fixed sleep.
"""

from __future__ import annotations

import base64
import json
import uuid
from pathlib import Path
from typing import Any

from clusternet.local.environment import Options
from clusternet.local.testing import Clusters, Kubectl, start_environment, wait_until

OWNED_BY = "apps.clusternet.io/owned-by-description"
LAST_APPLIED = "clusternet.io/last-applied-configuration"
DEPLOYED_BY = "apps.clusternet.io/deployed-by"
FINALIZER = "apps.clusternet.io/finalizer"


def dedicated_namespace(c: Clusters, child: str) -> str:
    for mc in c.kubectl("parent").json("get", "managedclusters", "-A")["items"]:
        if mc["metadata"]["name"] == child:
            return str(mc["metadata"]["namespace"])
    raise AssertionError(f"no ManagedCluster for {child}")


def description(name: str, namespace: str, *objects: dict[str, Any]) -> str:
    raw = [base64.b64encode(json.dumps(o).encode()).decode() for o in objects]
    return json.dumps(
        {
            "apiVersion": "apps.clusternet.io/v1alpha1",
            "kind": "Description",
            "metadata": {"name": name, "namespace": namespace, "finalizers": [FINALIZER]},
            "spec": {"deployer": "Generic", "raw": raw},
        }
    )


def app_objects(ns: str) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": ns, "labels": {"app": "web"}},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]},
            },
        },
    }
    config = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "settings", "namespace": ns},
        "data": {"mode": "blue"},
    }
    return namespace, deployment, config


def get(k: Kubectl, *args: str) -> dict[str, Any] | None:
    result = k("get", *args, "-o", "json", check=False)
    return json.loads(result.stdout) if result.returncode == 0 else None


def status(parent: Kubectl, ns: str, name: str) -> dict[str, Any]:
    desc = get(parent, "descriptions.apps.clusternet.io", name, "-n", ns)
    return (desc or {}).get("status") or {}


def events(parent: Kubectl, ns: str, name: str, reason: str) -> list[dict[str, Any]]:
    items = parent.json(
        "get", "events", "-n", ns, "--field-selector", f"involvedObject.name={name},reason={reason}"
    )["items"]
    return list(items)


def test_push_deploy_prune_recover_offload(clusters: Clusters) -> None:
    parent, child = clusters.kubectl("parent"), clusters.kubectl(clusters.children[0])
    other = clusters.kubectl(clusters.children[1])
    cluster_ns = dedicated_namespace(clusters, clusters.children[0])
    app_ns = f"d-{uuid.uuid4().hex[:8]}"
    name = f"web-{uuid.uuid4().hex[:5]}-generic"
    ns_obj, deployment, config = app_objects(app_ns)
    parent.apply(description(name, cluster_ns, ns_obj, deployment, config))

    # Applied in child1 through the hub, Namespace first, with the deployer's metadata.
    live = wait_until(lambda: get(child, "deployment", "web", "-n", app_ns), "the Deployment")
    annotations = live["metadata"]["annotations"]
    assert annotations[OWNED_BY] == f"{cluster_ns}.{name}"
    assert json.loads(annotations[LAST_APPLIED])["spec"]["replicas"] == 2
    assert live["metadata"]["labels"][DEPLOYED_BY] == "clusternet"
    assert get(child, "configmap", "settings", "-n", app_ns) is not None
    assert get(other, "namespace", app_ns) is None  # only the Description's cluster
    wait_until(lambda: status(parent, cluster_ns, name).get("phase") == "Success", "Success")
    wait_until(lambda: events(parent, cluster_ns, name, "SuccessfullyDeployed"), "the event")
    # kwok runs the pods: ready replicas show in the child and (Recovery) in the status.
    wait_until(
        lambda: (
            (get(child, "deployment", "web", "-n", app_ns) or {})
            .get("status", {})
            .get("readyReplicas")
            == 2
        ),
        "ready replicas",
        timeout=120,
    )

    def reported_ready() -> bool:
        for entry in status(parent, cluster_ns, name).get("manifestStatuses") or ():
            if entry["kind"] == "Deployment":
                return bool((entry.get("observedStatus") or {}).get("readyReplicas") == 2)
        return False

    wait_until(reported_ready, "observedStatus of the Deployment in the Description")

    # Dropping the ConfigMap from the Description prunes it from the child.
    parent.apply(description(name, cluster_ns, ns_obj, deployment))
    wait_until(lambda: get(child, "configmap", "settings", "-n", app_ns) is None, "the prune")
    refs = {e["kind"] for e in status(parent, cluster_ns, name)["manifestStatuses"]}
    assert refs == {"Namespace", "Deployment"}

    # A deleted object comes back (Recovery), a hand edit of a managed field is reverted.
    uid = live["metadata"]["uid"]
    child("delete", "deployment", "web", "-n", app_ns, "--wait=false")
    wait_until(
        lambda: (
            (get(child, "deployment", "web", "-n", app_ns) or {})
            .get("metadata", {})
            .get("uid", uid)
            != uid
        ),
        "the Deployment recreated",
    )
    before = get(child, "deployment", "web", "-n", app_ns)
    assert before is not None
    generation = before["metadata"]["generation"]
    child("scale", "deployment", "web", "-n", app_ns, "--replicas=5")

    def reverted() -> bool:
        d = get(child, "deployment", "web", "-n", app_ns) or {}
        meta, spec = d.get("metadata", {}), d.get("spec", {})
        return bool(meta.get("generation", 0) >= generation + 2 and spec.get("replicas") == 2)

    wait_until(reverted, "the scale reverted")

    # Deleting the Description offloads everything, then the finalizer goes.
    parent("delete", "descriptions.apps.clusternet.io", name, "-n", cluster_ns, "--wait=false")
    wait_until(
        lambda: get(parent, "descriptions.apps.clusternet.io", name, "-n", cluster_ns) is None,
        "the Description gone",
    )
    wait_until(
        lambda: (
            (get(child, "namespace", app_ns) or {}).get("status", {}).get("phase")
            in (None, "Terminating")
        ),
        "the Namespace deleted",
    )
    assert get(child, "deployment", "web", "-n", app_ns) is None or (
        get(child, "namespace", app_ns) or {}
    ).get("metadata", {}).get("deletionTimestamp")


def test_invalid_object_fails_with_the_childs_message(clusters: Clusters) -> None:
    parent, child = clusters.kubectl("parent"), clusters.kubectl(clusters.children[0])
    cluster_ns = dedicated_namespace(clusters, clusters.children[0])
    name = f"bad-{uuid.uuid4().hex[:5]}-generic"
    good = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": f"good-{name}", "namespace": "default"},
        "data": {"a": "b"},
    }
    bad = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "Not_A_Valid_Name", "namespace": "default"},
    }
    parent.apply(description(name, cluster_ns, good, bad))
    got = wait_until(
        lambda: (s := status(parent, cluster_ns, name)).get("phase") == "Failure" and s,
        "Failure",
    )
    assert "Not_A_Valid_Name" in got["reason"]
    assert "Invalid value" in got["reason"]
    assert get(child, "configmap", f"good-{name}", "-n", "default") is not None
    found = wait_until(
        lambda: events(parent, cluster_ns, name, "UnSuccessfullyDeployed"), "the event"
    )
    assert "Invalid value" in found[0]["message"]
    parent("delete", "descriptions.apps.clusternet.io", name, "-n", cluster_ns, "--wait=false")
    wait_until(
        lambda: get(child, "configmap", f"good-{name}", "-n", "default") is None, "the offload"
    )
    wait_until(
        lambda: get(parent, "descriptions.apps.clusternet.io", name, "-n", cluster_ns) is None,
        "the Description gone",
    )


def test_pull_mode_agent_applies(tmp_path: Path) -> None:
    with start_environment(tmp_path, Options(children=1, sync_modes=("Pull",))) as env:
        parent, child = env.kubectl("parent"), env.kubectl(env.children[0])
        mc = parent.json("get", "managedclusters", "-A")["items"][0]
        assert mc["spec"]["syncMode"] == "Pull"
        cluster_ns = mc["metadata"]["namespace"]
        name = "pulled-generic"
        obj = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "pulled", "namespace": "default"},
            "data": {"by": "agent"},
        }
        parent.apply(description(name, cluster_ns, obj))
        live = wait_until(lambda: get(child, "configmap", "pulled", "-n", "default"), "pulled")
        assert live["metadata"]["annotations"][OWNED_BY] == f"{cluster_ns}.{name}"
        wait_until(lambda: status(parent, cluster_ns, name).get("phase") == "Success", "Success")
        found = wait_until(
            lambda: events(parent, cluster_ns, name, "SuccessfullyDeployed"), "the event"
        )
        assert found[0].get("reportingComponent") == "clusternet-agent" or (
            found[0].get("source", {}).get("component") == "clusternet-agent"
        )
        parent("delete", "descriptions.apps.clusternet.io", name, "-n", cluster_ns)
        wait_until(lambda: get(child, "configmap", "pulled", "-n", "default") is None, "offload")


def test_a_down_child_fails_alone_and_never_blocks_deletion(tmp_path: Path) -> None:
    with start_environment(tmp_path, Options(children=2)) as env:
        parent = env.kubectl("parent")
        down_ns = dedicated_namespace(env, "child1")
        up_ns = dedicated_namespace(env, "child2")
        env.env.stop_process("child1/clusternet-agent")  # its tunnel goes with it
        obj = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "pushed", "namespace": "default"},
        }
        parent.apply(description("app-generic", down_ns, obj))
        parent.apply(description("app-generic", up_ns, obj))
        wait_until(lambda: status(parent, up_ns, "app-generic").get("phase") == "Success", "up")
        failed = wait_until(
            lambda: (s := status(parent, down_ns, "app-generic")).get("phase") == "Failure" and s,
            "Failure of the cluster whose agent is down",
        )
        # e.g. "ConfigMap default/pushed: cannot proxy through cluster <id>, whose agent is
        # disconnected" (the hub's answer, passed on as it is)
        assert "ConfigMap default/pushed" in failed["reason"]
        assert "disconnected" in failed["reason"]
        wait_until(lambda: events(parent, down_ns, "app-generic", "UnSuccessfullyDeployed"), "ev")
        assert get(env.kubectl("child2"), "configmap", "pushed", "-n", "default") is not None

        # Once the cluster is lost (no heartbeat: Ready Unknown), deleting its Description
        # just releases the finalizer.
        mc = parent.json("get", "managedclusters", "-n", down_ns)["items"][0]["metadata"]["name"]
        parent("patch", "managedcluster", mc, "-n", down_ns, "--subresource=status",
               "--type=merge", "-p", json.dumps({"status": {"heartbeatFrequencySeconds": 1}}))  # fmt: skip  # noqa: E501
        parent("delete", "descriptions.apps.clusternet.io", "app-generic", "-n", down_ns,
               "--wait=false")  # fmt: skip
        wait_until(
            lambda: (
                get(parent, "descriptions.apps.clusternet.io", "app-generic", "-n", down_ns) is None
            ),
            "the Description of the lost cluster gone",
            timeout=90,
        )
