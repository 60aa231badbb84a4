"""Multi-cluster services (spec §7): names, builders and sync decisions."""

from __future__ import annotations

from typing import Any

import pytest

from clusternet.apis import known, mcs

CLUSTER = mcs.SourceCluster("clusternet-q7x2k", "7c2f4a10-uid", "child1")


def endpoint_slice(
    name: str,
    namespace: str = "baz",
    *,
    service: str = "nginx-svc",
    ips: tuple[str, ...] = ("10.0.0.1",),
    address_type: str = "IPv4",
    labels: dict[str, str] | None = None,
    **meta: Any,
) -> dict[str, Any]:
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": labels if labels is not None else {mcs.SERVICE_NAME_LABEL: service},
            "resourceVersion": "7",
            **meta,
        },
        "addressType": address_type,
        "endpoints": [{"addresses": [ip], "conditions": {"ready": True}} for ip in ips],
        "ports": [{"name": "http", "port": 80, "protocol": "TCP"}],
    }


def export(labels: dict[str, str] | None = None, **meta: Any) -> dict[str, Any]:
    return {
        "apiVersion": "multicluster.x-k8s.io/v1alpha1",
        "kind": "ServiceExport",
        "metadata": {"name": "nginx-svc", "namespace": "baz", "labels": labels or {}, **meta},
    }


def service_import(labels: dict[str, str] | None = None, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "multicluster.x-k8s.io/v1alpha1",
        "kind": "ServiceImport",
        "metadata": {
            "name": "my-svc",
            "namespace": "default",
            "uid": "import-uid",
            "labels": labels
            if labels is not None
            else {
                known.MCS_SERVICE_NAME_LABEL: "nginx-svc",
                known.MCS_SERVICE_NAMESPACE_LABEL: "baz",
            },
        },
        "spec": {
            "type": "ClusterSetIP",
            "ips": ["42.42.42.42"],
            "ports": [{"port": 80, "protocol": "TCP"}],
            **spec,
        },
    }


# -- names ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("namespace", "name", "derived"),
    [
        ("test", "my-service", "derived-test-sgvukfmp95"),
        ("baz", "nginx-svc", "derived-baz-kl7j74ep4o"),
        ("baz", "my-nginx-svc", "derived-baz-tc8hmv632j"),
    ],
)
def test_derived_names_match_upstream(namespace: str, name: str, derived: str) -> None:
    assert mcs.derived_name(namespace, name) == derived


def test_only_the_name_is_hashed() -> None:
    assert (
        mcs.derived_name("a", "svc").split("-")[-1] == mcs.derived_name("b", "svc").split("-")[-1]
    )


@pytest.mark.parametrize(
    ("prefix", "name", "expected"),
    [
        ("baz", "nginx-svc-8fj2d", "baz-nginx-svc-8fj2d"),
        ("clusternet-q7x2k", "baz-nginx-svc-8fj2d", "clusternet-q7x2k-baz-nginx-svc-8fj2d"),
    ],
)
def test_copy_names(prefix: str, name: str, expected: str) -> None:
    assert mcs.copy_name(prefix, name) == expected


def test_long_copy_names_are_cut_and_stay_distinct() -> None:
    first = mcs.copy_name("n" * 63, "a" * 250)
    second = mcs.copy_name("n" * 63, "a" * 249 + "b")
    assert len(first) == len(second) == 253
    assert first != second
    assert first == mcs.copy_name("n" * 63, "a" * 250)  # stable


@pytest.mark.parametrize(
    ("labels", "key"),
    [
        ({known.MCS_SERVICE_NAME_LABEL: "s", known.MCS_SERVICE_NAMESPACE_LABEL: "n"}, "n/s"),
        ({known.MCS_SERVICE_NAME_LABEL: "s"}, None),
        ({}, None),
        (None, None),
    ],
)
def test_mcs_key(labels: dict[str, str] | None, key: str | None) -> None:
    assert mcs.mcs_key(labels) == key


# -- agent side -----------------------------------------------------------------------------


