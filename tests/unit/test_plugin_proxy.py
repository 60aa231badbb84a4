"""The shadow proxy against a fake parent: paths rewritten, bodies and errors passed through."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import httpx2
import pytest
from aiohttp import web

from clusternet.cli.plugin.proxy import ShadowAPINotServed, ShadowProxy
from clusternet.kube import ClusterConfig

SHADOW_DISCOVERY = {
    "kind": "APIResourceList",
    "groupVersion": "shadow/v1alpha1",
    "resources": [
        {"name": "deployments", "namespaced": True, "kind": "Deployment"},
        {"name": "deployments/scale", "namespaced": True, "kind": "Scale"},
    ],
}


class FakeParent:
    def __init__(self, serve_shadow: bool) -> None:
        self.serve_shadow = serve_shadow
        self.seen: list[tuple[str, str, str, bytes]] = []

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.seen.append(
            (request.method, request.path_qs, request.headers.get("Authorization", ""), body)
        )
        if request.path == "/apis/shadow/v1alpha1":
            if not self.serve_shadow:
                return web.json_response({"kind": "Status", "code": 404}, status=404)
            return web.json_response(SHADOW_DISCOVERY)
        if request.path.endswith("/missing"):
            status = {"kind": "Status", "reason": "NotFound", "code": 404, "message": "gone"}
            return web.json_response(status, status=404)
        return web.json_response({"path": request.path_qs}, headers={"X-Echo": "1"})


@pytest.fixture
async def parent_url(request: pytest.FixtureRequest) -> AsyncIterator[tuple[FakeParent, str]]:
    fake = FakeParent(serve_shadow=getattr(request, "param", True))
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", fake.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    yield fake, f"http://{host}:{port}"
    await runner.cleanup()


async def test_requests_are_rewritten_and_authenticated_as_the_user(
    parent_url: tuple[FakeParent, str],
) -> None:
    fake, url = parent_url
    async with (
        ShadowProxy(ClusterConfig(server=url, token="user-token")) as proxy,
        httpx2.AsyncClient(base_url=proxy.url) as kubectl,
    ):
        assert proxy.mirrored == {"deployments", "deployments/scale"}
        patch = json.dumps({"spec": {"replicas": 3}}).encode()
        response = await kubectl.patch(
            "/apis/apps/v1/namespaces/baz/deployments/web?fieldManager=kubectl-edit",
            content=patch,
            headers={"Content-Type": "application/strategic-merge-patch+json"},
        )
        assert response.status_code == 200
        assert response.headers["X-Echo"] == "1"
        assert response.json() == {
            "path": "/apis/shadow/v1alpha1/namespaces/baz/deployments/web?fieldManager=kubectl-edit"
        }
        method, _, authorization, body = fake.seen[-1]
        assert (method, authorization, body) == ("PATCH", "Bearer user-token", patch)

        # not mirrored: to the parent as is
        response = await kubectl.get("/api/v1/nodes")
        assert response.json() == {"path": "/api/v1/nodes"}

        # the parent's errors reach kubectl unchanged (it prints `Error from server (...)`)
        response = await kubectl.get("/apis/apps/v1/namespaces/baz/deployments/missing")
        assert response.status_code == 404
        assert response.json()["reason"] == "NotFound"


async def test_only_the_one_off_token_is_accepted(parent_url: tuple[FakeParent, str]) -> None:
    fake, url = parent_url
    async with (
        ShadowProxy(ClusterConfig(server=url, token="user-token")) as proxy,
        httpx2.AsyncClient(base_url=proxy.url.rsplit("/", 1)[0]) as anyone,
    ):
        for path in ("/api/v1/nodes", "/guess/api/v1/nodes", f"/{proxy.token[:-1]}/api/v1/nodes"):
            response = await anyone.get(path)
            assert response.status_code == 401
            assert response.json()["reason"] == "Unauthorized"
    assert [seen[1] for seen in fake.seen] == ["/apis/shadow/v1alpha1"]  # nothing forwarded


@pytest.mark.parametrize("parent_url", [False], indirect=True)
async def test_a_parent_without_shadow_api_is_refused(parent_url: tuple[FakeParent, str]) -> None:
    _, url = parent_url
    with pytest.raises(ShadowAPINotServed, match="ShadowAPI feature gate"):
        async with ShadowProxy(ClusterConfig(server=url)):
            pass
