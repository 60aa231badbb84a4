"""``clusternet-hub``: the aggregated API server of ``proxies.clusternet.io/v1alpha1`` and,
with gate ShadowAPI, ``shadow/v1alpha1`` (docs/shadow.md).

One HTTPS port serves everything: the API behind the parent's aggregator (discovery,
OpenAPI, ``sockets`` and ``sockets/proxy``, shadow templates), and ``/healthz`` ``/livez``
``/readyz`` ``/metrics``.  Callers are authenticated from their client certificate (the aggregator's
front-proxy certificate plus ``X-Remote-*`` headers, or a certificate of the cluster's client
CA) and authorized with SubjectAccessReviews against the parent.  See docs/hub.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ssl
import tempfile
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, NoReturn

import structlog
from aiohttp import web
from prometheus_client import REGISTRY
from prometheus_client.aiohttp import make_aiohttp_handler

from clusternet.apis import known
from clusternet.hub import discovery, shadow_resources
from clusternet.hub.authn import (
    AUTHENTICATION_CONFIGMAP,
    AuthenticationConfig,
    Authenticator,
    RequestHeaderConfig,
    UserInfo,
)
from clusternet.hub.authz import (
    Attributes,
    AuthorizationUnavailable,
    SubjectAccessReviewer,
    verb_for_method,
)
from clusternet.hub.peers import PeerConfig, TunnelLeases
from clusternet.hub.proxy import ClusterDirectory, SocketProxy, is_upgrade
from clusternet.hub.shadow import ShadowAPI
from clusternet.hub.shadow_discovery import BuiltinRefresher
from clusternet.hub.status import socket_details, status_response
from clusternet.kube import (
    ApiError,
    ClusterConfig,
    ClusterUnreachable,
    KubeClient,
    NotFound,
    in_cluster_config,
    load_kubeconfig,
)
from clusternet.runtime import Component, Informer, InformerKey, run_component
from clusternet.runtime.certs import CertificateAuthority, cert_pem, key_pem, write_private
from clusternet.runtime.flags import (
    CommonOptions,
    add_bool_flag,
    add_common_flags,
    common_options,
)
from clusternet.runtime.server import ComponentServer, HealthChecks
from clusternet.tunnel import TunnelServer

log = structlog.get_logger(__name__)

COMPONENT = "clusternet-hub"
SECURE_PORT = 443
APISERVICE_NAME = f"{discovery.VERSION}.{known.PROXIES_GROUP}"
SHADOW_APISERVICE_NAME = f"{shadow_resources.VERSION}.{shadow_resources.GROUP}"
SOCKETS_PREFIX = f"/apis/{discovery.GROUP_VERSION}/sockets/"
HEALTH_PATHS = frozenset({"/healthz", "/livez", "/readyz"})
DISCOVERY_PATHS = frozenset(
    {
        "/apis",
        f"/apis/{discovery.GROUP}",
        f"/apis/{discovery.GROUP_VERSION}",
        "/openapi/v2",
        "/openapi/v3",
        f"/openapi/v3/apis/{discovery.GROUP_VERSION}",
    }
)
USER_KEY = web.RequestKey("user", UserInfo)


@dataclass(frozen=True)
class HubOptions:
    common: CommonOptions
    tls_cert_file: Path | None
    tls_private_key_file: Path | None
    authentication_kubeconfig: str | None
    authorization_kubeconfig: str | None
    client_ca_file: Path | None
    requestheader: RequestHeaderConfig | None  # from flags; None: read the configmap
    reserved_namespace: str
    cleanup_apiservices: bool
    enable_tunnel_logging: bool
    peer_advertise_address: str
    peer_port: int | None
    peer_token: str
    peer_client_cert_file: Path | None
    peer_client_key_file: Path | None
    peer_ca_file: Path | None
    peer_tls_server_name: str | None

    def peer_config(self) -> PeerConfig | None:
        """None: a single replica (no --peer-advertise-address)."""
        if not self.peer_advertise_address:
            return None
        port = self.peer_port or self.common.secure_port
        address = self.peer_advertise_address
        host = f"[{address}]" if ":" in address else address
        return PeerConfig(
            identity=f"{host}:{port}",
            url=f"https://{host}:{port}",
            client_cert_file=self.peer_client_cert_file,
            client_key_file=self.peer_client_key_file,
            ca_file=self.peer_ca_file,
            tls_server_name=self.peer_tls_server_name,
        )

    @property
    def socket_connection(self) -> bool:
        return "SocketConnection" in self.common.feature_gates

    @property
    def shadow_api(self) -> bool:
        return "ShadowAPI" in self.common.feature_gates


def _names(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=COMPONENT,
        description="Aggregated API server of proxies.clusternet.io: agent tunnels and the "
        "proxy to child clusters.",
    )
    add_common_flags(parser, COMPONENT, secure_port=SECURE_PORT)
    serving = parser.add_argument_group("secure serving")
    serving.add_argument("--tls-cert-file", type=Path, default=None, help="Serving cert (PEM).")
    serving.add_argument("--tls-private-key-file", type=Path, default=None)
    authn = parser.add_argument_group("authentication and authorization")
    authn.add_argument(
        "--authentication-kubeconfig",
        default=None,
        help="Kubeconfig used to read kube-system/extension-apiserver-authentication "
        "(default: --kubeconfig).",
    )
    authn.add_argument(
        "--authorization-kubeconfig",
        default=None,
        help="Kubeconfig used for SubjectAccessReviews (default: --kubeconfig).",
    )
    authn.add_argument("--client-ca-file", type=Path, default=None)
    authn.add_argument(
        "--requestheader-client-ca-file",
        type=Path,
        default=None,
        help="CA of front-proxy client certs; without it, the configmap's settings are used.",
    )
    authn.add_argument("--requestheader-allowed-names", type=_names, default=())
    authn.add_argument("--requestheader-username-headers", type=_names, default=("X-Remote-User",))
    authn.add_argument("--requestheader-uid-headers", type=_names, default=())
    authn.add_argument("--requestheader-group-headers", type=_names, default=("X-Remote-Group",))
    authn.add_argument(
        "--requestheader-extra-headers-prefix", type=_names, default=("X-Remote-Extra-",)
    )
    hub = parser.add_argument_group("hub")
    hub.add_argument(
        "--reserved-namespace",
        default="clusternet-reserved",
        help="Where the shadow API stores its Manifests.",
    )
    add_bool_flag(
        hub,
        "--cleanup-apiservices",
        f"Delete APIService {APISERVICE_NAME} (and {SHADOW_APISERVICE_NAME} with gate "
        "ShadowAPI) on a clean shutdown (only for the last replica).",
    )
    add_bool_flag(hub, "--enable-tunnel-logging", "Verbose tunnel logs.")
    peers = parser.add_argument_group('peers (several replicas; docs/hub.md, "Several replicas")')
    peers.add_argument(
        "--peer-advertise-address",
        default="",
        help="Address other hub replicas reach this one at; setting it turns on tunnel "
        "Leases and forwarding of proxy requests between replicas.",
    )
    peers.add_argument(
        "--peer-port",
        type=int,
        default=None,
        help="Port peers reach this replica's secure port at (default: --secure-port).",
    )
    peers.add_argument("--peer-token", default="Cheugy", help="Accepted; unused.")
    peers.add_argument(
        "--peer-client-cert-file",
        type=Path,
        default=None,
        help="Client certificate presented to peers: one the hubs trust for identity "
        "headers (issued by the requestheader client CA, e.g. the front-proxy client's).",
    )
    peers.add_argument("--peer-client-key-file", type=Path, default=None)
    peers.add_argument(
        "--peer-ca-file",
        type=Path,
        default=None,
        help="CA of the peers' serving certificates (default: not verified).",
    )
    peers.add_argument(
        "--peer-tls-server-name",
        default="",
        help="Name the peers' serving certificates are verified for (default: the peer "
        "address); replicas behind one Service share a certificate for "
        "<service>.<namespace>.svc.",
    )
    return parser


def parse_options(argv: Sequence[str] | None = None) -> HubOptions:
    parser = build_parser()
    args = parser.parse_args(argv)
    common = common_options(args, parser)
    if common.secure_port is None or common.secure_port < 0:
        parser.error("--secure-port must be a port: the hub serves its API there")
    if (args.peer_client_cert_file is None) != (args.peer_client_key_file is None):
        parser.error("--peer-client-cert-file and --peer-client-key-file go together")
    if (args.tls_cert_file is None) != (args.tls_private_key_file is None):
        parser.error("--tls-cert-file and --tls-private-key-file go together")
    requestheader = None
    if args.requestheader_client_ca_file is not None:
        requestheader = RequestHeaderConfig(
            ca_pem=args.requestheader_client_ca_file.read_bytes(),
            allowed_names=args.requestheader_allowed_names,
            username_headers=args.requestheader_username_headers,
            uid_headers=args.requestheader_uid_headers,
            group_headers=args.requestheader_group_headers,
            extra_header_prefixes=args.requestheader_extra_headers_prefix,
        )
    return HubOptions(
        common=common,
        tls_cert_file=args.tls_cert_file,
        tls_private_key_file=args.tls_private_key_file,
        authentication_kubeconfig=args.authentication_kubeconfig,
        authorization_kubeconfig=args.authorization_kubeconfig,
        client_ca_file=args.client_ca_file,
        requestheader=requestheader,
        reserved_namespace=args.reserved_namespace,
        cleanup_apiservices=args.cleanup_apiservices,
        enable_tunnel_logging=args.enable_tunnel_logging,
        peer_advertise_address=args.peer_advertise_address,
        peer_port=args.peer_port,
        peer_token=args.peer_token,
        peer_client_cert_file=args.peer_client_cert_file,
        peer_client_key_file=args.peer_client_key_file,
        peer_ca_file=args.peer_ca_file,
        peer_tls_server_name=args.peer_tls_server_name or None,
    )


def main(argv: Sequence[str] | None = None) -> NoReturn:
    options = parse_options(argv)
    common = options.common
    run_component(
        partial(run_hub, options),
        name=COMPONENT,
        port=None,  # health and metrics are served on the API port, as kube-apiserver does
        log_format="json" if common.log_format == "json" else "console",
        log_level=common.log_level,
    )


def _config(path: str | None) -> ClusterConfig:
    return load_kubeconfig(path) if path else in_cluster_config()


async def run_hub(options: HubOptions, component: Component) -> None:
    if options.enable_tunnel_logging:
        import logging

        logging.getLogger("clusternet.tunnel").setLevel(logging.DEBUG)
    kubeconfig = options.common.kubeconfig
    async with contextlib.AsyncExitStack() as stack:
        parent = await stack.enter_async_context(
            KubeClient(_config(kubeconfig), cluster="parent", user_agent=COMPONENT)
        )
        authn_client = parent
        if options.authentication_kubeconfig:
            authn_client = await stack.enter_async_context(
                KubeClient(_config(options.authentication_kubeconfig), user_agent=COMPONENT)
            )
        authz_client = parent
        if options.authorization_kubeconfig:
            authz_client = await stack.enter_async_context(
                KubeClient(_config(options.authorization_kubeconfig), user_agent=COMPONENT)
            )
        authentication = await _authentication_config(options, authn_client)
        tunnels = TunnelServer()
        informer = Informer(
            parent, InformerKey(f"{known.CLUSTERS_GROUP}/v1beta1", "ManagedCluster")
        )
        clusters = ClusterDirectory(informer)
        peer_config = options.peer_config()
        peers = TunnelLeases(parent, peer_config) if peer_config is not None else None
        if peers is not None and peer_config is not None:
            leases = peers.informer
            component.health.add_readiness_check("tunnel-leases-synced", lambda: leases.has_synced)
            log.info("peering with other hub replicas", identity=peer_config.identity)
        proxy = SocketProxy(tunnels, clusters, authentication.requestheader, peers=peers)
        informer.add_event_handler(
            on_delete=lambda obj: proxy.forget(
                (obj.get("metadata", {}).get("labels") or {}).get(known.CLUSTER_ID_LABEL, "")
                if isinstance(obj, dict)
                else ""
            )
        )
        component.health.add_readiness_check("managedclusters-synced", lambda: informer.has_synced)
        crds: Informer | None = None
        if options.shadow_api:
            crds = crd_informer = Informer(
                parent, InformerKey("apiextensions.k8s.io/v1", "CustomResourceDefinition")
            )
            component.health.add_readiness_check(
                "shadow-crds-synced", lambda: crd_informer.has_synced
            )
        hub = Hub(
            authenticator=Authenticator(authentication),
            authorizer=SubjectAccessReviewer(authz_client),
            tunnels=tunnels,
            proxy=proxy,
            health=component.health,
            socket_connection=options.socket_connection,
            peers=peers,
        )
        refresher: BuiltinRefresher | None = None
        apiservices: Informer | None = None
        if crds is not None:
            crds.start()
            shadow_table = await _shadow_resource_table(parent, crds)
            shadow_api = hub.enable_shadow(parent, shadow_table, options.reserved_namespace)
            # Aggregated APIs that come and go after the start (docs/shadow.md).
            apiservices = Informer(parent, InformerKey("apiregistration.k8s.io/v1", "APIService"))
            refresher = BuiltinRefresher(
                parent,
                shadow_table,
                partial(_crd_groups, crds),
                shadow_api.schemas.invalidate,
                partial(_listed, apiservices),
            )
            apiservices.add_event_handler(
                refresher.on_add, refresher.on_update, refresher.on_delete
            )
            apiservices.start()
            refresher.start()
        tls = serving_tls_context(options, authentication.trusted_ca_pem)
        runner = web.AppRunner(hub.application(), access_log=None, shutdown_timeout=5.0)
        await runner.setup()
        informer.start()
        if peers is not None:
            peers.informer.start()
        try:
            await web.TCPSite(
                runner, options.common.bind_address, options.common.secure_port, ssl_context=tls
            ).start()
            log.info(
                "serving",
                address=f"{options.common.bind_address}:{runner.addresses[0][1]}",
                socket_connection=options.socket_connection,
            )
            await asyncio.Event().wait()  # until cancelled by shutdown
        finally:
            if options.cleanup_apiservices:
                await _delete_apiservice(parent, APISERVICE_NAME)
                if options.shadow_api:
                    await _delete_apiservice(parent, SHADOW_APISERVICE_NAME)
            await tunnels.close()
            await runner.cleanup()
            await proxy.aclose()
            if peers is not None:
                await peers.aclose()
                await peers.informer.stop()
                peers.informer.close()
            await informer.stop()
            informer.close()
            if crds is not None:
                await crds.stop()
                crds.close()
            if refresher is not None and apiservices is not None:
                await refresher.stop()
                await apiservices.stop()
                apiservices.close()


def _listed(informer: Informer) -> list[dict[str, Any]]:
    """The informer's objects once it has listed them, nothing before."""
    return informer.store.list() if informer.has_synced else []


