"""The CRD generator: committed manifests are current, schemas are structural, and the CRD
metadata (names, scope, columns, subresources) is upstream's."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from clusternet.apis import ALL_KINDS
from clusternet.apis.clusters.v1beta1 import UUID_PATTERN
from clusternet.apis.crdgen import (
    DEFAULT_OUTPUT,
    SchemaError,
    crd_manifest,
    expected_files,
    main,
    openapi_schema,
    stale_files,
)
from clusternet.apis.meta import CRDInfo, KubeModel, KubeObject

CRDS = {kind.crd.kind: crd_manifest(kind) for kind in ALL_KINDS}


def _schema(kind: str) -> dict[str, Any]:
    schema: dict[str, Any] = CRDS[kind]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def _at(schema: dict[str, Any], path: str) -> dict[str, Any]:
    for part in path.split("."):
        schema = schema["items"] if part == "[]" else schema["properties"][part]
    return schema


def test_committed_crds_match_the_generator() -> None:
    assert stale_files(DEFAULT_OUTPUT, expected_files()) == [], (
        "manifests/crds is stale: run `python -m clusternet.apis.crdgen`"
    )


def test_check_mode_detects_edited_missing_and_extra_files(tmp_path: Path) -> None:
    assert main(["--output", str(tmp_path)]) == 0
    assert main(["--output", str(tmp_path), "--check"]) == 0
    subscriptions = tmp_path / "apps.clusternet.io_subscriptions.yaml"
    subscriptions.write_text(subscriptions.read_text().replace("minItems: 1", "minItems: 0"))
    (tmp_path / "clusters.clusternet.io_managedclusters.yaml").unlink()
    (tmp_path / "leftover.yaml").write_text("{}")
    assert stale_files(tmp_path, expected_files()) == [
        "apps.clusternet.io_subscriptions.yaml",
        "clusters.clusternet.io_managedclusters.yaml",
        "leftover.yaml",
    ]
    assert main(["--output", str(tmp_path), "--check"]) == 1


def test_output_is_deterministic() -> None:
    assert expected_files() == expected_files()


def _nodes(schema: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, schema
    for name, sub in schema.get("properties", {}).items():
        yield from _nodes(sub, f"{path}.{name}")
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), dict):
            yield from _nodes(schema[key], f"{path}[{key}]")


@pytest.mark.parametrize("kind", sorted(CRDS))
def test_schemas_are_structural(kind: str) -> None:
    schema = _schema(kind)
    assert schema["properties"]["metadata"] == {"type": "object"}
    for path, node in _nodes(schema):
        free_form = node.get("x-kubernetes-preserve-unknown-fields") or node.get(
            "x-kubernetes-int-or-string"
        )
        assert "type" in node or free_form, f"{kind}{path} has no type"
        assert not {"$ref", "$defs", "title", "oneOf", "nullable"} & node.keys(), f"{kind}{path}"
        if "anyOf" in node:
            assert node.get("x-kubernetes-int-or-string"), f"{kind}{path}: union"
        assert node.get("default", "") is not None, f"{kind}{path}: null default"


# Upstream's names, scope and subresources (spec §2.1).
@pytest.mark.parametrize(
    ("kind", "name", "short_names", "scope", "status"),
    [
        (
            "ClusterRegistrationRequest",
            "clusterregistrationrequests.clusters.clusternet.io",
            ["clsrr"],
            "Cluster",
            True,
        ),
        ("ManagedCluster", "managedclusters.clusters.clusternet.io", ["mcls"], "Namespaced", True),
        ("Subscription", "subscriptions.apps.clusternet.io", ["sub", "subs"], "Namespaced", True),
        ("Base", "bases.apps.clusternet.io", None, "Namespaced", False),
        ("Description", "descriptions.apps.clusternet.io", ["desc"], "Namespaced", True),
        ("Localization", "localizations.apps.clusternet.io", ["loc", "local"], "Namespaced", False),
        (
            "Globalization",
            "globalizations.apps.clusternet.io",
            ["glob", "global"],
            "Cluster",
            False,
        ),
        ("HelmChart", "helmcharts.apps.clusternet.io", ["chart", "charts"], "Namespaced", True),
        ("HelmRelease", "helmreleases.apps.clusternet.io", ["hr"], "Namespaced", True),
        ("Manifest", "manifests.apps.clusternet.io", None, "Namespaced", False),
        ("FeedInventory", "feedinventories.apps.clusternet.io", ["finv"], "Namespaced", False),
        ("ServiceExport", "serviceexports.multicluster.x-k8s.io", ["svcex"], "Namespaced", True),
        ("ServiceImport", "serviceimports.multicluster.x-k8s.io", ["svcim"], "Namespaced", True),
    ],
)
def test_crd_names_scope_and_subresources(
    kind: str, name: str, short_names: list[str] | None, scope: str, status: bool
) -> None:
    crd = CRDS[kind]
    version = crd["spec"]["versions"][0]
    assert crd["metadata"]["name"] == name
    assert crd["spec"]["names"].get("shortNames") == short_names
    assert crd["spec"]["scope"] == scope
    assert ("subresources" in version) is status
    clusternet = not name.endswith("x-k8s.io")
    assert crd["spec"]["names"].get("categories") == (["clusternet"] if clusternet else None)


@pytest.mark.parametrize(
    ("kind", "path", "expected"),
    [
        ("Subscription", "spec.subscribers", {"minItems": 1}),
        ("Subscription", "spec.feeds", {"minItems": 1}),
        (
            "Subscription",
            "spec.schedulingStrategy",
            {"enum": ["Replication", "Dividing"], "default": "Replication"},
        ),
        (
            "Subscription",
            "spec.dividingScheduling.type",
            {"enum": ["Static", "Dynamic"], "default": "Static"},
        ),
        ("Subscription", "spec.subscribers.[].weight", {"minimum": 0, "format": "int32"}),
        ("Subscription", "status.specHash", {"type": "integer", "format": "int64"}),
        ("Localization", "spec.priority", {"minimum": 0, "maximum": 1000, "default": 500}),
        ("Globalization", "spec.priority", {"minimum": 0, "maximum": 1000, "default": 500}),
        ("ClusterRegistrationRequest", "spec.clusterId", {"pattern": UUID_PATTERN}),
        ("ClusterRegistrationRequest", "spec.ClusterLabels", {"type": "object"}),
        ("ClusterRegistrationRequest", "status.token", {"type": "string", "format": "byte"}),
        ("ManagedCluster", "status.lastObservedTime", {"type": "string", "format": "date-time"}),
        ("ManagedCluster", "spec.clusterInitBaseName", {"maxLength": 512}),
        ("Manifest", "template", {"type": "object", "x-kubernetes-preserve-unknown-fields": True}),
        (
            "Description",
            "status.manifestStatuses.[].observedStatus",
            {"x-kubernetes-preserve-unknown-fields": True},
        ),
        ("HelmRelease", "spec.overrides", {"format": "byte"}),
        ("HelmChart", "spec.timeoutSeconds", {"default": 300}),
        ("ServiceImport", "spec.type", {"enum": ["ClusterSetIP", "Headless"]}),
        ("ServiceImport", "spec.ips", {"maxItems": 1}),
    ],
)
def test_schema_details(kind: str, path: str, expected: dict[str, Any]) -> None:
    node = _at(_schema(kind), path)
    assert {key: node.get(key) for key in expected} == expected


def test_quantities_are_int_or_string() -> None:
    cpu = _at(_schema("ManagedCluster"), "status.allocatable")["additionalProperties"]
    assert cpu["x-kubernetes-int-or-string"] is True
    assert cpu["anyOf"] == [{"type": "integer"}, {"type": "string"}]


def test_required_fields() -> None:
    assert _schema("Subscription")["required"] == ["spec"]
    assert _at(_schema("Subscription"), "spec")["required"] == ["feeds", "subscribers"]
    assert _at(_schema("ManagedCluster"), "spec")["required"] == ["clusterId", "syncMode"]
    assert _schema("Manifest")["required"] == ["template"]
    assert "required" not in _schema("ServiceExport")


def test_cel_rules_are_emitted() -> None:
    spec = _at(_schema("ManagedCluster"), "spec")
    assert [v["rule"] for v in spec["x-kubernetes-validations"]] == [
        "!has(oldSelf.clusterInitBaseName) || has(self.clusterInitBaseName)"
    ]
    override = _at(_schema("Localization"), "spec.overrides.[]")
    assert "fieldPath" in override["x-kubernetes-validations"][0]["rule"]


def test_printer_columns() -> None:
    columns = CRDS["ManagedCluster"]["spec"]["versions"][0]["additionalPrinterColumns"]
    assert [(c["name"], c.get("priority", 0)) for c in columns] == [
        ("CLUSTER ID", 0), ("CLUSTER TYPE", 100), ("SYNC MODE", 0), ("KUBERNETES", 0),
        ("STATUS", 0), ("AGE", 0), ("AGENT VERSION", 100),
    ]  # fmt: skip
    assert columns[4]["jsonPath"] == '.status.conditions[?(@.type=="Ready")].status'
    crr = CRDS["ClusterRegistrationRequest"]["spec"]["versions"][0]["additionalPrinterColumns"]
    assert [c["jsonPath"] for c in crr] == [
        ".spec.clusterId",
        ".status.result",
        ".metadata.creationTimestamp",
    ]


def test_committed_files_parse_as_the_generated_objects() -> None:
    for kind in ALL_KINDS:
        path = DEFAULT_OUTPUT / f"{kind.crd.group}_{kind.crd.plural}.yaml"
        assert yaml.safe_load(path.read_text()) == crd_manifest(kind)


def test_non_structural_unions_are_refused() -> None:
    class Ambiguous(KubeModel):
        value: int | str

    class Broken(KubeObject):
        crd = CRDInfo(
            group="example.io", version="v1", kind="Broken", plural="brokens", scope="Cluster"
        )
        spec: Ambiguous

    with pytest.raises(SchemaError, match="unions are not structural"):
        openapi_schema(Broken)
