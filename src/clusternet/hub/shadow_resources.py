"""Which resources ``shadow/v1alpha1`` mirrors, its discovery document, and its URL paths.

Built-in kinds and aggregated APIs come from one walk of the parent's discovery when the hub
starts; CRDs are read from an informer at every lookup, so a CRD that appears or goes away
in the parent is mirrored or dropped at once (spec §6.1).  Everything is flattened into the
single group version ``shadow/v1alpha1`` by plural: where two groups serve the same plural,
the first in the parent's discovery order wins, which is the aggregator's
``groupPriorityMinimum`` order (core ``events`` beats ``events.k8s.io``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from clusternet.apis import known
from clusternet.kube import APIResource

GROUP: Final = known.SHADOW_GROUP
VERSION: Final = "v1alpha1"
GROUP_VERSION: Final = f"{GROUP}/{VERSION}"
PREFIX: Final = f"/apis/{GROUP_VERSION}"
CATEGORY: Final = "clusternet.shadow"
STORAGE_VERBS: Final = (
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
)
# Groups never mirrored: clusternet's own APIs, the shadow group itself, and metrics APIs,
# whose objects are measurements, not something a template can describe.
_SKIPPED_GROUPS: Final = frozenset({GROUP, "metrics.k8s.io", "custom.metrics.k8s.io"})
_SKIPPED_RESOURCES: Final = frozenset({("apiregistration.k8s.io", "apiservices")})
# Subresources of ``namespaces`` in kube-apiserver's request parsing: a path
# ``/namespaces/<name>/status`` is the namespace's status, not a resource named "status".
_NAMESPACE_SUBRESOURCES: Final = frozenset({"status", "finalize"})


def _mirrored_group(group: str) -> bool:
    return group not in _SKIPPED_GROUPS and not group.endswith(".clusternet.io")


@dataclass(frozen=True)
class PrinterColumn:
    """One of a CRD version's ``additionalPrinterColumns``."""

    name: str
    type: str
    json_path: str
    format: str = ""
    description: str = ""
    priority: int = 0


def printer_columns(version: Mapping[str, Any]) -> tuple[PrinterColumn, ...]:
    columns = []
    for column in version.get("additionalPrinterColumns") or ():
        if not column.get("name") or not column.get("jsonPath"):
            continue
        columns.append(
            PrinterColumn(
                name=column["name"],
                type=column.get("type", "string"),
                json_path=column["jsonPath"],
                format=column.get("format", ""),
                description=column.get("description", ""),
                priority=int(column.get("priority") or 0),
            )
        )
    return tuple(columns)


@dataclass(frozen=True)
class ShadowResource:
    """One mirrored resource: the parent's group/version/kind behind a shadow plural."""

    plural: str
    group: str
    version: str
    kind: str
    namespaced: bool
    singular: str = ""
    short_names: tuple[str, ...] = ()
    has_scale: bool = False
    has_status: bool = False
    custom: bool = False  # served by a CRD in the parent
    printer_columns: tuple[PrinterColumn, ...] = ()  # a CRD's additionalPrinterColumns

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version


def builtin_resources(
    discovered: Iterable[APIResource], crd_groups: Iterable[str]
) -> dict[str, ShadowResource]:
    """The discovery walk of spec §6.1: one version per resource (the first listed, which is
    the preferred one), first group wins per plural, CRD groups left to :func:`crd_resource`."""
    skipped_groups = set(crd_groups)
    resources: dict[str, ShadowResource] = {}
    for res in discovered:
        if (
            not _mirrored_group(res.group)
            or res.group in skipped_groups
            or (res.group, res.plural) in _SKIPPED_RESOURCES
            or not res.verbs
            or res.plural in resources
        ):
            continue
        resources[res.plural] = ShadowResource(
            plural=res.plural,
            group=res.group,
            version=res.version,
            kind=res.kind,
            namespaced=res.namespaced,
            singular=res.singular,
            short_names=res.short_names,
            has_scale="scale" in res.subresources,
            has_status="status" in res.subresources,
        )
    return resources


def crd_resource(crd: Mapping[str, Any]) -> ShadowResource | None:
    """The mirrored resource of a CRD (its storage version, which must be served), or None
    for clusternet's own CRDs and CRDs that serve no storage version."""
    spec = crd.get("spec") or {}
    group = spec.get("group", "")
    names = spec.get("names") or {}
    if not _mirrored_group(group) or not names.get("plural") or not names.get("kind"):
        return None
    storage = next(
        (
            v
            for v in spec.get("versions") or ()
            if v.get("storage") and v.get("served") and v.get("name")
        ),
        None,
    )
    if storage is None:
        return None
    subresources = storage.get("subresources") or {}
    return ShadowResource(
        plural=names["plural"],
        group=group,
        version=storage["name"],
        kind=names["kind"],
        namespaced=spec.get("scope") == "Namespaced",
        singular=names.get("singular", ""),
        short_names=tuple(names.get("shortNames") or ()),
        has_scale="scale" in subresources,
        has_status="status" in subresources,
        custom=True,
        printer_columns=printer_columns(storage),
    )


