"""The shadow request handler over an in-memory parent: routing, authorization, verbs."""

from __future__ import annotations

import copy
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from clusternet.hub.authz import Attributes
from clusternet.hub.shadow import ShadowAPI, wants_partial_metadata
from clusternet.hub.shadow_resources import PREFIX, ResourceTable, ShadowResource
from clusternet.hub.status import status_response
from clusternet.kube import AlreadyExists, Conflict, Invalid, NotFound, Preconditions, UnknownKind

RESERVED = "clusternet-reserved"
RESOURCES = {
    "deployments": ShadowResource(
        "deployments", "apps", "v1", "Deployment", namespaced=True, has_scale=True, has_status=True
    ),
    "namespaces": ShadowResource("namespaces", "", "v1", "Namespace", namespaced=False),
}


def _status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {"kind": "Status", "code": code, "reason": reason, "message": message}


class FakeParent:
    """Manifests in memory, and a dry run that rejects Deployments without a selector."""

    def __init__(self) -> None:
        self.manifests: dict[str, dict[str, Any]] = {}
        self.real_names: set[str] = set()  # real objects in the parent, for dry-run clashes
        self.dry_runs: list[dict[str, Any]] = []
        self.conflicts_left = 0
        self._version = 0

    def _bump(self, obj: dict[str, Any]) -> dict[str, Any]:
        self._version += 1
        obj["metadata"]["resourceVersion"] = str(self._version)
        return copy.deepcopy(obj)

    async def get(self, api_version: str, kind: str, name: str, *, namespace: str) -> Any:
        if name not in self.manifests:
            raise NotFound(404, _status(404, "NotFound", f"{name} not found"))
        return copy.deepcopy(self.manifests[name])

    async def list(
        self, api_version: str, kind: str, *, namespace: str, label_selector: str, **_: Any
    ) -> Any:
        wanted = dict(term.split("=", 1) for term in label_selector.split(","))
        items = [
            copy.deepcopy(m)
            for m in self.manifests.values()
            if all(m["metadata"]["labels"].get(k) == v for k, v in wanted.items())
        ]
        return {"metadata": {"resourceVersion": str(self._version)}, "items": items}

    async def create(self, obj: dict[str, Any], *, dry_run: bool = False, **_: Any) -> Any:
        if obj["kind"] != "Manifest":
            return self._dry_run(copy.deepcopy(obj))
        name = obj["metadata"]["name"]
        if name in self.manifests:
            raise AlreadyExists(409, _status(409, "AlreadyExists", f"{name} exists"))
        stored = copy.deepcopy(obj)
        stored["metadata"]["uid"] = f"uid-{name}"
        self.manifests[name] = stored
        return self._bump(stored)

    def _dry_run(self, obj: dict[str, Any]) -> Any:
        self.dry_runs.append(copy.deepcopy(obj))
        if obj["apiVersion"] == "apps/v2":
            raise UnknownKind("the cluster serves no kind Deployment in apps/v2")
        if obj["metadata"]["name"] in self.real_names:
            raise AlreadyExists(409, _status(409, "AlreadyExists", "exists"))
        if obj["kind"] == "Deployment" and "selector" not in obj.get("spec", {}):
            message = f'Deployment.apps "{obj["metadata"]["name"]}" is invalid: spec.selector'
            raise Invalid(422, _status(422, "Invalid", message))
        obj["metadata"] |= {"uid": "dry", "creationTimestamp": "2026-01-01T00:00:00Z"}
        obj.setdefault("spec", {}).setdefault("progressDeadlineSeconds", 600)
        obj["status"] = {}
        return obj

    async def update(self, obj: dict[str, Any], **_: Any) -> Any:
        name = obj["metadata"]["name"]
        current = self.manifests.get(name)
        if current is None:
            raise NotFound(404, _status(404, "NotFound", "gone"))
        if self.conflicts_left or (
            obj["metadata"]["resourceVersion"] != current["metadata"]["resourceVersion"]
        ):
            self.conflicts_left = max(0, self.conflicts_left - 1)
            raise Conflict(409, _status(409, "Conflict", "modified"))
        self.manifests[name] = copy.deepcopy(obj)
        return self._bump(self.manifests[name])

    async def delete(
        self,
        api_version: str,
        kind: str,
        name: str,
        *,
        namespace: str,
        preconditions: Preconditions | None = None,
        dry_run: bool = False,
    ) -> Any:
        if name not in self.manifests:
            raise NotFound(404, _status(404, "NotFound", "gone"))
        del self.manifests[name]
        return {"kind": "Status", "status": "Success"}