def test_exported_slice_copies_content_under_spec_names_and_labels() -> None:
    local = endpoint_slice("nginx-svc-8fj2d", ips=("10.0.0.1", "10.0.0.2"))
    local["endpoints"][0]["targetRef"] = {"kind": "Pod", "name": "nginx-1"}
    copy = mcs.exported_slice(
        local, export({known.CONFIG_SUBSCRIPTION_NAMESPACE_LABEL: "default"}), CLUSTER
    )

    assert copy["metadata"] == {
        "name": "baz-nginx-svc-8fj2d",
        "namespace": "clusternet-q7x2k",
        "labels": {
            known.MCS_SERVICE_NAME_LABEL: "nginx-svc",
            known.MCS_SERVICE_NAMESPACE_LABEL: "baz",
            known.OBJECT_CREATED_BY_LABEL: "clusternet-agent",
            mcs.SERVICE_NAME_LABEL: "derived-baz-kl7j74ep4o",
            mcs.MANAGED_BY_LABEL: mcs.EXPORT_MANAGER,
            mcs.SOURCE_CLUSTER_LABEL: "7c2f4a10-uid",
            known.CLUSTER_ID_LABEL: "7c2f4a10-uid",
            known.CLUSTER_NAME_LABEL: "child1",
            known.CONFIG_SUBSCRIPTION_NAMESPACE_LABEL: "default",
        },
    }
    assert mcs.slice_content(copy) == mcs.slice_content(local)
    assert copy["endpoints"] is not local["endpoints"]  # a copy, not shared with the cache


def test_exported_slice_without_subscription_label() -> None:
    copy = mcs.exported_slice(endpoint_slice("s-1"), export(), CLUSTER)
    assert known.CONFIG_SUBSCRIPTION_NAMESPACE_LABEL not in copy["metadata"]["labels"]


@pytest.mark.parametrize(
    ("service", "status", "reason"),
    [
        (None, "False", "NoService"),
        ({"spec": {"type": "ExternalName"}}, "False", "InvalidServiceType"),
        ({"spec": {"type": "ClusterIP"}}, "True", "Valid"),
        ({"spec": {"type": "LoadBalancer"}}, "True", "Valid"),
        ({}, "True", "Valid"),
    ],
)
def test_export_valid_condition(service: dict[str, Any] | None, status: str, reason: str) -> None:
    condition = mcs.export_valid_condition(service)
    assert (condition["type"], condition["status"], condition["reason"]) == (
        "Valid",
        status,
        reason,
    )


def test_with_condition_sets_transition_time_only_on_flips() -> None:
    valid = mcs.export_valid_condition({"spec": {}})
    missing = mcs.export_valid_condition(None)

    added = mcs.with_condition(None, missing, "t1")
    assert added == [{**missing, "lastTransitionTime": "t1"}]
    assert mcs.with_condition(added, missing, "t2") is None  # unchanged: no write
    flipped = mcs.with_condition(added, valid, "t3")
    assert flipped == [{**valid, "lastTransitionTime": "t3"}]
    reworded = mcs.with_condition(flipped, {**valid, "message": "other"}, "t4")
    assert reworded == [{**valid, "message": "other", "lastTransitionTime": "t3"}]


def test_with_condition_keeps_other_types() -> None:
    conflict = {"type": "Conflict", "status": "False", "lastTransitionTime": "t0"}
    result = mcs.with_condition([conflict], mcs.export_valid_condition(None), "t1")
    assert result is not None
    assert result[0] == conflict
    assert [c["type"] for c in result] == ["Conflict", "Valid"]


# -- controller-manager side ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        (service_import(), mcs.ImportTarget("baz", "nginx-svc")),
        (service_import({known.MCS_SERVICE_NAME_LABEL: "nginx-svc"}), "MissingServiceLabels"),
        (service_import({}), "MissingServiceLabels"),
        (service_import(type="Headless"), "UnsupportedServiceImportType"),
    ],
)
def test_import_target(obj: dict[str, Any], expected: Any) -> None:
    target = mcs.import_target(obj)
    if isinstance(expected, str):
        assert isinstance(target, mcs.Unprocessable)
        assert target.reason == expected
    else:
        assert target == expected
        assert target.derived_name == "derived-baz-kl7j74ep4o"


