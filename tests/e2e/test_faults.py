"""Faults while Subscriptions roll out (issue 13): nothing lost, nothing duplicated.

One private environment (a parent and two children) with short leader-election leases, so
that a killed leader's successor takes over in seconds, and child2's agent reaching the
parent through a TCP relay the tests can cut.  Every test ends by comparing the environment
with the state an undisturbed run reaches: each Subscription's objects in every child it
binds, once, from the latest template; nothing deployed that no Subscription asks for; one
Base and one Description per Subscription and cluster.

Sizes: ``CLUSTERNET_FAULT_SUBSCRIPTIONS`` (default 40; the issue's 200 runs the same code).
Kill points are drawn from a seeded random generator (``CLUSTERNET_FAULT_SEED``), printed on
failure, and are progress points (so many Descriptions or child objects exist), not times.
"""

from __future__ import annotations

import json
import os
import random
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest
import yaml

from clusternet.apis import known
from clusternet.deployer.deferred import DEFERRED_OFFLOAD_LABEL as DEFERRED
from clusternet.local.environment import PARENT, Options, free_port
from clusternet.local.testing import Clusters, Relay, start_environment, wait_until

SUBSCRIPTIONS = int(os.environ.get("CLUSTERNET_FAULT_SUBSCRIPTIONS", "40"))
SEED = int(os.environ.get("CLUSTERNET_FAULT_SEED", str(random.SystemRandom().randrange(10**6))))
CONVERGE = 240.0  # seconds allowed to settle after the last fault
APPS = "apps.clusternet.io"
LEASES = (
    "--leader-elect-lease-duration=4s",
    "--leader-elect-renew-deadline=3s",
    "--leader-elect-retry-period=1s",
)
CONTROLLER_MANAGER = f"{PARENT}/clusternet-controller-manager"
SCHEDULER = f"{PARENT}/clusternet-scheduler"
HUB = f"{PARENT}/clusternet-hub"


@dataclass
class Faulty:
    clusters: Clusters
    relay: Relay  # between child2's agent and the parent's kube-apiserver

    def kubectl(self, context: str = PARENT) -> Any:
        return self.clusters.kubectl(context)


@pytest.fixture(scope="module")
def faulty(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Faulty]:
    parent_port = free_port()
    with Relay([parent_port]) as relay:
        extra_args = {
            CONTROLLER_MANAGER: LEASES,
            # cluster changes reschedule at once (the default waits 30 s between two)
            SCHEDULER: (*LEASES, "--min-reschedule-interval=1s"),
            "child1/clusternet-agent": LEASES,
            "child2/clusternet-agent": (
                *LEASES,
                f"--cluster-reg-parent-url=https://127.0.0.1:{relay.port}",
                # three missed heartbeats (9 s) make the cluster Unknown
                "--cluster-status-update-frequency=3s",
            ),
        }
        options = Options(children=2, parent_port=parent_port, extra_args=extra_args)
        with start_environment(tmp_path_factory.mktemp("faults"), options) as clusters:
            yield Faulty(clusters, relay)


@contextmanager
def diagnosed(faulty: Faulty) -> Iterator[None]:
    """A failed check also says what Clusternet's processes logged last."""
    try:
        yield
    except AssertionError as err:
        tails = []
        for record in faulty.clusters.env.state.processes:  # type: ignore[union-attr]
            if "clusternet" in record.name and record.name not in {t[0] for t in tails}:
                tails.append((record.name, record.log_tail(15)))
        text = "\n".join(f"--- {name}:\n{tail}" for name, tail in tails)
        raise AssertionError(f"{err}\n(seed {SEED})\n{text}") from None


# -- the workload --------------------------------------------------------------------------


