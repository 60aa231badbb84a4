"""``clusternet demo mcs``: the pure parts (scenario, filling in clusters, when it is done,
whether an environment can be reused) and the command's argument errors."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from typer.testing import CliRunner

from clusternet.apis import known, mcs
from clusternet.cli import demo
from clusternet.cli.main import app
from clusternet.local.environment import ClusterState, State
from clusternet.runtime import Store

NAME, ID = known.CLUSTER_NAME_LABEL, known.CLUSTER_ID_LABEL
CHILD1 = demo.Cluster("child1", "id-1", "clusternet-aaaaa", "True")
CHILD2 = demo.Cluster("child2", "id-2", "clusternet-bbbbb", "True")


def test_the_example_is_the_corrected_scenario() -> None:
    scenario = demo.load_scenario(demo.EXAMPLE)
    kinds = [(t["kind"], t["metadata"]["name"]) for t in scenario.templates]
    assert kinds[0] == ("Namespace", "baz")
    assert sorted(kinds) == [
        ("Deployment", "nginx-app"), ("Namespace", "baz"), ("Service", "nginx-svc"),
        ("ServiceExport", "nginx-svc"),
    ]  # fmt: skip
    assert scenario.deployment["spec"]["replicas"] == 6
    assert scenario.exported == ("baz", "nginx-svc")
    assert scenario.derived_service == "derived-baz-kl7j74ep4o"
    assert scenario.import_namespace == "default"
    assert scenario.subscription["metadata"]["name"] == "scheduling-with-mcs-api"
    feeds = {(f["kind"], f["name"]) for f in scenario.subscription["spec"]["feeds"]}
    assert feeds == set(kinds)
    export = next(t for t in scenario.templates if t["kind"] == "ServiceExport")
    assert export["metadata"]["labels"] == {known.CONFIG_SUBSCRIPTION_NAMESPACE_LABEL: "default"}
    service = next(t for t in scenario.templates if t["kind"] == "Service")
    import_ports = {p["name"] for p in scenario.service_import["spec"]["ports"]}
    assert {p["name"] for p in service["spec"]["ports"]} == import_ports


def subscription(*selectors: dict[str, str]) -> dict[str, Any]:
    return {
        "kind": "Subscription",
        "metadata": {"name": "s"},
        "spec": {
            "subscribers": [
                {"clusterAffinity": {"matchLabels": dict(s)}, "weight": i + 1}
                for i, s in enumerate(selectors)
            ],
            "feeds": [],
        },
    }


@pytest.mark.parametrize(
    ("selectors", "expected"),
    [
        pytest.param([{NAME: "a"}, {NAME: "b"}], [{NAME: "child1"}, {NAME: "child2"}], id="names"),
        pytest.param([{ID: "x"}, {ID: "y"}], [{ID: "id-1"}, {ID: "id-2"}], id="upstream-ids"),
        pytest.param(
            [{NAME: "a", "env": "prod"}], [{NAME: "child1", "env": "prod"}], id="other-labels-kept"
        ),
        pytest.param([{"env": "prod"}], [{"env": "prod"}], id="no-cluster-label"),
    ],
)
def test_fill_subscribers(selectors: list[dict[str, str]], expected: list[dict[str, str]]) -> None:
    original = subscription(*selectors)
    filled = demo.fill_subscribers(original, [CHILD1, CHILD2])
    assert [s["clusterAffinity"]["matchLabels"] for s in filled["spec"]["subscribers"]] == expected
    assert [s["weight"] for s in filled["spec"]["subscribers"]] == list(
        range(1, len(selectors) + 1)
    )
    assert original == subscription(*selectors)  # not mutated


def test_fill_subscribers_needs_enough_clusters() -> None:
    with pytest.raises(demo.DemoError, match="2 subscribers but only 1"):
        demo.fill_subscribers(subscription({NAME: "a"}, {NAME: "b"}), [CHILD1])


def test_subscribed_names() -> None:
    assert demo.subscribed_names(subscription({NAME: "child2"}, {ID: "x"})) == ["child2"]


@pytest.mark.parametrize(
    ("plural", "namespace", "expected"),
    [
        ("namespaces", None, "/apis/shadow/v1alpha1/namespaces/baz"),
        ("deployments", "baz", "/apis/shadow/v1alpha1/namespaces/baz/deployments/baz"),
    ],
)
def test_shadow_path(plural: str, namespace: str | None, expected: str) -> None:
    assert demo.shadow_path(plural, "baz", namespace) == expected


def deployment(
    desired: int, ready: int, *, generation: int = 1, observed: int = 1, total: int | None = None
) -> dict[str, Any]:
    return {
        "metadata": {"name": "nginx-app", "generation": generation},
        "spec": {"replicas": desired},
        "status": {
            "observedGeneration": observed,
            "replicas": desired if total is None else total,
            "updatedReplicas": desired,
            "readyReplicas": ready,
        },
    }


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        pytest.param(None, None, id="absent"),
        pytest.param(deployment(2, 2), (2, 2), id="ready"),
        pytest.param(deployment(2, 1), None, id="not-all-ready"),
        pytest.param(deployment(3, 2, generation=2, observed=1), None, id="old-generation"),
        pytest.param(deployment(2, 2, total=3), None, id="surge-pod-left"),
        pytest.param(deployment(0, 0), (0, 0), id="scaled-to-zero"),
    ],
)
def test_deployment_ready(obj: dict[str, Any] | None, expected: tuple[int, int] | None) -> None:
    assert demo.deployment_ready(obj) == expected


def endpoint_slice(cluster: str, *addresses: str, ready: bool = True) -> dict[str, Any]:
    return {
        "metadata": {"name": f"{cluster}-s", "labels": {NAME: cluster}},
        "endpoints": [{"addresses": [a], "conditions": {"ready": ready}} for a in addresses],
        "ports": [{"name": "http", "port": 80}],
    }


def test_endpoints_by_cluster_counts_ready_addresses() -> None:
    slices = [
        endpoint_slice("child2", "10.0.0.2", "10.0.0.1"),
        endpoint_slice("child1", "10.1.0.1"),
        endpoint_slice("child1", "10.1.0.2", ready=False),
        {"metadata": {"name": "x", "labels": {mcs.SOURCE_CLUSTER_LABEL: "id-9"}}},
    ]
    assert demo.endpoints_by_cluster(slices) == {
        "child1": ["10.1.0.1"], "child2": ["10.0.0.1", "10.0.0.2"], "id-9": [],
    }  # fmt: skip


SERVICE = {"metadata": {"name": "derived-baz-kl7j74ep4o"}}
SETTLED = {"child1": deployment(2, 2), "child2": deployment(4, 4)}
SIX = [endpoint_slice("child1", "a", "b"), endpoint_slice("child2", "c", "d", "e", "f")]


@pytest.mark.parametrize(
    ("deployments", "total", "service", "slices", "expected"),
    [
        pytest.param(SETTLED, 6, SERVICE, SIX, {"child1": 2, "child2": 4}, id="settled"),
        pytest.param(SETTLED, 9, SERVICE, SIX, None, id="scale-not-reached"),
        pytest.param(SETTLED, 6, None, SIX, None, id="no-service"),
        pytest.param(SETTLED, 6, SERVICE, SIX[:1], None, id="child2-not-listed"),
        pytest.param({**SETTLED, "child2": None}, 6, SERVICE, SIX, None, id="not-deployed"),
        pytest.param(
            {"child2": deployment(6, 6)}, 6, SERVICE, [endpoint_slice("child2", *"abcdef")],
            {"child2": 6}, id="one-child",
        ),
        pytest.param(
            {"child2": deployment(6, 6)}, 6, SERVICE,
            [endpoint_slice("child2", *"abcdef"), endpoint_slice("child1", "x")],
            None, id="stale-endpoints-of-another-cluster",
        ),
    ],
)  # fmt: skip
def test_settled(
    deployments: dict[str, Any],
    total: int,
    service: dict[str, Any] | None,
    slices: list[dict[str, Any]],
    expected: dict[str, int] | None,
) -> None:
    assert demo.settled(deployments, total, service, slices) == expected


def test_describe_state_names_what_is_missing() -> None:
    text = demo.describe_state({"child1": deployment(2, 1), "child2": None}, None, SIX[:1])
    assert text == (
        "Deployments: child1 1/2 ready, child2 0/0 ready; derived Service: absent; "
        "ready endpoints per cluster: child1: 2"
    )


def test_registered_clusters() -> None:
    managed = {
        "metadata": {"name": "c", "namespace": "clusternet-x", "labels": {NAME: "child1"}},
        "spec": {"clusterId": "id-1"},
        "status": {"conditions": [{"type": "Ready", "status": "True"}]},
    }
    fresh = {"metadata": {"name": "d", "namespace": "clusternet-y", "labels": {NAME: "child0"}}}
    assert demo.registered_clusters([managed, fresh]) == [
        demo.Cluster("child0", "", "clusternet-y", "Unknown"),
        demo.Cluster("child1", "id-1", "clusternet-x", "True"),
    ]


def state(children: int, *, clusternet: bool = True) -> State:
    clusters = [ClusterState("parent", "parent", 1, "")] + [
        ClusterState(f"child{i}", "child", 1, "") for i in range(1, children + 1)
    ]
    return State("/run", "/kubeconfig", 2, clusters, [], {"clusternet": clusternet}, 0.0)


def processes(children: int) -> dict[str, bool]:
    names = ["etcd", "parent/clusternet-hub", "parent/clusternet-controller-manager"]
    return {n: True for n in names + [f"child{i}/clusternet-agent" for i in range(1, children + 1)]}


@pytest.mark.parametrize(
    ("current", "alive", "problem"),
    [
        pytest.param(state(2), processes(2), None, id="reusable"),
        pytest.param(state(3), processes(3), None, id="three-children"),
        pytest.param(None, {}, "no local environment", id="none"),
        pytest.param(state(1), processes(1), "1 child cluster(s)", id="one-child"),
        pytest.param(state(2, clusternet=False), {"etcd": True}, "--no-clusternet", id="bare"),
        pytest.param(state(2), {**processes(2), "etcd": False}, "not running: etcd", id="dead"),
        pytest.param(
            state(2), {"etcd": True}, "missing: child1/clusternet-agent", id="no-clusternet-procs"
        ),
    ],
)
def test_reuse_problem(current: State | None, alive: dict[str, bool], problem: str | None) -> None:
    found = demo.reuse_problem(current, alive)
    if problem is None:
        assert found is None
    else:
        assert found is not None
        assert problem in found


def test_command_refuses_one_child(tmp_path: Any) -> None:
    result = CliRunner().invoke(
        app, ["demo", "mcs", "--children", "1", "--run-dir", str(tmp_path / "run")]
    )
    assert result.exit_code == 1
    assert "--children must be at least 2" in result.output


def test_command_names_a_missing_example(tmp_path: Any) -> None:
    result = CliRunner().invoke(
        app, ["demo", "mcs", "--example", str(tmp_path), "--run-dir", str(tmp_path / "run")]
    )
    assert result.exit_code == 1
    assert "is not the scenario folder" in result.output


def test_a_scenario_needs_one_subscription(tmp_path: Any) -> None:
    (tmp_path / "scheduling").mkdir()
    (tmp_path / "service-import.yaml").write_text("kind: ServiceImport\n")
    with pytest.raises(demo.DemoError, match="must hold one Subscription, not 0"):
        demo.load_scenario(tmp_path)


def test_settled_waits_for_endpoints_of_pods_going_away_to_leave() -> None:
    leaving = endpoint_slice("child1", "z", ready=False)
    assert demo.settled(SETTLED, 6, SERVICE, [*SIX, leaving]) is None


def test_explore_hint() -> None:
    text = demo.explore_hint(
        "/k", ["/venv/bin", "/kbin"], "derived-x", True, "clusternet local down"
    )
    assert "export KUBECONFIG=/k" in text
    assert "export PATH=/venv/bin:/kbin:$PATH" in text
    assert "get svc derived-x" in text
    assert text.endswith("Tear down: clusternet local down")
    assert "stopped" in demo.explore_hint("/k", [], "derived-x", False, "")


class FakeInformer:
    """What :class:`demo.Watches` uses of an informer: a synced store."""

    def __init__(self) -> None:
        self.store = Store()

    async def wait_for_sync(self) -> bool:
        return True

    async def stop(self) -> None:
        return None


def test_watches_until_wakes_on_a_change_and_names_the_last_state_on_timeout() -> None:
    async def main() -> None:
        watches = demo.Watches()
        informer = FakeInformer()
        watches._informers["slices"] = informer  # type: ignore[assignment]

        def check() -> list[Any] | None:
            return watches.items("slices") or None

        waiting = asyncio.create_task(watches.until(check, "a slice", 5, lambda: "none"))
        await asyncio.sleep(0)  # it checked once and waits for a change
        assert not waiting.done()
        informer.store.upsert({"metadata": {"name": "s", "namespace": "default"}})
        watches._changed.set()  # what the informer's handlers do
        assert [o["metadata"]["name"] for o in await waiting] == ["s"]

        with pytest.raises(demo.DemoTimeout, match=r"waiting for nothing; last state: empty"):
            await watches.until(lambda: None, "nothing", 0.01, lambda: "empty")
        await watches.close()

    asyncio.run(main())
