"""Generate the ``apiextensions.k8s.io/v1`` CRDs in ``manifests/crds`` from the API models.

    python -m clusternet.apis.crdgen            # (re)write manifests/crds/*.yaml
    python -m clusternet.apis.crdgen --check    # exit 1 if the files are stale

Pydantic's JSON schema is not a *structural* schema as kube-apiserver requires, so it is
rewritten: every ``$ref`` inlined, ``X | None`` collapsed to ``X`` (an unset field is simply
omitted, like Go's omitempty), ``additionalProperties: true`` turned into
``x-kubernetes-preserve-unknown-fields``, ``null`` defaults and titles dropped.  Output is
deterministic (sorted keys), so a stale CRD shows up as a diff.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from clusternet.apis import ALL_KINDS
from clusternet.apis.meta import CRDInfo, KubeObject, PrinterColumn

# The repository root: src/clusternet/apis/crdgen.py -> parents[3].
DEFAULT_OUTPUT = Path(__file__).resolve().parents[3] / "manifests" / "crds"

# Keys the envelope gets from the apiserver's own conventions, as controller-gen writes them.
_TYPE_META = {
    "apiVersion": {
        "description": "APIVersion defines the versioned schema of this representation of an "
        "object. Servers should convert recognized schemas to the latest internal value, and "
        "may reject unrecognized values. More info: https://git.k8s.io/community/contributors/"
        "devel/sig-architecture/api-conventions.md#resources",
        "type": "string",
    },
    "kind": {
        "description": "Kind is a string value representing the REST resource this object "
        "represents. Servers may infer this from the endpoint the client submits requests to. "
        "Cannot be updated. In CamelCase. More info: https://git.k8s.io/community/contributors/"
        "devel/sig-architecture/api-conventions.md#types-kinds",
        "type": "string",
    },
    # Validated by the apiserver itself; a CRD schema may only say it is an object.
    "metadata": {"type": "object"},
}


class SchemaError(ValueError):
    """The model's JSON schema cannot be expressed as a structural CRD schema."""