def test_derived_service() -> None:
    imp = service_import(
        ports=[
            {"name": "http", "port": 80, "protocol": "TCP", "appProtocol": "http"},
            {"name": "dns", "port": 53, "protocol": "UDP"},
        ]
    )
    target = mcs.import_target(imp)
    assert isinstance(target, mcs.ImportTarget)
    service = mcs.derived_service(imp, target)

    assert service["metadata"]["name"] == "derived-baz-kl7j74ep4o"
    assert service["metadata"]["namespace"] == "default"
    assert service["metadata"]["ownerReferences"] == [
        {
            "apiVersion": "multicluster.x-k8s.io/v1alpha1",
            "kind": "ServiceImport",
            "name": "my-svc",
            "uid": "import-uid",
            "controller": True,
            "blockOwnerDeletion": False,
        }
    ]
    assert service["spec"] == {
        "type": "LoadBalancer",
        "loadBalancerClass": mcs.LOAD_BALANCER_CLASS,
        "allocateLoadBalancerNodePorts": False,
        "ports": [
            {"name": "http", "port": 80, "protocol": "TCP", "appProtocol": "http"},
            {"name": "dns", "port": 53, "protocol": "UDP"},
        ],
    }
    assert "selector" not in service["spec"]
    assert mcs.service_ingress(imp) == [{"ip": "42.42.42.42"}]
    assert mcs.service_ingress(service_import(ips=None)) == []


def _served(desired: dict[str, Any], **spec: Any) -> dict[str, Any]:
    """``desired`` as the API server returns it: defaults and allocations filled in."""
    ports = [{**p, "targetPort": p["port"]} for p in desired["spec"]["ports"]]
    return {
        **desired,
        "metadata": {**desired["metadata"], "resourceVersion": "3", "uid": "svc-uid"},
        "spec": {
            **desired["spec"],
            "clusterIP": "10.96.0.10",
            "ports": ports,
            "sessionAffinity": "None",
            **spec,
        },
    }


def test_service_update() -> None:
    imp = service_import()
    target = mcs.import_target(imp)
    assert isinstance(target, mcs.ImportTarget)
    desired = mcs.derived_service(imp, target)

    assert mcs.service_update(_served(desired), desired) is None  # defaults are no drift
    moved = mcs.derived_service(service_import(ports=[{"port": 8080}]), target)
    updated = mcs.service_update(_served(desired), moved)
    assert updated is not None
    assert updated["spec"]["ports"] == [{"port": 8080, "protocol": "TCP"}]
    assert updated["spec"]["clusterIP"] == "10.96.0.10"
    assert updated["metadata"]["resourceVersion"] == "3"
    selected = mcs.service_update(_served(desired, selector={"app": "x"}), desired)
    assert selected is not None
    assert "selector" not in selected["spec"]
    served = _served(desired)
    served["metadata"]["labels"] = {"team": "a"}  # ours removed, someone else's added
    relabelled = mcs.service_update(served, desired)
    assert relabelled is not None
    assert relabelled["metadata"]["labels"] == {"team": "a", **desired["metadata"]["labels"]}


@pytest.mark.parametrize(
    ("status", "ingress", "differs"),
    [
        ({}, [], False),
        ({}, [{"ip": "42.42.42.42"}], True),
        (
            {"loadBalancer": {"ingress": [{"ip": "42.42.42.42", "ipMode": "VIP"}]}},
            [{"ip": "42.42.42.42"}],
            False,
        ),
        ({"loadBalancer": {"ingress": [{"ip": "1.1.1.1"}]}}, [{"ip": "42.42.42.42"}], True),
        ({"loadBalancer": {"ingress": [{"ip": "1.1.1.1"}]}}, [], True),
    ],
)
def test_ingress_differs(
    status: dict[str, Any], ingress: list[dict[str, str]], differs: bool
) -> None:
    assert mcs.ingress_differs({"status": status}, ingress) is differs


