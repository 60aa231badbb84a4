"""Names and labels shared by every component (spec §2.3)."""

from __future__ import annotations

import pytest

from clusternet.apis import known
from clusternet.apis.naming import (
    base_labels,
    description_labels,
    description_name,
    feed_key,
    feed_selector,
    legacy_manifest_name,
    manifest,
    manifest_labels,
    manifest_name,
    selector_string,
    split_api_version,
)


@pytest.mark.parametrize(
    ("feed", "key"),
    [
        (
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "namespace": "shop",
                "name": "frontend",
            },
            "apps/v1/Deployment/shop/frontend",
        ),
        ({"apiVersion": "v1", "kind": "Namespace", "name": "shop"}, "v1/Namespace/shop"),
        (
            {"apiVersion": "v1", "kind": "Namespace", "namespace": "", "name": "shop"},
            "v1/Namespace/shop",
        ),
    ],
)
def test_feed_keys_match_upstream_status_replicas(feed: dict[str, str], key: str) -> None:
    assert feed_key(feed) == key


@pytest.mark.parametrize(
    ("api_version", "parts"),
    [
        ("apps/v1", ("apps", "v1")),
        ("v1", ("", "v1")),
        ("apps.clusternet.io/v1alpha1", ("apps.clusternet.io", "v1alpha1")),
    ],
)
def test_split_api_version(api_version: str, parts: tuple[str, str]) -> None:
    assert split_api_version(api_version) == parts


def test_manifest_names() -> None:
    assert manifest_name("deployments", "frontend", "shop") == "deployments.shop.frontend"
    assert manifest_name("namespaces", "shop") == "namespaces.shop"
    assert legacy_manifest_name("deployments", "frontend", "shop") == "deployments-shop-frontend"


def test_a_feed_selects_the_manifest_of_its_template() -> None:
    template = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "frontend", "namespace": "shop", "labels": {"app": "f"}},
    }
    labels = manifest_labels(template)
    assert labels["app"] == "f"
    assert labels[known.OBJECT_CREATED_BY_LABEL] == "clusternet-hub"
    feed = {"apiVersion": "apps/v1", "kind": "Deployment", "namespace": "shop", "name": "frontend"}
    assert feed_selector(feed).items() <= labels.items()
    core = manifest_labels({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}})
    assert core[known.CONFIG_GROUP_LABEL] == ""
    assert core[known.CONFIG_NAMESPACE_LABEL] == ""
    assert known.CONFIG_NAMESPACE_LABEL not in feed_selector(
        {"apiVersion": "v1", "kind": "Namespace", "name": "shop"}
    )
    assert selector_string({"b": "2", "a": "1"}) == "a=1,b=2"


SUB = {"metadata": {"name": "web", "namespace": "team-a", "uid": "sub-uid"}}


def test_base_and_description_labels_keep_the_subscription_name() -> None:
    cluster_ns = {known.CLUSTER_ID_LABEL: "id-1", known.CLUSTER_NAME_LABEL: "child1", "other": "x"}
    labels = base_labels(SUB, cluster_ns)
    assert labels[known.CONFIG_KIND_LABEL] == "Subscription"
    assert labels[known.CONFIG_NAME_LABEL] == "web"
    assert labels[known.CONFIG_SUBSCRIPTION_NAME_LABEL] == "web"
    assert labels[known.CLUSTER_ID_LABEL] == "id-1"
    assert "other" not in labels
    base = {
        "kind": "Base",
        "metadata": {
            "name": "web-abcde",
            "namespace": "clusternet-x",
            "uid": "base-uid",
            "labels": labels,
        },
    }
    described = description_labels(base)
    assert described[known.CONFIG_KIND_LABEL] == "Base"
    assert described[known.CONFIG_UID_LABEL] == "base-uid"
    # Upstream dropped these two and broke status aggregation (§12.1): we keep them.
    assert described[known.CONFIG_SUBSCRIPTION_NAME_LABEL] == "web"
    assert described[known.CONFIG_NAME_LABEL] == "web-abcde"
    assert description_name("web-abcde", helm=False) == "web-abcde-generic"
    assert description_name("web-abcde", helm=True) == "web-abcde-helm"


def test_names_too_long_for_a_label_are_left_out() -> None:
    long_sub = {"metadata": {"name": "x" * 64, "namespace": "ns", "uid": "u"}}
    labels = base_labels(long_sub, {})
    assert known.CONFIG_NAME_LABEL not in labels
    assert known.CONFIG_SUBSCRIPTION_NAME_LABEL not in labels
    assert labels[known.CONFIG_SUBSCRIPTION_UID_LABEL] == "u"


def test_a_manifest_stores_its_template_under_the_rules_name_and_labels() -> None:
    template = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "shop"},
    }
    stored = manifest(template, "deployments")
    assert (stored["apiVersion"], stored["kind"]) == ("apps.clusternet.io/v1alpha1", "Manifest")
    assert stored["metadata"]["name"] == "deployments.shop.web"
    assert stored["metadata"]["namespace"] == known.RESERVED_NAMESPACE
    assert stored["metadata"]["labels"] == manifest_labels(template)
    assert stored["template"] == template
