"""Proxy URL parsing, child credentials, header filtering, Status errors, SAR caching."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import httpx2
import pytest
from multidict import CIMultiDict

from clusternet.hub.authn import RequestHeaderConfig, UserInfo
from clusternet.hub.authz import Attributes, SubjectAccessReviewer, verb_for_method
from clusternet.hub.proxy import (
    ChildCredentials,
    InvalidProxyPath,
    NoAPIServerURL,
    ProxyTarget,
    credentials_from_extra,
    forwarded_request_headers,
    forwarded_response_headers,
    parse_proxy_path,
)
from clusternet.hub.status import status_body

APISERVER = "https://10.0.0.1:6443"


@pytest.mark.parametrize(
    ("rest", "expected"),
    [
        ("direct/api/v1/pods", ProxyTarget("https", "10.0.0.1", 6443, "/api/v1/pods")),
        ("direct", ProxyTarget("https", "10.0.0.1", 6443, "/")),
        ("direct/", ProxyTarget("https", "10.0.0.1", 6443, "/")),
        (
            "https/kubernetes.default.svc/api/v1/pods",
            ProxyTarget("https", "kubernetes.default.svc", 443, "/api/v1/pods"),
        ),
        (
            "http/localhost:8080/replicas/predict",
            ProxyTarget("http", "localhost", 8080, "/replicas/predict"),
        ),
        ("https/[::1]:6443/readyz", ProxyTarget("https", "::1", 6443, "/readyz")),
        ("https/host:1/a%2Fb", ProxyTarget("https", "host", 1, "/a%2Fb")),
    ],
)
def test_proxy_paths(rest: str, expected: ProxyTarget) -> None:
    assert parse_proxy_path(rest, APISERVER) == expected


def test_direct_keeps_the_apiserver_path_prefix() -> None:
    target = parse_proxy_path("direct/version", "https://lb.example:8443/k8s/")
    assert target == ProxyTarget("https", "lb.example", 8443, "/k8s/version")
    assert target.url("a=1&b=2") == "https://lb.example:8443/k8s/version?a=1&b=2"
    assert ProxyTarget("https", "::1", 443, "/").url() == "https://[::1]:443/"


@pytest.mark.parametrize(
    ("rest", "message"),
    [
        ("", "unknown proxy target ''"),
        ("ftp/host/x", "unknown proxy target 'ftp'"),
        ("https//path", "no host after https/"),
        ("https/host:notaport/x", "is not a host"),
    ],
)
def test_bad_proxy_paths(rest: str, message: str) -> None:
    with pytest.raises(InvalidProxyPath, match=message):
        parse_proxy_path(rest, APISERVER)


def test_direct_needs_the_reported_apiserver_url() -> None:
    with pytest.raises(NoAPIServerURL):
        parse_proxy_path("direct/api", None)


def test_credentials_from_user_extras() -> None:
    cert = base64.b64encode(b"-----BEGIN CERTIFICATE-----\n...").decode()
    key = base64.b64encode(b"-----BEGIN PRIVATE KEY-----\n...").decode()
    assert credentials_from_extra({"clusternet-token": ("t",)}) == ChildCredentials(token="t")
    both = credentials_from_extra(
        {"clusternet-certificate": (cert,), "clusternet-privatekey": (key,)}
    )
    assert both.client_cert_pem is not None
    assert both.client_cert_pem.startswith(b"-----BEGIN")
    assert credentials_from_extra({}) == ChildCredentials()
    with pytest.raises(ValueError, match="must come together"):
        credentials_from_extra({"clusternet-certificate": (cert,)})
    with pytest.raises(ValueError, match="not base64"):
        credentials_from_extra(
            {"clusternet-certificate": ("%%%",), "clusternet-privatekey": (key,)}
        )
    with pytest.raises(ValueError, match="base64-encoded PEM"):
        credentials_from_extra(
            {
                "clusternet-certificate": (base64.b64encode(b"DER").decode(),),
                "clusternet-privatekey": (key,),
            }
        )


def test_identity_impersonation_and_hop_by_hop_headers_are_not_forwarded() -> None:
    incoming = CIMultiDict(
        [
            ("Accept", "application/json"),
            ("Authorization", "Bearer parent-token"),
            ("X-Remote-User", "alice"),
            ("X-Remote-Extra-Clusternet-Token", "child-token"),
            ("Impersonate-User", "admin"),
            ("X-Who", "custom identity header"),
            ("Connection", "keep-alive, X-Hop"),
            ("X-Hop", "only for this connection"),
            ("Keep-Alive", "timeout=5"),
            ("Host", "parent"),
            ("Content-Length", "3"),
        ]
    )
    config = RequestHeaderConfig(ca_pem=b"", username_headers=("X-Who",))
    forwarded = forwarded_request_headers(incoming, config, ChildCredentials(token="child-token"))
    assert forwarded == [
        ("Accept", "application/json"),
        ("Content-Length", "3"),
        ("Authorization", "Bearer child-token"),
    ]


def test_upgrade_headers_are_forwarded_for_an_upgrade() -> None:
    incoming = CIMultiDict(
        [("Connection", "Upgrade"), ("Upgrade", "websocket"), ("Sec-WebSocket-Key", "k")]
    )
    forwarded = forwarded_request_headers(incoming, None, ChildCredentials())
    assert forwarded == [
        ("Sec-WebSocket-Key", "k"),
        ("Connection", "Upgrade"),
        ("Upgrade", "websocket"),
    ]
    response = httpx2.Headers(
        [("Connection", "Upgrade"), ("Upgrade", "websocket"), ("Sec-WebSocket-Accept", "a")]
    )
    kept = forwarded_response_headers(response, upgrade=True)
    assert [(k.lower(), v) for k, v in kept.items()] == [
        ("connection", "Upgrade"),
        ("upgrade", "websocket"),
        ("sec-websocket-accept", "a"),
    ]
    plain = httpx2.Headers([("Transfer-Encoding", "chunked"), ("Content-Type", "a/b")])
    kept = forwarded_response_headers(plain, upgrade=False)
    assert [(k.lower(), v) for k, v in kept.items()] == [("content-type", "a/b")]


def test_status_errors_have_the_kubernetes_shape() -> None:
    assert status_body(404, "cluster x is not found") == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": "cluster x is not found",
        "reason": "NotFound",
        "code": 404,
    }
    assert status_body(503, "down", details={"name": "x"})["reason"] == "ServiceUnavailable"


@pytest.mark.parametrize(
    ("method", "verb"),
    [("GET", "get"), ("HEAD", "get"), ("POST", "create"), ("PUT", "update"),
     ("PATCH", "patch"), ("DELETE", "delete"), ("OPTIONS", "options")],
)  # fmt: skip
def test_verbs_follow_kube_apiserver(method: str, verb: str) -> None:
    assert verb_for_method(method) == verb


class FakeParent:
    """Answers SubjectAccessReviews: allowed for resource names in ``allowed``."""

    def __init__(self, allowed: set[str]) -> None:
        self.allowed = allowed
        self.reviews: list[dict[str, Any]] = []
        self.received = asyncio.Event()
        self.gate = asyncio.Event()
        self.gate.set()

    async def create(self, review: dict[str, Any]) -> dict[str, Any]:
        self.reviews.append(review)
        self.received.set()
        await self.gate.wait()
        name = review["spec"].get("resourceAttributes", {}).get("name")
        return {**review, "status": {"allowed": name in self.allowed, "reason": "by test"}}


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


ALICE = UserInfo(
    "alice", groups=("dev",), extra={"clusternet-token": ("secret",), "team": ("blue",)}
)
SOCKET = Attributes(verb="get", resource="sockets", subresource="proxy", name="c1")


async def test_decisions_are_cached_until_the_ttl_ends() -> None:
    parent, clock = FakeParent({"c1"}), Clock()
    reviewer = SubjectAccessReviewer(parent, clock=clock)  # type: ignore[arg-type]
    assert (await reviewer.authorize(ALICE, SOCKET)).allowed
    assert (await reviewer.authorize(ALICE, SOCKET)).allowed
    assert len(parent.reviews) == 1
    other = Attributes(verb="get", resource="sockets", subresource="proxy", name="c2")
    assert not (await reviewer.authorize(ALICE, other)).allowed
    clock.now = 10.5
    await reviewer.authorize(ALICE, SOCKET)
    assert len(parent.reviews) == 3


async def test_concurrent_identical_reviews_are_sent_once() -> None:
    parent = FakeParent({"c1"})
    parent.gate.clear()
    reviewer = SubjectAccessReviewer(parent)  # type: ignore[arg-type]
    waiting = [asyncio.create_task(reviewer.authorize(ALICE, SOCKET)) for _ in range(50)]
    await parent.received.wait()
    parent.gate.set()
    decisions = await asyncio.gather(*waiting)
    assert all(d.allowed for d in decisions)
    assert len(parent.reviews) == 1


async def test_reviews_leave_out_credentials_and_skip_masters() -> None:
    parent = FakeParent({"c1"})
    reviewer = SubjectAccessReviewer(parent)  # type: ignore[arg-type]
    await reviewer.authorize(ALICE, SOCKET)
    spec = parent.reviews[0]["spec"]
    assert spec["extra"] == {"team": ["blue"]}
    assert spec["resourceAttributes"] == {
        "verb": "get",
        "group": "proxies.clusternet.io",
        "version": "v1alpha1",
        "resource": "sockets",
        "subresource": "proxy",
        "name": "c1",
    }
    assert "secret" not in json.dumps(parent.reviews)
    admin = UserInfo("admin", groups=("system:masters",))
    assert (await reviewer.authorize(admin, SOCKET)).allowed
    assert len(parent.reviews) == 1
