"""The status the agent reports (spec §2.2, §3.5, §3.6), computed from plain inputs."""

from __future__ import annotations

import copy
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from clusternet.agent.registration import Registration
from clusternet.agent.reporter import Observation, StatusReporter
from clusternet.agent.status import (
    Probes,
    ReportSettings,
    aggregate_node_labels,
    compute_status,
    discover_cidrs,
    label_patch,
    merged_status,
    node_statistics,
    ready_condition,
    resource_totals,
)
from clusternet.apis.quantity import Quantity, add_quantities
from clusternet.kube import ClusterConfig

NOW = datetime(2025, 1, 1, 10, 0, 0, tzinfo=UTC)
LATER = datetime(2025, 1, 1, 10, 3, 0, tzinfo=UTC)
HEALTHY = Probes(healthz=True, livez=True, readyz=True)
SETTINGS = ReportSettings(
    apiserver_url="https://127.0.0.1:6443",
    agent_version="v0.1.0",
    kube_qps=50.0,
    kube_burst=100,
    heartbeat_frequency_seconds=180,
    app_pusher=True,
    use_socket=False,
    predictor_address=None,
    predictor_direct_access=False,
)


def node(
    name: str,
    *,
    ready: str | None = "True",
    labels: dict[str, str] | None = None,
    capacity: dict[str, Any] | None = None,
    allocatable: dict[str, Any] | None = None,
) -> dict[str, Any]:
    conditions = [] if ready is None else [{"type": "Ready", "status": ready}]
    return {
        "metadata": {"name": name, "labels": labels or {}},
        "status": {
            "conditions": [{"type": "MemoryPressure", "status": "False"}, *conditions],
            "capacity": capacity or {},
            "allocatable": allocatable or {},
        },
    }


# -- quantities ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("quantities", "total"),
    [
        (["500m", "2"], "2500m"),
        (["1Gi", "512Mi"], "1536Mi"),
        (["8Gi", "8Gi"], "16Gi"),
        (["4", "4"], "8"),
        (["4", 4], "8"),  # JSON numbers
        (["1500"], "1500"),
        (["1000", "1000"], "2k"),
        (["100Mi", "100Mi", "100Mi"], "300Mi"),
        (["1Ki", "1"], "1025"),  # not a whole Ki: plain bytes
        (["0.5Gi"], "512Mi"),
        (["500Mi", "0.5"], "524288000500m"),  # a fraction leaves BinarySI for DecimalSI
        (["1e3", "1k"], "2e3"),  # the first operand's format wins
        (["1n", "1n"], "2n"),
        (["0.1n"], "1n"),  # nothing finer than nano, rounded up
        (["-1", "500m"], "-500m"),
        ([], "0"),
    ],
)
def test_quantity_sums_are_exact_and_canonical(quantities: list[str | int], total: str) -> None:
    assert add_quantities(quantities) == total


@pytest.mark.parametrize("text", ["", "1.5.0", "Gi", "1gi", "1 Gi", "1Gib", "--1"])
def test_malformed_quantities_are_rejected(text: str) -> None:
    with pytest.raises(ValueError, match="not a Kubernetes quantity"):
        Quantity.parse(text)


def test_capacity_and_allocatable_sum_cpu_memory_and_gpus() -> None:
    nodes = [
        node("a", capacity={"cpu": "4", "memory": "8Gi", "pods": "110"},
             allocatable={"cpu": "3500m", "memory": "7Gi"}),
        node("b", capacity={"cpu": "4", "memory": "8Gi", "nvidia.com/gpu": "2"},
             allocatable={"cpu": "3500m", "memory": "7680Mi", "nvidia.com/gpu": "2"}),
    ]  # fmt: skip
    assert resource_totals(nodes, "capacity") == {
        "cpu": "8", "memory": "16Gi", "nvidia.com/gpu": "2",
    }  # fmt: skip
    assert resource_totals(nodes, "allocatable") == {
        "cpu": "7", "memory": "14848Mi", "nvidia.com/gpu": "2",
    }  # fmt: skip


