"""Globalization and Localization overrides (spec §4.6), as pure functions.

A Description's objects are the feeds' templates with, in order, every matching
Globalization's overrides (ascending priority) and then every Localization's (ascending
priority): later ones win.  Ties are broken by the full creation timestamp, then the name
(upstream compares only the seconds-of-minute field, §12.7).

A JSON patch (``JSONPatch``, or ``FieldJSONPatch`` inside its field) whose path does not exist
leaves the object unchanged, as upstream, but not silently: :func:`render` records it in
``skipped`` (the Base controller turns that into an event and the Subscription's ``Deployed``
condition), because a user who wrote a Localization wants to know it did nothing.  Every other
bad override is an :class:`OverrideError`.  The three clean-ups always appended (removing
managedFields, uid and status) stay tolerant.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import jsonpatch
import yaml

from clusternet.kube import merge_patch

MAX_JSON_PATCH_OPERATIONS = 10_000
# Removed from every rendered object: set by the parent's API server, meaningless in a child.
_SYSTEM_PATHS = ("/metadata/managedFields", "/metadata/uid", "/status")

Object = dict[str, Any]


class OverrideError(ValueError):
    """An override that cannot be applied; the message names it and says why."""


class MissingPathError(OverrideError):
    """A JSON patch on a path that does not exist (upstream skips such a patch silently)."""


@dataclass(frozen=True)
class OverrideSource:
    """The overrides of one Globalization or Localization, with what orders them."""

    kind: str  # "Globalization" or "Localization"
    name: str  # namespace/name of a Localization, name of a Globalization
    priority: int
    created: str  # RFC 3339 creationTimestamp
    overrides: Sequence[Mapping[str, Any]] = field(default_factory=tuple)
    deleting: bool = False

    @classmethod
    def from_object(cls, obj: Mapping[str, Any]) -> OverrideSource:
        meta = obj["metadata"]
        spec = obj.get("spec") or {}
        name = f"{meta['namespace']}/{meta['name']}" if meta.get("namespace") else meta["name"]
        return cls(
            kind=obj["kind"],
            name=name,
            priority=int(spec.get("priority", 500)),
            created=str(meta.get("creationTimestamp", "")),
            overrides=tuple(spec.get("overrides") or ()),
            deleting=bool(meta.get("deletionTimestamp")),
        )


@dataclass(frozen=True)
class Override:
    """One entry of ``spec.overrides`` and where it came from (for error messages)."""

    source: str
    config: Mapping[str, Any]

    @property
    def label(self) -> str:
        name = self.config.get("name")
        return f"{self.source} override {name!r}" if name else f"{self.source} override"


def ordered_overrides(sources: Iterable[OverrideSource]) -> list[Override]:
    """Globalizations then Localizations, each by (priority, creation time, name)."""
    live = [s for s in sources if not s.deleting]
    ordered = sorted(
        live,
        key=lambda s: (s.kind != "Globalization", s.priority, s.created, s.name),
    )
    return [Override(f"{s.kind} {s.name}", config) for s in ordered for config in s.overrides]


def parse_value(text: str, what: str) -> Any:
    """An override value: YAML or JSON (JSON is YAML)."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise OverrideError(f"{what}: value is neither JSON nor YAML: {err}") from None


def _json_patch(document: Any, operations: Any, what: str) -> Any:
    if not isinstance(operations, list):
        raise OverrideError(f"{what}: a JSON patch must be a list of operations")
    if len(operations) > MAX_JSON_PATCH_OPERATIONS:
        raise OverrideError(
            f"{what}: {len(operations)} operations, more than {MAX_JSON_PATCH_OPERATIONS}"
        )
    try:
        return jsonpatch.apply_patch(document, operations)
    except (jsonpatch.JsonPatchConflict, jsonpatch.JsonPointerException):
        raise MissingPathError(f"{what}: {_missing_path(document, operations)}") from None
    except jsonpatch.JsonPatchException as err:
        raise OverrideError(f"{what}: {err}") from None
    except (TypeError, KeyError, ValueError) as err:  # malformed operations
        raise OverrideError(f"{what}: malformed JSON patch: {err}") from None


def _missing_path(document: Any, operations: list[Any]) -> str:
    """Which operation hit a missing path (the library's own message quotes the whole
    document): replayed one by one, on the error path only."""
    for index, operation in enumerate(operations):
        try:
            document = jsonpatch.apply_patch(document, [operation])
        except (jsonpatch.JsonPatchConflict, jsonpatch.JsonPointerException):
            op, path = operation.get("op"), operation.get("path")
            return f"operation {index} ({op} {path}): path does not exist"
        except Exception:
            break
    return "a path does not exist"


