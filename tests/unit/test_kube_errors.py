"""Error responses become typed errors carrying the server's Status."""

from __future__ import annotations

import json
from typing import Any

import httpx2
import pytest

from clusternet.kube import (
    AlreadyExists,
    ApiError,
    BadRequest,
    ClusterConfig,
    ClusterUnreachable,
    Conflict,
    Forbidden,
    Gone,
    Invalid,
    KubeClient,
    NotFound,
    ServerTimeout,
    ServiceUnavailable,
    TooManyRequests,
    Unauthorized,
)
from clusternet.kube._errors import error_from_response

CONFIGMAPS = {
    "kind": "APIResourceList",
    "groupVersion": "v1",
    "resources": [
        {
            "name": "configmaps",
            "namespaced": True,
            "kind": "ConfigMap",
            "verbs": ["get", "list", "watch"],
        }
    ],
}


def status(code: int, reason: str, **details: Any) -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "code": code,
        "reason": reason,
        "message": f"{reason} message",
        "details": details,
    }


@pytest.mark.parametrize(
    ("code", "reason", "expected"),
    [
        (400, "BadRequest", BadRequest),
        (401, "Unauthorized", Unauthorized),
        (403, "Forbidden", Forbidden),
        (404, "NotFound", NotFound),
        (409, "Conflict", Conflict),
        (409, "AlreadyExists", AlreadyExists),  # same code, told apart by reason
        (410, "Expired", Gone),
        (410, "Gone", Gone),
        (422, "Invalid", Invalid),
        (429, "TooManyRequests", TooManyRequests),
        (500, "ServerTimeout", ServerTimeout),
        (504, "Timeout", ServerTimeout),
        (503, "ServiceUnavailable", ServiceUnavailable),
        (500, "InternalError", ApiError),
        (415, "UnsupportedMediaType", ApiError),
        (404, "", NotFound),  # no reason: the code decides
    ],
)
def test_status_reason_and_code_choose_the_error(
    code: int, reason: str, expected: type[ApiError]
) -> None:
    body = status(code, reason, name="x", kind="configmaps")
    error = error_from_response(code, json.dumps(body).encode())
    assert type(error) is expected
    assert (error.code, error.reason, error.message) == (code, reason, f"{reason} message")
    assert error.details == {"name": "x", "kind": "configmaps"}
    assert error.status == body


def test_invalid_lists_its_causes() -> None:
    cause = {"reason": "FieldValueInvalid", "message": "bad", "field": "metadata.name"}
    error = error_from_response(422, json.dumps(status(422, "Invalid", causes=[cause])).encode())
    assert isinstance(error, Invalid)
    assert error.causes == [cause]


@pytest.mark.parametrize(
    ("header", "details", "retry_after"),
    [("7", {}, 7.0), (None, {"retryAfterSeconds": 3}, 3.0), (None, {}, None)],
)
def test_too_many_requests_says_when_to_retry(
    header: str | None, details: dict[str, Any], retry_after: float | None
) -> None:
    body = json.dumps(status(429, "TooManyRequests", **details)).encode()
    error = error_from_response(429, body, header)
    assert isinstance(error, TooManyRequests)
    assert error.retry_after == retry_after


def test_a_body_that_is_not_a_status_becomes_the_message() -> None:
    error = error_from_response(502, b"<html>Bad Gateway</html>\n")
    assert type(error) is ApiError
    assert (error.code, error.reason, error.message) == (502, "", "<html>Bad Gateway</html>")
    assert error_from_response(403, b"forbidden by proxy").__class__ is Forbidden


def client_answering(handler: httpx2.MockTransport) -> KubeClient:
    return KubeClient(
        ClusterConfig(server="https://cluster.test"),
        cluster="c1",
        transport_factory=lambda _tls: handler,
    )


async def test_client_raises_typed_errors_and_reports_the_code() -> None:
    calls: list[tuple[str, str, str, int]] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        if request.url.path == "/api/v1":
            return httpx2.Response(200, json=CONFIGMAPS)
        if request.url.path in ("/api", "/apis"):  # discovery: legacy form only
            return httpx2.Response(200, json={"versions": ["v1"], "groups": []})
        return httpx2.Response(404, json=status(404, "NotFound", name="absent"))

    def observe(cluster: str, verb: str, resource: str, code: int, seconds: float) -> None:
        calls.append((cluster, verb, resource, code))

    client = KubeClient(
        ClusterConfig(server="https://cluster.test"),
        cluster="c1",
        observer=observe,
        transport_factory=lambda _tls: httpx2.MockTransport(handler),
    )
    async with client:
        with pytest.raises(NotFound) as missing:
            await client.get("v1", "ConfigMap", "absent", namespace="ns")
    assert missing.value.details == {"name": "absent"}
    assert calls[-1] == ("c1", "get", "configmaps", 404)
    assert ("c1", "get", "discovery", 200) in calls


async def test_watch_error_events_raise_their_typed_error() -> None:
    expired = status(410, "Expired")
    lines = [
        {"type": "ADDED", "object": {"metadata": {"name": "a", "resourceVersion": "5"}}},
        {"type": "ERROR", "object": expired},
    ]

    def handler(request: httpx2.Request) -> httpx2.Response:
        if request.url.path == "/api/v1":
            return httpx2.Response(200, json=CONFIGMAPS)
        if request.url.path in ("/api", "/apis"):
            return httpx2.Response(200, json={"versions": ["v1"], "groups": []})
        assert request.url.params["watch"] == "true"
        assert request.url.params["allowWatchBookmarks"] == "true"
        assert request.url.params["resourceVersion"] == "4"
        return httpx2.Response(200, content="".join(json.dumps(e) + "\n" for e in lines))

    seen: list[tuple[str, str]] = []

    async def consume(client: KubeClient) -> None:
        async with client.watch("v1", "ConfigMap", resource_version="4") as events:
            async for event in events:
                seen.append((event.type, event.resource_version))

    async with client_answering(httpx2.MockTransport(handler)) as client:
        with pytest.raises(Gone) as gone:
            await consume(client)
    assert seen == [("ADDED", "5")]
    assert gone.value.status == expired


async def test_no_answer_is_cluster_unreachable() -> None:
    def refuse(request: httpx2.Request) -> httpx2.Response:
        raise httpx2.ConnectError("connection refused", request=request)

    async with client_answering(httpx2.MockTransport(refuse)) as client:
        with pytest.raises(ClusterUnreachable, match="c1: GET /readyz"):
            await client.request("GET", "/readyz")