def test_without_gpus_no_gpu_total_is_reported_and_no_nodes_means_zero() -> None:
    assert resource_totals([node("a", capacity={"cpu": "1"})], "capacity") == {
        "cpu": "1", "memory": "0",
    }  # fmt: skip
    assert resource_totals([], "capacity") == {"cpu": "0", "memory": "0"}


# -- nodes -----------------------------------------------------------------------------------


def test_node_statistics_count_by_ready_condition_and_missing_is_lost() -> None:
    nodes = [
        node("a"), node("b"), node("c", ready="False"),
        node("d", ready="Unknown"), node("e", ready=None),
    ]  # fmt: skip
    assert node_statistics(nodes) == {
        "readyNodes": 2, "notReadyNodes": 1, "unknownNodes": 1, "lostNodes": 1,
    }  # fmt: skip


def _spec_example_workers() -> list[dict[str, Any]]:
    """Spec §3.6: 4 workers, k1=v1 on 4, k2=v2 on 4, k3=v3 on 3, k4=v4 on 2."""
    p = "node.clusternet.io/"
    counts = {"k1": 4, "k2": 4, "k3": 3, "k4": 2}
    return [
        node(f"w{i}", labels={f"{p}{k}": f"v{k[1]}" for k, n in counts.items() if i < n})
        for i in range(4)
    ]


@pytest.mark.parametrize(
    ("threshold", "keys"),
    [
        (0.8, {"k1", "k2"}),
        (0.7, {"k1", "k2", "k3"}),
        (0.5, {"k1", "k2", "k3", "k4"}),
        (1.0, {"k1", "k2"}),
    ],
)
def test_label_aggregation_example_of_the_spec(threshold: float, keys: set[str]) -> None:
    aggregated = aggregate_node_labels(_spec_example_workers(), ["node.clusternet.io/"], threshold)
    assert aggregated == {f"node.clusternet.io/{k}": f"v{k[1]}" for k in keys}


def test_label_aggregation_ignores_control_planes_and_other_prefixes() -> None:
    p = "node.clusternet.io/"
    nodes = [
        node("cp", labels={"node-role.kubernetes.io/control-plane": "", f"{p}zone": "a"}),
        node("master", labels={"node-role.kubernetes.io/master": "", f"{p}zone": "a"}),
        node("w1", labels={f"{p}zone": "b", "other.io/x": "y"}),
        node("w2", labels={f"{p}zone": "b", "other.io/x": "y"}),
    ]
    assert aggregate_node_labels(nodes, [p], 0.8) == {f"{p}zone": "b"}
    assert aggregate_node_labels(nodes, [p, "other.io/"], 0.8) == {
        f"{p}zone": "b", "other.io/x": "y",
    }  # fmt: skip


def test_label_aggregation_takes_the_most_frequent_value() -> None:
    p = "node.clusternet.io/"
    nodes = [
        node(f"w{i}", labels={f"{p}disk": v}) for i, v in enumerate(["ssd", "ssd", "ssd", "hdd"])
    ]
    assert aggregate_node_labels(nodes, [p], 0.7) == {f"{p}disk": "ssd"}
    assert aggregate_node_labels(nodes, [p], 0.8) == {}
    assert aggregate_node_labels([], [p], 0.0) == {}


def test_label_patch_replaces_the_aggregated_set_only() -> None:
    p = "node.clusternet.io/"
    current = {"clusters.clusternet.io/cluster-id": "x", f"{p}old": "1", f"{p}keep": "1"}
    patch = label_patch(current, {f"{p}keep": "1", f"{p}new": "2"}, [p])
    assert patch == {f"{p}old": None, f"{p}new": "2"}
    assert label_patch(current, {f"{p}old": "1", f"{p}keep": "1"}, [p]) is None


