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
from clusternet.hub.shadow_resources import PREFIX, PrinterColumn, ResourceTable, ShadowResource
from clusternet.hub.status import status_response
from clusternet.kube import AlreadyExists, Conflict, Invalid, NotFound, Preconditions, UnknownKind

RESERVED = "clusternet-reserved"
RESOURCES = {
    "deployments": ShadowResource(
        "deployments", "apps", "v1", "Deployment", namespaced=True, has_scale=True, has_status=True
    ),
    "namespaces": ShadowResource("namespaces", "", "v1", "Namespace", namespaced=False),
    "widgets": ShadowResource(
        "widgets",
        "example.com",
        "v1",
        "Widget",
        namespaced=True,
        custom=True,
        printer_columns=(
            PrinterColumn("Size", "integer", ".spec.size"),
            PrinterColumn("Ready", "string", '.status.conditions[?(@.type=="Ready")].status'),
            PrinterColumn("Age", "date", ".metadata.creationTimestamp"),
        ),
    ),
}
MERGE_BY_NAME = {"x-kubernetes-patch-merge-key": "name", "x-kubernetes-patch-strategy": "merge"}
# /openapi/v3/apis/apps/v1, cut down to what a strategic patch of a Deployment reads.
APPS_V1_OPENAPI: dict[str, Any] = {
    "components": {
        "schemas": {
            "io.k8s.api.apps.v1.Deployment": {
                "properties": {
                    "spec": {"allOf": [{"$ref": "#/components/schemas/DeploymentSpec"}]}
                },
                "x-kubernetes-group-version-kind": [
                    {"group": "apps", "version": "v1", "kind": "Deployment"}
                ],
            },
            "DeploymentSpec": {
                "properties": {
                    "template": {
                        "properties": {
                            "spec": {
                                "properties": {
                                    "containers": {
                                        "type": "array",
                                        "items": {"type": "object"},
                                        **MERGE_BY_NAME,
                                    }
                                }
                            }
                        }
                    }
                }
            },
        }
    }
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
        self.openapi_reads: list[str] = []
        self.dry_run_paths: list[str] = []

    async def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """Dry-run creates by URL, and the parent's OpenAPI v3: an index and apps/v1 (core v1
        is listed, empty)."""
        if method == "POST":
            assert kwargs["params"] == {"dryRun": "All"}
            self.dry_run_paths.append(path)
            return self._dry_run(copy.deepcopy(kwargs["body"]))
        self.openapi_reads.append(path)
        if path == "/openapi/v3":  # served as text/plain: KubeClient answers a str
            return json.dumps(
                {
                    "paths": {
                        "apis/apps/v1": {"serverRelativeURL": "/openapi/v3/apis/apps/v1?hash=A"},
                        "api/v1": {"serverRelativeURL": "/openapi/v3/api/v1?hash=B"},
                    }
                }
            )
        if path == "/openapi/v3/apis/apps/v1?hash=A":
            return APPS_V1_OPENAPI
        if path == "/openapi/v3/api/v1?hash=B":
            return {"components": {"schemas": {}}}
        raise NotFound(404, _status(404, "NotFound", path))

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
    # By URL from the resource table, not through the client's RESTMapper.
    assert parent.dry_run_paths == [f"/apis/apps/v1/namespaces/{RESERVED}/deployments"]
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
    assert (await client.get(f"{PREFIX}/gadgets")).status == 404
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
        ("application/apply-patch+yaml", {"spec": {}}, 422),  # no fieldManager
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


def containers(*pairs: tuple[str, str]) -> dict[str, Any]:
    return {"template": {"spec": {"containers": [{"name": n, "image": i} for n, i in pairs]}}}


def stored_containers(parent: FakeParent, name: str = "web") -> list[dict[str, Any]]:
    template = parent.manifests[f"deployments.shop.{name}"]["template"]
    found: list[dict[str, Any]] = template["spec"]["template"]["spec"]["containers"]
    return found


STRATEGIC = {"Content-Type": "application/strategic-merge-patch+json"}


async def test_strategic_patch_merges_containers_by_name(
    client: TestClient[Any, Any], parent: FakeParent
) -> None:
    await client.post(DEPLOYMENTS, json=deployment(**containers(("web", "nginx:1"), ("log", "x"))))
    # What `kubectl edit` sends after changing an image.
    patch = {
        "spec": {
            "template": {
                "spec": {
                    "$setElementOrder/containers": [{"name": "web"}, {"name": "log"}],
                    "containers": [{"name": "web", "image": "nginx:2"}],
                }
            }
        }
    }
    response = await client.patch(f"{DEPLOYMENTS}/web", data=json.dumps(patch), headers=STRATEGIC)
    assert response.status == 200, await response.text()
    assert stored_containers(parent) == [
        {"name": "web", "image": "nginx:2"},
        {"name": "log", "image": "x"},
    ]
    # The OpenAPI document is read once, then cached.
    for _ in range(2):
        await client.patch(f"{DEPLOYMENTS}/web", data=json.dumps(patch), headers=STRATEGIC)
    assert parent.openapi_reads == ["/openapi/v3", "/openapi/v3/apis/apps/v1?hash=A"]
    bad = {"spec": {"template": {"spec": {"containers": [{"image": "no-name"}]}}}}
    response = await client.patch(f"{DEPLOYMENTS}/web", data=json.dumps(bad), headers=STRATEGIC)
    assert response.status == 400
    assert "merge key: name" in (await response.json())["message"]


async def test_strategic_patch_of_custom_and_unpublished_kinds_is_415(
    client: TestClient[Any, Any], parent: FakeParent
) -> None:
    widget = {
        "apiVersion": "example.com/v1",
        "kind": "Widget",
        "metadata": {"name": "w", "annotations": {"apps.clusternet.io/skip-validating": "true"}},
    }
    assert (await client.post(f"{PREFIX}/namespaces/shop/widgets", json=widget)).status == 201
    response = await client.patch(
        f"{PREFIX}/namespaces/shop/widgets/w", data=json.dumps({"spec": {}}), headers=STRATEGIC
    )
    assert response.status == 415
    assert (await response.json())["message"].startswith(
        "the body of the request was in an unknown format - accepted media types include: "
        "application/json-patch+json, application/merge-patch+json"
    )
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}}
    await client.post(f"{PREFIX}/namespaces", json=namespace)
    response = await client.patch(
        f"{PREFIX}/namespaces/shop", data=json.dumps({"metadata": {}}), headers=STRATEGIC
    )
    assert response.status == 415
    assert "--type=merge" in (await response.json())["message"]


