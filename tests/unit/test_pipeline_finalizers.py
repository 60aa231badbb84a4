"""The finalizer plumbing the Subscription and Base controllers share."""

from __future__ import annotations

from typing import Any

import pytest

from clusternet.apis import known
from clusternet.controllermanager import finalizers
from clusternet.kube import Conflict, Forbidden, NotFound

APPS = "apps.clusternet.io/v1alpha1"


def obj(
    kind: str,
    name: str,
    *,
    finalizers: list[str] | None = None,
    deleting: bool = False,
    **labels: str,
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": "ns", "uid": f"uid-{name}",
                            "resourceVersion": "7", "labels": labels}  # fmt: skip
    if finalizers is not None:
        meta["finalizers"] = finalizers
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return {"apiVersion": APPS, "kind": kind, "metadata": meta}


def error(cls: type[Exception], code: int) -> Exception:
    return cls(code, {"reason": cls.__name__, "message": "no"})  # type: ignore[call-arg]


class FakeClient:
    def __init__(self, fail: dict[str, Exception] | None = None) -> None:
        self.updates: list[dict[str, Any]] = []
        self.deletes: list[tuple[str, str, str, str | None]] = []
        self.fail = fail or {}

    async def update(self, obj: dict[str, Any]) -> dict[str, Any]:
        if "update" in self.fail:
            raise self.fail["update"]
        self.updates.append(obj)
        return {**obj, "metadata": {**obj["metadata"], "resourceVersion": "8"}}

    async def delete(
        self, api_version: str, kind: str, name: str, *, namespace: str | None
    ) -> None:
        if name in self.fail:
            raise self.fail[name]
        self.deletes.append((api_version, kind, name, namespace))


async def test_ensure_finalizer_writes_only_what_is_missing() -> None:
    client: Any = FakeClient()
    done = obj("Base", "b", finalizers=["other", known.APP_FINALIZER], ref="Subscription")
    assert await finalizers.ensure_finalizer(client, done, labels={"ref": "Subscription"}) is done
    assert client.updates == []

    bare = obj("Subscription", "s", keep="me")
    updated = await finalizers.ensure_finalizer(client, bare, labels={"ref": "Subscription"})
    assert updated is not None
    assert updated["metadata"]["resourceVersion"] == "8"
    (written,) = client.updates
    assert written["metadata"]["finalizers"] == [known.APP_FINALIZER]
    assert written["metadata"]["labels"] == {"keep": "me", "ref": "Subscription"}
    assert written["metadata"]["resourceVersion"] == "7"  # optimistic concurrency


async def test_ensure_finalizer_of_a_deleted_object_and_on_conflict() -> None:
    gone: Any = FakeClient({"update": error(NotFound, 404)})
    assert await finalizers.ensure_finalizer(gone, obj("Base", "b")) is None
    conflict: Any = FakeClient({"update": error(Conflict, 409)})
    with pytest.raises(Conflict):  # retried with backoff by the caller's queue
        await finalizers.ensure_finalizer(conflict, obj("Base", "b"))


@pytest.mark.parametrize(
    ("fail", "expected"),
    [
        (None, None),
        (error(NotFound, 404), None),  # gone already is fine
        (error(Forbidden, 403), "deleting Base ns/b: 403 Forbidden: no"),
    ],
)
async def test_delete(fail: Exception | None, expected: str | None) -> None:
    client: Any = FakeClient({"b": fail} if fail else None)
    assert await finalizers.delete(client, obj("Base", "b")) == expected


async def test_release_waits_for_the_dependents_then_drops_only_its_finalizer() -> None:
    client: Any = FakeClient()
    owner = obj("Base", "owner", finalizers=["keep", known.APP_FINALIZER], deleting=True)
    dependents = [obj("Description", "going", deleting=True), obj("Description", "live")]
    assert not await finalizers.release_after_dependents(client, owner, dependents)
    assert [d[2] for d in client.deletes] == ["live"]  # the one being deleted is left alone
    assert client.updates == []  # waits for the delete events

    assert await finalizers.release_after_dependents(client, owner, [])
    (written,) = client.updates
    assert written["metadata"]["finalizers"] == ["keep"]

    client.updates.clear()
    released = obj("Base", "owner", finalizers=["keep"], deleting=True)
    assert await finalizers.release_after_dependents(client, released, [])
    assert client.updates == []  # nothing of ours to drop


async def test_release_raises_when_a_dependent_cannot_be_deleted() -> None:
    client: Any = FakeClient({"live": error(Forbidden, 403)})
    owner = obj("Base", "owner", finalizers=[known.APP_FINALIZER], deleting=True)
    with pytest.raises(RuntimeError, match="deleting Description ns/live"):
        await finalizers.release_after_dependents(client, owner, [obj("Description", "live")])
    assert client.updates == []
