"""Subscription → Bases → Descriptions against real control planes (spec §4.2-§4.6, §4.8).

The scheduler, FeedInventory, Subscription and Base controllers are the ones
`clusternet local up` runs.  Every wait lists and then watches the objects until a predicate
holds (bounded by a timeout); events, which these tests read only to check a reason, are
waited for with ``wait_until``.  A deployer may be running in the same environment and
deploy (and report on) the Descriptions: nothing here assumes they stay undeployed.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import json
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Any

from clusternet.apis import known, naming
from clusternet.kube import Gone, KubeClient
from clusternet.local.testing import Clusters, wait_until

APPS = "apps.clusternet.io/v1alpha1"
Objects = dict[str, dict[str, Any]]


@asynccontextmanager
async def parent_client(c: Clusters) -> AsyncIterator[KubeClient]:
    async with KubeClient.from_kubeconfig(c.kubeconfig, context="parent") as client:
        yield client


async def wait_objects(
    client: KubeClient,
    kind: str,
    predicate: Callable[[Objects], bool],
    *,
    label_selector: str | None = None,
    namespace: str | None = None,
    within: float = 60,
    what: str = "",
    show: Callable[[dict[str, Any]], Any] = lambda obj: obj["metadata"]["resourceVersion"],
) -> Objects:
    """List, then watch, the objects of ``kind`` (``namespace/name`` → object) until
    ``predicate`` holds for the whole set."""
    objects: Objects = {}

    def key(obj: dict[str, Any]) -> str:
        return f"{obj['metadata'].get('namespace', '')}/{obj['metadata']['name']}"

    try:
        async with asyncio.timeout(within):
            while True:
                listed = await client.list(
                    APPS, kind, namespace=namespace, label_selector=label_selector
                )
                objects = {key(o): o for o in listed["items"]}
                if predicate(objects):
                    return objects
                with suppress(Gone):
                    async with client.watch(
                        APPS,
                        kind,
                        namespace=namespace,
                        label_selector=label_selector,
                        resource_version=listed["metadata"]["resourceVersion"],
                        timeout_seconds=int(within) + 5,
                    ) as events:
                        async for event in events:
                            if event.type == "DELETED":
                                objects.pop(key(event.object), None)
                            elif event.type in ("ADDED", "MODIFIED"):
                                objects[key(event.object)] = event.object
                            else:
                                continue
                            if predicate(objects):
                                return objects
    except TimeoutError:
        raise AssertionError(
            f"{kind}s ({what or label_selector}) did not get there in {within}s: "
            f"{json.dumps({k: show(o) for k, o in objects.items()}, indent=1)}"
        ) from None


@asynccontextmanager
async def logs_on_failure(c: Clusters) -> AsyncIterator[None]:
    """A failed check says what the controller-manager and the scheduler logged last."""
    try:
        yield
    except AssertionError as err:
        tails = []
        for name in ("parent/clusternet-controller-manager", "parent/clusternet-scheduler"):
            record = next((p for p in c.state.processes if p.name == name), None)
            if record is not None:
                text = await asyncio.to_thread(Path(record.log).read_text)
                lines = text.splitlines()[-30:]
                tails.append(f"--- {name}:\n" + "\n".join(lines))
        raise AssertionError(f"{err}\n" + "\n".join(tails)) from err


def managed_clusters(c: Clusters) -> dict[str, str]:
    """child name → its dedicated namespace."""
    items = c.kubectl("parent").json("get", "managedclusters", "-A")["items"]
    return {m["metadata"]["name"]: m["metadata"]["namespace"] for m in items}


def label_cluster(c: Clusters, namespace: str, name: str, *labels: str) -> None:
    c.kubectl("parent")("label", "managedcluster", name, "-n", namespace, "--overwrite", *labels)


def deployment(namespace: str, replicas: int) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": namespace},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "containers": [
                        {
                            "name": "c",
                            "image": "nginx",
                            "resources": {"requests": {"cpu": "100m"}},
                        }
                    ]
                },
            },
        },
    }


def config_map(namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "settings", "namespace": namespace},
        "data": {"mode": "fast"},
    }


def feed(obj: dict[str, Any]) -> dict[str, str]:
    meta = obj["metadata"]
    return {
        "apiVersion": obj["apiVersion"],
        "kind": obj["kind"],
        "namespace": meta["namespace"],
        "name": meta["name"],
    }


def store_manifest(c: Clusters, template: dict[str, Any], plural: str) -> None:
    c.kubectl("parent").apply(json.dumps(naming.manifest(template, plural)))


def localization(
    name: str, namespace: str, target: dict[str, Any], patch: Any, policy: str, **spec: Any
) -> str:
    return json.dumps(
        {
            "apiVersion": APPS,
            "kind": "Localization",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {
                "overridePolicy": policy,
                "priority": spec.pop("priority", 500),
                "feed": target,
                "overrides": [
                    {
                        "name": name,
                        "type": spec.pop("type", "MergePatch"),
                        "value": json.dumps(patch),
                    }
                ],
            },
        }
    )


def rendered(desc: dict[str, Any]) -> list[dict[str, Any]]:
    return [json.loads(base64.b64decode(raw)) for raw in desc["spec"].get("raw") or ()]


def replicas_in(desc: dict[str, Any] | None) -> int | None:
    if desc is None:
        return None
    found = [o["spec"]["replicas"] for o in rendered(desc) if o["kind"] == "Deployment"]
    return found[0] if found else None


def one_per(namespaces: list[str]) -> Callable[[Objects], bool]:
    wanted = sorted(namespaces)
    return lambda objs: sorted(o["metadata"]["namespace"] for o in objs.values()) == wanted


def events(c: Clusters, namespace: str, name: str, reason: str) -> list[str]:
    listed = c.kubectl("parent").json(
        "get", "events", "-n", namespace,
        "--field-selector", f"involvedObject.name={name},reason={reason}",
    )  # fmt: skip
    return [e["message"] for e in listed["items"]]


async def delete_subscription_and_wait(
    c: Clusters, client: KubeClient, namespace: str, name: str, sub_uid: str
) -> None:
    """Delete the Subscription; its Bases, their Descriptions and then itself must go."""
    c.kubectl("parent")("delete", "subscription", name, "-n", namespace, "--wait=false")
    selector = f"{known.CONFIG_SUBSCRIPTION_UID_LABEL}={sub_uid}"

    await wait_objects(client, "Description", lambda objs: not objs, label_selector=selector)
    await wait_objects(client, "Base", lambda objs: not objs, label_selector=selector)
    await wait_objects(
        client, "Subscription", lambda objs: f"{namespace}/{name}" not in objs, namespace=namespace
    )


async def test_replication_renders_one_description_per_cluster(
    clusters: Clusters, namespace: str
) -> None:
    dedicated = managed_clusters(clusters)
    ns1, ns2 = dedicated["child1"], dedicated["child2"]
    group = f"t-{uuid.uuid4().hex[:6]}.example.com/pipeline"
    label_cluster(clusters, ns1, "child1", f"{group}=yes")
    label_cluster(clusters, ns2, "child2", f"{group}=yes")
    kc = clusters.kubectl("parent")
    web, settings = deployment(namespace, 3), config_map(namespace)
    store_manifest(clusters, settings, "configmaps")  # the Deployment's Manifest comes later
    sub_name = "everywhere"
    try:
        kc.apply(json.dumps({
            "apiVersion": APPS, "kind": "Subscription",
            "metadata": {"name": sub_name, "namespace": namespace},
            "spec": {
                "subscribers": [{"clusterAffinity": {"matchLabels": {group: "yes"}}}],
                "feeds": [feed(settings), feed(web)],
            },
        }))  # fmt: skip
        async with logs_on_failure(clusters), parent_client(clusters) as client:
            sub = await client.get(APPS, "Subscription", sub_name, namespace=namespace)
            uid = sub["metadata"]["uid"]
            selector = f"{known.CONFIG_SUBSCRIPTION_UID_LABEL}={uid}"
            bases = await wait_objects(
                client, "Base", one_per([ns1, ns2]), label_selector=selector, within=90
            )
            sub = await client.get(APPS, "Subscription", sub_name, namespace=namespace)
            assert known.APP_FINALIZER in sub["metadata"]["finalizers"]
            assert sub["metadata"]["labels"][uid] == "Subscription"
            by_ns = {b["metadata"]["namespace"]: b for b in bases.values()}
            for ns, base in by_ns.items():
                meta = base["metadata"]
                assert meta["name"].startswith(f"{sub_name}-")
                assert len(meta["name"]) == len(sub_name) + 6
                assert known.APP_FINALIZER in meta["finalizers"]
                assert meta["labels"][known.CONFIG_KIND_LABEL] == "Subscription"
                assert meta["labels"][known.CONFIG_SUBSCRIPTION_NAME_LABEL] == sub_name
                cluster = "child1" if ns == ns1 else "child2"
                assert meta["labels"][known.CLUSTER_NAME_LABEL] == cluster
                assert base["spec"]["feeds"] == [feed(settings), feed(web)]

            # The Deployment's Manifest is missing: the Base says so (the ConfigMap is not held
            # up; see test_distribution_bad_input.py).
            base1 = by_ns[ns1]["metadata"]["name"]
            wait_until(
                lambda: events(clusters, ns1, base1, "NonexistentDeployment"),
                "a NonexistentDeployment event on the Base",
            )
            store_manifest(clusters, web, "deployments")

            def generic_with(replicas: dict[str, int]) -> Callable[[Objects], bool]:
                def check(objs: Objects) -> bool:
                    found = {
                        o["metadata"]["namespace"]: replicas_in(o)
                        for o in objs.values()
                        if o["metadata"]["name"].endswith("-generic")
                    }
                    return found == replicas

                return check

            async def wait_generic(replicas: dict[str, int]) -> Objects:
                return await wait_objects(
                    client,
                    "Description",
                    generic_with(replicas),
                    label_selector=selector,
                    show=replicas_in,
                )

            descs = await wait_generic({ns1: 3, ns2: 3})
            for desc in descs.values():
                meta = desc["metadata"]
                base = by_ns[meta["namespace"]]
                assert meta["name"] == f"{base['metadata']['name']}-generic"
                assert desc["spec"]["deployer"] == "Generic"
                assert known.APP_FINALIZER in meta["finalizers"]
                (owner,) = meta["ownerReferences"]
                assert (owner["kind"], owner["uid"], owner["controller"]) == (
                    "Base",
                    base["metadata"]["uid"],
                    True,
                )
                labels = meta["labels"]
                assert labels[known.CONFIG_KIND_LABEL] == "Base"
                assert labels[known.CONFIG_NAME_LABEL] == base["metadata"]["name"]
                assert labels[known.CONFIG_UID_LABEL] == base["metadata"]["uid"]
                assert labels[known.CONFIG_SUBSCRIPTION_NAME_LABEL] == sub_name
                assert labels[known.CONFIG_SUBSCRIPTION_NAMESPACE_LABEL] == namespace
                assert (
                    labels[known.CLUSTER_ID_LABEL]
                    == base["metadata"]["labels"][known.CLUSTER_ID_LABEL]
                )
                objects = rendered(desc)
                assert [o["kind"] for o in objects] == ["ConfigMap", "Deployment"]
                assert objects[0]["data"] == {"mode": "fast"}
            before2 = next(d for d in descs.values() if d["metadata"]["namespace"] == ns2)

            # ApplyNow Localization in child1's namespace: only child1's Description changes.
            kc.apply(localization("one", ns1, feed(web), {"spec": {"replicas": 1}}, "ApplyNow"))
            descs = await wait_generic({ns1: 1, ns2: 3})
            after2 = next(d for d in descs.values() if d["metadata"]["namespace"] == ns2)
            assert after2["spec"] == before2["spec"]

            # A JSON patch on a missing path: skipped (upstream's semantics) but reported; the
            # other overrides still apply.
            kc.apply(localization(
                "broken", ns1, feed(web), [{"op": "replace", "path": "/spec/nope/x", "value": 1}],
                "ApplyNow", type="JSONPatch", priority=900,
            ))  # fmt: skip
            wait_until(
                lambda: events(clusters, ns1, base1, "SkippedOverride"),
                "a SkippedOverride event on the Base",
            )
            desc1 = await client.get(APPS, "Description", f"{base1}-generic", namespace=ns1)
            assert replicas_in(desc1) == 1
            kc("delete", "localization", "broken", "-n", ns1)

            # Deleting the ApplyNow Localization rolls child1 back.
            kc("delete", "localization", "one", "-n", ns1)
            await wait_generic({ns1: 3, ns2: 3})

            # ApplyLater in child2: its own event renders nothing...
            kc.apply(localization("later", ns2, feed(web), {"spec": {"replicas": 5}}, "ApplyLater"))
            # ...while a later ApplyNow one in child1 is rendered (so the controller has seen
            # the ApplyLater one's event by then).
            kc.apply(localization("now", ns1, feed(web), {"spec": {"replicas": 2}}, "ApplyNow"))
            await wait_generic({ns1: 2, ns2: 3})
            # ...it takes effect at the next render of child2's Base, at the latest when the
            # template changes (another cause, e.g. a cluster label change, may come first:
            # that is ApplyLater's contract, so only the end state is asserted).
            changed = copy.deepcopy(web)
            changed["spec"]["replicas"] = 4
            changed["metadata"]["labels"] = {"edited": "yes"}
            store_manifest(clusters, changed, "deployments")

            def edited_with(replicas: dict[str, int]) -> Callable[[Objects], bool]:
                counts = generic_with(replicas)

                def check(objs: Objects) -> bool:
                    return counts(objs) and all(
                        next(o for o in rendered(d) if o["kind"] == "Deployment")["metadata"].get(
                            "labels"
                        )
                        == {"edited": "yes"}
                        for d in objs.values()
                    )

                return check

            await wait_objects(
                client,
                "Description",
                edited_with({ns1: 2, ns2: 5}),
                label_selector=selector,
                show=replicas_in,
            )

            # Unbinding child2 (its label goes): its Base and Description go.
            label_cluster(clusters, ns2, "child2", f"{group}-")

            def gone_from_child2(objs: Objects) -> bool:
                return {o["metadata"]["namespace"] for o in objs.values()} == {ns1}

            await wait_objects(
                client, "Description", gone_from_child2, label_selector=selector, within=90
            )
            await wait_objects(client, "Base", one_per([ns1]), label_selector=selector)

            await delete_subscription_and_wait(clusters, client, namespace, sub_name, uid)
    finally:
        label_cluster(clusters, ns1, "child1", f"{group}-")
        label_cluster(clusters, ns2, "child2", f"{group}-")
        for ns in (ns1, ns2):
            kc("delete", "localizations", "--all", "-n", ns, "--wait=false", check=False)


async def test_dividing_gets_replica_localizations(clusters: Clusters, namespace: str) -> None:
    dedicated = managed_clusters(clusters)
    ns1, ns2 = dedicated["child1"], dedicated["child2"]
    group = f"t-{uuid.uuid4().hex[:6]}.example.com/divide"
    label_cluster(clusters, ns1, "child1", f"{group}=a")
    label_cluster(clusters, ns2, "child2", f"{group}=b")
    kc = clusters.kubectl("parent")
    web = deployment(namespace, 6)
    store_manifest(clusters, web, "deployments")
    sub_name = "divided"
    try:
        kc.apply(json.dumps({
            "apiVersion": APPS, "kind": "Subscription",
            "metadata": {"name": sub_name, "namespace": namespace},
            "spec": {
                "schedulingStrategy": "Dividing", "dividingScheduling": {"type": "Static"},
                "subscribers": [
                    {"clusterAffinity": {"matchLabels": {group: "a"}}, "weight": 1},
                    {"clusterAffinity": {"matchLabels": {group: "b"}}, "weight": 2},
                ],
                "feeds": [feed(web)],
            },
        }))  # fmt: skip
        async with logs_on_failure(clusters), parent_client(clusters) as client:
            sub = await client.get(APPS, "Subscription", sub_name, namespace=namespace)
            uid = sub["metadata"]["uid"]
            locs = await wait_objects(
                client,
                "Localization",
                lambda objs: sorted(
                    (o["metadata"]["namespace"], json.loads(o["spec"]["overrides"][0]["value"])[0]["value"])  # noqa: E501
                    for o in objs.values()
                ) == sorted([(ns1, 2), (ns2, 4)]),
                label_selector=f"{uid}=Subscription",
                within=90,
            )  # fmt: skip
            for loc in locs.values():
                spec = loc["spec"]
                assert (spec["overridePolicy"], spec["priority"]) == ("ApplyNow", 1000)
                assert spec["feed"] == feed(web)
                (owner,) = loc["metadata"]["ownerReferences"]
                assert owner["kind"] == "Base"

            def divided(objs: Objects) -> bool:
                return {o["metadata"]["namespace"]: replicas_in(o) for o in objs.values()} == {
                    ns1: 2,
                    ns2: 4,
                }

            await wait_objects(
                client,
                "Description",
                divided,
                label_selector=f"{known.CONFIG_SUBSCRIPTION_UID_LABEL}={uid}",
            )
            await delete_subscription_and_wait(clusters, client, namespace, sub_name, uid)
            # The replica Localizations went with their Bases (owner references).
            await wait_objects(
                client, "Localization", lambda objs: not objs, label_selector=f"{uid}=Subscription"
            )
    finally:
        label_cluster(clusters, ns1, "child1", f"{group}-")
        label_cluster(clusters, ns2, "child2", f"{group}-")
