"""Dynamic dividing end to end: agents serve the built-in predictor (gate ``Predictor``), the
scheduler asks it through clusternet-hub's socket proxy, and a Deployment's replicas are split
in proportion to the predicted capacities; scaling up adds only the delta.

A private environment (parent + 2 children of 2 kwok nodes with 4 CPUs each); `local up` runs
the agents with the gate, each serving on a free port. One node of child1 is cordoned, so child1
can take 4 replicas of 1 CPU and child2 8.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from clusternet.apis import naming
from clusternet.kube import KubeClient, wait_for
from clusternet.local.environment import Options
from clusternet.local.testing import start_environment
from clusternet.scheduler.plugins.predictor import hub_proxy_path

APPS = "apps.clusternet.io/v1alpha1"
CLUSTERS = "clusters.clusternet.io/v1beta1"
ONE_CPU = {"resources": {"requests": {"cpu": "1"}}}


def deployment_manifest(namespace: str, name: str, replicas: int) -> str:
    template = {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "c", "image": "nginx", **ONE_CPU}]},
            },
        },
    }  # fmt: skip
    return json.dumps(naming.manifest(template, "deployments"))


def dynamic_subscription(namespace: str, name: str) -> str:
    return json.dumps(
        {
            "apiVersion": APPS, "kind": "Subscription",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {
                "subscribers": [{"clusterAffinity": {}}],
                "schedulingStrategy": "Dividing",
                "dividingScheduling": {"type": "Dynamic", "dynamicDividing": {"strategy": "Spread"}},  # noqa: E501
                "feeds": [{"apiVersion": "apps/v1", "kind": "Deployment", "namespace": namespace, "name": name}],  # noqa: E501
            },
        }
    )  # fmt: skip


async def wait_until(
    client: KubeClient,
    api_version: str,
    kind: str,
    name: str,
    namespace: str,
    predicate: Callable[[dict[str, Any]], bool],
    explain: Callable[[], str],
    within: float = 120,
) -> dict[str, Any]:
    try:
        async with asyncio.timeout(within):
            return await wait_for(client, api_version, kind, name, predicate, namespace=namespace)
    except TimeoutError:
        message = f"{kind} {namespace}/{name} did not get there in {within}s\n{explain()}"
        raise AssertionError(message) from None


def predictor_advertised(cluster: dict[str, Any]) -> bool:
    status = cluster.get("status") or {}
    return bool(status.get("predictorEnabled")) and bool(status.get("predictorAddress"))


async def test_replicas_follow_predicted_capacity_and_scaling_adds_the_delta(
    tmp_path: Path,
) -> None:
    options = Options(children=2, nodes_per_child=2, node_cpu="4", node_memory="8Gi")
    with start_environment(tmp_path / "env", options) as c:
        scheduler_log = Path(
            next(p.log for p in c.state.processes if p.name == "parent/clusternet-scheduler")
        )

        def scheduler_tail() -> str:
            return "scheduler log:\n" + "\n".join(scheduler_log.read_text().splitlines()[-40:])

        node = c.kubectl("child1").json("get", "nodes")["items"][0]["metadata"]["name"]
        c.kubectl("child1")("cordon", node)
        kc = c.kubectl("parent")
        async with KubeClient.from_kubeconfig(c.kubeconfig, context="parent") as parent:
            keys, capacity = {}, {}
            for item in kc.json("get", "managedclusters", "-A")["items"]:
                name, namespace = item["metadata"]["name"], item["metadata"]["namespace"]
                agent_log = Path(  # local up names each cluster after its child
                    next(p.log for p in c.state.processes if p.name == f"{name}/clusternet-agent")
                )
                cluster = await wait_until(
                    parent, CLUSTERS, "ManagedCluster", name, namespace, predictor_advertised,
                    lambda log=agent_log: "agent log:\n" + log.read_text()[-3000:],
                )  # fmt: skip
                status = cluster["status"]
                assert status["predictorDirectAccess"] is False
                assert status["predictorAddress"].startswith("http://127.0.0.1:")
                # What the scheduler asks: the built-in predictor, through the hub.
                path = hub_proxy_path(cluster["spec"]["clusterId"], status["predictorAddress"])
                answer = await parent.request("POST", path, body=ONE_CPU)
                keys[name] = f"{namespace}/{name}"
                capacity[name] = answer["replicas"]["default"]
            assert capacity == {"child1": 4, "child2": 8}

            kc("create", "namespace", "shop")
            kc.apply(deployment_manifest("shop", "web", 6))
            kc.apply(dynamic_subscription("shop", "web"))
            feed_key = "apps/v1/Deployment/shop/web"

            def placed(wanted: dict[str, int]) -> Callable[[dict[str, Any]], bool]:
                expected = {keys[child]: replicas for child, replicas in wanted.items()}

                def predicate(sub: dict[str, Any]) -> bool:
                    status = sub.get("status") or {}
                    bound = status.get("bindingClusters") or []
                    replicas = (status.get("replicas") or {}).get(feed_key) or []
                    return dict(zip(bound, replicas, strict=False)) == expected

                return predicate

            # 6 over capacities 4 and 8: 2 and 4.
            await wait_until(
                parent, APPS, "Subscription", "web", "shop", placed({"child1": 2, "child2": 4}),
                scheduler_tail,
            )  # fmt: skip

            # 9: the 3 more are spread over what is left (2 and 4 once the first replicas run,
            # 4 and 8 before), 1 and 2 either way; the first 6 stay where they are.
            kc.apply(deployment_manifest("shop", "web", 9))
            await wait_until(
                parent, APPS, "Subscription", "web", "shop", placed({"child1": 3, "child2": 6}),
                scheduler_tail,
            )  # fmt: skip