# -- readiness -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("healthz", "livez", "readyz", "ready"),
    [
        (True, True, True, True),
        (False, True, True, True),  # livez && readyz
        (True, False, False, True),  # healthz alone (older apiservers)
        (False, True, False, False),
        (False, False, True, False),
        (False, False, False, False),
    ],
)
def test_ready_rule(healthz: bool, livez: bool, readyz: bool, ready: bool) -> None:
    condition = ready_condition(Probes(healthz, livez, readyz), [], NOW)
    assert condition["type"] == "Ready"
    assert condition["status"] == ("True" if ready else "False")
    assert condition["reason"] == ("ManagedClusterReady" if ready else "ManagedClusterNotReady")


def test_ready_transition_time_moves_only_on_a_status_change() -> None:
    first = ready_condition(HEALTHY, [], NOW)
    assert first["lastTransitionTime"] == "2025-01-01T10:00:00Z"
    assert ready_condition(HEALTHY, [first], LATER)["lastTransitionTime"] == "2025-01-01T10:00:00Z"
    unknown = {**first, "status": "Unknown", "reason": "ClusterStatusUnknown"}
    assert (
        ready_condition(HEALTHY, [unknown], LATER)["lastTransitionTime"] == "2025-01-01T10:03:00Z"
    )


# -- CIDRs -----------------------------------------------------------------------------------


def pod(component: str, *args: str, label: str = "component") -> dict[str, Any]:
    return {
        "metadata": {"labels": {label: component}},
        "spec": {"containers": [{"command": [component], "args": list(args)}]},
    }


def test_cidrs_from_control_plane_flags_win_over_the_environment() -> None:
    pods = [
        pod("kube-apiserver", "--service-cluster-ip-range=10.96.0.0/12"),
        pod("kube-controller-manager", "--cluster-cidr=10.244.0.0/16",
            "--service-cluster-ip-range=10.0.0.0/8"),
    ]  # fmt: skip
    env = {"CLUSTER_CIDR": "192.168.0.0/16", "SERVICE_CIDR": "172.16.0.0/16"}
    assert discover_cidrs(pods, env) == ("10.244.0.0/16", "10.96.0.0/12")


def test_cidrs_fall_back_to_controller_manager_kube_proxy_then_environment() -> None:
    pods = [
        pod("kube-controller-manager", "--service-cluster-ip-range=10.0.0.0/16",
            label="app.kubernetes.io/component"),
        pod("kube-proxy", "--cluster-cidr=10.1.0.0/16", label="k8s-app"),
    ]  # fmt: skip
    assert discover_cidrs(pods, {}) == ("10.1.0.0/16", "10.0.0.0/16")
    env = {"CLUSTER_CIDR": "192.168.0.0/16", "SERVICE_CIDR": "172.16.0.0/16"}
    assert discover_cidrs([], env) == ("192.168.0.0/16", "172.16.0.0/16")
    assert discover_cidrs([], {}) == (None, None)


# -- the whole status ------------------------------------------------------------------------


