"""Property, against the real parent: whatever is sent to the shadow API (malformed JSON,
wrong kinds, wrong names, random fields, random patches), the answer is a 2xx or a 4xx
Status with a message, never a 5xx, and the hub stays ready.

Few examples (this runs against real servers); the pure functions get many more in
tests/unit/test_properties_*.py.
"""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clusternet.local.testing import Clusters

SHADOW = "/apis/shadow/v1alpha1"
RESOURCES = {
    "deployments": ("apps/v1", "Deployment"),
    "configmaps": ("v1", "ConfigMap"),
    "services": ("v1", "Service"),
}
CONTENT_TYPES = [
    "application/json",
    "application/merge-patch+json",
    "application/json-patch+json",
    "application/strategic-merge-patch+json",
    "application/apply-patch+yaml",
    "text/plain",
    "application/yaml",
]


class Parent:
    """Raw HTTP to the parent as its admin (client certificate), any body and content type."""

    def __init__(self, clusters: Clusters) -> None:
        client = clusters.env.client("parent")
        self.server = client.server
        self.context = ssl.create_default_context(cafile=str(client.ca_file))
        assert client.cert_file
        assert client.key_file
        self.context.load_cert_chain(str(client.cert_file), str(client.key_file))

    def __call__(
        self, method: str, path: str, body: bytes | None, content_type: str
    ) -> tuple[int, Any]:
        request = urllib.request.Request(
            self.server + path,
            data=body,
            method=method,
            headers={"Content-Type": content_type, "Accept": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, context=self.context, timeout=30) as response:
                return int(response.status), _json(response.read())
        except urllib.error.HTTPError as err:
            return err.code, _json(err.read())


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode(errors="replace")


SCALARS = st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.text(max_size=10)
JSON = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=10,
)
NAMES = st.sampled_from(["web", "Bad_Name", "", "a" * 300, "-x-", "web.v2"]) | st.text(max_size=12)


@st.composite
def objects(draw: st.DrawFn, resource: str) -> Any:
    api_version, kind = RESOURCES[resource]
    metadata: dict[str, Any] = {"name": draw(NAMES)}
    if draw(st.booleans()):
        metadata["namespace"] = draw(st.sampled_from(["other", "", "NS!"]))
    if draw(st.booleans()):
        metadata["labels"] = draw(st.dictionaries(st.text(max_size=6), JSON, max_size=2))
    obj: dict[str, Any] = {
        "apiVersion": draw(st.sampled_from([api_version, "v1", "apps/v1", "nope/v9", ""]) | JSON),
        "kind": draw(st.sampled_from([kind, "Pod", "", "Deployment"]) | JSON),
        "metadata": draw(st.just(metadata) | JSON),
    }
    for field in ("spec", "data", "status"):
        if draw(st.booleans()):
            obj[field] = draw(JSON)
    return obj


@st.composite
def requests(draw: st.DrawFn) -> tuple[str, str, bytes | None, str]:
    resource = draw(st.sampled_from(sorted(RESOURCES)))
    method = draw(st.sampled_from(["POST", "PUT", "PATCH", "DELETE", "GET"]))
    name = draw(st.sampled_from(["web", "missing", "%20", "a" * 300]))
    path = f"namespaces/NAMESPACE/{resource}" + ("" if method == "POST" else f"/{name}")
    kind = draw(st.sampled_from(["object", "json", "garbage"]))
    if kind == "object":
        body: bytes | None = json.dumps(draw(objects(resource))).encode()
    elif kind == "json":
        body = json.dumps(draw(JSON)).encode()
    else:
        body = draw(st.binary(max_size=40))
    if method in ("GET", "DELETE") and draw(st.booleans()):
        body = None
    content_type = draw(st.sampled_from(CONTENT_TYPES))
    return method, path, body, content_type


@pytest.fixture(scope="module")
def parent(clusters: Clusters) -> Parent:
    return Parent(clusters)


def hub_ready(clusters: Clusters) -> bool:
    hub = next(p for p in clusters.state.processes if p.name.endswith("clusternet-hub"))
    assert hub.alive(), "the hub is still running"
    port = next(a.split("=", 1)[1] for a in hub.argv if a.startswith("--secure-port="))
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # the hub's own serving certificate
    with urllib.request.urlopen(
        f"https://127.0.0.1:{port}/readyz", context=context, timeout=10
    ) as response:
        return bool(response.status == 200)


@settings(
    max_examples=25,
    deadline=None,
    derandomize=True,  # the same 25 requests in every run: a failure is reproducible
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(request=requests())
def test_any_request_to_the_shadow_api_gets_a_2xx_or_a_4xx_status_with_a_message(
    parent: Parent, namespace: str, request: tuple[str, str, bytes | None, str]
) -> None:
    method, path, body, content_type = request
    url = f"{SHADOW}/{path.replace('NAMESPACE', namespace)}"
    status, answer = parent(method, url, body, content_type)
    assert status < 500, (method, url, body, content_type, status, answer)
    if status >= 400:
        assert isinstance(answer, dict), answer
        assert answer.get("kind") == "Status", answer
        assert answer.get("message"), answer
        assert answer.get("code") == status, answer
    elif method == "POST" and isinstance(answer, dict):
        # Accepted: a valid template; remove it (its Manifest lives in the reserved namespace).
        name = answer["metadata"]["name"]
        parent("DELETE", f"{url}/{name}", None, "application/json")


def test_the_hub_is_still_ready_after_the_bad_input(clusters: Clusters, parent: Parent) -> None:
    assert hub_ready(clusters)
    status, answer = parent("GET", SHADOW, None, "application/json")
    assert status == 200, answer
