"""Names and labels that tie the application objects together (spec §2.3, §3.9).

Feeds find their Manifests by labels, Subscriptions key their replica lists by feed, Bases
and Descriptions carry back-references to their Subscription.  Every component computes these
the same way, so they live here as plain functions.  Where upstream dropped a label and broke
its own lookups (Descriptions without ``subs.name``/``config.name``, §12.1), we keep it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from clusternet.apis import known

# Label values are at most 63 characters; upstream sets name labels only when they fit.
_MAX_LABEL_VALUE: Final = 63
GENERIC_SUFFIX: Final = "generic"
HELM_SUFFIX: Final = "helm"

Object = Mapping[str, Any]


def split_api_version(api_version: str) -> tuple[str, str]:
    """``apps/v1`` → (``apps``, ``v1``); ``v1`` → (``""``, ``v1``)."""
    group, _, version = api_version.rpartition("/")
    return group, version


def feed_key(feed: Object) -> str:
    """The key of a feed in ``Subscription.status.replicas``:
    ``<apiVersion>/<kind>/<namespace>/<name>``, or without the namespace if it has none."""
    parts = [feed["apiVersion"], feed["kind"]]
    if feed.get("namespace"):
        parts.append(feed["namespace"])
    parts.append(feed["name"])
    return "/".join(parts)


def manifest_name(plural: str, name: str, namespace: str | None = None) -> str:
    """``<plural>.<namespace>.<name>``, or ``<plural>.<name>`` for cluster-scoped kinds."""
    return f"{plural}.{namespace}.{name}" if namespace else f"{plural}.{name}"


def legacy_manifest_name(plural: str, name: str, namespace: str | None = None) -> str:
    """The dash form older hubs wrote; honoured when such a Manifest already exists."""
    return f"{plural}-{namespace}-{name}" if namespace else f"{plural}-{name}"


def feed_selector(feed: Object) -> dict[str, str]:
    """The labels that select a feed's Manifest (the namespace only for namespaced feeds)."""
    group, version = split_api_version(feed["apiVersion"])
    selector = {
        known.CONFIG_GROUP_LABEL: group,
        known.CONFIG_VERSION_LABEL: version,
        known.CONFIG_KIND_LABEL: feed["kind"],
        known.CONFIG_NAME_LABEL: feed["name"],
    }
    if feed.get("namespace"):
        selector[known.CONFIG_NAMESPACE_LABEL] = feed["namespace"]
    return selector


def manifest_labels(template: Object) -> dict[str, str]:
    """Labels of the Manifest storing ``template``: the template's own, plus its identity."""
    meta = template.get("metadata") or {}
    group, version = split_api_version(template["apiVersion"])
    return {
        **(meta.get("labels") or {}),
        known.OBJECT_CREATED_BY_LABEL: known.CLUSTERNET_HUB_NAME,
        known.CONFIG_GROUP_LABEL: group,
        known.CONFIG_VERSION_LABEL: version,
        known.CONFIG_KIND_LABEL: template["kind"],
        known.CONFIG_NAME_LABEL: meta["name"],
        known.CONFIG_NAMESPACE_LABEL: meta.get("namespace") or "",
    }


def manifest(
    template: Object, plural: str, namespace: str = known.RESERVED_NAMESPACE
) -> dict[str, Any]:
    """The Manifest that stores ``template`` (a feed's object) in the reserved namespace."""
    meta = template["metadata"]
    return {
        "apiVersion": f"{known.APPS_GROUP}/v1alpha1",
        "kind": "Manifest",
        "metadata": {
            "name": manifest_name(plural, meta["name"], meta.get("namespace")),
            "namespace": namespace,
            "labels": manifest_labels(template),
        },
        "template": dict(template),
    }


def selector_string(labels: Mapping[str, str]) -> str:
    """A label selector (``k=v,k2=v2``) for API requests."""
    return ",".join(f"{key}={value}" for key, value in sorted(labels.items()))


def _fits(value: str) -> bool:
    return len(value) <= _MAX_LABEL_VALUE


def subscription_labels(subscription: Object) -> dict[str, str]:
    """``subs.*`` back-references to a Subscription (name only when it fits in a label)."""
    meta = subscription["metadata"]
    labels = {
        known.CONFIG_SUBSCRIPTION_NAMESPACE_LABEL: meta["namespace"],
        known.CONFIG_SUBSCRIPTION_UID_LABEL: meta["uid"],
    }
    if _fits(meta["name"]):
        labels[known.CONFIG_SUBSCRIPTION_NAME_LABEL] = meta["name"]
    return labels


def base_labels(
    subscription: Object, cluster_namespace_labels: Mapping[str, str]
) -> dict[str, str]:
    """Labels of the Base a Subscription gets in one cluster's dedicated namespace."""
    meta = subscription["metadata"]
    labels = {
        known.OBJECT_CREATED_BY_LABEL: known.CLUSTERNET_CONTROLLER_MANAGER_NAME,
        known.CONFIG_KIND_LABEL: "Subscription",
        known.CONFIG_NAMESPACE_LABEL: meta["namespace"],
        known.CONFIG_UID_LABEL: meta["uid"],
        **subscription_labels(subscription),
    }
    if _fits(meta["name"]):
        labels[known.CONFIG_NAME_LABEL] = meta["name"]
    for key in (known.CLUSTER_ID_LABEL, known.CLUSTER_NAME_LABEL):
        if key in cluster_namespace_labels:
            labels[key] = cluster_namespace_labels[key]
    return labels


def description_name(base_name: str, helm: bool) -> str:
    return f"{base_name}-{HELM_SUFFIX if helm else GENERIC_SUFFIX}"


def description_labels(base: Object) -> dict[str, str]:
    """Labels of a Base's Descriptions: the Base as config, the Subscription as ``subs.*``
    (with ``subs.name``, which upstream dropped, so that status aggregation can find it)."""
    meta = base["metadata"]
    base_labels_ = meta.get("labels") or {}
    labels = {
        known.OBJECT_CREATED_BY_LABEL: known.CLUSTERNET_CONTROLLER_MANAGER_NAME,
        known.CONFIG_KIND_LABEL: "Base",
        known.CONFIG_NAMESPACE_LABEL: meta["namespace"],
        known.CONFIG_UID_LABEL: meta["uid"],
    }
    if _fits(meta["name"]):
        labels[known.CONFIG_NAME_LABEL] = meta["name"]
    for key in (
        known.CLUSTER_ID_LABEL,
        known.CLUSTER_NAME_LABEL,
        known.CONFIG_SUBSCRIPTION_NAME_LABEL,
        known.CONFIG_SUBSCRIPTION_NAMESPACE_LABEL,
        known.CONFIG_SUBSCRIPTION_UID_LABEL,
    ):
        if key in base_labels_:
            labels[key] = base_labels_[key]
    return labels


def back_reference(owner: Object) -> tuple[str, str]:
    """The ``<uid>: <Kind>`` label stamped on feeds and overrides by their users."""
    return owner["metadata"]["uid"], owner["kind"]