def _field_override(obj: Object, override: Override) -> Object:
    config = override.config
    pointer = config.get("fieldPath") or ""
    what = override.label
    try:
        text = jsonpatch.JsonPointer(pointer).resolve(obj)
    except (jsonpatch.JsonPointerException, KeyError, IndexError, TypeError):
        raise OverrideError(f"{what}: field {pointer} does not exist") from None
    if not isinstance(text, str):
        raise OverrideError(f"{what}: field {pointer} is not a string")
    if text == "":
        return obj  # nothing to patch in an empty document
    fmt = (config.get("fieldFormat") or "YAML").upper()
    try:
        document = json.loads(text) if fmt == "JSON" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as err:
        raise OverrideError(f"{what}: field {pointer} is not valid {fmt}: {err}") from None
    value = parse_value(str(config.get("value", "")), what)
    if config["type"] == "FieldJSONPatch":
        patched = _json_patch(document, value, what)
    else:
        patched = merge_patch(document, value)
    if fmt == "JSON":
        rendered = json.dumps(patched, indent=4, sort_keys=config["type"] == "FieldMergePatch")
    else:
        rendered = yaml.safe_dump(patched, sort_keys=False)
    result: Object = jsonpatch.apply_patch(
        obj, [{"op": "replace", "path": pointer, "value": rendered}]
    )
    return result


def apply_override(obj: Object, override: Override) -> Object:
    """``obj`` with one override applied (a new object; ``obj`` is not changed)."""
    kind = override.config.get("type")
    what = override.label
    if kind in ("FieldJSONPatch", "FieldMergePatch"):
        return _field_override(obj, override)
    value = parse_value(str(override.config.get("value", "")), what)
    if kind == "JSONPatch":
        patched = _json_patch(obj, value, what)
    elif kind == "MergePatch":
        patched = merge_patch(obj, value)
    elif kind == "Helm":
        raise OverrideError(f"{what}: Helm overrides apply to HelmChart feeds only")
    else:
        raise OverrideError(f"{what}: unknown override type {kind!r}")
    if not isinstance(patched, dict):
        raise OverrideError(f"{what}: the result is not an object")
    result: Object = patched
    return result


def render(
    template: Object, overrides: Sequence[Override], *, skipped: list[str] | None = None
) -> Object:
    """A feed's template with every override applied in order, then system fields removed.

    With ``skipped``, a JSON patch on a missing path leaves the object unchanged and its
    message is appended there (upstream's semantics, reported); without, it raises.
    """
    obj = copy.deepcopy(template)
    for override in overrides:
        try:
            obj = apply_override(obj, override)
        except MissingPathError as err:
            if skipped is None:
                raise
            skipped.append(f"{err} (skipped)")
    return strip_system_fields(obj)


def strip_system_fields(obj: Object) -> Object:
    result = copy.deepcopy(obj)
    for path in _SYSTEM_PATHS:
        parent_path, _, key = path.rpartition("/")
        parent: Any = result
        for part in filter(None, parent_path.split("/")):
            parent = parent.get(part) if isinstance(parent, dict) else None
        if isinstance(parent, dict):
            parent.pop(key, None)
    return result


@dataclass(frozen=True)
class HelmRender:
    values: Object
    chart: Object  # the HelmChart object, with per-cluster changes of its spec


def render_helm(chart: Object, overrides: Sequence[Override]) -> HelmRender:
    """Helm overrides of a HelmChart feed: values deep-merged in order (later wins), or with
    ``overrideChart`` a merge patch onto the HelmChart that may not change the chart's name
    or target namespace."""
    values: Object = {}
    chart_patch: Object = {}
    for override in overrides:
        if override.config.get("type") != "Helm":
            raise OverrideError(f"{override.label}: only Helm overrides apply to HelmCharts")
        value = parse_value(str(override.config.get("value", "")), override.label)
        if value is None:
            continue
        if not isinstance(value, dict):
            raise OverrideError(f"{override.label}: Helm values must be a mapping")
        if override.config.get("overrideChart"):
            chart_patch = merge_patch(chart_patch, value)
        else:
            values = deep_merge(values, value)
    spec_patch = dict(chart_patch.get("spec") or {})
    spec_patch.pop("chart", None)
    spec_patch.pop("targetNamespace", None)
    patch = (
        {**chart_patch, "spec": spec_patch}
        if spec_patch
        else {k: v for k, v in chart_patch.items() if k != "spec"}
    )
    rendered = merge_patch(chart, patch) if patch else copy.deepcopy(chart)
    return HelmRender(values=values, chart=rendered)


def deep_merge(base: Object, override: Mapping[str, Any]) -> Object:
    """Helm's values coalescing: mappings merge key by key, anything else replaces."""
    result = dict(base)
    for key, value in override.items():
        current = result.get(key)
        if isinstance(current, dict) and isinstance(value, dict):
            result[key] = deep_merge(current, value)
        else:
            result[key] = copy.deepcopy(value)
    return result
