"""The agent's replica predictor: the algorithm (spec §5.5 vector and constraints) and its HTTP
server."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from clusternet.agent.predictor import NoFeasibleNodes, predict_replicas
from clusternet.agent.predictor_server import PredictorServer
from clusternet.apis.apps.v1alpha1 import ReplicaRequirements
from clusternet.runtime import SharedInformerFactory


def node(
    name: str, cpu: str = "8", memory: str = "16", pods: str = "4", **extra: Any
) -> dict[str, Any]:
    labels = extra.pop("labels", {})
    return {
        "metadata": {"name": name, "labels": labels},
        "spec": extra,
        "status": {"allocatable": {"cpu": cpu, "memory": memory, "pods": pods}},
    }


def pod(node_name: str, cpu: str, memory: str, phase: str = "Running") -> dict[str, Any]:
    return {
        "spec": {
            "nodeName": node_name,
            "containers": [{"resources": {"requests": {"cpu": cpu, "memory": memory}}}],
        },
        "status": {"phase": phase},
    }


def requirements(**fields: Any) -> ReplicaRequirements:
    fields.setdefault("resources", {"requests": {"cpu": "1", "memory": "1"}})
    return ReplicaRequirements.model_validate(fields)


def test_spec_vector_is_bound_by_pod_slots() -> None:
    pods = [pod("n1", "1", "4"), pod("n1", "1", "4")]
    assert predict_replicas(requirements(), [node("n1")], pods) == 2


def test_bound_by_the_scarcest_resource_and_summed_over_nodes() -> None:
    nodes = [
        node("n1", cpu="4", memory="64Gi", pods="110"),
        node("n2", cpu="2", memory="64Gi", pods="110"),
    ]
    pods = [pod("n1", "1500m", "1Gi"), pod("n1", "1", "1Gi", phase="Succeeded")]
    req = requirements(resources={"requests": {"cpu": "500m", "memory": "1Gi"}})
    assert predict_replicas(req, nodes, pods) == 5 + 4


def test_overcommitted_or_full_nodes_give_zero() -> None:
    assert predict_replicas(requirements(), [node("n1", cpu="1")], [pod("n1", "2", "1")]) == 0
    assert predict_replicas(requirements(), [node("n1", pods="1")], [pod("n1", "0", "0")]) == 0


def test_a_resource_the_node_lacks_fits_nothing() -> None:
    req = requirements(resources={"requests": {"nvidia.com/gpu": "1"}})
    assert predict_replicas(req, [node("n1")], []) == 0


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({}, 12),  # ssd-a, hdd-b and soft (PreferNoSchedule does not filter), 4 slots each
        ({"nodeSelector": {"disk": "ssd"}}, 4),
        ({"tolerations": [{"key": "gpu", "operator": "Exists"}]}, 16),
        ({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": [{"key": "zone", "operator": "In", "values": ["b"]}]}]  # noqa: E501
        }}}}, 4),
        ({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["ssd-a"]}]}]  # noqa: E501
        }}}}, 4),
        ({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": [{"key": "rank", "operator": "Gt", "values": ["5"]}]}]  # noqa: E501
        }}}}, 4),
    ],
)  # fmt: skip
def test_placement_constraints(fields: dict[str, Any], expected: int) -> None:
    nodes = [
        node("ssd-a", labels={"disk": "ssd", "zone": "a", "rank": "3"}),
        node("hdd-b", labels={"disk": "hdd", "zone": "b", "rank": "9"}),
        node("gpu", labels={"zone": "c"}, taints=[{"key": "gpu", "effect": "NoSchedule"}]),
        node("cordoned", unschedulable=True),
        node("soft", labels={"zone": "d"}, taints=[{"key": "x", "effect": "PreferNoSchedule"}]),
    ]
    assert predict_replicas(requirements(**fields), nodes, []) == expected


def test_no_feasible_node_is_an_error() -> None:
    with pytest.raises(NoFeasibleNodes):
        predict_replicas(requirements(nodeSelector={"x": "y"}), [node("n1")], [])


class _FakeClient:
    cluster = "child"


async def test_server_answers_predict_requests() -> None:
    informers = SharedInformerFactory(_FakeClient(), registry=None)  # type: ignore[arg-type]
    server = PredictorServer(informers)
    async with TestClient(TestServer(server.application())) as http:
        syncing = await http.post("/replicas/predict", json={})
        assert syncing.status == 503
        server.nodes.store.upsert(node("n1"))
        server.pods.store.upsert(
            {**pod("n1", "1", "4"), "metadata": {"name": "p", "namespace": "d"}}
        )
        for informer in (server.nodes, server.pods):
            informer._synced.set()
        body = {"resources": {"requests": {"cpu": "1", "memory": "1"}}}
        answer = await http.post("/replicas/predict", json=body, headers={"Cluster-ID": "c"})
        assert answer.status == 200
        assert await answer.json() == {"replicas": {"default": 3}}
        bad = await http.post(
            "/replicas/predict", json={"resources": {"requests": {"cpu": "lots"}}}
        )
        assert bad.status == 400
        none = await http.post("/replicas/predict", json={"nodeSelector": {"x": "y"}})
        assert (none.status, (await none.json())["error"]) == (500, "no feasible nodes found")
        assert (await http.get("/replicas/unscheduled")).status == 501