def test_compute_status_reports_every_field() -> None:
    nodes = [
        node(f"n{i}", capacity={"cpu": "4", "memory": "8Gi"},
             allocatable={"cpu": "4", "memory": "8Gi"})
        for i in range(2)
    ]  # fmt: skip
    cluster_init = {"type": "ClusterInit", "status": "True", "reason": "ClusterInitDisabled"}
    status = compute_status(
        version={"gitVersion": "v1.36.3", "platform": "linux/amd64"},
        nodes=nodes,
        probes=HEALTHY,
        cidrs=(None, "10.96.0.0/16"),
        settings=SETTINGS,
        previous_conditions=[cluster_init],
        now=NOW,
    )
    ready = {
        "type": "Ready", "status": "True", "reason": "ManagedClusterReady",
        "message": "managed cluster is ready.", "lastTransitionTime": "2025-01-01T10:00:00Z",
    }  # fmt: skip
    assert status == {
        "lastObservedTime": "2025-01-01T10:00:00Z",
        "k8sVersion": "v1.36.3",
        "agentVersion": "v0.1.0",
        "platform": "linux/amd64",
        "apiserverURL": "https://127.0.0.1:6443",
        "healthz": True,
        "livez": True,
        "readyz": True,
        "appPusher": True,
        "useSocket": False,
        "kubeQPS": 50.0,
        "kubeBurst": 100,
        "allocatable": {"cpu": "8", "memory": "16Gi"},
        "capacity": {"cpu": "8", "memory": "16Gi"},
        "serviceCIDR": "10.96.0.0/16",
        "nodeStatistics": {"readyNodes": 2, "notReadyNodes": 0, "unknownNodes": 0, "lostNodes": 0},
        "heartbeatFrequencySeconds": 180,
        "predictorEnabled": False,
        "conditions": [cluster_init, ready],
    }


def test_predictor_fields_when_advertised() -> None:
    settings = ReportSettings(**{
        **SETTINGS.__dict__, "predictor_address": "http://p:8080", "predictor_direct_access": True,
    })  # fmt: skip
    status = compute_status(
        version={}, nodes=[], probes=HEALTHY, cidrs=(None, None), settings=settings,
        previous_conditions=[], now=NOW,
    )  # fmt: skip
    assert status["predictorEnabled"] is True
    assert status["predictorAddress"] == "http://p:8080"
    assert status["predictorDirectAccess"] is True


def test_merged_status_keeps_others_fields_and_drops_stale_owned_ones() -> None:
    current = {"podStatistics": {"runningPods": 1}, "clusterCIDR": "10.0.0.0/8", "healthz": False}
    merged = merged_status(current, {"healthz": True})
    assert merged == {"podStatistics": {"runningPods": 1}, "healthz": True}


# -- the reporter: the heartbeat's time is the report's, not the last collection's ----------

REPORTED_FROM = datetime(2026, 11, 28, 12, 0, 0, tzinfo=UTC)


class FakeParent:
    def __init__(self) -> None:
        self.cluster: dict[str, Any] = {
            "metadata": {"name": "child2", "namespace": "clusternet-x", "labels": {}},
            "status": {},
        }
        self.written: list[dict[str, Any]] = []

    async def get(self, *_: Any, **__: Any) -> dict[str, Any]:
        return copy.deepcopy(self.cluster)

    async def update_status(self, obj: dict[str, Any]) -> dict[str, Any]:
        self.written.append(obj["status"])
        return obj


class FakeStore:
    def list(self) -> list[dict[str, Any]]:
        return []


class FakeNodes:
    store = FakeStore()


async def test_last_observed_time_is_the_time_of_the_write() -> None:
    parent = FakeParent()
    clock = [REPORTED_FROM + timedelta(seconds=15)]
    reporter = StatusReporter(
        child=None,  # type: ignore[arg-type]
        parent=parent,  # type: ignore[arg-type]
        registration=Registration(
            "id", "child2", "clusternet-x", ClusterConfig(server="https://p")
        ),
        nodes=FakeNodes(),  # type: ignore[arg-type]
        settings=replace(SETTINGS, heartbeat_frequency_seconds=3),
        collect_frequency=20,
        update_frequency=3,
        label_prefixes=(),
        label_threshold=0.8,
        environ={},
        clock=lambda: clock[0],
    )
    reporter._cluster_name = "child2"
    # collected at T0 (collect period 20 s), reported 15 s later (update period 3 s)
    reporter._observation = Observation({}, Probes(True, True, True), REPORTED_FROM)
    await reporter._write_status()
    assert parent.written[-1]["lastObservedTime"] == "2026-11-28T12:00:15Z"
    clock[0] += timedelta(seconds=3)
    await reporter._write_status()
    assert parent.written[-1]["lastObservedTime"] == "2026-11-28T12:00:18Z"