class Recorder:
    def __init__(self) -> None:
        self.seen: list[Attributes] = []
        self.deny = False

    async def __call__(self, request: web.Request, attributes: Attributes) -> web.Response | None:
        self.seen.append(attributes)
        return status_response(403, "denied") if self.deny else None


@pytest.fixture
def parent() -> FakeParent:
    return FakeParent()


@pytest.fixture
def authorizer() -> Recorder:
    return Recorder()


@pytest.fixture
async def client(parent: FakeParent, authorizer: Recorder) -> AsyncIterator[TestClient[Any, Any]]:
    table = ResourceTable(RESOURCES, list)
    api = ShadowAPI(parent, table, RESERVED, authorizer)  # type: ignore[arg-type]
    app = web.Application()
    app.router.add_get(PREFIX, api.discovery)
    app.router.add_route("*", PREFIX + "/{tail:.+}", api.handle)
    async with TestClient(TestServer(app)) as test_client:
        yield test_client


def deployment(name: str = "web", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": {"tier": "front"}},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": name}}, **spec},
    }


DEPLOYMENTS = f"{PREFIX}/namespaces/shop/deployments"


async def test_create_validates_in_the_reserved_namespace_and_stores_a_manifest(
    client: TestClient[Any, Any], parent: FakeParent, authorizer: Recorder
) -> None:
    response = await client.post(DEPLOYMENTS, json=deployment())
    assert response.status == 201
    created = await response.json()
    assert created["metadata"]["uid"] == "uid-deployments.shop.web"
    assert created["metadata"]["namespace"] == "shop"
    assert parent.dry_runs[0]["metadata"]["namespace"] == RESERVED
    template = parent.manifests["deployments.shop.web"]["template"]
    assert template["spec"]["progressDeadlineSeconds"] == 600  # defaulted by the dry run
    assert "status" not in template
    assert "uid" not in template["metadata"]
    assert authorizer.seen == [
        Attributes(verb="create", resource="deployments", group="shadow", namespace="shop")
    ]
    again = await client.post(DEPLOYMENTS, json=deployment())
    assert again.status == 409
    assert (await again.json())["message"] == 'deployments.shadow "web" already exists'


async def test_a_real_object_of_the_same_name_gets_the_trial_a_suffix(
    client: TestClient[Any, Any], parent: FakeParent
) -> None:
    parent.real_names.add("web")
    response = await client.post(DEPLOYMENTS, json=deployment())
    assert response.status == 201
    assert parent.dry_runs[1]["metadata"]["name"].startswith("web-")
    assert parent.manifests["deployments.shop.web"]["template"]["metadata"]["name"] == "web"


async def test_invalid_objects_get_the_parents_answer(
    client: TestClient[Any, Any], parent: FakeParent
) -> None:
    body = deployment()
    del body["spec"]["selector"]
    response = await client.post(DEPLOYMENTS, json=body)
    assert response.status == 422
    assert "spec.selector" in (await response.json())["message"]
    assert parent.manifests == {}


async def test_kinds_the_parent_does_not_serve_need_skip_validating(
    client: TestClient[Any, Any], parent: FakeParent
) -> None:
    body = deployment()
    body["apiVersion"] = "apps/v2"
    response = await client.post(DEPLOYMENTS, json=body)
    assert response.status == 400
    assert "skip-validating" in (await response.json())["message"]
    body["metadata"]["annotations"] = {"apps.clusternet.io/skip-validating": "true"}
    assert (await client.post(DEPLOYMENTS, json=body)).status == 201
    labels = parent.manifests["deployments.shop.web"]["metadata"]["labels"]
    assert labels["apps.clusternet.io/config.version"] == "v2"