@dataclass
class Workload:
    """``count`` Subscriptions in ``namespace``; Subscription i replicates ConfigMap cm-i
    (and, for every tenth, Deployment dep-i) to both children."""

    namespace: str
    count: int
    revision: dict[int, int]  # live Subscription → template revision

    @staticmethod
    def deployment_of(i: int) -> bool:
        return i % 10 == 0

    def templates(self, indices: list[int]) -> str:
        docs: list[dict[str, Any]] = []
        for i in indices:
            docs.append(
                {
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "metadata": {"name": f"cm-{i}", "namespace": self.namespace},
                    "data": {"i": str(i), "revision": str(self.revision[i])},
                }
            )
            if self.deployment_of(i):
                docs.append(_deployment(f"dep-{i}", self.namespace, replicas=1))
        return yaml.safe_dump_all(docs)

    def subscriptions(self, indices: list[int]) -> str:
        docs = []
        for i in indices:
            feeds = [{"apiVersion": "v1", "kind": "ConfigMap", "name": f"cm-{i}",
                      "namespace": self.namespace}]  # fmt: skip
            if self.deployment_of(i):
                feeds.append({"apiVersion": "apps/v1", "kind": "Deployment", "name": f"dep-{i}",
                              "namespace": self.namespace})  # fmt: skip
            docs.append(_subscription(f"sub-{i}", self.namespace, feeds, both_children()))
        return yaml.safe_dump_all(docs)

    def expected(self) -> set[tuple[str, str, str]]:
        """(kind, name, revision) of what every child must hold."""
        wanted = set()
        for i, revision in self.revision.items():
            wanted.add(("ConfigMap", f"cm-{i}", str(revision)))
            if self.deployment_of(i):
                wanted.add(("Deployment", f"dep-{i}", ""))
        return wanted


def _deployment(name: str, namespace: str, replicas: int) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "app", "image": "nginx:1.25"}]},
            },
        },
    }


def both_children() -> list[dict[str, Any]]:
    return [
        {
            "clusterAffinity": {
                "matchExpressions": [
                    {
                        "key": known.CLUSTER_NAME_LABEL,
                        "operator": "In",
                        "values": ["child1", "child2"],
                    }
                ]
            }
        }
    ]


def _subscription(
    name: str, namespace: str, feeds: list[dict[str, Any]], subscribers: list[dict[str, Any]],
    **spec: Any,
) -> dict[str, Any]:  # fmt: skip
    return {
        "apiVersion": f"{APPS}/v1alpha1",
        "kind": "Subscription",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"subscribers": subscribers, "feeds": feeds, **spec},
    }


def start_workload(faulty: Faulty, count: int) -> Workload:
    """The namespace everywhere (children hold it before anything is deployed), the
    templates in the shadow API, then the Subscriptions."""
    workload = Workload(f"faults-{uuid.uuid4().hex[:6]}", count, dict.fromkeys(range(count), 1))
    for context in faulty.clusters.names:
        faulty.kubectl(context)("create", "namespace", workload.namespace)
    indices = list(range(count))
    faulty.clusters.plugin("apply", "-f", "-", input=workload.templates(indices))
    faulty.kubectl()("apply", "-f", "-", input=workload.subscriptions(indices))
    return workload


# -- what is there ----------------------------------------------------------------------------


def deployed(faulty: Faulty, child: str, namespace: str) -> list[tuple[str, str, str]]:
    """(kind, name, revision) of what Clusternet deployed in ``child``'s ``namespace``, with
    repeats (a duplicate would show twice)."""
    listed = faulty.kubectl(child).json(
        "get", "configmaps,deployments", "-n", namespace,
        "-l", f"{known.DEPLOYED_BY_LABEL}={known.DEPLOYED_BY_CLUSTERNET}",
    )  # fmt: skip
    return sorted(
        (item["kind"], item["metadata"]["name"], (item.get("data") or {}).get("revision", ""))
        for item in listed["items"]
    )


def pipeline_objects(faulty: Faulty, kind: str, namespace: str) -> list[dict[str, Any]]:
    selector = f"{known.CONFIG_SUBSCRIPTION_NAMESPACE_LABEL}={namespace}"
    listed = faulty.kubectl().json("get", f"{kind}.{APPS}", "-A", "-l", selector)
    return list(listed["items"])


