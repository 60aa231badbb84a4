"""Feed finalizers and in-use protection: the decision table of spec §4.1/§4.8."""

from __future__ import annotations

from typing import Any

import pytest

from clusternet.apis import known
from clusternet.controllermanager.feedinventory import feed_identity
from clusternet.controllermanager.feedprotection import (
    HELM_CHART,
    MANIFEST,
    Decision,
    FeedProtectionController,
    decide,
    describe,
    feed_of,
    protection_message,
    removal_patch,
    subscription_feed_identities,
    wanted_finalizers,
)
from clusternet.kube import PatchType
from clusternet.runtime import SharedInformerFactory

APP, PROTECT = known.APP_FINALIZER, known.FEED_PROTECTION_FINALIZER
WEB = {"apiVersion": "apps/v1", "kind": "Deployment", "namespace": "foo", "name": "web"}
NS = {"apiVersion": "v1", "kind": "Namespace", "name": "foo"}
WEB_ID = feed_identity("apps/v1", "Deployment", "foo", "web")


def manifest(*finalizers: str, deleting: bool = False) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": "deployments.foo.web",
        "namespace": known.RESERVED_NAMESPACE,
        "labels": {
            known.CONFIG_GROUP_LABEL: "apps",
            known.CONFIG_VERSION_LABEL: "v1",
            known.CONFIG_KIND_LABEL: "Deployment",
            known.CONFIG_NAMESPACE_LABEL: "foo",
            known.CONFIG_NAME_LABEL: "web",
        },
        "finalizers": list(finalizers),
    }
    if deleting:
        meta["deletionTimestamp"] = "2026-11-28T00:00:00Z"
    return {"metadata": meta, "template": {**WEB, "metadata": {"name": "web"}}}


def sub(*feeds: dict[str, str]) -> dict[str, Any]:
    return {"metadata": {"name": "app", "namespace": "default"}, "spec": {"feeds": list(feeds)}}


@pytest.mark.parametrize(
    ("finalizers", "deleting", "protection", "refs", "expected"),
    [
        # live feeds get our finalizers, others' are kept
        ((), False, True, {}, Decision("finalize", [APP, PROTECT])),
        (("x",), False, False, {}, Decision("finalize", ["x", APP])),
        ((APP, PROTECT), False, True, {"default/app": sub(WEB)}, Decision("none")),
        # the gate turned off: the protection finalizer goes
        ((APP, PROTECT), False, False, {}, Decision("finalize", [APP])),
        # deleting, in use, gate on: blocked with upstream's text
        ((APP, PROTECT, "x"), True, True, {"default/app": sub(WEB), "b/other": sub(NS, WEB)},
         Decision("block", message="block deleting current Deployment until all Subscriptions "
                  "(including b/other, default/app) that refer this as a feed get deleted")),
        # deleting, unused: released (others' finalizers stay)
        ((APP, PROTECT, "x"), True, True, {}, Decision("release", ["x"])),
        ((APP,), True, False, {}, Decision("release", [])),
        # deleting without the gate: detached from the Subscriptions, then released
        ((APP,), True, False, {"default/app": sub(NS, WEB)},
         Decision("detach", [], detach=["default/app"])),
        # ... unless it is a Subscription's only feed
        ((APP,), True, False, {"default/app": sub(WEB, WEB)},
         Decision("block", message="block deleting current Deployment: it is the only feed of "
                  "Subscriptions (including default/app), which cannot be left without feeds; "
                  "edit or delete them")),
        # not ours to hold
        (("x",), True, True, {"default/app": sub(WEB)}, Decision("none")),
    ],
)  # fmt: skip
def test_decisions(
    finalizers: tuple[str, ...],
    deleting: bool,
    protection: bool,
    refs: dict[str, Any],
    expected: Decision,
) -> None:
    obj = manifest(*finalizers, deleting=deleting)
    identity, kind = feed_of(MANIFEST, obj)
    assert (identity, kind) == (WEB_ID, "Deployment")
    got = decide(obj, kind=kind, protection=protection, referencing=refs, identity=identity)
    assert got == expected


def test_message_is_upstreams() -> None:
    assert protection_message("Deployment", ["default/app-demo"]) == (
        "block deleting current Deployment until all Subscriptions (including default/app-demo) "
        "that refer this as a feed get deleted"
    )


def test_removal_patch_tests_before_removing_from_the_end() -> None:
    assert removal_patch(sub(WEB, NS, WEB), WEB_ID) == [
        {"op": "test", "path": "/spec/feeds/2", "value": WEB},
        {"op": "remove", "path": "/spec/feeds/2"},
        {"op": "test", "path": "/spec/feeds/0", "value": WEB},
        {"op": "remove", "path": "/spec/feeds/0"},
    ]
    assert removal_patch(sub(NS), WEB_ID) == []


def test_helm_charts_and_manifests_share_the_feed_identity() -> None:
    chart = {"metadata": {"name": "redis", "namespace": "default"}}
    feed = {"apiVersion": "apps.clusternet.io/v1alpha1", "kind": "HelmChart",
            "namespace": "default", "name": "redis"}  # fmt: skip
    assert feed_of(HELM_CHART, chart)[0] == subscription_feed_identities(sub(feed))[0]
    assert subscription_feed_identities(sub(NS, WEB))[1] == WEB_ID
    assert describe(WEB_ID) == "apps/v1 Deployment foo/web"
    assert describe(subscription_feed_identities(sub(NS))[0]) == "v1 Namespace foo"


