"""Issue 8's acceptance: the examples in ``examples/`` distributed to real children.

Everything goes through the real kubectl: templates with ``kubectl clusternet``, the rest
with ``kubectl --context parent``; what lands in the children is read with
``kubectl --context childN``.  The examples use fixed names (namespaces ``foo``, ``bar``,
``qux``; Subscriptions in ``default``), so each test deletes what it created.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from clusternet.apis import known
from clusternet.local.testing import Clusters, wait_until

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
TIMEOUT = 90


def child_object(clusters: Clusters, child: str, *args: str) -> Any | None:
    got = clusters.kubectl(child)("get", *args, "-o", "json", check=False)
    return json.loads(got.stdout) if got.returncode == 0 else None


def deployment(clusters: Clusters, child: str, namespace: str, name: str) -> Any | None:
    return child_object(clusters, child, "deployment", name, "-n", namespace)


def ready_replicas(clusters: Clusters, child: str, namespace: str, name: str) -> int | None:
    found = deployment(clusters, child, namespace, name)
    return None if found is None else (found.get("status") or {}).get("readyReplicas", 0)


def subscription(clusters: Clusters, name: str) -> Any | None:
    return child_object(
        clusters, "parent", "subscriptions.apps.clusternet.io", name, "-n", "default"
    )


def cleanup(clusters: Clusters, example: str, subscription_name: str) -> None:
    parent = clusters.kubectl("parent")
    parent("delete", "subscriptions.apps.clusternet.io", subscription_name, "-n", "default",
           "--ignore-not-found", "--wait=false")  # fmt: skip
    wait_until(lambda: subscription(clusters, subscription_name) is None,
               f"Subscription {subscription_name} to be gone", TIMEOUT)  # fmt: skip
    clusters.plugin("delete", "-f", str(EXAMPLES / example / "app.yaml"), "--ignore-not-found",
                    "--wait=false", check=False)  # fmt: skip


@pytest.fixture
def replication(clusters: Clusters) -> Iterator[dict[str, str]]:
    clusters.plugin("apply", "-f", str(EXAMPLES / "replication-scheduling" / "app.yaml"))
    clusters.kubectl("parent")(
        "apply", "-f", str(EXAMPLES / "replication-scheduling" / "subscription.yaml")
    )
    replication_namespaces = clusters.dedicated_namespaces()
    yield replication_namespaces
    parent = clusters.kubectl("parent")
    parent("delete", "-f", str(EXAMPLES / "replication-scheduling" / "globalization.yaml"),
           "--ignore-not-found")  # fmt: skip
    parent("delete", "localizations.apps.clusternet.io", "-n", replication_namespaces["child1"],
           "nginx-local-overrides-demo-higher-priority",
           "nginx-local-overrides-demo-lower-priority", "--ignore-not-found")  # fmt: skip
    cleanup(clusters, "replication-scheduling", "app-demo")


def test_replication_reaches_every_child_and_reports_status(
    clusters: Clusters, replication: dict[str, str]
) -> None:
    for child in ("child1", "child2"):
        wait_until(lambda c=child: ready_replicas(clusters, c, "foo", "my-nginx") == 2,  # type: ignore[misc]
                   f"my-nginx ready in {child}", TIMEOUT)  # fmt: skip
        deployed = deployment(clusters, child, "foo", "my-nginx")
        assert deployed is not None
        owner = deployed["metadata"]["annotations"][known.OWNED_BY_DESCRIPTION_ANNOTATION]
        assert owner.startswith(f"{replication[child]}.app-demo-")
        assert owner.endswith("-generic")
        assert child_object(clusters, child, "service", "my-nginx-svc", "-n", "foo")
    # Not realized in the parent: the templates are only templates.
    assert clusters.kubectl("parent")("get", "ns", "foo", check=False).returncode != 0

    def aggregated() -> list[Any] | None:
        sub = subscription(clusters, "app-demo") or {}
        statuses = (sub.get("status") or {}).get("aggregatedStatuses") or []
        deploy = [s for s in statuses if s["kind"] == "Deployment"]
        if not deploy:
            return None
        details = deploy[0].get("feedStatusDetails") or []
        ready = [d for d in details if (d.get("replicaStatus") or {}).get("readyReplicas") == 2]
        return details if len(ready) == 2 else None

    details = wait_until(aggregated, "aggregatedStatuses with 2 ready replicas per child", TIMEOUT)
    assert {d["clusterName"] for d in details} == {"child1", "child2"}
    assert all(d["available"] for d in details)


def test_overrides_per_cluster(clusters: Clusters, replication: dict[str, str]) -> None:
    """Spec §11 items 16-18 on the examples: Localization priorities, a Globalization for
    child1 only (applied before Localizations), ApplyNow rollback on delete."""
    parent = clusters.kubectl("parent")
    wait_until(lambda: ready_replicas(clusters, "child1", "foo", "my-nginx") == 2,
               "my-nginx in child1", TIMEOUT)  # fmt: skip
    localization = (EXAMPLES / "replication-scheduling" / "localization.yaml").read_text()
    parent.apply(localization.replace("CLUSTER_NAMESPACE", replication["child1"]))
    parent("apply", "-f", str(EXAMPLES / "replication-scheduling" / "globalization.yaml"))

    def overridden() -> Any | None:
        found = deployment(clusters, "child1", "foo", "my-nginx")
        labels = (found or {}).get("metadata", {}).get("labels") or {}
        return found if found and labels.get("some-label") == "some-value" and (
            found["spec"]["replicas"] == 3) else None  # fmt: skip

    found = wait_until(overridden, "child1's my-nginx overridden", TIMEOUT)
    containers = found["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["nginx-container", "redis-container"]
    assert containers[0]["image"] == "nginx:1.14.0-alpine"
    assert found["metadata"]["annotations"]["foo"] == "bar"
    assert found["metadata"]["labels"]["deployed-in-cluster"] == "child1"
    assert "another-label" not in found["metadata"]["labels"]
    # child2 has neither the Localizations nor the Globalization.
    other = deployment(clusters, "child2", "foo", "my-nginx")
    assert other is not None
    assert other["spec"]["replicas"] == 2
    assert "some-label" not in other["metadata"]["labels"]
    assert [c["name"] for c in other["spec"]["template"]["spec"]["containers"]] == ["nginx"]

    # ApplyNow rollback: without the higher-priority Localization the lower one's 1 wins.
    parent("delete", "localizations.apps.clusternet.io", "-n", replication["child1"],
           "nginx-local-overrides-demo-higher-priority")  # fmt: skip
    rolled_back = wait_until(
        lambda: (d := deployment(clusters, "child1", "foo", "my-nginx")) and d["spec"]["replicas"] == 1 and d,  # noqa: E501
        "child1's my-nginx back to the lower-priority Localization", TIMEOUT,
    )  # fmt: skip
    assert [c["name"] for c in rolled_back["spec"]["template"]["spec"]["containers"]] == ["nginx"]
    parent("delete", "localizations.apps.clusternet.io", "-n", replication["child1"],
           "nginx-local-overrides-demo-lower-priority")  # fmt: skip
    wait_until(lambda: (d := deployment(clusters, "child1", "foo", "my-nginx")) and d["spec"]["replicas"] == 2,  # noqa: E501
               "child1's my-nginx back to the template", TIMEOUT)  # fmt: skip


def test_template_edit_drift_prune_and_deletion(
    clusters: Clusters, replication: dict[str, str]
) -> None:
    """Items 9, 10 and 23: a template edit reaches the children, drift is repaired, a removed
    feed is pruned, deleting the Subscription cleans every child."""
    parent = clusters.kubectl("parent")
    for child in ("child1", "child2"):
        wait_until(lambda c=child: ready_replicas(clusters, c, "foo", "my-nginx") == 2,  # type: ignore[misc]
                   f"my-nginx in {child}", TIMEOUT)  # fmt: skip

    edited = (EXAMPLES / "replication-scheduling" / "app.yaml").read_text()
    clusters.plugin("apply", "-f", "-", input=edited.replace("nginx:1.25", "nginx:1.26"))

    def image(child: str) -> str | None:
        found = deployment(clusters, child, "foo", "my-nginx")
        return found["spec"]["template"]["spec"]["containers"][0]["image"] if found else None

    for child in ("child1", "child2"):
        wait_until(lambda c=child: image(c) == "nginx:1.26", f"new image in {child}", TIMEOUT)  # type: ignore[misc]

    # Drift: a deleted object comes back, a hand-scaled one is scaled back.
    clusters.kubectl("child1")("delete", "service", "my-nginx-svc", "-n", "foo")
    wait_until(lambda: child_object(clusters, "child1", "service", "my-nginx-svc", "-n", "foo"),
               "my-nginx-svc restored in child1", TIMEOUT)  # fmt: skip
    clusters.kubectl("child2")("scale", "deployment", "my-nginx", "-n", "foo", "--replicas=7")
    wait_until(lambda: (d := deployment(clusters, "child2", "foo", "my-nginx")) and d["spec"]["replicas"] == 2,  # noqa: E501
               "my-nginx scaled back to 2 in child2", TIMEOUT)  # fmt: skip

    # Removing the Service feed prunes it from every child.
    parent("patch", "subscriptions.apps.clusternet.io", "app-demo", "-n", "default",
           "--type=json", "-p", '[{"op": "remove", "path": "/spec/feeds/1"}]')  # fmt: skip
    for child in ("child1", "child2"):
        wait_until(lambda c=child: child_object(clusters, c, "service", "my-nginx-svc", "-n", "foo") is None,  # type: ignore[misc]  # noqa: E501
                   f"my-nginx-svc pruned from {child}", TIMEOUT)  # fmt: skip

    parent("delete", "subscriptions.apps.clusternet.io", "app-demo", "-n", "default")
    for child in ("child1", "child2"):
        wait_until(lambda c=child: deployment(clusters, c, "foo", "my-nginx") is None,  # type: ignore[misc]
                   f"my-nginx removed from {child}", TIMEOUT)  # fmt: skip
    for namespace in replication.values():
        bases = parent.json("get", "bases.apps.clusternet.io", "-n", namespace)["items"]
        assert not [b for b in bases if b["metadata"]["name"].startswith("app-demo-")]


def test_static_dividing_gives_two_and_four(clusters: Clusters) -> None:
    example = EXAMPLES / "static-dividing-scheduling"
    clusters.plugin("apply", "-f", str(example / "app.yaml"))
    clusters.kubectl("parent")("apply", "-f", str(example / "subscription.yaml"))
    try:
        for child, replicas in (("child1", 2), ("child2", 4)):
            wait_until(lambda c=child, r=replicas: ready_replicas(clusters, c, "bar", "my-nginx") == r,  # type: ignore[misc]  # noqa: E501
                       f"{replicas} ready replicas in {child}", TIMEOUT)  # fmt: skip
            # Created with its share at once: never the template's 6 first, then scaled down
            # (a Base is rendered only once its replica Localizations exist).
            created = deployment(clusters, child, "bar", "my-nginx")
            assert created is not None
            assert created["metadata"]["generation"] == 1, created["metadata"]
    finally:
        cleanup(clusters, "static-dividing-scheduling", "static-dividing-scheduling-demo")


def test_field_patch_inside_a_config_string(clusters: Clusters) -> None:
    example = EXAMPLES / "fieldpatch"
    clusters.plugin("apply", "-f", str(example / "app.yaml"))
    clusters.kubectl("parent")("apply", "-f", str(example / "globalization.yaml"))
    clusters.kubectl("parent")("apply", "-f", str(example / "subscription.yaml"))
    try:

        def server_conf(child: str) -> dict[str, Any] | None:
            found = child_object(clusters, child, "configmap", "server-conf", "-n", "qux")
            return json.loads(found["data"]["server.conf"]) if found else None

        conf1 = wait_until(lambda: (c := server_conf("child1")) and c["region_id"] == "us-west-1" and c,  # noqa: E501
                           "patched server.conf in child1", TIMEOUT)  # fmt: skip
        assert conf1["zone_id"] == "zone-1"
        assert conf1["server"]["bind_port"] == 8080  # the rest of the document is kept
        conf2 = wait_until(lambda: server_conf("child2"), "server.conf in child2", TIMEOUT)
        assert conf2["region_id"] == "default"
    finally:
        clusters.kubectl("parent")("delete", "-f", str(example / "globalization.yaml"),
                                   "--ignore-not-found")  # fmt: skip
        cleanup(clusters, "fieldpatch", "fieldpatch-demo")
