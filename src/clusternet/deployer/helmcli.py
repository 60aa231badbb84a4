"""The helm binary and chart repositories, for the Helm deployer and the HelmChart controller.

Credentials never go on a command line (``/proc/<pid>/cmdline`` is world-readable): the
cluster's credentials are a 0600 kubeconfig, OCI registry credentials a 0600
``--registry-config``, values a 0600 ``--values`` file, all in a private temporary folder
removed after the call.  Charts of HTTP(S) repositories are fetched here (index lookup and
download, with the pull Secret's basic auth sent only to the repository's own host) and helm
installs the downloaded archive; OCI charts are pulled by helm itself.  helm's cache, config
and data homes point into the same temporary folder, so nothing is written to ``$HOME``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import httpx2
import structlog
import yaml

from clusternet.deployer.helm import (
    ChartLookupError,
    OCIReference,
    chart_download_url,
    find_chart,
    find_oci_version,
    index_url,
    is_oci,
    oci_reference,
    registry_config,
    same_origin,
)

log = structlog.get_logger(__name__)

HTTP_TIMEOUT: Final = 30.0
MAX_INDEX_BYTES: Final = 64 * 1024 * 1024
MAX_CHART_BYTES: Final = 64 * 1024 * 1024
_PASSED_ENV: Final = frozenset(
    {"HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy",
     "SSL_CERT_FILE", "SSL_CERT_DIR"}
)  # fmt: skip
# Beyond helm's own --timeout: how long one helm process may run before it is killed.
PROCESS_GRACE: Final = 60.0


class RepositoryUnreachable(Exception):
    """The repository could not be asked (network, TLS, HTTP 5xx, bad index): retried."""


class HelmCommandError(Exception):
    def __init__(self, args: Sequence[str], code: int | None, stderr: str) -> None:
        self.code = code
        self.stderr = stderr.strip()
        message = self.stderr.removeprefix("Error: ") or f"helm exited with code {code}"
        super().__init__(message)
        self.command = args[0] if args else ""


def find_helm(binary: str | None = None) -> str | None:
    """The helm binary: ``binary`` (a path or a name on $PATH), else ``helm`` on $PATH."""
    if binary:
        return binary if os.path.sep in binary else shutil.which(binary)
    return shutil.which("helm")


def _private_file(path: Path, content: str) -> Path:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(content)
    return path


@contextlib.contextmanager
def _workdir() -> Any:
    path = Path(tempfile.mkdtemp(prefix="clusternet-helm-"))  # 0700
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


# ---------------------------------------------------------------- repositories


async def fetch_index(
    repo: str, credentials: tuple[str, str] | None, *, verify: bool = True
) -> dict[str, Any]:
    """The repository's ``index.yaml``; :class:`ChartLookupError` for a 401/403/404 (the
    repository answered: the chart cannot be found there), :class:`RepositoryUnreachable`
    for anything else."""
    url = index_url(repo)
    auth = credentials if credentials else None
    try:
        async with httpx2.AsyncClient(timeout=HTTP_TIMEOUT, verify=verify) as client:
            response = await client.get(url, auth=auth, follow_redirects=True)
    except httpx2.HTTPError as err:
        raise RepositoryUnreachable(f"{url}: {err or type(err).__name__}") from err
    if response.status_code in (401, 403):
        raise ChartLookupError(f"{url}: HTTP {response.status_code} (check the chartPullSecret)")
    if response.status_code == 404:
        raise ChartLookupError(f"{url}: HTTP 404, not a chart repository")
    if response.status_code >= 400:
        raise RepositoryUnreachable(f"{url}: HTTP {response.status_code}")
    if len(response.content) > MAX_INDEX_BYTES:
        raise RepositoryUnreachable(f"{url}: index larger than {MAX_INDEX_BYTES} bytes")
    try:
        index = yaml.safe_load(response.content)
    except yaml.YAMLError as err:
        raise RepositoryUnreachable(f"{url}: index is not YAML: {err}") from err
    if not isinstance(index, dict):
        raise RepositoryUnreachable(f"{url}: index is not a mapping")
    return index


async def oci_tags(
    ref: OCIReference, credentials: tuple[str, str] | None, *, plain_http: bool = False
) -> list[str]:
    """Tags of an OCI repository (distribution-spec ``/v2/<name>/tags/list``), with the
    registry's bearer-token challenge answered (anonymously or with ``credentials``)."""
    scheme = "http" if plain_http else "https"
    url = f"{scheme}://{ref.host}/v2/{ref.repository}/tags/list"
    try:
        async with httpx2.AsyncClient(timeout=HTTP_TIMEOUT) as client:
            response = await client.get(url, auth=credentials, follow_redirects=True)
            if response.status_code == 401:
                token = await _bearer_token(client, response, credentials)
                if token is not None:
                    response = await client.get(
                        url, headers={"Authorization": f"Bearer {token}"}, follow_redirects=True
                    )
    except httpx2.HTTPError as err:
        raise RepositoryUnreachable(f"{url}: {err or type(err).__name__}") from err
    if response.status_code in (401, 403, 404):
        raise ChartLookupError(f"{ref.url}: HTTP {response.status_code}")
    if response.status_code >= 400:
        raise RepositoryUnreachable(f"{url}: HTTP {response.status_code}")
    try:
        tags = response.json().get("tags") or []
    except (ValueError, AttributeError) as err:
        raise RepositoryUnreachable(f"{url}: not a tag list: {err}") from err
    return [str(t) for t in tags]