def _crd_groups(crds: Informer) -> set[str]:
    return {(crd.get("spec") or {}).get("group", "") for crd in crds.store.list()}


async def _shadow_resource_table(
    parent: KubeClient, crds: Informer
) -> shadow_resources.ResourceTable:
    """Built-in kinds from one discovery walk of the parent, CRDs live from ``crds``."""
    await crds.wait_for_sync()
    delay = 1.0
    while True:
        try:
            await parent.mapper.refresh()
            break
        except (ApiError, ClusterUnreachable) as err:
            log.warning("cannot discover the parent's resources yet", error=str(err))
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)
    builtins = shadow_resources.builtin_resources(parent.mapper.resources, _crd_groups(crds))
    log.info("shadow API mirrors the parent", builtin_resources=len(builtins))
    return shadow_resources.ResourceTable(builtins, crds.store.list)


async def _authentication_config(options: HubOptions, client: KubeClient) -> AuthenticationConfig:
    client_ca = options.client_ca_file.read_bytes() if options.client_ca_file else b""
    if options.requestheader is not None:
        return AuthenticationConfig(options.requestheader, client_ca)
    namespace, name = AUTHENTICATION_CONFIGMAP
    delay = 1.0
    while True:
        try:
            configmap = await client.get("v1", "ConfigMap", name, namespace=namespace)
        except (ApiError, ClusterUnreachable) as err:
            log.warning(
                f"cannot read {namespace}/{name} yet, retrying", error=str(err), retry_in=delay
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)
            continue
        config = AuthenticationConfig.from_configmap(configmap.get("data") or {})
        if options.client_ca_file:
            config = AuthenticationConfig(config.requestheader, client_ca)
        if config.requestheader is None:
            log.warning(
                f"{namespace}/{name} has no requestheader-client-ca-file: the aggregator "
                "cannot authenticate to this hub (is kube-apiserver's front proxy configured?)"
            )
        return config


