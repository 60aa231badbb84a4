"""The indexes that find Bases from feed events (no back-reference labels on feeds)."""

from __future__ import annotations

from typing import Any

from clusternet.apis import known, naming
from clusternet.controllermanager.base import (
    base_feed_identities,
    base_namespaced_feed_identities,
    description_base_uid,
    localization_namespaced_feed_identity,
    override_feed_identity,
)
from clusternet.controllermanager.feedinventory import manifest_identity
from clusternet.controllermanager.subscription import (
    base_subscription_uid,
    localization_subscription_uid,
    subscription_bound_namespaces,
)

DEPLOY = {"apiVersion": "apps/v1", "kind": "Deployment", "namespace": "shop", "name": "web"}
NAMESPACE = {"apiVersion": "v1", "kind": "Namespace", "name": "shop"}


def base(namespace: str, *feeds: dict[str, Any]) -> dict[str, Any]:
    return {
        "metadata": {
            "name": "web-abcde",
            "namespace": namespace,
            "labels": {known.CONFIG_SUBSCRIPTION_UID_LABEL: "sub-uid"},
        },
        "spec": {"feeds": list(feeds)},
    }


def test_a_manifest_finds_the_bases_of_its_feed() -> None:
    deploy_template = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "shop"},
    }
    ns_template = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}}
    indexed = base_feed_identities(base("clusternet-a", NAMESPACE, DEPLOY))
    for template, plural in ((deploy_template, "deployments"), (ns_template, "namespaces")):
        (identity,) = manifest_identity(naming.manifest(template, plural))
        assert identity in indexed


def test_overrides_find_bases_by_feed_and_namespace() -> None:
    loc = {"metadata": {"name": "l", "namespace": "clusternet-a"}, "spec": {"feed": DEPLOY}}
    glob = {"metadata": {"name": "g"}, "spec": {"feed": DEPLOY}}
    (value,) = localization_namespaced_feed_identity(loc)
    assert value in base_namespaced_feed_identities(base("clusternet-a", DEPLOY))
    assert value not in base_namespaced_feed_identities(base("clusternet-b", DEPLOY))
    assert override_feed_identity(glob)[0] in base_feed_identities(base("x", DEPLOY))
    assert override_feed_identity({"metadata": {}, "spec": {}}) == []


def test_owner_indexes() -> None:
    assert base_subscription_uid(base("n", DEPLOY)) == ["sub-uid"]
    assert base_subscription_uid({"metadata": {}}) == []
    replica = {"metadata": {"labels": {"sub-uid": "Subscription", "x": "y"}}}
    assert localization_subscription_uid(replica) == ["sub-uid"]
    desc = {"metadata": {"labels": {known.CONFIG_UID_LABEL: "base-uid"}}}
    assert description_base_uid(desc) == ["base-uid"]
    sub = {"status": {"bindingClusters": ["clusternet-a/child1", "clusternet-b/child2"]}}
    assert subscription_bound_namespaces(sub) == ["clusternet-a", "clusternet-b"]
