"""An async client for one cluster that works on plain dicts of any kind.

One :class:`KubeClient` per cluster: it owns that cluster's connection pool, credentials
and REST mapper, and shares nothing with the clients of other clusters.  Objects are plain
``dict``s as the server sends them; which URL serves a kind is found by discovery.
"""

from __future__ import annotations

import builtins
import json
import logging
import ssl
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote

import httpx2

from clusternet.kube._aiohttp import AiohttpTransport
from clusternet.kube._auth import ExecAuth, TokenFileAuth
from clusternet.kube._config import ClusterConfig, ConfigError, load_kubeconfig
from clusternet.kube._discovery import APIResource, RESTMapper, discover
from clusternet.kube._errors import ClusterUnreachable, error_from_response, error_from_status

log = logging.getLogger(__name__)

Object = dict[str, Any]
TransportFactory = Callable[[ssl.SSLContext], httpx2.AsyncBaseTransport]
_JSON = "application/json"


class RequestObserver(Protocol):
    """Called once per request, e.g. to export ``rest_client_request_duration_seconds``.

    ``verb`` is the Kubernetes verb (get, list, watch, create, update, patch, delete,
    deletecollection) or the HTTP method of a raw request; ``resource`` is the plural (with
    ``/subresource``) or the raw path; ``code`` is the HTTP status, 0 if none came.  For a
    watch, ``seconds`` is the time to the response headers.
    """

    def __call__(self, cluster: str, verb: str, resource: str, code: int, seconds: float) -> None:
        """Must not block: it runs on the event loop."""


class PatchType(StrEnum):
    JSON = "application/json-patch+json"  # RFC 6902
    MERGE = "application/merge-patch+json"  # RFC 7386
    STRATEGIC = "application/strategic-merge-patch+json"  # built-in kinds only
    APPLY = "application/apply-patch+yaml"  # server-side apply (JSON is valid YAML)


def go_json(value: Any) -> bytes:
    """``value`` as JSON in the bytes Go's ``encoding/json`` writes for it: UTF-8 as is,
    ``<``, ``>`` and ``&`` as ``\\u003c``, ``\\u003e``, ``\\u0026``, U+2028/U+2029 escaped.

    kube-apiserver's JSON patch compares a ``test`` op's string with the stored object's as
    raw bytes of the object it re-encodes in Go: "a <b>" written by Python's default encoder
    never equals its own value stored there.  (Those characters appear only inside strings
    in JSON, so replacing them in the text is safe.)"""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    for char, escaped in (
        ("&", "\\u0026"), ("<", "\\u003c"), (">", "\\u003e"),
        ("\u2028", "\\u2028"), ("\u2029", "\\u2029"),
    ):  # fmt: skip
        text = text.replace(char, escaped)
    return text.encode()


class PropagationPolicy(StrEnum):
    ORPHAN = "Orphan"
    BACKGROUND = "Background"
    FOREGROUND = "Foreground"


@dataclass(frozen=True)
class Preconditions:
    """Delete only if the object still has this uid and/or resourceVersion (else 409)."""

    uid: str | None = None
    resource_version: str | None = None


@dataclass(frozen=True)
class WatchEvent:
    type: str  # ADDED, MODIFIED, DELETED or BOOKMARK
    object: Object

    @property
    def resource_version(self) -> str:
        return str(self.object.get("metadata", {}).get("resourceVersion", ""))


