"""Issue 8's "bad input" acceptance against real control planes: an override that does not
parse, a JSON patch on a missing path and a feed that does not exist each give a Warning event
on the Base of the cluster concerned and say so in the Subscription's ``Deployed`` condition;
the other cluster (and the other feeds) still get their objects, and fixing the input
recovers.  Templates go through ``kubectl clusternet``, the rest through kubectl.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from clusternet.apis import known
from clusternet.local.testing import Clusters, Kubectl, wait_until

TIMEOUT = 90
SUBSCRIPTION = "bad-input"
MISSING_PATH = '[{"op": "replace", "path": "/data/nowhere", "value": "x"}]'


def config_map(namespace: str, name: str, mode: str = "blue") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace},
        "data": {"mode": mode},
    }


def feed(namespace: str, name: str) -> dict[str, str]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "namespace": namespace, "name": name}


def get(k: Kubectl, *args: str) -> Any | None:
    result = k("get", *args, "-o", "json", check=False)
    return json.loads(result.stdout) if result.returncode == 0 else None


def mode_in(clusters: Clusters, child: str, namespace: str, name: str) -> str | None:
    found = get(clusters.kubectl(child), "configmap", name, "-n", namespace)
    return None if found is None else str((found.get("data") or {}).get("mode"))


def deployed_condition(parent: Kubectl, namespace: str) -> dict[str, Any]:
    sub = get(parent, "subscriptions.apps.clusternet.io", SUBSCRIPTION, "-n", namespace) or {}
    conditions = (sub.get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c.get("type") == "Deployed"), {})


def condition_says(parent: Kubectl, namespace: str, reason: str, *texts: str) -> bool:
    condition = deployed_condition(parent, namespace)
    message = str(condition.get("message", ""))
    return condition.get("reason") == reason and all(t in message for t in texts)


def base_of(parent: Kubectl, cluster_namespace: str, sub_namespace: str) -> dict[str, Any] | None:
    selector = (
        f"{known.CONFIG_SUBSCRIPTION_NAME_LABEL}={SUBSCRIPTION},"
        f"{known.CONFIG_SUBSCRIPTION_NAMESPACE_LABEL}={sub_namespace}"
    )
    items = parent.json("get", "bases.apps.clusternet.io", "-n", cluster_namespace, "-l", selector)
    return items["items"][0] if items["items"] else None


def warning_on_base(
    parent: Kubectl, cluster_namespace: str, sub_namespace: str, reason: str, text: str
) -> bool:
    base = base_of(parent, cluster_namespace, sub_namespace)
    if base is None:
        return False
    selector = f"involvedObject.kind=Base,involvedObject.name={base['metadata']['name']}"
    events = parent.json(
        "get", "events", "-n", cluster_namespace, "--field-selector", f"{selector},reason={reason}"
    )["items"]
    return any(e["type"] == "Warning" and text in e["message"] for e in events)


def localization(
    cluster_namespace: str, namespace: str, *overrides: dict[str, str]
) -> dict[str, Any]:
    return {
        "apiVersion": "apps.clusternet.io/v1alpha1",
        "kind": "Localization",
        "metadata": {"name": f"{namespace}-settings", "namespace": cluster_namespace},
        "spec": {
            "overridePolicy": "ApplyNow",
            "priority": 500,
            "feed": feed(namespace, "settings"),
            "overrides": list(overrides),
        },
    }


@pytest.fixture
def children(clusters: Clusters) -> dict[str, str]:
    return clusters.dedicated_namespaces()


@pytest.fixture
def subscribe(clusters: Clusters, namespace: str) -> Iterator[Any]:
    """Apply templates and a Subscription of them to child1 and child2; deleted afterwards
    (the Subscription first, so that the children are cleaned)."""
    parent = clusters.kubectl("parent")

    def apply(templates: list[dict[str, Any]], feeds: list[dict[str, str]]) -> None:
        for template in templates:
            clusters.plugin("apply", "-f", "-", input=json.dumps(template))
        subscription = {
            "apiVersion": "apps.clusternet.io/v1alpha1",
            "kind": "Subscription",
            "metadata": {"name": SUBSCRIPTION, "namespace": namespace},
            "spec": {
                "subscribers": [
                    {
                        "clusterAffinity": {
                            "matchExpressions": [
                                {
                                    "key": known.CLUSTER_NAME_LABEL,
                                    "operator": "In",
                                    "values": ["child1", "child2"],
                                }
                            ]
                        }
                    }
                ],
                "feeds": feeds,
            },
        }
        parent.apply(json.dumps(subscription))

    yield apply
    parent("delete", "subscriptions.apps.clusternet.io", SUBSCRIPTION, "-n", namespace,
           "--ignore-not-found", "--wait=false")  # fmt: skip
    wait_until(
        lambda: (
            get(parent, "subscriptions.apps.clusternet.io", SUBSCRIPTION, "-n", namespace) is None
        ),
        "the Subscription to be gone",
        TIMEOUT,
    )
    for name in ("settings", "extra"):
        clusters.plugin("delete", "configmap", name, "-n", namespace, "--ignore-not-found",
                        check=False)  # fmt: skip


def deployed_everywhere(clusters: Clusters, namespace: str, mode: str = "blue") -> None:
    for child in ("child1", "child2"):
        wait_until(lambda c=child: mode_in(clusters, c, namespace, "settings") == mode,  # type: ignore[misc]
                   f"settings (mode {mode}) in {child}", TIMEOUT)  # fmt: skip


@pytest.mark.parametrize(
    ("case", "bad", "event", "says"),
    [
        (
            "an override that does not parse",
            [{"name": "broken", "type": "MergePatch", "value": "data: {mode: [unclosed"}],
            "FailedApplyingOverrides",
            "override 'broken': value is neither JSON nor YAML",
        ),
        (
            "a JSON patch on a missing path (skipped; the rest still applies)",
            [
                {"name": "green", "type": "MergePatch", "value": '{"data": {"mode": "green"}}'},
                {"name": "nowhere", "type": "JSONPatch", "value": MISSING_PATH},
            ],
            "SkippedOverride",
            "override 'nowhere': operation 0 (replace /data/nowhere): path does not exist",
        ),
    ],
)
def test_a_bad_override_is_reported_and_holds_only_its_cluster(
    clusters: Clusters,
    namespace: str,
    children: dict[str, str],
    subscribe: Any,
    case: str,
    bad: list[dict[str, str]],
    event: str,
    says: str,
) -> None:
    parent = clusters.kubectl("parent")
    subscribe([config_map(namespace, "settings")], [feed(namespace, "settings")])
    deployed_everywhere(clusters, namespace)
    child1 = children["child1"]

    parent.apply(json.dumps(localization(child1, namespace, *bad)))
    wait_until(lambda: warning_on_base(parent, child1, namespace, event, says),
               f"a {event} Warning on child1's Base ({case})", TIMEOUT)  # fmt: skip
    wait_until(lambda: condition_says(parent, namespace, "InvalidInput", "child1", says),
               f"the Deployed condition to say it ({case})", TIMEOUT)  # fmt: skip
    condition = deployed_condition(parent, namespace)
    assert condition["status"] == "False"
    assert "child2" not in condition["message"], condition
    if event == "SkippedOverride":
        # The other override of the same Localization still applies.
        wait_until(lambda: mode_in(clusters, "child1", namespace, "settings") == "green",
                   "the good override in child1", TIMEOUT)  # fmt: skip
    else:
        assert mode_in(clusters, "child1", namespace, "settings") == "blue"  # last good kept
    assert mode_in(clusters, "child2", namespace, "settings") == "blue"  # unaffected

    # Fixed: rendered, deployed, and the condition and the Base's annotation are cleared.
    fixed = {"name": "red", "type": "MergePatch", "value": '{"data": {"mode": "red"}}'}
    parent.apply(json.dumps(localization(child1, namespace, fixed)))
    wait_until(lambda: mode_in(clusters, "child1", namespace, "settings") == "red",
               "the fixed override in child1", TIMEOUT)  # fmt: skip
    wait_until(lambda: deployed_condition(parent, namespace).get("reason") == "Deployed",
               f"Deployed once fixed ({case})", TIMEOUT)  # fmt: skip
    base = base_of(parent, child1, namespace)
    assert base is not None
    assert known.RENDER_ERROR_ANNOTATION not in (base["metadata"].get("annotations") or {})
    assert mode_in(clusters, "child2", namespace, "settings") == "blue"
    parent("delete", "localizations.apps.clusternet.io", f"{namespace}-settings", "-n", child1)


def test_a_feed_that_does_not_exist_holds_only_itself(
    clusters: Clusters, namespace: str, children: dict[str, str], subscribe: Any
) -> None:
    parent = clusters.kubectl("parent")
    subscribe(
        [config_map(namespace, "settings")],
        [feed(namespace, "settings"), feed(namespace, "extra")],
    )
    missing = f"template ConfigMap {namespace}/extra does not exist"
    for child, cluster_namespace in sorted(children.items()):
        wait_until(lambda ns=cluster_namespace: warning_on_base(  # type: ignore[misc]
                       parent, ns, namespace, "NonexistentConfigMap", f"{namespace}/extra"),
                   f"a NonexistentConfigMap Warning on {child}'s Base", TIMEOUT)  # fmt: skip
    wait_until(lambda: condition_says(parent, namespace, "InvalidInput", "child1", "child2",
                                      missing),
               "the Deployed condition to name the missing feed", TIMEOUT)  # fmt: skip
    deployed_everywhere(clusters, namespace)  # the other feed is not held up

    clusters.plugin("apply", "-f", "-", input=json.dumps(config_map(namespace, "extra", "on")))
    for child in ("child1", "child2"):
        wait_until(lambda c=child: mode_in(clusters, c, namespace, "extra") == "on",  # type: ignore[misc]
                   f"the late feed in {child}", TIMEOUT)  # fmt: skip
    wait_until(lambda: deployed_condition(parent, namespace).get("reason") == "Deployed",
               "Deployed once the feed exists", TIMEOUT)  # fmt: skip
