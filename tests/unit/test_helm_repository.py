"""Chart repositories for real: the demo chart of tests/charts packaged by the real helm,
served on 127.0.0.1 (behind basic auth), looked up and downloaded the way the HelmChart
controller and the Helm deployer do, then rendered by helm through a private session; and the
OCI tag listing against a registry-shaped server (no OCI registry can be run here, see
docs/helm.md)."""

from __future__ import annotations

import json
import socket
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from aiohttp import web
from aiohttp.test_utils import TestServer

from clusternet.deployer.helm import ChartLookupError, kubeconfig_document, oci_reference
from clusternet.deployer.helmcli import (
    Helm,
    HelmCommandError,
    RepositoryUnreachable,
    fetch_index,
    locate_chart,
    oci_tags,
    verify_chart,
)
from clusternet.kube import ClusterConfig
from clusternet.local.binaries import Toolbox
from clusternet.local.chartrepo import ChartRepository

CHART = Path(__file__).resolve().parents[1] / "charts" / "demo"
AUTH = ("reader", "s3cret")


@pytest.fixture(scope="module")
def helm() -> str:
    found = Toolbox().locate("helm")
    if found is None:
        pytest.skip("helm is not built: run `clusternet local build`")
    return str(found)


@pytest.fixture(scope="module")
def repo(helm: str) -> Iterator[ChartRepository]:
    with ChartRepository(helm, basic_auth=AUTH) as repository:
        repository.add(CHART, version="0.1.0")
        repository.add(CHART, version="0.2.0", values={"greeting": "bonjour"})
        yield repository


def _spec(repo: ChartRepository, version: str | None = None) -> dict[str, object]:
    return {"repo": repo.url, "chart": "demo", "version": version, "targetNamespace": "apps"}


async def test_verify_with_credentials(repo: ChartRepository) -> None:
    assert await verify_chart(_spec(repo, "0.1.0"), AUTH) == "0.1.0"
    assert await verify_chart(_spec(repo), AUTH) == "0.2.0"  # latest
    with pytest.raises(ChartLookupError, match=r"has no version '9\.9\.9'"):
        await verify_chart(_spec(repo, "9.9.9"), AUTH)
    with pytest.raises(ChartLookupError, match="HTTP 401"):
        await verify_chart(_spec(repo, "0.1.0"), None)
    with pytest.raises(ChartLookupError, match="HTTP 404"):
        await fetch_index(f"{repo.url}/nothing", AUTH)


async def test_unreachable_repository() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nothing listens there
    with pytest.raises(RepositoryUnreachable):
        await verify_chart({"repo": f"http://127.0.0.1:{port}", "chart": "demo"}, None)


async def test_locate_download_and_render(repo: ChartRepository, helm: str) -> None:
    kubeconfig = kubeconfig_document(ClusterConfig(server="https://127.0.0.1:1", token="t"))
    async with Helm(helm).session(kubeconfig) as session:
        files = {p.name: p for p in session.workdir.iterdir()}
        assert stat.S_IMODE(files["kubeconfig"].stat().st_mode) == 0o600
        chart = await locate_chart(_spec(repo, "0.2.0"), AUTH, session.workdir)
        assert chart.version == "0.2.0"
        assert chart.registry_config is None
        values = session.private_file("values.json", json.dumps({"replicas": 3}))
        out = await session.run(["template", "rel", *chart.args, "--values", values], seconds=60)
        workdir = session.workdir
    objects = {d["kind"]: d for d in yaml.safe_load_all(out) if d}
    assert objects["ConfigMap"]["data"] == {"greeting": "bonjour", "chartVersion": "0.2.0"}
    assert objects["Deployment"]["spec"]["replicas"] == 3
    assert not workdir.exists()  # credentials and values are gone with the session


async def test_failed_render_is_a_clear_error(repo: ChartRepository, helm: str) -> None:
    kubeconfig = kubeconfig_document(ClusterConfig(server="https://127.0.0.1:1", token="t"))
    async with Helm(helm).session(kubeconfig) as session:
        chart = await locate_chart(_spec(repo, "0.1.0"), AUTH, session.workdir)
        values = session.private_file("values.json", json.dumps({"fail": True}))
        with pytest.raises(HelmCommandError, match="rendering failed because"):
            await session.run(["template", "rel", *chart.args, "--values", values], seconds=60)


async def test_oci_tags_with_a_bearer_challenge() -> None:
    async def tags(request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != "Bearer tok":
            realm = f"http://{request.host}/token"
            challenge = f'Bearer realm="{realm}",service="reg",scope="repository:charts/demo:pull"'
            return web.Response(status=401, headers={"WWW-Authenticate": challenge})
        return web.json_response({"name": "charts/demo", "tags": ["0.1.0", "0.2.0"]})

    async def token(request: web.Request) -> web.Response:
        assert request.query["scope"] == "repository:charts/demo:pull"
        return web.json_response({"token": "tok"})

    app = web.Application()
    app.router.add_get("/v2/charts/demo/tags/list", tags)
    app.router.add_get("/token", token)
    async with TestServer(app, host="127.0.0.1") as server:
        ref = oci_reference(f"oci://127.0.0.1:{server.port}/charts", "demo")
        assert await oci_tags(ref, None, plain_http=True) == ["0.1.0", "0.2.0"]
        spec = {"repo": f"oci://127.0.0.1:{server.port}/charts", "chart": "demo",
                "plainHTTP": True}  # fmt: skip
        assert await verify_chart({**spec, "version": "0.1.0"}, None) == "0.1.0"
        with pytest.raises(ChartLookupError, match="no tag"):
            await verify_chart({**spec, "version": "0.3.0"}, None)
        with pytest.raises(ChartLookupError, match="HTTP 404"):
            await oci_tags(oci_reference(spec["repo"], "missing"), None, plain_http=True)