async def test_create_rejects_other_kinds_and_namespaces(client: TestClient[Any, Any]) -> None:
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x"}}
    assert (await client.post(DEPLOYMENTS, json=namespace)).status == 400
    elsewhere = deployment()
    elsewhere["metadata"]["namespace"] = "other"
    response = await client.post(DEPLOYMENTS, json=elsewhere)
    assert response.status == 400
    assert "does not match the namespace" in (await response.json())["message"]


async def test_routing(client: TestClient[Any, Any], authorizer: Recorder) -> None:
    assert (await client.get(f"{PREFIX}/widgets")).status == 404
    assert (await client.get(f"{PREFIX}/namespaces/shop/namespaces")).status == 404
    assert (await client.get(f"{PREFIX}/deployments/web")).status == 404  # needs a namespace
    assert (await client.get(f"{DEPLOYMENTS}/web/exec")).status == 404
    assert authorizer.seen == [], "unknown paths are answered before authorization"
    discovery = await (await client.get(PREFIX)).json()
    assert {r["name"] for r in discovery["resources"]} >= {"deployments", "namespaces"}


async def test_denied_requests_touch_nothing(
    client: TestClient[Any, Any], parent: FakeParent, authorizer: Recorder
) -> None:
    authorizer.deny = True
    assert (await client.post(DEPLOYMENTS, json=deployment())).status == 403
    assert parent.dry_runs == []


async def test_get_list_and_field_selectors(
    client: TestClient[Any, Any], authorizer: Recorder
) -> None:
    await client.post(DEPLOYMENTS, json=deployment())
    got = await (await client.get(f"{DEPLOYMENTS}/web")).json()
    assert (got["kind"], got["metadata"]["resourceVersion"]) == ("Deployment", "1")
    listed = await (
        await client.get(DEPLOYMENTS, params={"fieldSelector": "metadata.name=web"})
    ).json()
    assert listed["kind"] == "DeploymentList"
    assert [i["metadata"]["name"] for i in listed["items"]] == ["web"]
    assert authorizer.seen[-1].verb == "list"
    bad = await client.get(DEPLOYMENTS, params={"fieldSelector": "spec.replicas=2"})
    assert bad.status == 400
    missing = await client.get(f"{DEPLOYMENTS}/nope")
    assert missing.status == 404
    assert (await missing.json())["message"] == 'deployments.shadow "nope" not found'


async def test_update_drops_labels_and_checks_the_resource_version(
    client: TestClient[Any, Any], parent: FakeParent
) -> None:
    await client.post(DEPLOYMENTS, json=deployment())
    body = deployment()
    body["metadata"] |= {"namespace": "shop", "labels": {}, "resourceVersion": "1"}
    response = await client.put(f"{DEPLOYMENTS}/web", json=body)
    assert response.status == 200
    assert "tier" not in parent.manifests["deployments.shop.web"]["metadata"]["labels"]
    stale = await client.put(f"{DEPLOYMENTS}/web", json=body)
    assert stale.status == 409
    assert "the object has been modified" in (await stale.json())["message"]
    renamed = deployment("other")
    assert (await client.put(f"{DEPLOYMENTS}/web", json=renamed)).status == 400


async def test_status_is_read_only(client: TestClient[Any, Any]) -> None:
    await client.post(DEPLOYMENTS, json=deployment())
    assert (await client.get(f"{DEPLOYMENTS}/web/status")).status == 200
    response = await client.put(f"{DEPLOYMENTS}/web/status", json=deployment())
    assert response.status == 405
    assert "does not allow to PUT status of Deployment" in (await response.json())["message"]


async def test_scale(client: TestClient[Any, Any], parent: FakeParent) -> None:
    await client.post(DEPLOYMENTS, json=deployment())
    scale = await (await client.get(f"{DEPLOYMENTS}/web/scale")).json()
    assert scale["spec"]["replicas"] == 2
    scale["spec"]["replicas"] = 7
    response = await client.put(f"{DEPLOYMENTS}/web/scale", json=scale)
    assert (await response.json())["spec"]["replicas"] == 7
    assert parent.manifests["deployments.shop.web"]["template"]["spec"]["replicas"] == 7
    assert (await client.delete(f"{DEPLOYMENTS}/web/scale")).status == 405
    assert "deployments.shop.web" in parent.manifests
    patched = await client.patch(
        f"{DEPLOYMENTS}/web/scale",
        data=json.dumps({"spec": {"replicas": 3}}),
        headers={"Content-Type": "application/merge-patch+json"},
    )
    assert (await patched.json())["spec"]["replicas"] == 3