APPLY = {"Content-Type": "application/apply-patch+yaml"}


async def test_server_side_apply_creates_then_merges(
    client: TestClient[Any, Any], parent: FakeParent
) -> None:
    config = deployment(**containers(("web", "nginx:1")))
    config["metadata"]["namespace"] = "shop"
    path = f"{DEPLOYMENTS}/web?fieldManager=kubectl&force=true"
    created = await client.patch(path, data=json.dumps(config), headers=APPLY)
    assert created.status == 201, await created.text()
    assert parent.dry_runs, "an applied create is validated like a create"
    config["spec"] |= containers(("web", "nginx:2"), ("log", "x"))
    config["spec"]["replicas"] = 3
    updated = await client.patch(path, data=json.dumps(config), headers=APPLY)
    assert updated.status == 200, await updated.text()
    assert stored_containers(parent) == [
        {"name": "web", "image": "nginx:2"},
        {"name": "log", "image": "x"},
    ]
    assert parent.manifests["deployments.shop.web"]["template"]["spec"]["replicas"] == 3
    # YAML bodies, as the API allows.
    yaml_body = (
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec: {replicas: 4}\n"
    )
    assert (await client.patch(path, data=yaml_body, headers=APPLY)).status == 200
    assert parent.manifests["deployments.shop.web"]["template"]["spec"]["replicas"] == 4
    renamed = await client.patch(
        f"{DEPLOYMENTS}/other?fieldManager=kubectl", data=json.dumps(config), headers=APPLY
    )
    assert renamed.status == 400
    forced = await client.patch(
        f"{DEPLOYMENTS}/web?force=true",
        data=json.dumps({"spec": {}}),
        headers={"Content-Type": "application/merge-patch+json"},
    )
    assert forced.status == 422


async def test_server_side_apply_of_custom_resources_is_a_merge_patch(
    client: TestClient[Any, Any], parent: FakeParent
) -> None:
    widget = {
        "apiVersion": "example.com/v1",
        "kind": "Widget",
        "metadata": {"name": "w", "annotations": {"apps.clusternet.io/skip-validating": "true"}},
        "spec": {"size": 1, "parts": [{"name": "a"}]},
    }
    path = f"{PREFIX}/namespaces/shop/widgets/w?fieldManager=kubectl"
    assert (await client.patch(path, data=json.dumps(widget), headers=APPLY)).status == 201
    widget["spec"] = {"parts": [{"name": "b"}]}
    assert (await client.patch(path, data=json.dumps(widget), headers=APPLY)).status == 200
    spec = parent.manifests["widgets.shop.w"]["template"]["spec"]
    assert spec == {"size": 1, "parts": [{"name": "b"}]}


TABLE = {"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"}