class KubeClient:
    """All API traffic to one cluster. Use as ``async with KubeClient(config) as client``.

    ``cluster`` names the cluster in errors and observer calls.  ``transport_factory``
    replaces the network layer (tests, or dialling a child cluster through the agent's
    tunnel); it gets the TLS context built from ``config`` so that TLS still ends at the
    cluster's API server.  HTTP/2 is opt-in: it multiplexes watches on one connection, but
    with httpcore a watch whose consumer stalls holds the connection's flow-control window
    and so stalls every other stream on it.
    """

    def __init__(
        self,
        config: ClusterConfig,
        *,
        cluster: str = "",
        observer: RequestObserver | None = None,
        timeout: float = 30.0,
        http2: bool = False,
        transport_factory: TransportFactory | None = None,
        user_agent: str = "clusternet-py",
    ) -> None:
        self.config = config
        self.cluster = cluster or config.server
        self.mapper = RESTMapper(self._discover)
        self._observer = observer
        self._timeout = timeout
        tls = tls_context(config)
        auth: httpx2.Auth | None = None
        if config.token_file is not None:
            auth = TokenFileAuth(config.token_file)
        elif config.exec_plugin is not None and config.token is None:
            auth = ExecAuth(config.exec_plugin, config)
        self._http = httpx2.AsyncClient(
            base_url=config.server,
            headers=_default_headers(config, user_agent),
            auth=auth,
            timeout=timeout,
            transport=(
                transport_factory(tls)
                if transport_factory
                else None
                if http2
                else AiohttpTransport(tls)
            ),
            verify=tls,
            http2=http2,
            # API Priority and Fairness, not the client, bounds concurrency; every open
            # watch holds an HTTP/1.1 connection, so a pool cap would block new requests.
            limits=httpx2.Limits(max_connections=None, max_keepalive_connections=20),
            trust_env=False,  # a cluster is reached as configured, never via HTTPS_PROXY
        )
        # tls-server-name: the name to send as SNI and to verify the serving cert against.
        self._extensions = (
            {"sni_hostname": config.tls_server_name} if config.tls_server_name else {}
        )

    @classmethod
    def from_kubeconfig(
        cls, source: str | Path | Mapping[str, Any], context: str | None = None, **kwargs: Any
    ) -> KubeClient:
        config = load_kubeconfig(source, context)
        kwargs.setdefault("cluster", context or "")
        return cls(config, **kwargs)

    async def __aenter__(self) -> KubeClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # ------------------------------------------------------------------ reads

    async def get(
        self, api_version: str, kind: str, name: str, *, namespace: str | None = None
    ) -> Object:
        res = await self.mapper.resource_for(api_version, kind)
        path = res.path(_namespace_for(res, namespace), name)
        return await self._json("get", res.plural, "GET", path)

    async def list(
        self,
        api_version: str,
        kind: str,
        *,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        limit: int | None = None,
        continue_: str | None = None,
        resource_version: str | None = None,
        resource_version_match: str | None = None,
    ) -> Object:
        """One page (all if no ``limit``); ``namespace=None`` lists all namespaces.

        Items get ``apiVersion`` and ``kind``, which the server leaves out of list items.
        The next page's token is ``result["metadata"].get("continue")``; an expired one
        raises :class:`Gone`.
        """
        res = await self.mapper.resource_for(api_version, kind)
        params = {
            "labelSelector": label_selector,
            "fieldSelector": field_selector,
            "limit": limit,
            "continue": continue_,
            "resourceVersion": resource_version,
            "resourceVersionMatch": resource_version_match,
        }
        result = await self._json("list", res.plural, "GET", res.path(namespace), params=params)
        for item in result.get("items") or ():
            item.setdefault("apiVersion", res.api_version)
            item.setdefault("kind", res.kind)
        return result

    @asynccontextmanager
    async def watch(
        self,
        api_version: str,
        kind: str,
        *,
        namespace: str | None = None,
        resource_version: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        allow_bookmarks: bool = True,
        timeout_seconds: int | None = None,
        send_initial_events: bool = False,
    ) -> AsyncIterator[AsyncIterator[WatchEvent]]:
        """A watch stream: ``async with client.watch(...) as events: async for e in events``.

        The iteration ends when the server closes the watch (``timeout_seconds`` or its own
        ``--min-request-timeout``); an ERROR event raises its typed error, e.g.
        :class:`Gone` when ``resource_version`` is too old.  BOOKMARK events carry only a
        newer resourceVersion to resume from.  ``send_initial_events`` asks for the
        WatchList stream (ADDED for every existing object, then a BOOKMARK annotated
        ``k8s.io/initial-events-end``).
        """
        res = await self.mapper.resource_for(api_version, kind)
        params: dict[str, Any] = {
            "watch": True,
            "resourceVersion": resource_version,
            "labelSelector": label_selector,
            "fieldSelector": field_selector,
            "allowWatchBookmarks": allow_bookmarks or None,
            "timeoutSeconds": timeout_seconds,
        }
        if send_initial_events:
            params |= {"sendInitialEvents": True, "resourceVersionMatch": "NotOlderThan"}
        # The server ends the watch; a client read timeout would only cut quiet streams.
        read = None if timeout_seconds is None else timeout_seconds + self._timeout
        timeouts = httpx2.Timeout(self._timeout, read=read)
        response = await self._send(
            "watch",
            res.plural,
            "GET",
            res.path(namespace),
            params=params,
            stream=True,
            timeouts=timeouts,
        )
        try:
            yield self._events(response)
        finally:
            await response.aclose()

    async def _events(self, response: httpx2.Response) -> AsyncIterator[WatchEvent]:
        try:
            async for line in response.aiter_lines():
                if not line.strip():
                    continue
                event = json.loads(line)
                obj = event.get("object") or {}
                if event.get("type") == "ERROR":
                    raise error_from_status(int(obj.get("code") or 500), obj)
                yield WatchEvent(event["type"], obj)
        except httpx2.RequestError as err:
            raise ClusterUnreachable(f"{self.cluster}: watch broken: {err!r}") from err

    # ------------------------------------------------------------------ writes

    async def create(
        self,
        obj: Object,
        *,
        namespace: str | None = None,
        dry_run: bool = False,
        field_manager: str | None = None,
    ) -> Object:
        res, ns, _ = await self._target(obj, namespace, need_name=False)
        params = _write_params(dry_run, field_manager)
        return await self._json("create", res.plural, "POST", res.path(ns), params=params, body=obj)

    async def update(
        self, obj: Object, *, dry_run: bool = False, field_manager: str | None = None
    ) -> Object:
        """PUT; fails with :class:`Conflict` if ``metadata.resourceVersion`` is stale."""
        return await self._put(obj, None, dry_run, field_manager)

    async def update_status(
        self, obj: Object, *, dry_run: bool = False, field_manager: str | None = None
    ) -> Object:
        """PUT to the status subresource: only ``status`` changes, ``spec`` is ignored."""
        return await self._put(obj, "status", dry_run, field_manager)

    async def _put(
        self, obj: Object, subresource: str | None, dry_run: bool, field_manager: str | None
    ) -> Object:
        res, ns, name = await self._target(obj, None)
        label = f"{res.plural}/{subresource}" if subresource else res.plural
        path = res.path(ns, name, subresource)
        params = _write_params(dry_run, field_manager)
        return await self._json("update", label, "PUT", path, params=params, body=obj)

    async def patch(
        self,
        api_version: str,
        kind: str,
        name: str,
        patch: Object | builtins.list[Any],
        *,
        patch_type: PatchType = PatchType.MERGE,
        namespace: str | None = None,
        subresource: str | None = None,
        field_manager: str | None = None,
        force: bool = False,
        dry_run: bool = False,
    ) -> Object:
        """Patch; with ``PatchType.APPLY`` (see :meth:`apply`) ``field_manager`` is required
        and ``force`` takes over fields owned by other managers instead of a 409."""
        res = await self.mapper.resource_for(api_version, kind)
        if patch_type is PatchType.APPLY and not field_manager:
            raise ValueError("server-side apply needs a field_manager")
        params = _write_params(dry_run, field_manager)
        if patch_type is PatchType.APPLY:
            params["force"] = force
        elif force:
            raise ValueError("force only applies to server-side apply")
        label = f"{res.plural}/{subresource}" if subresource else res.plural
        path = res.path(_namespace_for(res, namespace), name, subresource)
        body: Any = go_json(patch) if patch_type is PatchType.JSON else patch
        return await self._json(
            "patch", label, "PATCH", path, params=params, body=body, content_type=patch_type
        )

    async def apply(
        self,
        obj: Object,
        *,
        field_manager: str,
        force: bool = False,
        dry_run: bool = False,
        subresource: str | None = None,
    ) -> Object:
        """Server-side apply of ``obj`` (creates it if missing): ``obj`` states every field
        this manager owns; fields it owned before and leaves out are removed."""
        res, ns, name = await self._target(obj, None)
        return await self.patch(
            res.api_version,
            res.kind,
            name,
            obj,
            patch_type=PatchType.APPLY,
            namespace=ns,
            subresource=subresource,
            field_manager=field_manager,
            force=force,
            dry_run=dry_run,
        )

    async def delete(
        self,
        api_version: str,
        kind: str,
        name: str,
        *,
        namespace: str | None = None,
        propagation_policy: PropagationPolicy | None = None,
        grace_period_seconds: int | None = None,
        preconditions: Preconditions | None = None,
        dry_run: bool = False,
    ) -> Object:
        """Returns the object (still there while finalizers run) or a Success Status."""
        res = await self.mapper.resource_for(api_version, kind)
        body = _delete_options(propagation_policy, grace_period_seconds, preconditions, dry_run)
        path = res.path(_namespace_for(res, namespace), name)
        return await self._json("delete", res.plural, "DELETE", path, body=body)

    async def delete_collection(
        self,
        api_version: str,
        kind: str,
        *,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        propagation_policy: PropagationPolicy | None = None,
        dry_run: bool = False,
    ) -> Object:
        res = await self.mapper.resource_for(api_version, kind)
        body = _delete_options(propagation_policy, None, None, dry_run)
        params = {"labelSelector": label_selector, "fieldSelector": field_selector}
        path = res.path(_namespace_for(res, namespace))
        return await self._json(
            "deletecollection", res.plural, "DELETE", path, params=params, body=body
        )

    # ------------------------------------------------------------------ raw

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        body: Any = None,
        content_type: str = _JSON,
        accept: str = _JSON,
        headers: Mapping[str, str] | None = None,
    ) -> Any:
        """Any path (``/readyz``, ``/version``, a proxy subresource): the decoded JSON body,
        or the text if the response is not JSON.  ``headers`` go along as they are (e.g. to
        a service behind a proxy path)."""
        response = await self._send(
            method.lower(),
            path.split("?")[0],
            method,
            path,
            params=params,
            body=body,
            content_type=content_type,
            accept=accept,
            headers=headers,
        )
        if "json" in response.headers.get("Content-Type", ""):
            return response.json()
        return response.text

    # ------------------------------------------------------------------ internals

    async def _target(
        self, obj: Object, namespace: str | None, need_name: bool = True
    ) -> tuple[APIResource, str | None, str]:
        try:
            api_version, kind = obj["apiVersion"], obj["kind"]
        except KeyError as err:
            raise ValueError(f"object has no {err.args[0]}") from None
        res = await self.mapper.resource_for(api_version, kind)
        metadata = obj.get("metadata") or {}
        name = metadata.get("name") or ""
        if need_name and not name:
            raise ValueError(f"{kind} has no metadata.name")
        object_ns = metadata.get("namespace")
        if namespace and object_ns and namespace != object_ns:
            raise ValueError(f"namespace {namespace!r} differs from the object's {object_ns!r}")
        return res, _namespace_for(res, namespace or object_ns), name

    async def _discover(self) -> builtins.list[APIResource]:
        async def get(path: str, accept: str) -> tuple[str, Any]:
            response = await self._send("get", "discovery", "GET", path, accept=accept)
            return response.headers.get("Content-Type", ""), response.json()

        return await discover(get)

    async def _json(
        self,
        verb: str,
        resource: str,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        body: Any = None,
        content_type: str = _JSON,
    ) -> Object:
        response = await self._send(
            verb, resource, method, path, params=params, body=body, content_type=content_type
        )
        result: Object = response.json()
        return result

    async def _send(
        self,
        verb: str,
        resource: str,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        body: Any = None,
        content_type: str = _JSON,
        accept: str = _JSON,
        stream: bool = False,
        timeouts: httpx2.Timeout | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx2.Response:
        headers = {**(headers or {}), "Accept": accept}
        content = None
        if body is not None:
            content = body if isinstance(body, bytes) else json.dumps(body).encode()
            headers["Content-Type"] = content_type
        request = self._http.build_request(
            method,
            path,  # httpx2 appends it to a path prefix of `server`
            params=_query(params),
            content=content,
            headers=headers,
            extensions=self._extensions,
            timeout=timeouts or httpx2.USE_CLIENT_DEFAULT,
        )
        started, code = time.perf_counter(), 0
        try:
            response = await self._http.send(request, stream=stream)
            code = response.status_code
        except httpx2.RequestError as err:
            raise ClusterUnreachable(f"{self.cluster}: {method} {path}: {err!r}") from err
        finally:
            self._observe(verb, resource, code, time.perf_counter() - started)
        if code >= 400:
            if stream:
                await response.aread()
                await response.aclose()
            retry_after = response.headers.get("Retry-After")
            raise error_from_response(code, response.content, retry_after)
        return response

    def _observe(self, verb: str, resource: str, code: int, seconds: float) -> None:
        if self._observer is None:
            return
        try:
            self._observer(self.cluster, verb, resource, code, seconds)
        except Exception:
            log.exception("request observer failed")  # metrics must never fail a request


def tls_context(config: ClusterConfig) -> ssl.SSLContext:
    """The TLS client context for ``config``: its CA (else the system's), its client cert."""
    context = ssl.create_default_context(cadata=config.ca_data.decode() if config.ca_data else None)
    if config.insecure_skip_tls_verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if config.client_cert_data is not None and config.client_key_data is not None:
        # The ssl module loads key pairs only from files: a private temporary folder that
        # lives just for this call.
        with tempfile.TemporaryDirectory(prefix="clusternet-tls-") as folder:
            cert, key = Path(folder) / "tls.crt", Path(folder) / "tls.key"
            cert.write_bytes(config.client_cert_data)
            key.touch(mode=0o600)
            key.write_bytes(config.client_key_data)
            try:
                context.load_cert_chain(cert, key)
            except ssl.SSLError as err:
                raise ConfigError(f"client certificate or key unusable: {err}") from err
    return context


def _default_headers(config: ClusterConfig, user_agent: str) -> list[tuple[str, str]]:
    headers = [("User-Agent", user_agent)]
    if config.token and config.token_file is None:
        headers.append(("Authorization", f"Bearer {config.token}"))
    if (imp := config.impersonate) is not None:
        headers.append(("Impersonate-User", imp.user))
        if imp.uid:
            headers.append(("Impersonate-Uid", imp.uid))
        headers += [("Impersonate-Group", group) for group in imp.groups]
        for key, values in imp.extra.items():
            # Header names are case-insensitive and ASCII: the key is percent-encoded.
            headers += [(f"Impersonate-Extra-{quote(key, safe='')}", v) for v in values]
    return headers


def _namespace_for(res: APIResource, namespace: str | None) -> str | None:
    """The namespace of a request on one object (or all of a namespace's)."""
    if res.namespaced and not namespace:
        raise ValueError(f"{res.kind} is namespaced: a namespace is required")
    if not res.namespaced and namespace:
        raise ValueError(f"{res.kind} is cluster-scoped: got namespace {namespace!r}")
    return namespace or None


def _write_params(dry_run: bool, field_manager: str | None) -> dict[str, Any]:
    return {"dryRun": "All" if dry_run else None, "fieldManager": field_manager}


def _delete_options(
    propagation_policy: PropagationPolicy | None,
    grace_period_seconds: int | None,
    preconditions: Preconditions | None,
    dry_run: bool,
) -> Object:
    options: Object = {"apiVersion": "v1", "kind": "DeleteOptions"}
    if propagation_policy is not None:
        options["propagationPolicy"] = str(propagation_policy)
    if grace_period_seconds is not None:
        options["gracePeriodSeconds"] = grace_period_seconds
    if preconditions is not None:
        conditions = {"uid": preconditions.uid, "resourceVersion": preconditions.resource_version}
        options["preconditions"] = {k: v for k, v in conditions.items() if v is not None}
    if dry_run:
        options["dryRun"] = ["All"]
    return options


def _query(params: Mapping[str, Any] | None) -> dict[str, str]:
    if not params:
        return {}
    return {
        key: ("true" if value else "false") if isinstance(value, bool) else str(value)
        for key, value in params.items()
        if value is not None
    }
