"""The hub's cache of the parent's OpenAPI v3 documents (merge keys of strategic patches)."""

from __future__ import annotations

import json
from typing import Any

from clusternet.hub.shadow_openapi import OpenAPISchemas, document_key
from clusternet.kube import ApiError

DEPLOYMENT_DOC = {
    "components": {
        "schemas": {
            "io.k8s.api.apps.v1.Deployment": {
                "x-kubernetes-group-version-kind": [
                    {"group": "apps", "version": "v1", "kind": "Deployment"}
                ]
            }
        }
    }
}


class FakeParent:
    def __init__(self) -> None:
        self.reads: list[str] = []
        self.fail_next = False

    async def request(self, method: str, path: str, **_: Any) -> Any:
        self.reads.append(path)
        if path == "/openapi/v3":
            paths = {"apis/apps/v1": {"serverRelativeURL": "/openapi/v3/apis/apps/v1?hash=1"}}
            return json.dumps({"paths": paths})  # kube-apiserver's Content-Type is not JSON
        if self.fail_next:
            self.fail_next = False
            raise ApiError(500, {"message": "boom", "code": 500})
        return DEPLOYMENT_DOC


def test_document_keys() -> None:
    assert document_key("", "v1") == "api/v1"
    assert document_key("apps", "v1") == "apis/apps/v1"


async def test_documents_are_read_once_failures_are_not_cached_invalidate_forgets() -> None:
    parent = FakeParent()
    schemas = OpenAPISchemas(parent)  # type: ignore[arg-type]
    parent.fail_next = True
    assert await schemas.schema("apps/v1", "Deployment") is None
    assert await schemas.schema("apps/v1", "Deployment") is not None  # tried again
    assert await schemas.schema("apps/v1", "Deployment") is not None
    assert await schemas.schema("apps/v1", "StatefulSet") is None  # same document, cached
    assert await schemas.schema("batch/v1", "Job") is None  # not published
    assert parent.reads == [
        "/openapi/v3",
        "/openapi/v3/apis/apps/v1?hash=1",
        "/openapi/v3/apis/apps/v1?hash=1",
    ]
    schemas.invalidate()
    assert await schemas.schema("apps/v1", "Deployment") is not None
    assert parent.reads[-2:] == ["/openapi/v3", "/openapi/v3/apis/apps/v1?hash=1"]
