"""Pure transformations of the shadow API: template ↔ Manifest, trimming, selectors, Scale.

A shadow object is a *template*: what the user wrote, validated and defaulted by the parent,
minus everything the parent would have decided for a real object (spec §6.1 "Trim").  It is
stored as the ``template`` of a Manifest in the reserved namespace, named and labelled as in
spec §2.3; reads show the template with the Manifest's identity (uid, resourceVersion, ...).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any, Final

from clusternet.apis import known, naming
from clusternet.hub.shadow_resources import ShadowResource

Object = dict[str, Any]

MANIFEST_API_VERSION: Final = f"{known.APPS_GROUP}/v1alpha1"
MANIFEST_KIND: Final = "Manifest"
FEED_PROTECTION_ANNOTATION: Final = "apps.clusternet.io/feed-protection"
# Metadata the parent assigns to real objects: meaningless on a template.
_SERVER_METADATA: Final = (
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "generation",
    "managedFields",
    "resourceVersion",
    "selfLink",
    "uid",
)
# What a read takes from the Manifest: the stored object's identity and lifecycle.
_MANIFEST_METADATA: Final = (
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
)
_JOB_CONTROLLER_LABELS: Final = (
    "controller-uid",
    "batch.kubernetes.io/controller-uid",
    "job-name",
    "batch.kubernetes.io/job-name",
)


class UnsupportedSelector(ValueError):
    """A field selector the shadow API cannot translate to Manifest labels."""


def trim(template: Mapping[str, Any]) -> Object:
    """The template without what the parent decides per real object (spec §6.1)."""
    trimmed = copy.deepcopy(dict(template))
    metadata = trimmed.setdefault("metadata", {})
    for key in _SERVER_METADATA:
        metadata.pop(key, None)
    trimmed.pop("status", None)
    group, _ = naming.split_api_version(trimmed.get("apiVersion", ""))
    kind = trimmed.get("kind")
    if group == "" and kind == "Service":
        _trim_service(trimmed.get("spec") or {})
    elif group == "batch" and kind == "Job":
        _trim_job(trimmed)
    return trimmed


def _trim_service(spec: dict[str, Any]) -> None:
    # Allocated by each cluster; a headless Service ("None") keeps its meaning everywhere.
    if spec.get("clusterIP") != "None":
        spec.pop("clusterIP", None)
        spec.pop("clusterIPs", None)
    if spec.get("type") in ("NodePort", "LoadBalancer"):
        for port in spec.get("ports") or ():
            port.pop("nodePort", None)
        spec.pop("healthCheckNodePort", None)


def _trim_job(job: Object) -> None:
    # The Job controller's selector names this object's uid, which differs in every cluster.
    spec = job.get("spec") or {}
    selector_labels = (spec.get("selector") or {}).get("matchLabels") or {}
    if any(key in selector_labels for key in _JOB_CONTROLLER_LABELS) and not spec.get(
        "manualSelector"
    ):
        spec.pop("selector", None)
    pod_metadata = (spec.get("template") or {}).get("metadata") or {}
    for labels in (pod_metadata.get("labels"), (job.get("metadata") or {}).get("labels")):
        if labels:
            for key in _JOB_CONTROLLER_LABELS:
                labels.pop(key, None)


def manifest_name(resource: ShadowResource, template: Mapping[str, Any]) -> str:
    metadata = template["metadata"]
    return naming.manifest_name(resource.plural, metadata["name"], metadata.get("namespace"))


def new_manifest(resource: ShadowResource, template: Mapping[str, Any], namespace: str) -> Object:
    """The Manifest storing a trimmed template, in the reserved ``namespace``."""
    return naming.manifest(template, resource.plural, namespace)


def replace_template(manifest: Mapping[str, Any], template: Mapping[str, Any]) -> Object:
    """The Manifest with a new template; its labels follow the template's.

    Labels the old template carried and the new one drops are removed from the Manifest
    (upstream only ever added them, §12.14); labels others put on the Manifest itself
    (back-references from Bases, clusternet's identity labels) stay.
    """
    updated = copy.deepcopy(dict(manifest))
    metadata = updated.setdefault("metadata", {})
    old_template_labels = (manifest.get("template") or {}).get("metadata", {}).get("labels") or {}
    identity = naming.manifest_labels(template)
    kept = {
        key: value
        for key, value in (metadata.get("labels") or {}).items()
        if key not in old_template_labels or key in identity
    }
    metadata["labels"] = {**kept, **identity}
    updated["template"] = dict(template)
    return updated


def template_of(manifest: Mapping[str, Any]) -> Object:
    """What a read answers: the template with the Manifest's identity and lifecycle."""
    template = copy.deepcopy(dict(manifest.get("template") or {}))
    manifest_metadata = manifest.get("metadata") or {}
    metadata = template.setdefault("metadata", {})
    for key in _MANIFEST_METADATA:
        if key in manifest_metadata:
            metadata[key] = manifest_metadata[key]
    protection = (manifest_metadata.get("annotations") or {}).get(FEED_PROTECTION_ANNOTATION)
    if protection is not None:
        metadata.setdefault("annotations", {})[FEED_PROTECTION_ANNOTATION] = protection
    return template


def manifest_selector(
    resource: ShadowResource,
    namespace: str | None,
    label_selector: str | None,
    field_selector: str | None,
) -> str:
    """The Manifest label selector of a shadow list/watch: the user's labels, the resource's
    identity, and ``metadata.name``/``metadata.namespace`` field selectors as labels."""
    requirements = [label_selector] if label_selector else []
    requirements.append(f"{known.CONFIG_KIND_LABEL}={resource.kind}")
    if resource.group:
        requirements.append(f"{known.CONFIG_GROUP_LABEL}={resource.group}")
    if namespace is not None:
        requirements.append(f"{known.CONFIG_NAMESPACE_LABEL}={namespace}")
    requirements += _field_requirements(field_selector or "")
    return ",".join(requirements)


_FIELD_LABELS: Final = {
    "metadata.name": known.CONFIG_NAME_LABEL,
    "metadata.namespace": known.CONFIG_NAMESPACE_LABEL,
}


def _field_requirements(field_selector: str) -> list[str]:
    requirements = []
    for term in filter(None, (t.strip() for t in field_selector.split(","))):
        for operator in ("!=", "==", "="):
            field, found, value = term.partition(operator)
            if found:
                break
        else:
            raise UnsupportedSelector(f"invalid field selector term {term!r}")
        label = _FIELD_LABELS.get(field.strip())
        if label is None:
            raise UnsupportedSelector(
                f'field label "{field.strip()}" is not supported by shadow/v1alpha1: '
                "templates can be selected by metadata.name and metadata.namespace only"
            )
        requirements.append(f"{label}{'!=' if operator == '!=' else '='}{value.strip()}")
    return requirements


def scale_of(template: Mapping[str, Any]) -> Object:
    """The ``autoscaling/v1`` Scale of a workload template: its ``spec.replicas``."""
    metadata = template.get("metadata") or {}
    scale_metadata = {
        key: metadata[key]
        for key in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
        if key in metadata
    }
    return {
        "apiVersion": "autoscaling/v1",
        "kind": "Scale",
        "metadata": scale_metadata,
        "spec": {"replicas": int((template.get("spec") or {}).get("replicas") or 0)},
        # A template runs nowhere: no replicas are observed.
        "status": {"replicas": 0},
    }


def with_replicas(template: Mapping[str, Any], replicas: Any) -> Object:
    if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
        raise ValueError(f"spec.replicas must be a non-negative integer, got {replicas!r}")
    updated = copy.deepcopy(dict(template))
    updated.setdefault("spec", {})["replicas"] = replicas
    return updated
