"""Credentials that change while a client runs: rotated token files and exec plugins."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import time
from collections.abc import AsyncGenerator, Generator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx2

from clusternet.kube._config import ClusterConfig, ConfigError, ExecPlugin

# client-go re-reads token files once a minute (transport.NewCachedFileTokenSource).
TOKEN_FILE_MAX_AGE = 60.0
EXEC_TIMEOUT = 60.0
_SUPPORTED_EXEC_VERSIONS = (
    "client.authentication.k8s.io/v1",
    "client.authentication.k8s.io/v1beta1",
)


class _AsyncOnlyAuth(httpx2.Auth):
    def sync_auth_flow(self, request: httpx2.Request) -> Generator[httpx2.Request, httpx2.Response]:
        raise RuntimeError("clusternet.kube clients are async only")


class TokenFileAuth(_AsyncOnlyAuth):
    """A bearer token from a file, re-read when a minute old and after a 401."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._token: str | None = None
        self._read_at = 0.0

    def _current(self, force: bool = False) -> str:
        if force or self._token is None or time.monotonic() - self._read_at > TOKEN_FILE_MAX_AGE:
            try:
                self._token = self._path.read_text().strip()
            except OSError as err:
                if self._token is None:
                    raise ConfigError(f"cannot read token file {self._path}: {err}") from err
                # Keep the last good token through a transient failure (kubelet swapping it).
            self._read_at = time.monotonic()
        assert self._token is not None
        return self._token

    async def async_auth_flow(
        self, request: httpx2.Request
    ) -> AsyncGenerator[httpx2.Request, httpx2.Response]:
        request.headers["Authorization"] = f"Bearer {self._current()}"
        response = yield request
        if response.status_code == 401:
            request.headers["Authorization"] = f"Bearer {self._current(force=True)}"
            yield request


class ExecAuth(_AsyncOnlyAuth):
    """A token from a client-go credential plugin, cached until it expires or is refused.

    One lock per cluster: a burst of requests with an expired token runs the plugin once.
    """

    def __init__(self, plugin: ExecPlugin, config: ClusterConfig) -> None:
        if plugin.api_version not in _SUPPORTED_EXEC_VERSIONS:
            raise ConfigError(f"exec plugin apiVersion {plugin.api_version} is not supported")
        self._plugin = plugin
        self._config = config
        self._token: str | None = None
        self._expires_at: datetime | None = None
        self._lock = asyncio.Lock()

    async def _current(self, refused: str | None = None) -> str:
        async with self._lock:
            expired = self._expires_at is not None and datetime.now(UTC) >= self._expires_at
            # Another request may already have replaced the refused token.
            if self._token is None or expired or self._token == refused:
                self._token, self._expires_at = await self._run()
            return self._token

    async def _run(self) -> tuple[str, datetime | None]:
        plugin = self._plugin
        proc = await asyncio.create_subprocess_exec(
            plugin.command,
            *plugin.args,
            env={**os.environ, **plugin.env, "KUBERNETES_EXEC_INFO": json.dumps(self._exec_info())},
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            stdout, stderr = await asyncio.wait_for(proc.communicate(), EXEC_TIMEOUT)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise ConfigError(f"exec plugin {plugin.command} ran over {EXEC_TIMEOUT}s") from None
        if proc.returncode != 0:
            raise ConfigError(
                f"exec plugin {plugin.command} exited {proc.returncode}: "
                f"{stderr.decode(errors='replace').strip()}"
            )
        try:
            status = json.loads(stdout)["status"]
        except (ValueError, KeyError, TypeError) as err:
            raise ConfigError(f"exec plugin {plugin.command} printed no ExecCredential") from err
        token = status.get("token")
        if not token:
            # Client certificates from a plugin would need a new TLS identity per refresh.
            raise ConfigError(f"exec plugin {plugin.command} returned no token")
        expiry = status.get("expirationTimestamp")
        return token, datetime.fromisoformat(expiry) if expiry else None

    def _exec_info(self) -> dict[str, Any]:
        spec: dict[str, Any] = {"interactive": False}
        if self._plugin.provide_cluster_info:
            config = self._config
            cluster: dict[str, Any] = {"server": config.server}
            if config.ca_data:
                cluster["certificate-authority-data"] = base64.b64encode(config.ca_data).decode()
            if config.tls_server_name:
                cluster["tls-server-name"] = config.tls_server_name
            if config.insecure_skip_tls_verify:
                cluster["insecure-skip-tls-verify"] = True
            if self._plugin.cluster_extension is not None:
                cluster["config"] = self._plugin.cluster_extension
            spec["cluster"] = cluster
        return {"apiVersion": self._plugin.api_version, "kind": "ExecCredential", "spec": spec}

    async def async_auth_flow(
        self, request: httpx2.Request
    ) -> AsyncGenerator[httpx2.Request, httpx2.Response]:
        token = await self._current()
        request.headers["Authorization"] = f"Bearer {token}"
        response = yield request
        if response.status_code == 401:
            request.headers["Authorization"] = f"Bearer {await self._current(refused=token)}"
            yield request
