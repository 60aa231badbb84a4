"""The aggregatestatus controller's decisions: the status patch, the Deployed condition, and
which events bring a Subscription back (spec §4.9)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import jsonpatch
import pytest

from clusternet.apis import known
from clusternet.controllermanager import aggregation
from clusternet.controllermanager.aggregatestatus import (
    AggregateStatusController,
    description_changed,
    description_subscription,
    subscription_changed,
)
from clusternet.controllermanager.aggregation import (
    BoundCluster,
    aggregate,
    bound_clusters,
    failures,
    render_errors,
    status_patch,
    subscription_condition,
    with_condition,
)
from clusternet.kube import Conflict, Invalid, PatchType
from clusternet.runtime import FakeClock, SharedInformerFactory

NOW = datetime(2026, 11, 28, 4, 0, tzinfo=UTC)
LATER = datetime(2026, 11, 28, 5, 0, tzinfo=UTC)
DEPLOY = {"apiVersion": "apps/v1", "kind": "Deployment", "namespace": "shop", "name": "web"}
NS = {"apiVersion": "v1", "kind": "Namespace", "name": "shop"}
CLUSTERS = [
    BoundCluster("id-1", "child1", "clusternet-a"),
    BoundCluster("id-2", "child2", "clusternet-b"),
]


def description(
    namespace: str,
    *statuses: dict[str, Any],
    phase: str | None = "Success",
    reason: str | None = None,
    deleting: bool = False,
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "web-x-generic", "namespace": namespace}
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    status: dict[str, Any] = {"manifestStatuses": list(statuses)}
    if phase:
        status["phase"] = phase
    if reason:
        status["reason"] = reason
    return {"metadata": meta, "status": status}


def deployed(feed: dict[str, str], **status: Any) -> dict[str, Any]:
    return {**feed, "observedStatus": status}


def subscription(
    feeds: list[dict[str, str]], status: dict[str, Any] | None = None
) -> dict[str, Any]:
    return {
        "metadata": {
            "name": "web",
            "namespace": "team-a",
            "uid": "u-1",
            "generation": 2,
            "resourceVersion": "1",
        },
        "spec": {"feeds": feeds},
        "status": status or {},
    }


# --- the condition ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("descriptions", "status", "reason", "message"),
    [
        (
            [description("clusternet-a", deployed(DEPLOY)), description("clusternet-b", deployed(DEPLOY))],  # noqa: E501
            "True", "Deployed", "1 feeds deployed to 2 clusters",
        ),
        (
            [description("clusternet-a", deployed(DEPLOY))],
            "False", "Pending", "not deployed yet: Deployment/web on child2",
        ),
        (
            [
                description("clusternet-a", deployed(DEPLOY)),
                description("clusternet-b", phase="Failure", reason="namespaces \"shop\" not found"),  # noqa: E501
            ],
            "False", "Failed",
            'failed on child2 (Failure: namespaces "shop" not found); '
            "not deployed yet: Deployment/web on child2",
        ),
        (
            # Reported once, failing now: still not deployed.
            [
                description("clusternet-a", deployed(DEPLOY)),
                description("clusternet-b", deployed(DEPLOY), phase="Failure", reason="boom"),
            ],
            "False", "Failed", "failed on child2 (Failure: boom)",
        ),
        (
            [
                description("clusternet-a", phase="Failure"),
                description("clusternet-b", deployed(DEPLOY), phase="Installing"),
            ],
            "False", "Failed",
            "failed on child1 (Failure: no reason given); not deployed yet: Deployment/web on child1",  # noqa: E501
        ),
        (
            # A Description being deleted, or of an unbound cluster, does not count.
            [
                description("clusternet-a", deployed(DEPLOY), phase="Failure", reason="x", deleting=True),  # noqa: E501
                description("clusternet-z", phase="Failure", reason="y"),
                description("clusternet-b", deployed(DEPLOY)),
            ],
            "False", "Pending", "not deployed yet: Deployment/web on child1",
        ),
    ],
)  # fmt: skip
def test_deployed_condition(
    descriptions: list[dict[str, Any]], status: str, reason: str, message: str
) -> None:
    aggregated = aggregate([DEPLOY], CLUSTERS, descriptions)
    condition = subscription_condition(aggregated, failures(CLUSTERS, descriptions))
    assert condition == {"type": "Deployed", "status": status, "reason": reason, "message": message}


def base(namespace: str, error: str | None = None, deleting: bool = False) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": "web-x",
        "namespace": namespace,
        "labels": {known.CONFIG_SUBSCRIPTION_UID_LABEL: "u-1"},
    }
    if error is not None:
        meta["annotations"] = {known.RENDER_ERROR_ANNOTATION: error}
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return {"metadata": meta}


MISSING = "template Deployment shop/gone does not exist"
BAD = "feed apps/v1/Deployment/shop/web: Localization clusternet-a/x override 'y': value is ..."


@pytest.mark.parametrize(
    ("case", "descriptions", "bases", "status", "reason", "message"),
    [
        (
            "deployed everywhere, but one cluster's input is bad (a skipped JSON patch)",
            [description("clusternet-a", deployed(DEPLOY)), description("clusternet-b", deployed(DEPLOY))],  # noqa: E501
            [base("clusternet-a", BAD), base("clusternet-b")],
            "False", "InvalidInput", f"bad input for child1 ({BAD})",
        ),
        (
            "a missing template: bad input everywhere, and not deployed",
            [description("clusternet-a"), description("clusternet-b")],
            [base("clusternet-a", MISSING), base("clusternet-b", MISSING)],
            "False", "InvalidInput",
            f"bad input for child1 ({MISSING}); child2 ({MISSING}); "
            "not deployed yet: Deployment/web on child1, child2",
        ),
        (
            "a deploy failure wins the reason, both are said",
            [description("clusternet-a", deployed(DEPLOY)), description("clusternet-b", deployed(DEPLOY), phase="Failure", reason="boom")],  # noqa: E501
            [base("clusternet-a", MISSING)],
            "False", "Failed", f"bad input for child1 ({MISSING}); failed on child2 (Failure: boom)",  # noqa: E501
        ),
        (
            "a Base being deleted or of an unbound cluster does not count; cleared is fine",
            [description("clusternet-a", deployed(DEPLOY)), description("clusternet-b", deployed(DEPLOY))],  # noqa: E501
            [base("clusternet-a", BAD, deleting=True), base("clusternet-z", BAD), base("clusternet-b", "")],  # noqa: E501
            "True", "Deployed", "1 feeds deployed to 2 clusters",
        ),
    ],
)  # fmt: skip
def test_bad_input_is_in_the_deployed_condition(
    case: str,
    descriptions: list[dict[str, Any]],
    bases: list[dict[str, Any]],
    status: str,
    reason: str,
    message: str,
) -> None:
    patch = status_patch(subscription([DEPLOY]), CLUSTERS, descriptions, NOW, bases)
    assert patch is not None
    (condition,) = patch["conditions"]
    assert (condition["status"], condition["reason"], condition["message"]) == (
        status,
        reason,
        message,
    ), case


def test_long_render_errors_are_cut_per_cluster() -> None:
    found = render_errors(CLUSTERS, [base("clusternet-a", "x" * 5000)])
    assert len(found["child1"]) == 1024
    assert found["child1"].endswith("...")


def test_not_bound_anywhere_is_nothing_to_deploy() -> None:
    aggregated = aggregate([DEPLOY, NS], [], [])
    assert [a["feedStatusDetails"] for a in aggregated] == [[], []]
    assert subscription_condition(aggregated)["reason"] == "NothingToDeploy"


def test_long_failure_reasons_are_cut_per_cluster() -> None:
    descriptions = [description(c.namespace, phase="Failure", reason="x" * 5000) for c in CLUSTERS]
    found = failures(CLUSTERS, descriptions)
    assert set(found) == {"child1", "child2"}
    assert all(len(text) < 1100 and text.endswith("...") for text in found.values())


# --- aggregate ----------------------------------------------------------------------------


def test_every_bound_cluster_is_listed_with_its_id() -> None:
    clusters = [BoundCluster("", "child1", "clusternet-a"), CLUSTERS[1]]
    (entry,) = aggregate([NS], clusters, [description("clusternet-b", deployed(NS))])
    assert entry["feedStatusDetails"] == [
        {"clusterName": "child1", "available": False},
        {"clusterId": "id-2", "clusterName": "child2", "available": True},
    ]
    assert entry["feedStatusSummary"] == {"available": False}


def test_broken_observed_status_is_ignored() -> None:
    (entry,) = aggregate(
        [DEPLOY],
        CLUSTERS[:1],
        [description("clusternet-a", deployed(DEPLOY, replicas="two", readyReplicas=1), "junk")],
    )
    assert entry["feedStatusDetails"][0]["replicaStatus"] == {"readyReplicas": 1}


def test_bound_clusters_from_binding_keys() -> None:
    assert bound_clusters(
        ["clusternet-a/child1", "clusternet-b/child2", "broken"], {"clusternet-b/child2": "id-2"}
    ) == [BoundCluster("", "child1", "clusternet-a"), CLUSTERS[1]]


# --- the status patch ---------------------------------------------------------------------


def test_first_write_then_nothing_while_unchanged() -> None:
    sub = subscription([NS], {"bindingClusters": ["clusternet-a/child1"]})
    descriptions = [description("clusternet-a", deployed(NS))]
    patch = status_patch(sub, CLUSTERS[:1], descriptions, NOW)
    assert patch is not None
    assert patch["aggregatedStatuses"][0]["feedStatusSummary"] == {"available": True}
    assert patch["conditions"] == [
        {
            "type": "Deployed",
            "status": "True",
            "reason": "Deployed",
            "message": "1 feeds deployed to 1 clusters",
            "observedGeneration": 2,
            "lastTransitionTime": "2026-11-28T04:00:00Z",
        }
    ]
    written = subscription([NS], {**sub["status"], **patch})
    assert status_patch(written, CLUSTERS[:1], descriptions, LATER) is None


def test_other_conditions_are_kept_and_transition_time_moves_only_on_flips() -> None:
    scheduled = {"type": "Scheduled", "status": "True", "reason": "Scheduled", "message": "ok",
                 "lastTransitionTime": "2026-11-27T00:00:00Z"}  # fmt: skip
    pending = {"type": "Deployed", "status": "False", "reason": "Pending", "message": "a",
               "lastTransitionTime": "2026-11-27T01:00:00Z"}  # fmt: skip
    changed = with_condition(
        [scheduled, pending],
        {"type": "Deployed", "status": "False", "reason": "Pending", "message": "b"},
        generation=None,
        now=NOW,
    )
    assert changed == [scheduled, {**pending, "message": "b"}]
    flipped = with_condition(
        changed,
        {"type": "Deployed", "status": "True", "reason": "Deployed", "message": "c"},
        generation=None,
        now=NOW,
    )
    assert flipped is not None
    assert flipped[0] == scheduled
    assert flipped[1]["lastTransitionTime"] == "2026-11-28T04:00:00Z"
    assert with_condition(flipped, {**flipped[1]}, generation=None, now=LATER) is None


def test_only_the_changed_field_is_patched() -> None:
    sub = subscription([NS])
    first = status_patch(sub, CLUSTERS[:1], [], NOW)
    assert first is not None
    sub["status"] = {"conditions": first["conditions"]}  # aggregatedStatuses lost (by hand)
    assert set(status_patch(sub, CLUSTERS[:1], [], NOW) or {}) == {"aggregatedStatuses"}


# --- triggers -----------------------------------------------------------------------------


def test_descriptions_are_indexed_by_subscription_uid_or_key() -> None:
    labels = {
        known.CONFIG_SUBSCRIPTION_NAME_LABEL: "web",
        known.CONFIG_SUBSCRIPTION_NAMESPACE_LABEL: "team-a",
    }
    with_uid = {**labels, known.CONFIG_SUBSCRIPTION_UID_LABEL: "u-1"}
    assert description_subscription({"metadata": {"labels": with_uid}}) == ["uid/u-1"]
    assert description_subscription({"metadata": {"labels": labels}}) == ["key/team-a/web"]
    assert description_subscription({"metadata": {}}) == []


@pytest.mark.parametrize(
    ("change", "relevant"),
    [
        ({"status": {"bindingClusters": ["a/b"]}}, True),
        ({"spec": {"feeds": [NS, DEPLOY]}}, True),
        ({"status": {"aggregatedStatuses": []}}, True),
        ({"status": {"conditions": [{"type": "Deployed", "status": "False"}]}}, True),
        ({"status": {"conditions": [{"type": "Scheduled", "status": "True"}]}}, False),
        ({"status": {"replicas": {"x": [1]}, "specHash": 3}}, False),
    ],
)
def test_subscription_updates_that_matter(change: dict[str, Any], relevant: bool) -> None:
    old = subscription([NS])
    new = {**old, **{k: {**old.get(k, {}), **v} for k, v in change.items()}}
    assert subscription_changed(old, new) is relevant


def test_description_updates_that_matter() -> None:
    old = description("clusternet-a", deployed(NS))
    assert not description_changed(old, {**old, "spec": {"raw": []}})
    assert description_changed(old, {**old, "status": {"phase": "Failure"}})


@pytest.mark.parametrize(
    ("status_before", "written", "guards"),
    [
        # no status yet (nothing bound): the whole status, guarded by its absence
        (None, {"conditions": [{"type": "Deployed"}]},
         {"/metadata/generation": 2, "/status/bindingClusters": None,
          "/status/conditions": None, "/status": None}),
        # bound by the scheduler: its fields are tested, not written
        ({"bindingClusters": ["ns/c1"], "replicas": {"f": [1]}},
         {"aggregatedStatuses": [{"feed": "f"}]},
         {"/metadata/generation": 2, "/status/bindingClusters": ["ns/c1"]}),
        # the conditions we replace (the scheduler's Scheduled among them) are tested
        ({"bindingClusters": ["ns/c1"], "conditions": [{"type": "Scheduled"}]},
         {"aggregatedStatuses": [], "conditions": [{"type": "Scheduled"}, {"type": "Deployed"}]},
         {"/metadata/generation": 2, "/status/bindingClusters": ["ns/c1"],
          "/status/conditions": [{"type": "Scheduled"}]}),
    ],
)  # fmt: skip
def test_guarded_status_patch(
    status_before: dict[str, Any] | None, written: dict[str, Any], guards: dict[str, Any]
) -> None:
    sub = subscription([DEPLOY], status_before)
    if status_before is None:
        del sub["status"]
    ops = aggregation.guarded_status_patch(sub, written)
    assert {op["path"]: op["value"] for op in ops if op["op"] == "test"} == guards
    # jsonpatch (like RFC 6902) fails a test of an absent member; the API server accepts
    # a test of null there: those guards are dropped to apply the rest locally.
    local = [op for op in ops if not (op["op"] == "test" and op["value"] is None)]
    patched = jsonpatch.apply_patch(sub, local)
    assert patched["status"] == {**(status_before or {}), **written}
    assert patched["spec"] == sub["spec"]


# --- the controller around them (fake client, informers fed by hand, fake clock) -------------


class FakeClient:
    cluster = "fake"

    def __init__(self) -> None:
        self.patches: list[dict[str, Any]] = []
        self.fail: Exception | None = None

    async def patch(self, api_version: str, kind: str, name: str, patch: Any, **kw: Any) -> Any:
        if self.fail is not None:
            raise self.fail
        self.patches.append({"name": name, "patch": patch, **kw})
        return {}


class FakeRecorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, str]] = []

    def event(self, obj: Any, type: str, reason: str, message: str) -> None:
        self.events.append((type, reason, message))


def status_of(write: dict[str, Any]) -> dict[str, Any]:
    """The status fields a guarded JSON patch writes."""
    status: dict[str, Any] = {}
    for op in write["patch"]:
        if op["op"] == "add" and op["path"] == "/status":
            status.update(op["value"])
        elif op["op"] == "add":
            status[op["path"].removeprefix("/status/")] = op["value"]
    return status


def upsert(informer: Any, obj: dict[str, Any]) -> None:
    old = informer.store.upsert(obj)
    for handler in informer._handlers:
        if old is None and handler.on_add:
            handler.on_add(obj)
        elif old is not None and handler.on_update:
            handler.on_update(old, obj)


def labelled(namespace: str, phase: str, replicas: int) -> dict[str, Any]:
    desc = description(namespace, deployed(DEPLOY, replicas=replicas), phase=phase)
    desc["metadata"]["labels"] = {known.CONFIG_SUBSCRIPTION_UID_LABEL: "u-1"}
    return desc


@pytest.fixture
def ctrl() -> tuple[AggregateStatusController, FakeClient, FakeRecorder, FakeClock]:
    client, recorder, clock = FakeClient(), FakeRecorder(), FakeClock()
    informers = SharedInformerFactory(client, registry=None)  # type: ignore[arg-type]
    controller = AggregateStatusController(
        client,  # type: ignore[arg-type]
        informers,
        recorder,  # type: ignore[arg-type]
        coalesce=0.5,
        registry=None,
        clock=clock,
    )
    return controller, client, recorder, clock


async def drain(controller: AggregateStatusController) -> list[str]:
    keys = []
    while len(controller.queue):
        key = await controller.queue.get()
        keys.append(key)
        await controller.reconcile(key)
        controller.queue.done(key)
    return keys


async def test_a_burst_of_description_updates_is_one_write(ctrl: Any) -> None:
    controller, client, recorder, clock = ctrl
    sub = subscription([DEPLOY], {"bindingClusters": ["clusternet-a/child1"]})
    sub["metadata"]["resourceVersion"] = "10"
    upsert(controller.clusters, {"metadata": {"name": "child1", "namespace": "clusternet-a"},
                                 "spec": {"clusterId": "id-1"}})  # fmt: skip
    upsert(controller.subscriptions, sub)
    await drain(controller)  # bound, nothing reported: Pending
    client.patches.clear()
    for replicas in range(1, 200):  # a deployer reporting, again and again
        upsert(controller.descriptions, labelled("clusternet-a", "Success", replicas))
    assert len(controller.queue) == 0  # gathered, not queued yet
    clock.advance(0.5)
    assert await drain(controller) == ["team-a/web"]
    (write,) = client.patches
    assert write["subresource"] == "status"
    assert write["patch_type"] is PatchType.JSON
    ops = write["patch"]
    assert [op for op in ops if op["op"] == "test"] == [  # never a blind write
        {"op": "test", "path": "/metadata/generation", "value": 2},
        {"op": "test", "path": "/status/bindingClusters", "value": ["clusternet-a/child1"]},
        # the cache has not seen the Pending condition written above: Deployed replaces none
        {"op": "test", "path": "/status/conditions", "value": None},
    ]
    written = {op["path"]: op["value"] for op in ops if op["op"] == "add"}
    details = written["/status/aggregatedStatuses"][0]["feedStatusDetails"]
    assert details == [{"clusterId": "id-1", "clusterName": "child1", "available": True,
                        "replicaStatus": {"replicas": 199}}]  # fmt: skip
    assert "/status/bindingClusters" not in written
    assert recorder.events[-1] == ("Normal", "Deployed", "1 feeds deployed to 1 clusters")


async def test_a_new_binding_and_the_first_reports_are_one_write(ctrl: Any) -> None:
    """Profiled under a burst: a write for "created, not bound" (NothingToDeploy), another
    for "bound, nothing reported yet" and another a moment later for the reports tripled
    the Subscription status writes, and the scheduler's binding, made from a cache without
    the first, replaced the conditions it was in (a failed write, retried)."""
    controller, client, recorder, clock = ctrl
    upsert(controller.clusters, {"metadata": {"name": "child1", "namespace": "clusternet-a"},
                                 "spec": {"clusterId": "id-1"}})  # fmt: skip
    unbound = subscription([DEPLOY])
    upsert(controller.subscriptions, unbound)
    assert len(controller.queue) == 0  # gathered: the scheduler binds it in a moment
    # The scheduler's binding, with its Scheduled condition.
    bound = {**unbound, "status": {"bindingClusters": ["clusternet-a/child1"], "conditions": [
        {"type": "Scheduled", "status": "True", "reason": "Scheduled"}]}}  # fmt: skip
    upsert(controller.subscriptions, bound)
    assert len(controller.queue) == 0  # gathered
    clock.advance(0.2)
    upsert(controller.descriptions, labelled("clusternet-a", "Success", 1))
    clock.advance(0.3)
    assert await drain(controller) == ["team-a/web"]
    (write,) = client.patches
    scheduled, deployed = status_of(write)["conditions"]
    assert scheduled["type"] == "Scheduled"  # kept, and tested: not overwritten if stale
    assert deployed["reason"] == "Deployed"
    assert [e[1] for e in recorder.events] == ["Deployed"]


async def test_a_subscription_nothing_selects_says_so_after_the_window(ctrl: Any) -> None:
    controller, client, recorder, clock = ctrl
    upsert(controller.subscriptions, subscription([DEPLOY]))
    assert await drain(controller) == []
    clock.advance(0.5)
    assert await drain(controller) == ["team-a/web"]
    (write,) = client.patches
    assert [c["reason"] for c in status_of(write)["conditions"]] == ["NothingToDeploy"]
    assert [e[1] for e in recorder.events] == ["NothingToDeploy"]


async def test_subscriptions_listed_at_start_are_reconciled_at_once(ctrl: Any) -> None:
    controller, _, _, _ = ctrl
    upsert(controller.subscriptions, subscription([NS], {"bindingClusters": ["ns/c1"]}))
    assert await drain(controller) == ["team-a/web"]


async def test_a_first_rollout_under_way_is_no_event(ctrl: Any) -> None:
    controller, client, recorder, _ = ctrl
    upsert(controller.clusters, {"metadata": {"name": "child1", "namespace": "clusternet-a"},
                                 "spec": {"clusterId": "id-1"}})  # fmt: skip
    upsert(
        controller.subscriptions,
        subscription([DEPLOY], {"bindingClusters": ["clusternet-a/child1"]}),
    )
    await drain(controller)
    ((_, condition),) = [(p, status_of(p)["conditions"][0]) for p in client.patches]
    assert condition["reason"] == "Pending"  # written, so `kubectl get` shows it
    assert recorder.events == []  # but not announced: only its end (or a failure) is


async def test_a_render_error_on_a_base_brings_back_its_subscription(ctrl: Any) -> None:
    controller, client, recorder, clock = ctrl
    sub = subscription([DEPLOY], {"bindingClusters": ["clusternet-a/child1"]})
    upsert(controller.subscriptions, sub)
    upsert(controller.bases, base("clusternet-a"))
    await drain(controller)
    client.patches.clear()
    upsert(controller.bases, {**base("clusternet-a"), "spec": {"feeds": [DEPLOY]}})
    assert len(controller.queue) == 0  # nothing the condition reads changed
    upsert(controller.bases, base("clusternet-a", MISSING))
    clock.advance(0.5)  # gathered like Description events
    assert await drain(controller) == ["team-a/web"]
    (write,) = client.patches
    (condition,) = status_of(write)["conditions"]
    assert condition["reason"] == "InvalidInput"
    assert MISSING in condition["message"]
    assert recorder.events[-1][:2] == ("Warning", "InvalidInput")


@pytest.mark.parametrize(
    "failure",
    [
        Conflict(409, {"reason": "Conflict", "message": "the object has been modified"}),
        # a failed test op: the binding, the feeds or the conditions changed meanwhile
        Invalid(422, {"reason": "Invalid", "message": "the server rejected our request due to "
                      "an error in our request"}),
    ],
)  # fmt: skip
async def test_a_conflict_is_retried(ctrl: Any, failure: Exception) -> None:
    controller, client, _, clock = ctrl
    sub = subscription([NS])
    sub["metadata"]["resourceVersion"] = "10"
    client.fail = failure
    upsert(controller.subscriptions, sub)
    await drain(controller)
    assert client.patches == []
    client.fail = None
    clock.advance(1)
    assert await drain(controller) == ["team-a/web"]
    assert len(client.patches) == 1


async def test_a_cluster_id_change_brings_back_its_subscriptions(ctrl: Any) -> None:
    controller, _, _, _ = ctrl
    sub = subscription([NS], {"bindingClusters": ["clusternet-a/child1"]})
    upsert(controller.subscriptions, sub)
    await drain(controller)
    cluster = {"metadata": {"name": "child1", "namespace": "clusternet-a"}, "spec": {}}
    upsert(controller.clusters, cluster)
    assert await drain(controller) == ["team-a/web"]
    upsert(controller.clusters, {**cluster, "status": {"readyz": True}})
    assert await drain(controller) == []
    upsert(controller.clusters, {**cluster, "spec": {"clusterId": "id-9"}})
    assert await drain(controller) == ["team-a/web"]


def test_a_successful_helm_description_makes_its_charts_available() -> None:
    chart = {"apiVersion": "apps.clusternet.io/v1alpha1", "kind": "HelmChart",
             "namespace": "default", "name": "redis"}  # fmt: skip
    helm = description("clusternet-a")
    helm["spec"] = {"deployer": "Helm", "charts": [{"namespace": "default", "name": "redis"}]}
    installing = description("clusternet-b", phase="Installing")
    installing["spec"] = helm["spec"]
    (entry,) = aggregate([chart], CLUSTERS, [helm, installing])
    assert [d["available"] for d in entry["feedStatusDetails"]] == [True, False]