@pytest.mark.parametrize(
    ("content_type", "patch"),
    [
        ("application/merge-patch+json", {"spec": {"replicas": 4}, "metadata": {"labels": None}}),
        ("application/strategic-merge-patch+json", {"spec": {"replicas": 4}}),
        (
            "application/json-patch+json",
            [{"op": "replace", "path": "/spec/replicas", "value": 4}],
        ),
    ],
)
async def test_patch(
    client: TestClient[Any, Any], parent: FakeParent, content_type: str, patch: Any
) -> None:
    await client.post(DEPLOYMENTS, json=deployment())
    parent.conflicts_left = 2  # concurrent writers: retried, the patch has no resourceVersion
    response = await client.patch(
        f"{DEPLOYMENTS}/web", data=json.dumps(patch), headers={"Content-Type": content_type}
    )
    assert response.status == 200, await response.text()
    assert parent.manifests["deployments.shop.web"]["template"]["spec"]["replicas"] == 4


@pytest.mark.parametrize(
    ("content_type", "patch", "code"),
    [
        ("application/apply-patch+yaml", {"spec": {}}, 415),
        ("application/strategic-merge-patch+json", {"spec": {"containers": []}}, 415),
        ("application/json-patch+json", [{"op": "remove", "path": "/nope"}], 422),
        ("application/merge-patch+json", {"metadata": {"resourceVersion": "99"}}, 409),
        ("text/plain", {}, 415),
    ],
)
async def test_patch_refusals(
    client: TestClient[Any, Any], content_type: str, patch: Any, code: int
) -> None:
    await client.post(DEPLOYMENTS, json=deployment())
    response = await client.patch(
        f"{DEPLOYMENTS}/web", data=json.dumps(patch), headers={"Content-Type": content_type}
    )
    assert response.status == code


async def test_delete_and_deletecollection(
    client: TestClient[Any, Any], parent: FakeParent, authorizer: Recorder
) -> None:
    for name in ("a", "b"):
        await client.post(DEPLOYMENTS, json=deployment(name))
    deleted = await client.delete(f"{DEPLOYMENTS}/a")
    assert (await deleted.json())["status"] == "Success"
    assert (await client.delete(f"{DEPLOYMENTS}/a")).status == 404
    collection = await client.delete(DEPLOYMENTS)
    assert [i["metadata"]["name"] for i in (await collection.json())["items"]] == ["b"]
    assert authorizer.seen[-1].verb == "deletecollection"
    assert parent.manifests == {}


async def test_namespaces_are_cluster_scoped_templates(
    client: TestClient[Any, Any], parent: FakeParent
) -> None:
    body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}}
    assert (await client.post(f"{PREFIX}/namespaces", json=body)).status == 201
    assert "namespace" not in parent.dry_runs[0]["metadata"]
    labels = parent.manifests["namespaces.shop"]["metadata"]["labels"]
    assert labels["apps.clusternet.io/config.namespace"] == ""
    assert (await client.get(f"{PREFIX}/namespaces/shop")).status == 200


async def test_metadata_clients_get_partial_object_metadata(client: TestClient[Any, Any]) -> None:
    await client.post(DEPLOYMENTS, json=deployment())
    accept = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json"
    listed = await (await client.get(DEPLOYMENTS, headers={"Accept": accept})).json()
    assert listed["kind"] == "PartialObjectMetadataList"
    assert listed["items"][0] == {
        "apiVersion": "meta.k8s.io/v1",
        "kind": "PartialObjectMetadata",
        "metadata": listed["items"][0]["metadata"],
    }
    assert listed["items"][0]["metadata"]["name"] == "web"


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        ("application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1,application/json", True),
        (
            "application/vnd.kubernetes.protobuf;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,"
            "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1",
            True,
        ),
        ("application/json;as=Table;v=v1;g=meta.k8s.io,application/json", False),
        ("application/json", False),
        ("", False),
    ],
)
def test_wants_partial_metadata(accept: str, expected: bool) -> None:
    assert wants_partial_metadata(accept) is expected
