"""API discovery and the REST mapper: which resource (plural, scope, verbs) serves a kind.

Clusternet ships arbitrary manifests to child clusters, so nothing may be hard-coded: the
mapping comes from each cluster's discovery documents.  Aggregated discovery
(``apidiscovery.k8s.io/v2``, Kubernetes 1.30+; v2beta1 since 1.26) returns everything in
two requests; older servers get the legacy walk of ``/api``, ``/apis`` and one request per
group version.  The result is cached per cluster and reloaded on a miss, so a CRD created
after start becomes mappable on first use.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple
from urllib.parse import quote

from clusternet.kube._errors import ApiError

log = logging.getLogger(__name__)

AGGREGATED_DISCOVERY = ",".join(
    (
        "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList",
        "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList",
        "application/json",  # servers without aggregated discovery answer the legacy form
    )
)

# (path, Accept) -> (Content-Type, decoded JSON body)
DiscoveryGet = Callable[[str, str], Awaitable[tuple[str, Any]]]


class UnknownKind(LookupError):
    """The cluster serves no resource for this kind (or resource), even after rediscovery."""


class GroupVersionKind(NamedTuple):
    group: str
    version: str
    kind: str

    @classmethod
    def of(cls, api_version: str, kind: str) -> GroupVersionKind:
        group, _, version = api_version.rpartition("/")
        return cls(group, version, kind)

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version


class GroupVersionResource(NamedTuple):
    group: str
    version: str
    resource: str


@dataclass(frozen=True)
class APIResource:
    """One served resource of a group version, as discovery describes it."""

    group: str
    version: str
    kind: str
    plural: str
    namespaced: bool
    verbs: frozenset[str]
    # subresource name ("status", "scale", ...) -> its verbs
    subresources: Mapping[str, frozenset[str]] = field(default_factory=dict)
    singular: str = ""
    short_names: tuple[str, ...] = ()

    @property
    def api_version(self) -> str:
        return self.gvk.api_version

    @property
    def gvk(self) -> GroupVersionKind:
        return GroupVersionKind(self.group, self.version, self.kind)

    @property
    def gvr(self) -> GroupVersionResource:
        return GroupVersionResource(self.group, self.version, self.plural)

    def path(
        self, namespace: str | None = None, name: str | None = None, subresource: str | None = None
    ) -> str:
        """The URL path; ``namespace=None`` on a namespaced resource means all namespaces."""
        parts = ["/api", self.version] if not self.group else ["/apis", self.group, self.version]
        if self.namespaced and namespace is not None:
            parts += ["namespaces", quote(namespace, safe="")]
        elif not self.namespaced and namespace is not None:
            raise ValueError(f"{self.kind} ({self.plural}) is cluster-scoped: got a namespace")
        parts.append(self.plural)
        if name is not None:
            parts.append(quote(name, safe=":"))
        if subresource is not None:
            if name is None:
                raise ValueError("a subresource needs an object name")
            parts.append(subresource)
        return "/".join(parts)


def parse_aggregated(document: Mapping[str, Any]) -> list[APIResource]:
    """Resources of an ``APIGroupDiscoveryList`` (the answer of /api or /apis)."""
    resources = []
    for group_doc in document.get("items") or ():
        group = (group_doc.get("metadata") or {}).get("name", "")
        for version_doc in group_doc.get("versions") or ():
            version = version_doc["version"]
            if version_doc.get("freshness") == "Stale":
                # An aggregated API server that did not answer the kube-apiserver: its
                # resources are last known ones, still usable, requests may fail with 503.
                log.info("discovery of %s/%s is stale", group, version)
            for res in version_doc.get("resources") or ():
                kind = (res.get("responseKind") or {}).get("kind")
                if not kind:
                    continue  # e.g. a resource that only has subresources
                resources.append(
                    APIResource(
                        group=group,
                        version=version,
                        kind=kind,
                        plural=res["resource"],
                        namespaced=res.get("scope") == "Namespaced",
                        verbs=frozenset(res.get("verbs") or ()),
                        subresources={
                            sub["subresource"]: frozenset(sub.get("verbs") or ())
                            for sub in res.get("subresources") or ()
                        },
                        singular=res.get("singularResource", ""),
                        short_names=tuple(res.get("shortNames") or ()),
                    )
                )
    return resources


def parse_resource_list(document: Mapping[str, Any]) -> list[APIResource]:
    """Resources of a legacy ``APIResourceList`` (the answer of /api/v1 or /apis/<g>/<v>)."""
    gv = GroupVersionKind.of(document["groupVersion"], "")
    entries = document.get("resources") or ()
    subresources: dict[str, dict[str, frozenset[str]]] = {}
    for entry in entries:
        parent, slash, sub = entry["name"].partition("/")
        if slash:
            subresources.setdefault(parent, {})[sub] = frozenset(entry.get("verbs") or ())
    return [
        APIResource(
            group=gv.group,
            version=gv.version,
            kind=entry["kind"],
            plural=entry["name"],
            namespaced=bool(entry.get("namespaced")),
            verbs=frozenset(entry.get("verbs") or ()),
            subresources=subresources.get(entry["name"], {}),
            singular=entry.get("singularName", ""),
            short_names=tuple(entry.get("shortNames") or ()),
        )
        for entry in entries
        if "/" not in entry["name"]
    ]


async def discover(get: DiscoveryGet) -> list[APIResource]:
    """All resources of a cluster: aggregated discovery, or the legacy walk."""
    (core_type, core), (groups_type, groups) = await asyncio.gather(
        get("/api", AGGREGATED_DISCOVERY), get("/apis", AGGREGATED_DISCOVERY)
    )
    if "apidiscovery.k8s.io" in core_type and "apidiscovery.k8s.io" in groups_type:
        return parse_aggregated(core) + parse_aggregated(groups)
    paths = [f"/api/{version}" for version in core.get("versions") or ()]
    paths += [
        f"/apis/{version['groupVersion']}"
        for group in groups.get("groups") or ()
        for version in group.get("versions") or ()
    ]
    lists = await asyncio.gather(
        *(get(p, "application/json") for p in paths), return_exceptions=True
    )
    resources: list[APIResource] = []
    for path, result in zip(paths, lists, strict=True):
        if isinstance(result, ApiError):
            # Like client-go's partial discovery: one broken aggregated API (503) must not
            # make every other kind unmappable.
            log.warning("discovery of %s failed: %s", path, result)
        elif isinstance(result, BaseException):
            raise result
        else:
            resources += parse_resource_list(result[1])
    return resources


class RESTMapper:
    """Maps kinds to resources and back for one cluster, rediscovering on a miss.

    Rediscovery runs at most once per ``min_refresh_interval`` so that a burst of requests
    for a kind the cluster does not have costs one discovery, not one per request.
    """

    def __init__(
        self,
        load: Callable[[], Awaitable[Iterable[APIResource]]],
        min_refresh_interval: float = 2.0,
    ) -> None:
        self._load = load
        self._min_refresh_interval = min_refresh_interval
        self._by_kind: dict[GroupVersionKind, APIResource] = {}
        self._by_resource: dict[GroupVersionResource, APIResource] = {}
        self._loaded_at: float | None = None
        self._lock = asyncio.Lock()

    @property
    def resources(self) -> list[APIResource]:
        """What the last discovery found (empty before the first lookup or refresh)."""
        return list(self._by_resource.values())

    async def resource_for(self, api_version: str, kind: str) -> APIResource:
        gvk = GroupVersionKind.of(api_version, kind)
        return await self._lookup(lambda: self._by_kind.get(gvk), f"kind {kind} in {api_version}")

    async def kind_for(self, gvr: GroupVersionResource) -> APIResource:
        return await self._lookup(
            lambda: self._by_resource.get(gvr),
            f"resource {gvr.resource} in {gvr.group or 'core'}/{gvr.version}",
        )

    async def refresh(self) -> None:
        """Discover again now (e.g. after installing CRDs or an APIService)."""
        async with self._lock:
            await self._refresh_locked()

    def invalidate(self) -> None:
        """Forget the cache; the next lookup discovers again whatever the interval."""
        self._loaded_at = None
        self._by_kind, self._by_resource = {}, {}

    async def _lookup(self, find: Callable[[], APIResource | None], what: str) -> APIResource:
        if (found := find()) is not None:
            return found
        async with self._lock:
            # Waiters behind a refresh find the result; a kind that is still missing right
            # after a discovery is not worth another one yet.
            recent = (
                self._loaded_at is not None
                and time.monotonic() - self._loaded_at < self._min_refresh_interval
            )
            if find() is None and not recent:
                await self._refresh_locked()
        if (found := find()) is None:
            raise UnknownKind(f"the cluster serves no {what}")
        return found

    async def _refresh_locked(self) -> None:
        by_kind: dict[GroupVersionKind, APIResource] = {}
        by_resource: dict[GroupVersionResource, APIResource] = {}
        for resource in await self._load():
            # First wins: discovery lists resources in the server's preferred order.
            by_kind.setdefault(resource.gvk, resource)
            by_resource.setdefault(resource.gvr, resource)
        self._by_kind, self._by_resource = by_kind, by_resource
        self._loaded_at = time.monotonic()
