"""The pipeline's finalizer patch against a real API server.

``finalizers.ensure_finalizer`` is a JSON patch guarded by ``test`` ops instead of an update
with the cached resourceVersion: a write elsewhere on the object (the scheduler's status write
on a new Subscription) must not make it fail, a concurrent change of the finalizers or labels
must (as a Conflict, retried by the caller), and an absent list must be testable as null.
A ConfigMap stands in for the pipeline's kinds: the patch only touches metadata.
"""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator
from typing import Any

import pytest

from clusternet.apis import known
from clusternet.controllermanager import finalizers
from clusternet.kube import Conflict, Invalid, KubeClient, PatchType
from clusternet.local.testing import Clusters

OURS = known.APP_FINALIZER


@pytest.fixture
async def parent(clusters: Clusters) -> AsyncIterator[KubeClient]:
    async with KubeClient.from_kubeconfig(clusters.kubeconfig, context="parent") as client:
        yield client


async def created(client: KubeClient, namespace: str, name: str, **meta: Any) -> dict[str, Any]:
    body = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace, **meta},
        "data": {"a": "1"},
    }
    result: dict[str, Any] = await client.create(body)
    return result


async def release(client: KubeClient, obj: dict[str, Any]) -> None:
    meta = obj["metadata"]
    await client.patch(
        "v1", "ConfigMap", meta["name"], {"metadata": {"finalizers": None}},
        namespace=meta["namespace"],
    )  # fmt: skip


async def test_a_write_elsewhere_does_not_fail_the_patch(
    parent: KubeClient, namespace: str
) -> None:
    cached = await created(parent, namespace, "elsewhere")
    # Someone writes the object after the cache saw it (resourceVersion moves on).
    await parent.patch("v1", "ConfigMap", "elsewhere", {"data": {"a": "2"}}, namespace=namespace)

    patched = await finalizers.ensure_finalizer(parent, cached, labels={"uid-s": "Subscription"})

    assert patched is not None
    assert patched["metadata"]["finalizers"] == [OURS]
    assert patched["metadata"]["labels"] == {"uid-s": "Subscription"}
    assert patched["data"] == {"a": "2"}  # the other write is kept
    # Nothing missing any more: no write at all.
    assert await finalizers.ensure_finalizer(parent, patched, labels={"uid-s": "Subscription"}) is (
        patched
    )
    await release(parent, patched)


async def test_existing_finalizers_and_labels_are_kept(parent: KubeClient, namespace: str) -> None:
    cached = await created(
        parent, namespace, "kept", finalizers=["example.com/other"], labels={"keep": "me"}
    )
    patched = await finalizers.ensure_finalizer(parent, cached, labels={"x.io/uid": "Base"})
    assert patched is not None
    assert patched["metadata"]["finalizers"] == ["example.com/other", OURS]
    assert patched["metadata"]["labels"] == {"keep": "me", "x.io/uid": "Base"}
    await release(parent, patched)


async def test_a_label_the_server_rejects_is_invalid_not_a_conflict(
    parent: KubeClient, namespace: str
) -> None:
    cached = await created(parent, namespace, "rejected")
    with pytest.raises(Invalid) as raised:
        await finalizers.ensure_finalizer(parent, cached, labels={"x.io/a~b": "v"})
    assert "metadata.labels" in raised.value.message


async def test_a_deletion_begun_meanwhile_is_a_conflict(parent: KubeClient, namespace: str) -> None:
    cached = await created(parent, namespace, "deleting", finalizers=["example.com/hold"])
    await parent.delete("v1", "ConfigMap", "deleting", namespace=namespace)
    with pytest.raises(Conflict):
        await finalizers.ensure_finalizer(parent, cached)
    await release(parent, cached)


@pytest.mark.parametrize(
    ("initial", "theirs"),
    [
        ({}, {"finalizers": ["example.com/theirs"]}),  # absent list, tested as null
        ({"finalizers": ["example.com/a"]}, {"finalizers": ["example.com/b"]}),
        ({}, {"labels": {"theirs": "x"}}),  # absent labels, tested as null
    ],
)
async def test_a_concurrent_change_of_finalizers_or_labels_is_a_conflict(
    parent: KubeClient, namespace: str, initial: dict[str, Any], theirs: dict[str, Any]
) -> None:
    cached = await created(parent, namespace, "raced", **copy.deepcopy(initial))
    await parent.patch("v1", "ConfigMap", "raced", {"metadata": theirs}, namespace=namespace)

    with pytest.raises(Conflict) as raised:
        await finalizers.ensure_finalizer(parent, cached, labels={"uid-s": "Subscription"})
    assert raised.value.code == 422  # a failed test op, retried as a conflict

    current = await parent.get("v1", "ConfigMap", "raced", namespace=namespace)
    for key, value in theirs.items():
        assert current["metadata"][key] == value  # theirs is not overwritten
    await release(parent, current)


async def test_a_test_op_matches_strings_go_escapes(parent: KubeClient, namespace: str) -> None:
    """kube-apiserver compares a ``test`` op's string with the stored one as the raw bytes Go
    writes (``<`` as ``\\u003c``, UTF-8 as is): a condition message with ``<`` failed every
    guarded status write until the client sent JSON patches the same way."""
    text = 'parse error in "<unicode string>" & caf\u00e9'
    await created(parent, namespace, "strings", annotations={"message": text})
    patched = await parent.patch(
        "v1", "ConfigMap", "strings",
        [{"op": "test", "path": "/metadata/annotations/message", "value": text},
         {"op": "add", "path": "/data/b", "value": "2"}],
        patch_type=PatchType.JSON, namespace=namespace,
    )  # fmt: skip
    assert patched["data"] == {"a": "1", "b": "2"}