def test_a_manifest_without_feed_labels_still_gets_the_finalizer() -> None:
    obj = manifest()
    obj["metadata"]["labels"] = {}
    identity, kind = feed_of(MANIFEST, obj)
    assert identity is None
    assert kind == "Deployment"
    assert wanted_finalizers([], False) == [APP]


# --- the controller around the decisions (fake client, informers fed by hand) ---------------


class FakeClient:
    cluster = "fake"

    def __init__(self) -> None:
        self.patches: list[dict[str, Any]] = []

    async def patch(self, api_version: str, kind: str, name: str, patch: Any, **kw: Any) -> Any:
        self.patches.append({"kind": kind, "name": name, "patch": patch, **kw})
        return {}


class FakeRecorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, str]] = []

    def event(self, obj: Any, type: str, reason: str, message: str) -> None:
        self.events.append((type, reason, message))


def feed_informer_add(informer: Any, obj: dict[str, Any]) -> None:
    old = informer.store.upsert(obj)
    for handler in informer._handlers:
        if old is None and handler.on_add:
            handler.on_add(obj)
        elif old is not None and handler.on_update:
            handler.on_update(old, obj)


def feed_informer_delete(informer: Any, obj: dict[str, Any]) -> None:
    informer.store.delete(f"{obj['metadata']['namespace']}/{obj['metadata']['name']}")
    for handler in informer._handlers:
        if handler.on_delete:
            handler.on_delete(obj)


def controller(protection: bool) -> tuple[FeedProtectionController, FakeClient, FakeRecorder]:
    client, recorder = FakeClient(), FakeRecorder()
    informers = SharedInformerFactory(client, registry=None)  # type: ignore[arg-type]
    ctrl = FeedProtectionController(
        client,  # type: ignore[arg-type]
        informers,
        recorder,  # type: ignore[arg-type]
        protection=protection,
        registry=None,
    )
    return ctrl, client, recorder


def live_sub(name: str, *feeds: dict[str, str]) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "default", "resourceVersion": "1"},
        "spec": {"feeds": list(feeds)},
    }


async def drain(ctrl: FeedProtectionController) -> list[tuple[str, str]]:
    items = []
    while len(ctrl.queue):
        item = await ctrl.queue.get()
        items.append(item)
        await ctrl.reconcile(item)
        ctrl.queue.done(item)
    return items


async def test_blocked_until_the_last_subscription_goes() -> None:
    ctrl, client, recorder = controller(protection=True)
    feed_informer_add(ctrl.subscriptions, live_sub("app", WEB))
    deleting = manifest(APP, PROTECT, deleting=True)
    deleting["metadata"]["resourceVersion"] = "7"
    feed_informer_add(ctrl.manifests, deleting)
    assert await drain(ctrl) == [(MANIFEST, "clusternet-reserved/deployments.foo.web")]
    (annotate,) = client.patches
    assert annotate["patch"]["metadata"]["annotations"][known.FEED_PROTECTION_ANNOTATION] == (
        protection_message("Deployment", ["default/app"])
    )
    assert recorder.events[0][:2] == ("Warning", "FeedInUse")
    # The Subscription goes: the Manifest comes back by itself and is released.
    feed_informer_delete(ctrl.subscriptions, live_sub("app", WEB))
    assert await drain(ctrl) == [(MANIFEST, "clusternet-reserved/deployments.foo.web")]
    assert client.patches[-1]["patch"] == {"metadata": {"finalizers": [], "resourceVersion": "7"}}


async def test_without_the_gate_the_feed_leaves_its_subscriptions() -> None:
    ctrl, client, recorder = controller(protection=False)
    feed_informer_add(ctrl.subscriptions, live_sub("app", NS, WEB))
    feed_informer_add(ctrl.subscriptions, live_sub("other", NS))
    deleting = manifest(APP, "x", deleting=True)
    deleting["metadata"]["resourceVersion"] = "7"
    feed_informer_add(ctrl.manifests, deleting)
    await drain(ctrl)
    remove, release = client.patches
    assert (remove["kind"], remove["name"], remove["patch_type"]) == (
        "Subscription",
        "app",
        PatchType.JSON,
    )
    assert remove["patch"] == [
        {"op": "test", "path": "/spec/feeds/1", "value": WEB},
        {"op": "remove", "path": "/spec/feeds/1"},
    ]
    assert release["patch"] == {"metadata": {"finalizers": ["x"], "resourceVersion": "7"}}
    assert recorder.events == [
        ("Normal", "FeedRemoved",
         "feed apps/v1 Deployment foo/web is being deleted; removed it from spec.feeds"),
    ]  # fmt: skip


async def test_live_feeds_get_finalizers_once() -> None:
    ctrl, client, _ = controller(protection=True)
    live = manifest()
    live["metadata"]["resourceVersion"] = "3"
    feed_informer_add(ctrl.manifests, live)
    await drain(ctrl)
    assert [p["patch"] for p in client.patches] == [
        {"metadata": {"finalizers": [APP, PROTECT], "resourceVersion": "3"}}
    ]
    finalized = manifest(APP, PROTECT)
    finalized["metadata"]["resourceVersion"] = "4"
    feed_informer_add(ctrl.manifests, finalized)
    await drain(ctrl)
    assert len(client.patches) == 1
