"""Discovery and OpenAPI documents of ``proxies.clusternet.io/v1alpha1``.

The aggregator marks the APIService Available only when ``GET /apis/<group>/<version>``
answers 2xx with an ``APIResourceList``; kubectl reads the group documents and OpenAPI.
``sockets`` is a connect-only resource (spec §2.4): it has no list/get verbs, so discovery
lists it with an empty verb list, as kube-apiserver does for ``pods/exec``, and in no
category.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Final

from clusternet.apis import known

GROUP: Final = known.PROXIES_GROUP
VERSION: Final = "v1alpha1"
GROUP_VERSION: Final = f"{GROUP}/{VERSION}"
SOCKET_KIND: Final = "Socket"
_SOCKET_DEFINITION: Final = "io.clusternet.apis.proxies.v1alpha1.Socket"


def api_resource_list() -> dict[str, Any]:
    common = {"namespaced": False, "kind": SOCKET_KIND, "verbs": []}
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": GROUP_VERSION,
        "resources": [
            {
                "name": "sockets",
                "singularName": "socket",
                "shortNames": ["ss"],
                # Upstream puts sockets in category "clusternet", but a connect-only resource
                # cannot be listed, so `kubectl get clusternet` would fail on it: left out.
                **common,
            },
            {"name": "sockets/proxy", "singularName": "", **common},
        ],
    }


def api_group() -> dict[str, Any]:
    version = {"groupVersion": GROUP_VERSION, "version": VERSION}
    return {
        "kind": "APIGroup",
        "apiVersion": "v1",
        "name": GROUP,
        "versions": [version],
        "preferredVersion": version,
    }


def api_group_list() -> dict[str, Any]:
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": [api_group()]}


def _socket_schema() -> dict[str, Any]:
    return {
        "description": "Socket is the connect options of the sockets resource: the path to "
        "proxy to inside the child cluster.",
        "type": "object",
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "path": {"type": "string", "description": "Path is the URL path to use."},
        },
        "x-kubernetes-group-version-kind": [
            {"group": GROUP, "version": VERSION, "kind": SOCKET_KIND}
        ],
    }


def openapi_v2() -> dict[str, Any]:
    return {
        "swagger": "2.0",
        "info": {"title": "Clusternet", "version": VERSION},
        "paths": {},
        "definitions": {_SOCKET_DEFINITION: _socket_schema()},
    }


def openapi_v3_group_version() -> dict[str, Any]:
    return {
        "openapi": "3.0.0",
        "info": {"title": "Clusternet", "version": VERSION},
        "paths": {},
        "components": {"schemas": {_SOCKET_DEFINITION: _socket_schema()}},
    }


def openapi_v3_root() -> dict[str, Any]:
    """The index kubectl and the aggregator read first; the hash makes URLs cacheable."""
    digest = hashlib.sha512(
        json.dumps(openapi_v3_group_version(), sort_keys=True).encode()
    ).hexdigest()[:32]
    path = f"apis/{GROUP}/{VERSION}"
    return {"paths": {path: {"serverRelativeURL": f"/openapi/v3/{path}?hash={digest.upper()}"}}}