async def _bearer_token(
    client: httpx2.AsyncClient, challenge: httpx2.Response, credentials: tuple[str, str] | None
) -> str | None:
    header = challenge.headers.get("www-authenticate", "")
    scheme, _, params = header.partition(" ")
    if scheme.lower() != "bearer":
        return None
    fields = dict(
        (k.strip(), v.strip().strip('"'))
        for k, _, v in (p.partition("=") for p in params.split(","))
        if k.strip()
    )
    realm = fields.pop("realm", None)
    if not realm:
        return None
    response = await client.get(realm, params=fields, auth=credentials)
    if response.status_code >= 400:
        return None
    body = response.json()
    token = body.get("token") or body.get("access_token")
    return str(token) if token else None


@dataclass(frozen=True)
class LocatedChart:
    version: str
    args: list[str]  # chart reference for helm install/upgrade
    registry_config: dict[str, Any] | None = None


async def locate_chart(
    options: dict[str, Any] | Any,
    credentials: tuple[str, str] | None,
    workdir: Path,
) -> LocatedChart:
    """Resolve and fetch a chart: HTTP(S) → download the archive into ``workdir``; OCI →
    the ``oci://`` reference and exact version for helm to pull."""
    repo, chart, version = options["repo"], options["chart"], options.get("version") or None
    if is_oci(repo):
        ref = oci_reference(repo, chart)
        plain = bool(options.get("plainHTTP"))
        tags = await oci_tags(ref, credentials, plain_http=plain)
        resolved = find_oci_version(tags, chart, version)
        args = [ref.url, "--version", resolved]
        if plain:
            args.append("--plain-http")
        config = registry_config(ref.host, credentials) if credentials else None
        return LocatedChart(resolved, args, config)
    index = await fetch_index(repo, credentials)
    entry = find_chart(index, chart, version)
    url = chart_download_url(repo, entry.urls[0])
    auth = credentials if credentials and same_origin(url, repo) else None
    try:
        async with httpx2.AsyncClient(timeout=HTTP_TIMEOUT) as client:
            response = await client.get(url, auth=auth, follow_redirects=True)
    except httpx2.HTTPError as err:
        raise RepositoryUnreachable(f"{url}: {err or type(err).__name__}") from err
    if response.status_code >= 400:
        raise RepositoryUnreachable(f"{url}: HTTP {response.status_code}")
    if len(response.content) > MAX_CHART_BYTES:
        raise ChartLookupError(f"{url}: chart archive larger than {MAX_CHART_BYTES} bytes")
    path = workdir / f"{chart}-{entry.version}.tgz"
    path.write_bytes(response.content)
    return LocatedChart(entry.version, [str(path)])


async def verify_chart(options: dict[str, Any], credentials: tuple[str, str] | None) -> str:
    """The version the chart resolves to (the HelmChart controller's check)."""
    repo, chart, version = options["repo"], options["chart"], options.get("version") or None
    if is_oci(repo):
        ref = oci_reference(repo, chart)
        tags = await oci_tags(ref, credentials, plain_http=bool(options.get("plainHTTP")))
        return find_oci_version(tags, chart, version)
    return find_chart(await fetch_index(repo, credentials), chart, version).version


