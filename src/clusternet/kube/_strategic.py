"""Strategic merge patch (``application/strategic-merge-patch+json``) over plain dicts.

The semantics are those of k8s.io/apimachinery ``strategicpatch`` as kube-apiserver applies a
patch to a live object (``MergeParallelList`` and ``IgnoreUnmatchedNulls`` on):

* maps merge recursively, ``null`` deletes a key;
* a list whose field is marked ``x-kubernetes-patch-strategy: merge`` merges by
  ``x-kubernetes-patch-merge-key`` (lists of maps) or as a set (lists of primitives); patch
  items come first, then the items only the original had, in the original's relative order;
* every other list is replaced, as in a JSON merge patch (e.g. ``tolerations``);
* directives: ``$patch: replace|delete`` in a map, ``{"$patch": "delete", <key>: v}`` and
  ``{"$patch": "replace"}`` items in a merged list, ``$retainKeys``,
  ``$setElementOrder/<field>`` and ``$deleteFromPrimitiveList/<field>``.

Where a field's patch strategy lives is the caller's business: :class:`PatchSchema` reads
it from an OpenAPI v3 document (kube-apiserver publishes the Go struct tags as
``x-kubernetes-patch-strategy``/``x-kubernetes-patch-merge-key``).  No Python library
implements this faithfully (there are Go, .NET and Java ones), hence this module.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

DIRECTIVE: Final = "$patch"
RETAIN_KEYS: Final = "$retainKeys"
SET_ELEMENT_ORDER: Final = "$setElementOrder/"
DELETE_FROM_PRIMITIVE_LIST: Final = "$deleteFromPrimitiveList/"
_MISSING: Final = object()


class StrategicPatchError(ValueError):
    """A patch that cannot be applied (kube-apiserver answers 400 Bad Request)."""


@dataclass(frozen=True)
class PatchSchema:
    """The patch metadata of one field, read from an OpenAPI v3 schema node.

    ``node`` is the field's schema as it appears in its parent's ``properties`` (where
    kube-apiserver puts the patch extensions, beside an ``allOf: [{$ref}]``); ``schemas``
    is ``components.schemas`` of the document, to resolve ``$ref``.  With
    ``list_type_fallback`` a list marked ``x-kubernetes-list-type: map`` with a single key
    (or ``set``) merges even without patch extensions: meant for documents that carry no
    patch extensions at all (kubectl computes its patches from the same extensions, so on
    documents that have them, the extensions alone decide, as in Kubernetes).
    """

    node: Mapping[str, Any] = field(default_factory=dict)
    schemas: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)
    list_type_fallback: bool = False

    def _chain(self) -> list[Mapping[str, Any]]:
        """The node and what it refers to, outermost first."""
        chain: list[Mapping[str, Any]] = []
        node: Any = self.node
        while isinstance(node, Mapping) and len(chain) < 16:
            chain.append(node)
            ref = node.get("$ref")
            all_of = node.get("allOf")
            if isinstance(ref, str):
                node = self.schemas.get(ref.rpartition("/")[2])
            elif isinstance(all_of, list) and len(all_of) == 1:
                node = all_of[0]
            else:
                break
        return chain

    def _extension(self, name: str) -> Any:
        for node in self._chain():
            if name in node:
                return node[name]
        return None

    def _child(self, node: Any) -> PatchSchema:
        return PatchSchema(
            node if isinstance(node, Mapping) else {}, self.schemas, self.list_type_fallback
        )

    def field(self, name: str) -> PatchSchema:
        """The schema of property ``name`` (or of a map's values)."""
        for node in self._chain():
            properties = node.get("properties")
            if isinstance(properties, Mapping) and name in properties:
                return self._child(properties[name])
            additional = node.get("additionalProperties")
            if isinstance(additional, Mapping):
                return self._child(additional)
        return PatchSchema({}, self.schemas, self.list_type_fallback)

    def items(self) -> PatchSchema:
        for node in self._chain():
            if isinstance(node.get("items"), Mapping):
                return self._child(node["items"])
        return PatchSchema({}, self.schemas, self.list_type_fallback)

    @property
    def strategies(self) -> frozenset[str]:
        declared = self._extension("x-kubernetes-patch-strategy")
        if isinstance(declared, str):
            return frozenset(s.strip() for s in declared.split(",") if s.strip())
        if self.list_type_fallback:
            list_type = self._extension("x-kubernetes-list-type")
            keys = self._extension("x-kubernetes-list-map-keys")
            if list_type == "set" or (
                list_type == "map" and isinstance(keys, list) and len(keys) == 1
            ):
                return frozenset({"merge"})
        return frozenset()

    @property
    def merge_key(self) -> str:
        declared = self._extension("x-kubernetes-patch-merge-key")
        if isinstance(declared, str):
            return declared
        if self.list_type_fallback and self._extension("x-kubernetes-patch-strategy") is None:
            keys = self._extension("x-kubernetes-list-map-keys")
            is_map = self._extension("x-kubernetes-list-type") == "map"
            if is_map and isinstance(keys, list) and len(keys) == 1 and isinstance(keys[0], str):
                return keys[0]
        return ""


def kind_schema(
    document: Mapping[str, Any], group: str, version: str, kind: str
) -> PatchSchema | None:
    """The schema of ``group/version, kind`` in an OpenAPI v3 document (as served at
    ``/openapi/v3/apis/<group>/<version>``), or None when the document does not define it."""
    schemas = (document.get("components") or {}).get("schemas") or {}
    fallback = "x-kubernetes-patch-" not in repr(schemas)
    for name, schema in schemas.items():
        for gvk in schema.get("x-kubernetes-group-version-kind") or ():
            if (gvk.get("group", ""), gvk.get("version"), gvk.get("kind")) == (
                group,
                version,
                kind,
            ):
                return PatchSchema({"$ref": f"#/components/schemas/{name}"}, schemas, fallback)
    return None


def strategic_merge_patch(
    original: Mapping[str, Any], patch: Mapping[str, Any], schema: PatchSchema
) -> dict[str, Any]:
    """``original`` with ``patch`` applied; neither argument is changed."""
    if not isinstance(patch, Mapping):
        raise StrategicPatchError("a strategic merge patch must be a JSON object")
    result: dict[str, Any] = _merge_map(copy.deepcopy(dict(original)), patch, schema)
    return result


# ---------------------------------------------------------------------------------- maps


def _merge_map(original: dict[str, Any], patch: Mapping[str, Any], schema: PatchSchema) -> Any:
    if DIRECTIVE in patch:
        directive = patch[DIRECTIVE]
        if directive == "replace":
            rest = {k: v for k, v in patch.items() if k != DIRECTIVE}
            return _merge_map({}, rest, schema)
        if directive == "delete":
            return {}
        raise StrategicPatchError(f"Unknown patch type: {directive} in map: {dict(patch)}")
    result = original
    pending = dict(patch)

    if RETAIN_KEYS in pending:
        retained = pending.pop(RETAIN_KEYS)
        if not isinstance(retained, list) or not all(isinstance(k, str) for k in retained):
            raise StrategicPatchError("invalid patch: $retainKeys must be a list of strings")
        for key in [k for k in result if k not in retained]:
            del result[key]

    for key in [k for k in pending if k.startswith(DELETE_FROM_PRIMITIVE_LIST)]:
        name, doomed = key[len(DELETE_FROM_PRIMITIVE_LIST) :], pending.pop(key)
        if not isinstance(doomed, list):
            raise StrategicPatchError(f"invalid patch: {key} must be a list")
        if isinstance(result.get(name), list):
            result[name] = [item for item in result[name] if item not in doomed]

    for key in [k for k in pending if k.startswith(SET_ELEMENT_ORDER)]:
        name, order = key[len(SET_ELEMENT_ORDER) :], pending.pop(key)
        if not isinstance(order, list):
            raise StrategicPatchError(f"invalid patch: {key} must be a list")
        _set_element_order(result, name, order, pending.pop(name, _MISSING), schema.field(name))

    for key, value in pending.items():
        if key.startswith("$"):
            continue  # an unknown directive: kube-apiserver's typed decoding drops it too
        if value is None:
            result.pop(key, None)
            continue
        sub = schema.field(key)
        current = result.get(key, _MISSING)
        if isinstance(current, dict) and isinstance(value, Mapping):
            if "replace" in sub.strategies:
                result[key] = _clean(value, sub)
            else:
                result[key] = _merge_map(current, value, sub)
        elif isinstance(current, list) and isinstance(value, list):
            result[key] = _merge_list_field(current, value, sub)
        else:
            result[key] = _clean(value, sub)
    return result


def _clean(value: Any, schema: PatchSchema) -> Any:
    """A patch value taken as is (no original to merge with): directives applied to nothing
    and nulls dropped, as kube-apiserver's ``IgnoreUnmatchedNulls`` does."""
    if isinstance(value, Mapping):
        return _merge_map({}, value, schema)
    if isinstance(value, list):
        return _merge_list_field([], value, schema)
    return copy.deepcopy(value)


def _set_element_order(
    result: dict[str, Any], name: str, order: list[Any], patched: Any, schema: PatchSchema
) -> None:
    current = result.get(name, _MISSING)
    if current is _MISSING and patched is _MISSING:
        return
    if patched is None:
        result.pop(name, None)
        return
    if patched is _MISSING:
        merged = current
    elif current is _MISSING or not isinstance(current, list):
        merged = _clean(patched, schema)
    else:
        merged = _merge_list_field(current, patched, schema)
    if not isinstance(merged, list):
        result[name] = merged
        return
    key = schema.merge_key
    _require_keys(order, key)
    in_order, server_only = _partition(merged, order, key)
    original = current if isinstance(current, list) else []
    result[name] = _normalize_element_order(in_order, server_only, order, original, key)


# ---------------------------------------------------------------------------------- lists


def _is_directive(item: Any) -> bool:
    return isinstance(item, Mapping) and DIRECTIVE in item


def _merge_list_field(original: list[Any], patch: list[Any], schema: PatchSchema) -> list[Any]:
    items = schema.items()
    if "merge" not in schema.strategies:
        # Replaced, as Kubernetes replaces every list without a merge strategy.
        return [_clean(item, items) for item in patch if not _is_directive(item)]
    return _merge_list(original, patch, schema.merge_key, items)


def _merge_list(original: list[Any], patch: list[Any], key: str, items: PatchSchema) -> list[Any]:
    if not original and not patch:
        return []
    if not any(isinstance(item, Mapping) for item in [*original, *patch]):
        merged = list(original)
        for item in patch:
            if item not in merged:
                merged.append(copy.deepcopy(item))
        server_order: list[Any] = original
    else:
        if not key:
            raise StrategicPatchError("cannot merge lists of objects without a merge key")
        original, patch = _special_elements(list(original), patch, key)
        merged = list(original)
        for item in patch:
            if not isinstance(item, Mapping) or key not in item:
                raise StrategicPatchError(f"map: {item} does not contain declared merge key: {key}")
            found = _index(merged, item, key)
            if found >= 0:
                merged[found] = _merge_map(merged[found], item, items)
            else:
                merged.append(_merge_map({}, item, items))
        server_order = original
    in_patch, server_only = _partition(merged, patch, key)
    return _normalize_element_order(in_patch, server_only, patch, server_order, key)


def _special_elements(
    original: list[Any], patch: list[Any], key: str
) -> tuple[list[Any], list[Any]]:
    """``$patch`` items of a merged list: ``delete`` removes the original's item with that
    key, ``replace`` makes the remaining patch items the whole list."""
    plain: list[Any] = []
    replace = False
    for item in patch:
        if not isinstance(item, Mapping):
            raise StrategicPatchError(f"list item {item!r} is not an object")
        if DIRECTIVE not in item:
            plain.append(item)
            continue
        directive = item[DIRECTIVE]
        if directive == "delete":
            if key not in item:
                raise StrategicPatchError(
                    f"map: {dict(item)} does not contain declared merge key: {key}"
                )
            original = [
                o for o in original if not (isinstance(o, Mapping) and o.get(key) == item[key])
            ]
        elif directive == "replace":
            replace = True
        elif directive == "merge":
            raise StrategicPatchError("merging lists cannot yet be specified in the patch")
        else:
            raise StrategicPatchError(f"Unknown patch type: {directive} in map: {dict(item)}")
    if replace:
        return [_merge_map({}, item, PatchSchema()) for item in plain], []
    return original, plain


def _require_keys(items: Sequence[Any], key: str) -> None:
    if not key:
        return
    for item in items:
        if not isinstance(item, Mapping) or key not in item:
            raise StrategicPatchError(f"map: {item} does not contain declared merge key: {key}")


def _index(items: Sequence[Any], item: Any, key: str) -> int:
    for position, candidate in enumerate(items):
        if key:
            if (
                isinstance(candidate, Mapping)
                and isinstance(item, Mapping)
                and key in candidate
                and key in item
                and candidate[key] == item[key]
            ):
                return position
        elif candidate == item:
            return position
    return -1


def _partition(items: list[Any], by: Sequence[Any], key: str) -> tuple[list[Any], list[Any]]:
    present = [item for item in items if _index(by, item, key) >= 0]
    absent = [item for item in items if _index(by, item, key) < 0]
    return present, absent


def _normalize_slice_order(to_sort: list[Any], order: Sequence[Any], key: str) -> list[Any]:
    present, absent = _partition(to_sort, order, key)
    present.sort(key=lambda item: _index(order, item, key))
    return present + absent


def _normalize_element_order(
    in_patch: list[Any],
    server_only: list[Any],
    patch_order: Sequence[Any],
    server_order: Sequence[Any],
    key: str,
) -> list[Any]:
    """Patch items in the patch's order, the original's other items in the original's
    order, interleaved where the original's order relates them (``mergeSortedSlice``)."""
    right = _normalize_slice_order(in_patch, patch_order, key)
    left = _normalize_slice_order(server_only, server_order, key)
    merged: list[Any] = []
    i = j = 0
    while i < len(left) or j < len(right):
        if i >= len(left):
            merged.append(right[j])
            j += 1
        elif j >= len(right):
            merged.append(left[i])
            i += 1
        else:
            li, ri = _index(server_order, left[i], key), _index(server_order, right[j], key)
            if li >= 0 and ri >= 0 and li < ri:
                merged.append(left[i])
                i += 1
            else:
                merged.append(right[j])
                j += 1
    return merged