def _resolve(node: Any, defs: dict[str, Any]) -> Any:
    """Inline every ``$ref``; keys next to a ``$ref`` (description, default) win."""
    if isinstance(node, list):
        return [_resolve(item, defs) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target = defs[node["$ref"].removeprefix("#/$defs/")]
        siblings = {k: v for k, v in node.items() if k != "$ref"}
        return _resolve({**target, **siblings}, defs)
    return {key: _resolve(value, defs) for key, value in node.items()}


def _drop_null_branch(node: dict[str, Any]) -> dict[str, Any]:
    """``anyOf: [X, null]`` -> ``X`` merged with the field-level keys."""
    branches = node.get("anyOf")
    if not branches or {"type": "null"} not in branches:
        return node
    others = [b for b in branches if b != {"type": "null"}]
    outer = {k: v for k, v in node.items() if k != "anyOf"}
    if len(others) == 1:
        return {**others[0], **outer}
    return {**outer, "anyOf": others}


def _structural(node: Any) -> Any:
    """Turn a resolved pydantic schema node into a structural CRD schema node."""
    if isinstance(node, list):
        return [_structural(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = _drop_null_branch(node)
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "title" or (key == "default" and value is None):
            continue
        if key == "description":
            out[key] = " ".join(value.split())  # docstrings wrap; CRD descriptions do not
        elif key == "additionalProperties" and isinstance(value, bool):
            if value:
                out["x-kubernetes-preserve-unknown-fields"] = True
        elif key == "properties":
            out[key] = {name: _structural(sub) for name, sub in value.items()}
        elif key == "required":
            out[key] = sorted(value)
        elif key == "x-kubernetes-validations" or key.startswith("x-"):
            out[key] = value
        else:
            out[key] = _structural(value)
    _check_node(out)
    return out


# Everything else pydantic might emit (e.g. raw ``ge`` when a constraint cannot be folded into
# the schema) would be silently ignored by the apiserver, so it is an error here.
_ALLOWED_KEYS = frozenset(
    {
        "type", "format", "description", "default", "enum", "pattern", "minimum", "maximum",
        "minLength", "maxLength", "minItems", "maxItems", "items", "properties", "required",
        "anyOf", "additionalProperties",
    }
)  # fmt: skip


def _check_node(node: dict[str, Any]) -> None:
    unknown = {k for k in node if k not in _ALLOWED_KEYS and not k.startswith("x-kubernetes-")}
    if unknown:
        raise SchemaError(f"keys {sorted(unknown)} have no meaning in a CRD schema: {node}")
    if node.get("x-kubernetes-int-or-string") or node.get("x-kubernetes-preserve-unknown-fields"):
        return
    if "anyOf" in node:
        # Only int-or-string may be a union; anything else pydantic emits for `A | B` cannot
        # be a structural schema, so refuse it rather than ship a CRD the apiserver rejects.
        raise SchemaError(f"unions are not structural: {node}")
    if "type" not in node:
        raise SchemaError(f"structural schemas need a type on every node: {node}")


def openapi_schema(kind: type[KubeObject]) -> dict[str, Any]:
    """The structural ``openAPIV3Schema`` of one kind."""
    raw = kind.model_json_schema(by_alias=True, mode="validation")
    resolved = _resolve({k: v for k, v in raw.items() if k != "$defs"}, raw.get("$defs", {}))
    schema: dict[str, Any] = _structural(resolved)
    properties = schema["properties"]
    properties.update(_TYPE_META)
    schema["required"] = sorted(set(schema.get("required", [])) - set(_TYPE_META))
    if not schema["required"]:
        del schema["required"]
    return schema


def _printer_column(column: PrinterColumn) -> dict[str, Any]:
    entry = {
        "name": column.name,
        "type": column.type,
        "jsonPath": column.json_path,
        "description": column.description,
        "priority": column.priority,
    }
    return {k: v for k, v in entry.items() if v not in ("", 0)}


def crd_manifest(kind: type[KubeObject]) -> dict[str, Any]:
    info: CRDInfo = kind.crd
    names: dict[str, Any] = {
        "kind": info.kind,
        "listKind": f"{info.kind}List",
        "plural": info.plural,
        "singular": info.singular,
    }
    if info.short_names:
        names["shortNames"] = list(info.short_names)
    if info.categories:
        names["categories"] = list(info.categories)
    version: dict[str, Any] = {
        "name": info.version,
        "served": True,
        "storage": True,
        "schema": {"openAPIV3Schema": openapi_schema(kind)},
    }
    if info.printer_columns:
        version["additionalPrinterColumns"] = [_printer_column(c) for c in info.printer_columns]
    if info.status_subresource:
        version["subresources"] = {"status": {}}
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": info.name},
        "spec": {"group": info.group, "names": names, "scope": info.scope, "versions": [version]},
    }


def render(kind: type[KubeObject]) -> str:
    header = (
        "# Generated by `python -m clusternet.apis.crdgen` from clusternet.apis; do not edit.\n"
    )
    body = yaml.safe_dump(crd_manifest(kind), sort_keys=True, width=100, allow_unicode=True)
    return header + "---\n" + body


def file_name(info: CRDInfo) -> str:
    return f"{info.group}_{info.plural}.yaml"


def expected_files(kinds: Iterable[type[KubeObject]] = ALL_KINDS) -> dict[str, str]:
    return {file_name(kind.crd): render(kind) for kind in kinds}


def stale_files(output: Path, expected: dict[str, str]) -> list[str]:
    """Files that differ from, are missing from, or are extra to the generated set."""
    present = {p.name for p in output.glob("*.yaml")} if output.is_dir() else set()
    stale = [
        name
        for name, text in expected.items()
        if name not in present or (output / name).read_text() != text
    ]
    return sorted(stale + sorted(present - expected.keys()))


def write(output: Path, expected: dict[str, str]) -> None:
    output.mkdir(parents=True, exist_ok=True)
    for extra in {p.name for p in output.glob("*.yaml")} - expected.keys():
        (output / extra).unlink()
    for name, text in expected.items():
        (output / name).write_text(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m clusternet.apis.crdgen", description=__doc__)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--check", action="store_true", help="fail if the files are stale")
    args = parser.parse_args(argv)
    expected = expected_files()
    if args.check:
        stale = stale_files(args.output, expected)
        for name in stale:
            print(f"stale: {args.output / name}", file=sys.stderr)
        if stale:
            print("run `python -m clusternet.apis.crdgen` to regenerate", file=sys.stderr)
        return 1 if stale else 0
    write(args.output, expected)
    print(f"wrote {len(expected)} CRDs to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