async def _delete_apiservice(parent: KubeClient, name: str) -> None:
    try:
        await parent.delete("apiregistration.k8s.io/v1", "APIService", name)
        log.info("deleted APIService", name=name)
    except NotFound:
        pass
    except (ApiError, ClusterUnreachable) as err:
        log.warning("could not delete APIService", name=name, error=str(err))


def serving_tls_context(options: HubOptions, trusted_ca_pem: bytes) -> ssl.SSLContext:
    """Serving cert, and client certs requested (not required) and verified against the
    requestheader and client CAs; which CA issued one is decided per request."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_alpn_protocols(["http/1.1"])  # aiohttp speaks no HTTP/2
    if options.tls_cert_file is not None and options.tls_private_key_file is not None:
        context.load_cert_chain(options.tls_cert_file, options.tls_private_key_file)
    else:
        log.warning("no --tls-cert-file: serving a self-signed certificate made in memory")
        _load_self_signed(context)
    if trusted_ca_pem.strip():
        context.verify_mode = ssl.CERT_OPTIONAL
        context.load_verify_locations(cadata=trusted_ca_pem.decode())
    return context


def _load_self_signed(context: ssl.SSLContext) -> None:
    authority = CertificateAuthority.create("clusternet-hub-self-signed-ca", days=365)
    cert, key = authority.issue(
        "clusternet-hub",
        dns_names=("localhost", "clusternet-hub.clusternet-system.svc"),
        ip_addresses=("127.0.0.1",),
        server=True,
    )
    # The ssl module loads key pairs only from files: a private folder for this call.
    with tempfile.TemporaryDirectory(prefix="clusternet-hub-") as folder:
        cert_file, key_file = Path(folder) / "tls.crt", Path(folder) / "tls.key"
        cert_file.write_bytes(cert_pem(cert) + cert_pem(authority.cert))
        write_private(key_file, key_pem(key))
        context.load_cert_chain(cert_file, key_file)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Hub:
    """The aiohttp application: authentication middleware, routes, authorization."""

    def __init__(
        self,
        *,
        authenticator: Authenticator,
        authorizer: SubjectAccessReviewer,
        tunnels: TunnelServer,
        proxy: SocketProxy,
        health: HealthChecks,
        socket_connection: bool,
        peers: TunnelLeases | None = None,
    ) -> None:
        self.peers = peers
        self.authenticator = authenticator
        self.authorizer = authorizer
        self.tunnels = tunnels
        self.proxy = proxy
        self.health = health
        self.socket_connection = socket_connection
        self.shadow: ShadowAPI | None = None  # set when gate ShadowAPI is on

    def application(self) -> web.Application:
        app = web.Application(middlewares=[self._authenticate], client_max_size=0)
        health = ComponentServer(self.health, port=0).application()
        for route in health.router.routes():
            info = route.resource.get_info() if route.resource else {}
            if info.get("path") in HEALTH_PATHS and route.method == "GET":
                app.router.add_get(info["path"], route.handler)
        metrics = make_aiohttp_handler(REGISTRY)
        app.router.add_get("/metrics", partial(self._metrics, metrics))
        app.router.add_get("/apis", _json(self._api_group_list))
        if self.shadow is not None:
            shadow_prefix = shadow_resources.PREFIX
            app.router.add_get(f"/apis/{shadow_resources.GROUP}", _json(shadow_resources.api_group))
            app.router.add_get(shadow_prefix, self.shadow.discovery)
            app.router.add_route("*", shadow_prefix + "/{tail:.+}", self.shadow.handle)
        app.router.add_get(f"/apis/{discovery.GROUP}", _json(discovery.api_group))
        app.router.add_get(f"/apis/{discovery.GROUP_VERSION}", _json(discovery.api_resource_list))
        app.router.add_get("/openapi/v2", _json(discovery.openapi_v2))
        app.router.add_get("/openapi/v3", _json(discovery.openapi_v3_root))
        app.router.add_get(
            f"/openapi/v3/apis/{discovery.GROUP_VERSION}", _json(discovery.openapi_v3_group_version)
        )
        app.router.add_route("*", SOCKETS_PREFIX + "{tail:.*}", self._sockets)
        app.router.add_route("*", "/{tail:.*}", _not_found)
        return app

    def enable_shadow(
        self, parent: KubeClient, table: shadow_resources.ResourceTable, reserved_namespace: str
    ) -> ShadowAPI:
        """Serve ``shadow/v1alpha1`` (gate ShadowAPI), authorized like every other request."""
        self.shadow = ShadowAPI(parent, table, reserved_namespace, self._authorized)
        return self.shadow

    def _api_group_list(self) -> dict[str, Any]:
        groups = discovery.api_group_list()
        if self.shadow is not None:
            groups["groups"].append(shadow_resources.api_group())
        return groups

    @web.middleware
    async def _authenticate(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in HEALTH_PATHS:
            return await handler(request)  # probes carry no identity; no reasons are shown
        user = self.authenticator.authenticate(_peer_certificate(request), request.headers)
        if user is None:
            return status_response(401, "Unauthorized")
        request[USER_KEY] = user
        return await handler(request)

    async def _authorized(
        self, request: web.Request, attributes: Attributes
    ) -> web.Response | None:
        """None if allowed; otherwise the 403 (or 503) to answer."""
        user = request[USER_KEY]
        try:
            decision = await self.authorizer.authorize(user, attributes)
        except AuthorizationUnavailable as err:
            return status_response(503, f"cannot authorize the request: {err}")
        if decision.allowed:
            return None
        message = f'User "{user.name}" cannot {attributes.describe()}'
        if decision.reason:
            message += f": {decision.reason}"
        details = None
        if attributes.name and attributes.group == known.PROXIES_GROUP:
            details = socket_details(attributes.name)
        return status_response(403, message, details=details)

    async def _metrics(self, metrics: Handler, request: web.Request) -> web.StreamResponse:
        denied = await self._authorized(request, Attributes(verb="get", path="/metrics"))
        return denied or await metrics(request)

    async def _sockets(self, request: web.Request) -> web.StreamResponse:
        # The raw path: a proxied path keeps its percent-encoding byte for byte.
        tail = request.rel_url.raw_path[len(SOCKETS_PREFIX) :]
        cluster_id, _, rest = tail.partition("/")
        if not cluster_id:
            return status_response(404, "the server could not find the requested resource")
        subresource, _, proxied = rest.partition("/")
        if rest and subresource != "proxy":
            return status_response(404, f"sockets has no subresource {subresource!r}")
        attributes = Attributes(
            verb=verb_for_method(request.method),
            resource="sockets",
            subresource="proxy" if rest else "",
            name=cluster_id,
        )
        if (denied := await self._authorized(request, attributes)) is not None:
            return denied
        if not self.socket_connection:
            return status_response(
                503, "featuregate SocketConnection has not been enabled in clusternet-hub"
            )
        if rest:
            return await self.proxy.handle(request, cluster_id, proxied, request[USER_KEY])
        if request.method != "GET" or not is_upgrade(request.headers.copy()):
            return status_response(
                400,
                f"sockets/{cluster_id} only accepts the websocket upgrade of the cluster's agent",
                details=socket_details(cluster_id),
            )
        if self.peers is None:
            return await self.tunnels.handle(request, cluster_id)
        async with self.peers.holding(cluster_id):
            return await self.tunnels.handle(request, cluster_id)


def _peer_certificate(request: web.Request) -> bytes | None:
    transport = request.transport
    ssl_object = transport.get_extra_info("ssl_object") if transport is not None else None
    if ssl_object is None:
        return None
    der: bytes | None = ssl_object.getpeercert(binary_form=True)
    return der


def _json(document: Callable[[], dict[str, Any]]) -> Handler:
    async def handle(_request: web.Request) -> web.StreamResponse:
        return web.json_response(document())

    return handle


async def _not_found(request: web.Request) -> web.StreamResponse:
    return status_response(404, "the server could not find the requested resource")
