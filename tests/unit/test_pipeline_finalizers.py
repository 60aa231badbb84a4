"""The finalizer plumbing the Subscription and Base controllers share."""

from __future__ import annotations

from typing import Any

import jsonpatch
import pytest

from clusternet.apis import known
from clusternet.controllermanager import finalizers
from clusternet.kube import Conflict, Forbidden, Invalid, NotFound, PatchType

APPS = "apps.clusternet.io/v1alpha1"
APP_FIN = known.APP_FINALIZER


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


def invalid(message: str, causes: list[dict[str, str]] | None = None) -> Invalid:
    details = {"causes": causes} if causes else {}
    return Invalid(422, {"reason": "Invalid", "message": message, "details": details})


class FakeClient:
    def __init__(self, fail: dict[str, Exception] | None = None) -> None:
        self.updates: list[dict[str, Any]] = []
        self.patches: list[tuple[str, str, str | None, Any, PatchType]] = []
        self.deletes: list[tuple[str, str, str, str | None]] = []
        self.fail = fail or {}

    async def update(self, obj: dict[str, Any]) -> dict[str, Any]:
        if "update" in self.fail:
            raise self.fail["update"]
        self.updates.append(obj)
        return {**obj, "metadata": {**obj["metadata"], "resourceVersion": "8"}}

    async def patch(
        self,
        api_version: str,
        kind: str,
        name: str,
        body: Any,
        *,
        patch_type: PatchType,
        namespace: str | None,
    ) -> dict[str, Any]:
        if "patch" in self.fail:
            raise self.fail["patch"]
        self.patches.append((kind, name, namespace, body, patch_type))
        return {"apiVersion": api_version, "kind": kind, "metadata": {"resourceVersion": "8"}}

    async def delete(
        self, api_version: str, kind: str, name: str, *, namespace: str | None
    ) -> None:
        if name in self.fail:
            raise self.fail[name]
        self.deletes.append((api_version, kind, name, namespace))


@pytest.mark.parametrize(
    ("finalizers_before", "labels_before", "labels", "finalizers_after", "labels_after"),
    [
        # nothing yet: both added, each guarded by a test that it is still absent
        (None, {}, {"uid-s": "Subscription"}, [APP_FIN], {"uid-s": "Subscription"}),
        # someone else's finalizer and labels stay; ours are appended / added
        (["other"], {"keep": "me"}, {"uid-s": "Subscription"}, ["other", APP_FIN],
         {"keep": "me", "uid-s": "Subscription"}),
        # a label of ours with another value is replaced
        ([APP_FIN], {"uid-s": "Base"}, {"uid-s": "Subscription"}, [APP_FIN],
         {"uid-s": "Subscription"}),
        # keys with "/" and "~" are escaped as JSON-pointer tokens
        ([APP_FIN], {"a": "b"}, {"x.io/a~b": "v"}, [APP_FIN], {"a": "b", "x.io/a~b": "v"}),
    ],
)  # fmt: skip
def test_finalizer_patch_applies_to_what_the_cache_saw(
    finalizers_before: list[str] | None,
    labels_before: dict[str, str],
    labels: dict[str, str],
    finalizers_after: list[str],
    labels_after: dict[str, str],
) -> None:
    cached = obj("Subscription", "s", finalizers=finalizers_before, **labels_before)
    ops = finalizers.finalizer_patch(cached, labels=labels)
    # jsonpatch (like RFC 6902) fails a test of an absent member; the API server accepts
    # a test of null there: drop those guards to apply the rest locally.
    local = [op for op in ops if not (op["op"] == "test" and op["value"] is None)]
    if not labels_before:
        del cached["metadata"]["labels"]
    patched = jsonpatch.apply_patch(cached, local)
    assert patched["metadata"]["finalizers"] == finalizers_after
    assert patched["metadata"]["labels"] == labels_after
    assert patched["metadata"]["resourceVersion"] == "7"  # no precondition on the version
    guards = [op["path"] for op in ops if op["op"] == "test"]
    if finalizers_before != finalizers_after:
        assert "/metadata/finalizers" in guards
    if not labels_before:
        assert "/metadata/labels" in guards


def test_finalizer_patch_is_empty_when_nothing_is_missing() -> None:
    done = obj("Base", "b", finalizers=["other", APP_FIN], ref="Subscription")
    assert finalizers.finalizer_patch(done, labels={"ref": "Subscription"}) == []


async def test_ensure_finalizer_writes_only_what_is_missing() -> None:
    client: Any = FakeClient()
    done = obj("Base", "b", finalizers=["other", APP_FIN], ref="Subscription")
    assert await finalizers.ensure_finalizer(client, done, labels={"ref": "Subscription"}) is done
    assert client.patches == []

    bare = obj("Subscription", "s", keep="me")
    updated = await finalizers.ensure_finalizer(client, bare, labels={"ref": "Subscription"})
    assert updated is not None
    assert updated["metadata"]["resourceVersion"] == "8"
    ((kind, name, namespace, body, patch_type),) = client.patches
    assert (kind, name, namespace, patch_type) == ("Subscription", "s", "ns", PatchType.JSON)
    assert body == finalizers.finalizer_patch(bare, labels={"ref": "Subscription"})


@pytest.mark.parametrize(
    ("fail", "raised"),
    [
        (error(NotFound, 404), None),  # deleted meanwhile
        (error(Conflict, 409), Conflict),
        # a failed test op, or a finalizer added to an object being deleted: the cache is
        # behind, retried like a conflict (messages as kube-apiserver 1.36 words them)
        (invalid("the server rejected our request due to an error in our request"), Conflict),
        (
            invalid(
                'Subscription "s" is invalid: metadata.finalizers: Forbidden: no new '
                "finalizers can be added if the object is being deleted"
            ),
            Conflict,
        ),
        # a label the server rejects: not retried as a conflict
        (
            invalid(
                'Subscription "s" is invalid: metadata.labels: Invalid value',
                [{"field": "metadata.labels", "reason": "FieldValueInvalid"}],
            ),
            Invalid,
        ),
        (error(Forbidden, 403), Forbidden),
    ],
)
async def test_ensure_finalizer_errors(fail: Exception, raised: type[Exception] | None) -> None:
    client: Any = FakeClient({"patch": fail})
    if raised is None:
        assert await finalizers.ensure_finalizer(client, obj("Base", "b")) is None
    else:
        with pytest.raises(raised):  # retried with backoff by the caller's queue
            await finalizers.ensure_finalizer(client, obj("Base", "b"))


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
