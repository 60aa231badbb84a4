"""The Subscription controller's Base expectations (edge cases with fakes: the order in which
a create call and its watch event arrive cannot be arranged against a real API server), and
its events."""

from __future__ import annotations

import copy
import itertools
from typing import Any

import jsonpatch

from clusternet.apis import known
from clusternet.controllermanager.subscription import SubscriptionController
from clusternet.kube import ClusterConfig, KubeClient, PatchType
from clusternet.runtime import SharedInformerFactory

NAMESPACE = "clusternet-a"
SUBSCRIPTION: dict[str, Any] = {
    "apiVersion": "apps.clusternet.io/v1alpha1",
    "kind": "Subscription",
    "metadata": {"name": "web", "namespace": "default", "uid": "sub-uid"},
    "spec": {
        "subscribers": [{"clusterAffinity": {}}],
        "feeds": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "c", "namespace": "default"}],
    },
    "status": {"bindingClusters": [f"{NAMESPACE}/child1"]},
}


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, str]] = []

    def event(self, _obj: Any, kind: str, reason: str, message: str) -> None:
        self.events.append((kind, reason, message))


class RacingClient:
    """Creates a Base and delivers its watch event *before* the create call returns, as a
    fast informer may."""

    def __init__(self) -> None:
        self.controller: SubscriptionController | None = None
        self.created: list[dict[str, Any]] = []
        self._names = itertools.count()

    async def update(self, obj: dict[str, Any]) -> dict[str, Any]:
        return obj

    async def patch(
        self, _api_version: str, kind: str, name: str, body: Any, **kwargs: Any
    ) -> dict[str, Any]:
        if kwargs.get("patch_type") is not PatchType.JSON:
            return {}
        # The finalizer patch, applied to the cached object (the API server accepts a
        # test of null for a missing member; jsonpatch does not, so those are dropped).
        assert self.controller is not None
        current = self.controller.subscriptions.store.get(f"{kwargs['namespace']}/{name}")
        ops = [op for op in body if not (op["op"] == "test" and op["value"] is None)]
        patched: dict[str, Any] = jsonpatch.apply_patch(current, ops)
        assert patched["kind"] == kind
        return patched

    async def create(self, obj: dict[str, Any]) -> dict[str, Any]:
        assert self.controller is not None
        created = copy.deepcopy(obj)
        n = next(self._names)
        created["metadata"]["name"] = f"{obj['metadata']['generateName']}{n}"
        created["metadata"]["uid"] = f"base-{n}"
        self.created.append(created)
        self.controller.bases.store.upsert(created)
        self.controller._base_added(created)  # the add event, first
        return created


def controller_with(client: RacingClient, clusters: int = 1) -> SubscriptionController:
    informers = SharedInformerFactory(KubeClient(ClusterConfig(server="https://127.0.0.1:1")))
    controller = SubscriptionController(
        client,  # type: ignore[arg-type]
        informers,
        Recorder(),  # type: ignore[arg-type]
        registry=None,
    )
    client.controller = controller
    for n in range(1, clusters + 1):
        controller.namespaces.store.upsert(
            {
                "metadata": {
                    "name": NAMESPACE if n == 1 else f"clusternet-{n}",
                    "labels": {
                        known.CLUSTER_ID_LABEL: f"id-{n}",
                        known.CLUSTER_NAME_LABEL: f"child{n}",
                    },
                }
            }
        )
    return controller


async def test_a_cluster_bound_again_soon_gets_its_base_again() -> None:
    client = RacingClient()
    controller = controller_with(client)
    sub = copy.deepcopy(SUBSCRIPTION)
    controller.subscriptions.store.upsert(sub)
    await controller.reconcile("default/web")
    assert len(client.created) == 1
    # the cluster is lost: the scheduler unbinds it and its Base goes
    controller.bases.store.delete(f"{NAMESPACE}/{client.created[0]['metadata']['name']}")
    sub["status"]["bindingClusters"] = []
    await controller.reconcile("default/web")
    # back a moment later: bound again, and a new Base at once (no stale expectation)
    sub["status"]["bindingClusters"] = [f"{NAMESPACE}/child1"]
    await controller.reconcile("default/web")
    assert len(client.created) == 2


async def test_bases_created_in_one_reconcile_are_one_event() -> None:
    """Profiled under a burst: an event per Base was a fifth of the controller-manager's
    writes to the parent."""
    client = RacingClient()
    controller = controller_with(client, clusters=12)
    sub = copy.deepcopy(SUBSCRIPTION)
    sub["status"]["bindingClusters"] = [NAMESPACE + "/child1"] + [
        f"clusternet-{n}/child{n}" for n in range(2, 13)
    ]
    controller.subscriptions.store.upsert(sub)
    await controller.reconcile("default/web")
    assert len(client.created) == 12
    recorder = controller.recorder
    ((kind, reason, message),) = recorder.events  # type: ignore[attr-defined]
    assert (kind, reason) == ("Normal", "BaseCreated")
    assert message.startswith(f"Bases {NAMESPACE}/web-0, clusternet-2/web-1, ")
    assert message.endswith("clusternet-10/web-9 and 2 more created")