async def test_tables_for_kubectl_get(client: TestClient[Any, Any]) -> None:
    await client.post(DEPLOYMENTS, json=deployment(**containers(("web", "nginx:1"))))
    listed = await (await client.get(DEPLOYMENTS, headers=TABLE)).json()
    assert listed["kind"] == "Table"
    names = [c["name"] for c in listed["columnDefinitions"]]
    assert names[:5] == ["Name", "Ready", "Up-to-date", "Available", "Age"]
    assert listed["rows"][0]["cells"][:4] == ["web", "0/2", 0, 0]
    assert listed["rows"][0]["object"]["kind"] == "PartialObjectMetadata"
    assert listed["metadata"]["resourceVersion"]
    one = await (
        await client.get(f"{DEPLOYMENTS}/web", params={"includeObject": "Object"}, headers=TABLE)
    ).json()
    assert one["rows"][0]["object"]["kind"] == "Deployment"
    none = await (
        await client.get(f"{DEPLOYMENTS}/web", params={"includeObject": "None"}, headers=TABLE)
    ).json()
    assert "object" not in none["rows"][0]
    bad = await client.get(DEPLOYMENTS, params={"includeObject": "All"}, headers=TABLE)
    assert bad.status == 400
    # A Scale is never a Table.
    scale = await (await client.get(f"{DEPLOYMENTS}/web/scale", headers=TABLE)).json()
    assert scale["kind"] == "Scale"


async def test_tables_of_custom_resources_use_printer_columns(
    client: TestClient[Any, Any],
) -> None:
    widget = {
        "apiVersion": "example.com/v1",
        "kind": "Widget",
        "metadata": {"name": "w", "annotations": {"apps.clusternet.io/skip-validating": "true"}},
        "spec": {"size": 3},
    }
    await client.post(f"{PREFIX}/namespaces/shop/widgets", json=widget)
    listed = await (await client.get(f"{PREFIX}/namespaces/shop/widgets", headers=TABLE)).json()
    assert [c["name"] for c in listed["columnDefinitions"]] == ["Name", "Size", "Ready", "Age"]
    assert listed["rows"][0]["cells"][:3] == ["w", 3, None]


async def test_legacy_dash_manifests_are_honoured(
    client: TestClient[Any, Any], parent: FakeParent
) -> None:
    from clusternet.apis import naming

    old = naming.manifest(
        {**deployment("old"), "metadata": {"name": "old", "namespace": "shop"}},
        "deployments",
        RESERVED,
    )
    old["metadata"]["name"] = "deployments-shop-old"
    old["metadata"]["resourceVersion"] = "1"
    parent.manifests["deployments-shop-old"] = old
    got = await client.get(f"{DEPLOYMENTS}/old")
    assert got.status == 200
    assert (await got.json())["metadata"]["name"] == "old"
    assert (await client.post(DEPLOYMENTS, json=deployment("old"))).status == 409
    patched = await client.patch(
        f"{DEPLOYMENTS}/old",
        data=json.dumps({"spec": {"replicas": 9}}),
        headers={"Content-Type": "application/merge-patch+json"},
    )
    assert patched.status == 200
    assert parent.manifests["deployments-shop-old"]["template"]["spec"]["replicas"] == 9
    # A dash name whose labels describe another template is not this one.
    assert (await client.get(f"{PREFIX}/namespaces/shop-old/deployments/x")).status == 404
    assert (await client.delete(f"{DEPLOYMENTS}/old")).status == 200
    assert "deployments-shop-old" not in parent.manifests


@pytest.mark.parametrize(
    ("method", "path", "body", "content_type", "message"),
    [
        # Found by tests/e2e/test_bad_input_properties.py: these ended in a bare 500.
        (
            "POST",
            "",
            {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": None},
            "application/json",
            "name or generateName is required",
        ),
        (
            "POST",
            "",
            {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": [1]},
            "application/json",
            "metadata must be an object",
        ),
        (
            "POST",
            "",
            {"apiVersion": 7, "kind": "Deployment"},
            "application/json",
            "store Deployment objects",
        ),
        (
            "POST",
            "",
            {**deployment(), "metadata": {"name": 5}},
            "application/json",
            "metadata.name must be a string",
        ),
        (
            "POST",
            "",
            {**deployment(), "metadata": {"name": "w", "annotations": ["x"]}},
            "application/json",
            "metadata.annotations must be a map of strings",
        ),
        (
            "PATCH",
            "/web",
            {"metadata": "x"},
            "application/merge-patch+json",
            "metadata must be an object",
        ),
        ("PATCH", "/web", [1, "op"], "application/json-patch+json", "cannot be applied"),
    ],
)
async def test_malformed_bodies_get_a_400_status_with_a_message(
    client: TestClient[Any, Any],
    method: str,
    path: str,
    body: Any,
    content_type: str,
    message: str,
) -> None:
    assert (await client.post(DEPLOYMENTS, json=deployment())).status == 201
    response = await client.request(
        method,
        DEPLOYMENTS + path,
        data=json.dumps(body),
        headers={"Content-Type": content_type},
    )
    answer = await response.json()
    assert response.status in (400, 422), answer
    assert answer["kind"] == "Status"
    assert message in answer["message"]