def settled(faulty: Faulty, workload: Workload) -> str | None:
    """None when the environment is in the undisturbed end state, else what differs."""
    wanted = sorted(workload.expected())
    for child in faulty.clusters.children:
        found = deployed(faulty, child, workload.namespace)
        if found != wanted:
            missing = sorted(set(wanted) - set(found))
            extra = [entry for entry in found if entry not in wanted or found.count(entry) > 1]
            return f"{child}: missing {missing[:5]}, unexpected {extra[:5]}"
    want_pairs = {(f"sub-{i}", c) for i in workload.revision for c in faulty.clusters.children}
    for kind in ("bases", "descriptions"):
        items = pipeline_objects(faulty, kind, workload.namespace)
        pairs = [
            (
                item["metadata"]["labels"].get(known.CONFIG_SUBSCRIPTION_NAME_LABEL),
                item["metadata"]["labels"].get(known.CLUSTER_NAME_LABEL),
            )
            for item in items
        ]
        if sorted(pairs) != sorted(want_pairs):
            return f"{kind}: {len(pairs)} for {len(want_pairs)} (Subscription, cluster) pairs"
        if kind == "descriptions":
            failing = [
                item["metadata"]["name"]
                for item in items
                if (item.get("status") or {}).get("phase") != "Success"
            ]
            if failing:
                return f"descriptions not deployed yet: {failing[:5]}"
    return None


def wait_settled(faulty: Faulty, workload: Workload, what: str) -> None:
    last: list[str | None] = [None]

    def check() -> bool:
        last[0] = settled(faulty, workload)
        return last[0] is None

    try:
        wait_until(check, what, timeout=CONVERGE, interval=1.0)
    except AssertionError as err:
        raise AssertionError(f"{err} (seed {SEED}); still different: {last[0]}") from None


def count_descriptions(faulty: Faulty, namespace: str) -> int:
    return len(pipeline_objects(faulty, "descriptions", namespace))


def count_deployed(faulty: Faulty, namespace: str) -> int:
    return sum(len(deployed(faulty, c, namespace)) for c in faulty.clusters.children)


def cleanup(faulty: Faulty, workload: Workload) -> None:
    """Subscriptions first (their objects leave the children), then the namespaces."""
    kubectl = faulty.kubectl()
    kubectl("delete", f"subscriptions.{APPS}", "--all", "-n", workload.namespace, "--wait=true",
            timeout=240)  # fmt: skip
    for child in faulty.clusters.children:
        wait_until(lambda c=child: not deployed(faulty, c, workload.namespace),  # type: ignore[misc]
                   f"{workload.namespace} emptied in {child}", timeout=120)  # fmt: skip
    for context in faulty.clusters.names:
        faulty.kubectl(context)("delete", "namespace", workload.namespace, "--wait=false")


# -- the faults --------------------------------------------------------------------------------


