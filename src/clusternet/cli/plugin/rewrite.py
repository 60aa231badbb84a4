"""Which API requests the plugin sends to the shadow API, and the path they go to.

The rules are those of Clusternet's client-go wrapper (``pkg/wrappers/clientgo``):
``/api/v1/...`` and ``/apis/<group>/<version>/...`` become ``/apis/shadow/v1alpha1/...``
with the sub-path and query string kept, while Clusternet's own groups
(``*.clusternet.io``) and the shadow group itself go to the parent unchanged.  Two refinements
make the rules safe for an unmodified kubectl:

* discovery documents (``/api``, ``/api/v1``, ``/apis/<group>/<version>``) stay on the parent,
  so kubectl resolves ``deploy`` to ``apps/v1 deployments`` exactly as it would without the
  plugin, and the shadow group (which flattens every group into one) never confuses it;
* a resource the shadow API does not mirror (``mirrored`` is the plural names its discovery
  lists) goes to the parent as is, as the issue asks.
"""

from __future__ import annotations

from collections.abc import Container
from dataclasses import dataclass
from urllib.parse import urlsplit

from clusternet.apis import known

SHADOW_PREFIX = f"/apis/{known.SHADOW_GROUP}/v1alpha1"

# Subresources of a Namespace: `/api/v1/namespaces/<ns>/status` is the namespace's own status,
# not a namespaced resource called "status" (kube-apiserver's RequestInfoFactory does the same).
_NAMESPACE_SUBRESOURCES = frozenset({"status", "finalize"})


@dataclass(frozen=True)
class RequestedResource:
    """The API resource a request path addresses."""

    group: str  # "" for the core group
    version: str
    plural: str
    rest: str  # the path after the group-version, e.g. "/namespaces/baz/deployments/web"


def requested_resource(path: str) -> RequestedResource | None:
    """The resource of a resource request, or None for discovery and non-API paths."""
    parts = [p for p in path.split("/") if p]
    if parts[:2] == ["api", "v1"]:
        group, version, resource_parts = "", "v1", parts[2:]
    elif len(parts) >= 3 and parts[0] == "apis":
        group, version, resource_parts = parts[1], parts[2], parts[3:]
    else:
        return None
    rest = "/" + "/".join(resource_parts) if resource_parts else ""
    if resource_parts[:1] == ["watch"]:  # the legacy /watch/ prefix addresses the same resource
        resource_parts = resource_parts[1:]
    if not resource_parts:
        return None  # the group-version's discovery document
    plural = resource_parts[0]
    if (
        resource_parts[0] == "namespaces"
        and len(resource_parts) >= 3
        and resource_parts[2] not in _NAMESPACE_SUBRESOURCES
    ):
        plural = resource_parts[2]
    return RequestedResource(group, version, plural, rest)


def served_by_parent(group: str) -> bool:
    """Clusternet's own groups and the shadow group are real objects of the parent."""
    return group == known.SHADOW_GROUP or group.endswith(".clusternet.io")


def shadowed(path: str, mirrored: Container[str]) -> RequestedResource | None:
    """The resource when the request on ``path`` belongs to the shadow API, else None."""
    resource = requested_resource(path)
    if resource is None or served_by_parent(resource.group) or resource.plural not in mirrored:
        return None
    return resource


def rewrite(target: str, mirrored: Container[str]) -> str:
    """The path (with query string) on the parent that serves the request ``target``."""
    parts = urlsplit(target)
    resource = shadowed(parts.path, mirrored)
    if resource is None:
        return target
    query = f"?{parts.query}" if parts.query else ""
    return f"{SHADOW_PREFIX}{resource.rest}{query}"