class ResourceTable:
    """Shadow plural → :class:`ShadowResource`: the built-ins found at start merged with the
    CRDs the parent has right now (``list_crds``, an informer's store)."""

    def __init__(
        self,
        builtins: Mapping[str, ShadowResource],
        list_crds: Callable[[], Sequence[Mapping[str, Any]]],
    ) -> None:
        self._builtins = dict(builtins)
        self._list_crds = list_crds

    def builtins(self) -> dict[str, ShadowResource]:
        return dict(self._builtins)

    def set_builtins(self, builtins: Mapping[str, ShadowResource]) -> None:
        """Replace the built-in half (the parent's discovery changed)."""
        self._builtins = dict(builtins)

    def resources(self) -> dict[str, ShadowResource]:
        merged = dict(self._builtins)
        for crd in sorted(self._list_crds(), key=lambda c: c["metadata"]["name"]):
            resource = crd_resource(crd)
            if resource is not None:
                merged.setdefault(resource.plural, resource)
        return merged

    def get(self, plural: str) -> ShadowResource | None:
        return self.resources().get(plural)


def api_resource_list(resources: Iterable[ShadowResource]) -> dict[str, Any]:
    """``GET /apis/shadow/v1alpha1``: every mirrored resource keeps its kind and scope, in
    category ``clusternet.shadow``, without its short names (see below); ``status`` is read-only,
    ``scale`` readable and writable."""
    entries: list[dict[str, Any]] = []
    for res in sorted(resources, key=lambda r: r.plural):
        common = {"namespaced": res.namespaced, "kind": res.kind}
        entry: dict[str, Any] = {
            "name": res.plural,
            "singularName": res.singular or res.kind.lower(),
            **common,
            "verbs": list(STORAGE_VERBS),
            "categories": [CATEGORY],
        }
        # No shortNames: kube-apiserver merges this document into the parent's discovery,
        # and kubectl (1.30+) warns on every `kubectl get deploy` that "deploy" could also
        # match deployments.shadow.  Shadow kinds are addressed as <plural>.v1alpha1.shadow,
        # or by any name through `kubectl clusternet`, which resolves names on the parent.
        entries.append(entry)
        if res.has_status:
            entries.append(
                {"name": f"{res.plural}/status", "singularName": "", **common, "verbs": ["get"]}
            )
        if res.has_scale:
            entries.append(
                {
                    "name": f"{res.plural}/scale",
                    "singularName": "",
                    "namespaced": res.namespaced,
                    "group": "autoscaling",
                    "version": "v1",
                    "kind": "Scale",
                    "verbs": ["get", "patch", "update"],
                }
            )
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": GROUP_VERSION,
        "resources": entries,
    }


def api_group() -> dict[str, Any]:
    version = {"groupVersion": GROUP_VERSION, "version": VERSION}
    return {
        "kind": "APIGroup",
        "apiVersion": "v1",
        "name": GROUP,
        "versions": [version],
        "preferredVersion": version,
    }


class BadPath(ValueError):
    """A shadow path that names no resource request."""


@dataclass(frozen=True)
class ShadowPath:
    """``/apis/shadow/v1alpha1[/namespaces/<ns>]/<plural>[/<name>[/<subresource>]]``."""

    plural: str
    namespace: str | None = None
    name: str | None = None
    subresource: str | None = None


def parse_path(segments: Sequence[str]) -> ShadowPath:
    """The parts after ``/apis/shadow/v1alpha1``, already split on ``/`` and unquoted.

    ``namespaces/<ns>/<plural>`` is a namespaced request unless ``<plural>`` is a
    subresource of the namespace itself, as kube-apiserver parses it.
    """
    parts = list(segments)
    if parts and parts[-1] == "":
        parts.pop()  # a trailing slash
    if not parts or any(not p for p in parts):
        raise BadPath("the path names no resource")
    namespace = None
    if parts[0] == "namespaces" and len(parts) > 2 and parts[2] not in _NAMESPACE_SUBRESOURCES:
        namespace, parts = parts[1], parts[2:]
    if len(parts) > 3:
        raise BadPath("the path has more segments than <resource>/<name>/<subresource>")
    return ShadowPath(
        plural=parts[0],
        namespace=namespace,
        name=parts[1] if len(parts) > 1 else None,
        subresource=parts[2] if len(parts) > 2 else None,
    )