# ---------------------------------------------------------------- helm


class Helm:
    """Runs the helm binary against one cluster, given as a kubeconfig document."""

    def __init__(self, binary: str) -> None:
        self.binary = binary

    @contextlib.asynccontextmanager
    async def session(self, kubeconfig: dict[str, Any]) -> AsyncIterator[HelmSession]:
        with _workdir() as workdir:
            _private_file(workdir / "kubeconfig", yaml.safe_dump(kubeconfig))
            yield HelmSession(self.binary, workdir)


class HelmSession:
    """One private folder: kubeconfig, values, registry config, downloaded charts."""

    def __init__(self, binary: str, workdir: Path) -> None:
        self.binary = binary
        self.workdir = workdir

    def private_file(self, name: str, content: str) -> str:
        path = self.workdir / name
        if path.exists():
            path.unlink()
        return str(_private_file(path, content))

    async def run(
        self,
        args: Sequence[str],
        *,
        seconds: float,
        registry: bool = False,
    ) -> str:
        env = {
            "PATH": os.environ.get("PATH", ""),
            "HOME": str(self.workdir),
            "HELM_CACHE_HOME": str(self.workdir / "cache"),
            "HELM_CONFIG_HOME": str(self.workdir / "config"),
            "HELM_DATA_HOME": str(self.workdir / "data"),
            "HELM_DRIVER": "secret",
            "HELM_MAX_HISTORY": "5",
        }
        # Proxies and trust stores of the process apply to helm too (OCI pulls, the cluster).
        env.update({k: v for k, v in os.environ.items() if k in _PASSED_ENV})
        argv = [self.binary, *args, "--kubeconfig", str(self.workdir / "kubeconfig")]
        if registry:
            argv += ["--registry-config", str(self.workdir / "registry.json")]
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
            cwd=self.workdir,
        )
        try:
            async with asyncio.timeout(seconds):
                stdout, stderr = await proc.communicate()
        except TimeoutError:
            proc.kill()
            await proc.wait()
            message = f"helm {args[0]} timed out after {seconds:.0f}s"
            raise HelmCommandError(args, None, message) from None
        except asyncio.CancelledError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
            raise
        if proc.returncode != 0:
            raise HelmCommandError(args, proc.returncode, stderr.decode(errors="replace"))
        return stdout.decode(errors="replace")

    async def status(self, name: str, namespace: str) -> dict[str, Any] | None:
        """The release as ``helm status -o json`` shows it, or None if there is none."""
        try:
            out = await self.run(
                ["status", name, "--namespace", namespace, "--output", "json"], seconds=60
            )
        except HelmCommandError as err:
            if "not found" in err.stderr:
                return None
            raise
        return _json_object(out)

    async def deploy(
        self, args: Sequence[str], timeout_seconds: int, registry: dict[str, Any] | None
    ) -> dict[str, Any]:
        if registry is not None:
            self.private_file("registry.json", json.dumps(registry))
        out = await self.run(
            args, seconds=timeout_seconds + PROCESS_GRACE, registry=registry is not None
        )
        return _json_object(out)

    async def uninstall(self, name: str, namespace: str, timeout_seconds: int = 300) -> None:
        await self.run(
            [
                "uninstall", name, "--namespace", namespace, "--ignore-not-found",
                "--timeout", f"{timeout_seconds}s",
            ],
            seconds=timeout_seconds + PROCESS_GRACE,
        )  # fmt: skip


def _json_object(text: str) -> dict[str, Any]:
    # helm may print warnings before the JSON document.
    start = text.find("{")
    try:
        value = json.loads(text[start:]) if start >= 0 else None
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise HelmCommandError(["output"], 0, f"helm printed no JSON release: {text[:200]!r}")
    return value


__all__ = [
    "ChartLookupError",
    "Helm",
    "HelmCommandError",
    "HelmSession",
    "LocatedChart",
    "RepositoryUnreachable",
    "fetch_index",
    "find_helm",
    "locate_chart",
    "oci_tags",
    "verify_chart",
]