def test_imported_slice() -> None:
    source = mcs.exported_slice(
        endpoint_slice("nginx-svc-8fj2d"),
        export({known.CONFIG_SUBSCRIPTION_NAMESPACE_LABEL: "default"}),
        CLUSTER,
    )
    source["metadata"] |= {"resourceVersion": "9", "uid": "copy-uid"}
    service = {"metadata": {"name": "derived-baz-kl7j74ep4o", "namespace": "default", "uid": "s"}}

    imported = mcs.imported_slice(source, service)

    meta = imported["metadata"]
    assert meta["name"] == "clusternet-q7x2k-baz-nginx-svc-8fj2d"
    assert meta["namespace"] == "default"
    assert known.OBJECT_CREATED_BY_LABEL not in meta["labels"]
    assert meta["labels"][mcs.SERVICE_NAME_LABEL] == "derived-baz-kl7j74ep4o"
    assert meta["labels"][mcs.MANAGED_BY_LABEL] == mcs.IMPORT_MANAGER
    assert meta["labels"][known.CLUSTER_NAME_LABEL] == "child1"  # labelled by source
    assert meta["labels"][known.CONFIG_SUBSCRIPTION_NAMESPACE_LABEL] == "default"
    assert meta["ownerReferences"][0]["kind"] == "Service"
    assert meta["ownerReferences"][0]["uid"] == "s"
    assert "resourceVersion" not in meta
    assert mcs.slice_content(imported) == mcs.slice_content(source)


# -- decisions ------------------------------------------------------------------------------


def _names(objects: list[dict[str, Any]]) -> list[str]:
    return [o["metadata"]["name"] for o in objects]


A = endpoint_slice("a")
B = endpoint_slice("b")


@pytest.mark.parametrize(
    ("desired", "current", "create", "update", "delete"),
    [
        pytest.param([], [], [], [], [], id="nothing"),
        pytest.param([A, B], [], ["a", "b"], [], [], id="all-new"),
        pytest.param([A], [A], [], [], [], id="in-sync"),
        pytest.param([A], [endpoint_slice("a", ips=("10.9.9.9",))], [], ["a"], [], id="endpoints"),
        pytest.param([A], [endpoint_slice("a", labels={"x": "y"})], [], ["a"], [], id="labels"),
        pytest.param([A], [A, B], [], [], ["b"], id="stale"),
        pytest.param([], [A, B], [], [], ["a", "b"], id="all-stale"),
        pytest.param(
            [A], [endpoint_slice("a", address_type="IPv6")], ["a"], [], ["a"], id="address-type"
        ),
        pytest.param(
            [A, B],
            [
                endpoint_slice("a", deletionTimestamp="t"),
                endpoint_slice("b", deletionTimestamp="t"),
            ],
            [],
            [],
            [],
            id="being-deleted",
        ),
    ],
)
def test_plan_slices(
    desired: list[dict[str, Any]],
    current: list[dict[str, Any]],
    create: list[str],
    update: list[str],
    delete: list[str],
) -> None:
    plan = mcs.plan_slices(desired, current)
    assert (_names(plan.create), _names(plan.update), plan.delete) == (create, update, delete)
    assert bool(plan) is bool(create or update or delete)


def test_plan_updates_keep_the_resource_version_and_take_desired_fields() -> None:
    want = endpoint_slice("a", ips=("10.0.0.2",))
    want["metadata"]["ownerReferences"] = [{"uid": "s"}]
    have = endpoint_slice("a", resourceVersion="42")
    have["metadata"]["ownerReferences"] = [{"uid": "old"}]

    (updated,) = mcs.plan_slices([want], [have]).update

    assert updated["metadata"]["resourceVersion"] == "42"
    assert updated["metadata"]["ownerReferences"] == [{"uid": "s"}]
    assert mcs.slice_content(updated) == mcs.slice_content(want)


@pytest.mark.parametrize(
    ("finalizers", "present", "patch"),
    [
        ([], True, [known.APP_FINALIZER]),
        (["other"], True, ["other", known.APP_FINALIZER]),
        ([known.APP_FINALIZER], True, None),
        ([known.APP_FINALIZER, "other"], False, ["other"]),
        (["other"], False, None),
    ],
)
def test_finalizers_patch(finalizers: list[str], present: bool, patch: list[str] | None) -> None:
    obj = {"metadata": {"resourceVersion": "5", "finalizers": finalizers}}
    result = mcs.finalizers_patch(obj, present=present)
    if patch is None:
        assert result is None
    else:
        assert result == {"metadata": {"resourceVersion": "5", "finalizers": patch}}