def test_components_killed_mid_rollout_converge(faulty: Faulty) -> None:
    """kill -9 of the scheduler, the controller-manager, the hub and both agents at random
    progress points, while Subscriptions are created, edited and deleted."""
    with diagnosed(faulty):
        rng = random.Random(SEED)
        env = faulty.clusters.env
        total = 2 * SUBSCRIPTIONS  # Descriptions (and ConfigMaps) in an undisturbed end state
        victims = [SCHEDULER, CONTROLLER_MANAGER, HUB, "child1/clusternet-agent",
                   "child2/clusternet-agent"]  # fmt: skip
        rng.shuffle(victims)
        workload = start_workload(faulty, SUBSCRIPTIONS)
        try:
            for step, victim in enumerate(victims):
                # progress point: a random share of the rollout done (later faults, later points)
                point = rng.randint(step * total // (2 * len(victims)), total // 2)
                wait_until(
                    lambda p=point: count_descriptions(faulty, workload.namespace) >= p,  # type: ignore[misc]
                    f"{point} Descriptions before killing {victim} (seed {SEED})",
                    timeout=CONVERGE,
                    interval=0.1,
                )
                env.kill_process(victim)
                if step == 2:
                    # while something is down: delete a few Subscriptions and edit half the
                    # templates (through the shadow API, which is the hub: while the hub is
                    # down the edit waits for it, as a user would)
                    gone = [i for i in workload.revision if i % 7 == 3]
                    faulty.kubectl()("delete", f"subscriptions.{APPS}", "-n", workload.namespace,
                                     *(f"sub-{i}" for i in gone), "--wait=false")  # fmt: skip
                    for i in gone:
                        del workload.revision[i]
                    if victim != HUB:
                        edit_half(faulty, workload)
                env.start_process(victim)
                if step == 2 and victim == HUB:
                    edit_half(faulty, workload)
            wait_settled(faulty, workload, "the rollout to converge after five kill -9s")
        finally:
            for victim in victims:  # a failed check may have left one down
                if not env.process_running(victim):
                    env.start_process(victim)
            cleanup(faulty, workload)


def edit_half(faulty: Faulty, workload: Workload) -> None:
    edited = [i for i in workload.revision if i % 2 == 0]
    for i in edited:
        workload.revision[i] += 1
    manifests = workload.templates(edited)

    def applied() -> bool:
        result = faulty.clusters.plugin("apply", "-f", "-", input=manifests, check=False)
        return result.returncode == 0

    wait_until(applied, "the shadow API to take the edits", timeout=120, interval=1.0)


def test_parent_apiserver_and_etcd_restart_mid_rollout(faulty: Faulty) -> None:
    with diagnosed(faulty):
        env = faulty.clusters.env
        workload = start_workload(faulty, SUBSCRIPTIONS // 2)
        try:
            wait_until(lambda: count_descriptions(faulty, workload.namespace) >= 4,
                       "the rollout to start", timeout=CONVERGE, interval=0.1)  # fmt: skip
            env.restart_process("etcd")  # every cluster's storage (one etcd, a prefix each)
            env.restart_process(f"{PARENT}/kube-apiserver")
            edited = list(workload.revision)[:5]
            for i in edited:
                workload.revision[i] += 1
            faulty.clusters.plugin("apply", "-f", "-", input=workload.templates(edited))
            wait_settled(faulty, workload, "the rollout to converge after the parent restarted")
        finally:
            cleanup(faulty, workload)


def _description_of(faulty: Faulty, namespace: str, sub: str, child: str) -> dict[str, Any]:
    for item in pipeline_objects(faulty, "descriptions", namespace):
        labels = item["metadata"]["labels"]
        if (
            labels.get(known.CONFIG_SUBSCRIPTION_NAME_LABEL) == sub
            and labels.get(known.CLUSTER_NAME_LABEL) == child
        ):
            return item
    return {}


def test_child_apiserver_down_fails_with_a_reason_then_deploys(faulty: Faulty) -> None:
    """child1's kube-apiserver stops: pushes to it fail and say why, child2 keeps getting
    its changes meanwhile, and once child1 is back the change arrives there too."""
    with diagnosed(faulty):
        env = faulty.clusters.env
        workload = start_workload(faulty, 4)
        try:
            wait_settled(faulty, workload, "the first rollout")
            env.stop_process("child1/kube-apiserver")
            try:
                workload.revision[0] += 1
                faulty.clusters.plugin("apply", "-f", "-", input=workload.templates([0]))
                # child2 is not held up by child1
                wait_until(
                    lambda: (
                        ("ConfigMap", "cm-0", "2") in deployed(faulty, "child2", workload.namespace)
                    ),
                    "the edit in child2 while child1 is down",
                    timeout=60,
                )

                def failure() -> str | None:
                    status = (
                        _description_of(faulty, workload.namespace, "sub-0", "child1").get("status")
                        or {}
                    )
                    return status.get("reason") if status.get("phase") == "Failure" else None

                reason = wait_until(failure, "child1's Description to report the failure", 60)
                assert "child1" in reason or "127.0.0.1" in reason or "connect" in reason.lower(), (
                    reason
                )
            finally:
                env.start_process("child1/kube-apiserver")
            # The agent exits when it cannot renew its Lease in its own cluster, as upstream's
            # does, and is started again (by the kubelet in a real cluster, by the local
            # environment's supervisor here): nothing to do by hand.
            wait_settled(faulty, workload, "the edit to reach child1 once it is back")
        finally:
            cleanup(faulty, workload)


def _ready(faulty: Faulty, child: str) -> str:
    mc = faulty.clusters.managed_clusters()[child]
    conditions = (mc.get("status") or {}).get("conditions") or []
    return next((c["status"] for c in conditions if c["type"] == known.CONDITION_READY), "")


def _replicas(faulty: Faulty, child: str, namespace: str, name: str) -> int | None:
    got = faulty.kubectl(child)("get", "deployment", name, "-n", namespace, "-o", "json",
                                check=False)  # fmt: skip
    return json.loads(got.stdout)["spec"]["replicas"] if got.returncode == 0 else None


def test_tunnel_cut_moves_dividing_replicas_and_heals(faulty: Faulty) -> None:
    """The link between child2's agent and the parent breaks: child2 turns Unknown and
    tainted, its share of a Dividing Subscription moves to child1, and a Subscription deleted
    meanwhile is gone at once (a lost cluster never blocks deletion).  When the link is back
    the replicas are divided again and the deleted Subscription's objects leave child2 too
    (a deferred offload), with no manual step."""
    with diagnosed(faulty):
        namespace = f"faults-{uuid.uuid4().hex[:6]}"
        for context in faulty.clusters.names:
            faulty.kubectl(context)("create", "namespace", namespace)
        faulty.clusters.plugin(
            "apply", "-f", "-", input=json.dumps(_deployment("divided", namespace, replicas=4))
        )
        subscribers = [
            {"clusterAffinity": {"matchLabels": {known.CLUSTER_NAME_LABEL: child}}, "weight": 1}
            for child in ("child1", "child2")
        ]
        feeds = [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "divided",
                  "namespace": namespace}]  # fmt: skip
        subscription = _subscription(
            "divided", namespace, feeds, subscribers,
            schedulingStrategy="Dividing", dividingScheduling={"type": "Static"},
        )  # fmt: skip
        faulty.kubectl()("apply", "-f", "-", input=json.dumps(subscription))
        apart = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "apart", "namespace": namespace},
            "data": {"k": "v"},
        }
        faulty.clusters.plugin("apply", "-f", "-", input=json.dumps(apart))
        feeds = [{"apiVersion": "v1", "kind": "ConfigMap", "name": "apart", "namespace": namespace}]
        replicated = _subscription("gone-while-cut", namespace, feeds, both_children())
        faulty.kubectl()("apply", "-f", "-", input=json.dumps(replicated))

        def apart_in(child: str) -> bool:
            return ("ConfigMap", "apart", "") in deployed(faulty, child, namespace)

        def records() -> list[Any]:
            listed = faulty.kubectl().json("get", "configmaps", "-A", "-l", f"{DEFERRED}=true")
            return list(listed["items"])

        def divided(share: dict[str, int]) -> bool:
            return all(_replicas(faulty, c, namespace, "divided") == n for c, n in share.items())

        try:
            wait_until(lambda: divided({"child1": 2, "child2": 2}), "2 + 2 replicas", 90)
            faulty.relay.cut()
            try:
                wait_until(lambda: _ready(faulty, "child2") == "Unknown", "child2 Unknown", 90)
                taints = faulty.clusters.managed_clusters()["child2"]["spec"].get("taints") or []
                assert known.TAINT_CLUSTER_UNSCHEDULABLE in {t["key"] for t in taints}
                wait_until(lambda: divided({"child1": 4}), "all 4 replicas in child1", 90)
            finally:
                faulty.relay.heal()
            wait_until(lambda: _ready(faulty, "child2") == "True", "child2 Ready again", 120)
            wait_until(
                lambda: divided({"child1": 2, "child2": 2}), "2 + 2 replicas after the cut", 120
            )
            taints = faulty.clusters.managed_clusters()["child2"]["spec"].get("taints") or []
            assert known.TAINT_CLUSTER_UNSCHEDULABLE not in {t["key"] for t in taints}
        finally:
            faulty.kubectl()("delete", f"subscriptions.{APPS}", "divided", "-n", namespace,
                             "--wait=true", timeout=180)  # fmt: skip
            for context in faulty.clusters.names:
                faulty.kubectl(context)("delete", "namespace", namespace, "--wait=false")
