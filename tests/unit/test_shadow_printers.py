"""Server-side printing of templates: the Tables `kubectl get` shows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from clusternet.hub.shadow_printers import human_duration, jsonpath, table, wants_table
from clusternet.hub.shadow_resources import PrinterColumn, ShadowResource

NOW = datetime(2026, 1, 1, 1, 0, tzinfo=UTC)
CREATED = "2026-01-01T00:55:00Z"  # 5 minutes before NOW


def resource(group: str, kind: str, **extra: Any) -> ShadowResource:
    return ShadowResource(kind.lower() + "s", group, "v1", kind, namespaced=True, **extra)


def obj(api_version: str, kind: str, **fields: Any) -> dict[str, Any]:
    return {
        "apiVersion": api_version,
        "kind": kind,
        "metadata": {"name": "x", "namespace": "ns", "creationTimestamp": CREATED},
        **fields,
    }


def printed(res: ShadowResource, item: dict[str, Any], wide: bool = False) -> dict[str, Any]:
    """Column name → cell, as kubectl shows them (priority 1 only with -o wide)."""
    result = table(res, [item], now=NOW)
    columns = result["columnDefinitions"]
    cells = result["rows"][0]["cells"]
    return {
        c["name"]: cell
        for c, cell in zip(columns, cells, strict=True)
        if wide or c["priority"] == 0
    }


DEPLOYMENT = obj(
    "apps/v1",
    "Deployment",
    spec={
        "replicas": 2,
        "selector": {"matchLabels": {"app": "web"}},
        "template": {"spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]}},
    },
)

CASES: list[tuple[ShadowResource, dict[str, Any], dict[str, Any]]] = [
    (
        resource("apps", "Deployment"),
        DEPLOYMENT,
        {"Name": "x", "Ready": "0/2", "Up-to-date": 0, "Available": 0, "Age": "5m"},
    ),
    (
        resource("", "Service"),
        obj("v1", "Service", spec={"ports": [{"port": 80}, {"port": 53, "protocol": "UDP"}]}),
        {
            "Name": "x",
            "Type": "ClusterIP",
            "Cluster-IP": "<none>",
            "External-IP": "<none>",
            "Port(s)": "80/TCP,53/UDP",
            "Age": "5m",
        },
    ),
    (
        resource("", "Service"),
        obj("v1", "Service", spec={"type": "LoadBalancer", "ports": [{"port": 443}]}),
        {
            "Name": "x",
            "Type": "LoadBalancer",
            "Cluster-IP": "<none>",
            "External-IP": "<pending>",
            "Port(s)": "443/TCP",
            "Age": "5m",
        },
    ),
    (
        resource("", "ConfigMap"),
        obj("v1", "ConfigMap", data={"a": "1", "b": "2"}),
        {"Name": "x", "Data": 2, "Age": "5m"},
    ),
    (
        resource("", "Secret"),
        obj("v1", "Secret", type="kubernetes.io/tls", data={"tls.crt": "", "tls.key": ""}),
        {"Name": "x", "Type": "kubernetes.io/tls", "Data": 2, "Age": "5m"},
    ),
    (
        resource("", "Namespace"),
        obj("v1", "Namespace"),
        {"Name": "x", "Status": "", "Age": "5m"},
    ),
    (
        resource("apps", "StatefulSet"),
        obj("apps/v1", "StatefulSet", spec={"replicas": 3}),
        {"Name": "x", "Ready": "0/3", "Age": "5m"},
    ),
    (
        resource("batch", "CronJob"),
        obj("batch/v1", "CronJob", spec={"schedule": "*/5 * * * *"}),
        {
            "Name": "x",
            "Schedule": "*/5 * * * *",
            "Timezone": "<none>",
            "Suspend": "False",
            "Active": 0,
            "Last Schedule": "<none>",
            "Age": "5m",
        },
    ),
    (
        resource("", "PersistentVolumeClaim"),
        obj("v1", "PersistentVolumeClaim", spec={"storageClassName": "fast"}),
        {
            "Name": "x",
            "Status": "",
            "Volume": "",
            "Capacity": "",
            "Access Modes": "",
            "StorageClass": "fast",
            "Age": "5m",
        },
    ),
    # Kinds without a printer: NAME and AGE.
    (resource("example.io", "Gizmo"), obj("example.io/v1", "Gizmo"), {"Name": "x", "Age": "5m"}),
]


@pytest.mark.parametrize(
    ("res", "item", "expected"), CASES, ids=[f"{c[0].kind}-{i}" for i, c in enumerate(CASES)]
)
def test_builtin_columns(res: ShadowResource, item: dict[str, Any], expected: Any) -> None:
    assert printed(res, item) == expected


def test_wide_columns_of_a_deployment() -> None:
    wide = printed(resource("apps", "Deployment"), DEPLOYMENT, wide=True)
    assert (wide["Containers"], wide["Images"], wide["Selector"]) == (
        "web",
        "nginx:1.27",
        "app=web",
    )


def test_custom_resources_use_additional_printer_columns() -> None:
    columns = (
        PrinterColumn("Size", "integer", ".spec.size"),
        PrinterColumn("Ready", "string", '.status.conditions[?(@.type=="Ready")].status'),
        PrinterColumn("Hosts", "string", ".spec.hosts[*]", priority=1),
        PrinterColumn("Created", "date", ".metadata.creationTimestamp"),
    )
    res = resource("example.io", "Widget", custom=True, printer_columns=columns)
    item = obj(
        "example.io/v1",
        "Widget",
        spec={"size": 3, "hosts": ["a", "b"]},
        status={
            "conditions": [{"type": "Synced", "status": "x"}, {"type": "Ready", "status": "True"}]
        },
    )
    assert printed(res, item, wide=True) == {
        "Name": "x",
        "Size": 3,
        "Ready": "True",
        "Hosts": "a,b",
        "Created": "5m",
    }
    # A CRD without columns: NAME and AGE, as kube-apiserver prints it.
    bare = resource("example.io", "Widget", custom=True)
    assert printed(bare, item) == {"Name": "x", "Age": "5m"}


def test_include_object_and_metadata() -> None:
    res = resource("apps", "Deployment")
    meta = table(res, [DEPLOYMENT], metadata={"resourceVersion": "7"}, now=NOW)
    assert meta["metadata"] == {"resourceVersion": "7"}
    assert meta["rows"][0]["object"] == {
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": DEPLOYMENT["metadata"],
    }
    assert table(res, [DEPLOYMENT], include_object="Object")["rows"][0]["object"] == DEPLOYMENT
    assert "object" not in table(res, [DEPLOYMENT], include_object="None")["rows"][0]


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        (".spec.size", [3]),
        ("{.spec.size}", [3]),
        (".spec.hosts[1]", ["b"]),
        (".spec.hosts[*]", ["a", "b"]),
        (".metadata.labels['app.kubernetes.io/name']", ["w"]),
        ('.status.conditions[?(@.type=="Ready")].status', ["True"]),
        (".spec.nothing", []),
    ],
)
def test_jsonpath(path: str, expected: list[Any]) -> None:
    item = {
        "metadata": {"labels": {"app.kubernetes.io/name": "w"}},
        "spec": {"size": 3, "hosts": ["a", "b"]},
        "status": {"conditions": [{"type": "Ready", "status": "True"}]},
    }
    assert jsonpath(item, path) == expected


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (5, "5s"),
        (150, "2m30s"),
        (600, "10m"),
        (4 * 3600 + 60, "4h1m"),
        (3 * 86400, "3d"),
        (10 * 86400, "10d"),
    ],
)
def test_human_duration(seconds: int, text: str) -> None:
    assert human_duration(timedelta(seconds=seconds)) == text


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json",
            True,
        ),
        ("application/json", False),
        ("application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io", False),
        ("application/yaml", False),
    ],
)
def test_wants_table(accept: str, expected: bool) -> None:
    assert wants_table(accept) is expected
