"""``clusternet-agent``: the process that joins a child cluster to its parent.

Startup: read the cluster ID from the agent's Lease, campaign for that Lease (when
``--leader-elect``), and while leading: register, keep ``child-cluster-deployer`` current,
report the status and, with gate ``Predictor`` and no ``--predictor-addr``, serve the built-in
replica predictor.  Losing the lease ends the process (non-zero, as upstream and the kube
components do) so that a fresh process campaigns with a clean slate.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import uuid
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import NoReturn, TypeVar

import structlog

import clusternet
from clusternet.agent.helmpuller import HelmPuller
from clusternet.agent.options import COMPONENT, AgentOptions, parse_options
from clusternet.agent.predictor_server import PredictorServer
from clusternet.agent.puller import Puller
from clusternet.agent.recovery import Recovery
from clusternet.agent.registration import (
    SERVICE_ACCOUNT_TOKEN_TYPE,
    Registration,
    backoff_delays,
    cluster_id,
    keep_child_cluster_deployer,
    register,
)
from clusternet.agent.reporter import StatusReporter
from clusternet.agent.serviceexport import ServiceExportController
from clusternet.agent.status import ReportSettings
from clusternet.agent.tunnel import new_tunnel_client
from clusternet.apis import known
from clusternet.apis.mcs import SourceCluster
from clusternet.deployer import DescriptionSync, agent_pulls
from clusternet.deployer.helmcli import Helm, find_helm
from clusternet.deployer.helmsync import ReleaseSync
from clusternet.kube import (
    ApiError,
    ClusterConfig,
    ClusterUnreachable,
    KubeClient,
    in_cluster_config,
    load_kubeconfig,
)
from clusternet.runtime import (
    Component,
    EventRecorder,
    LeaderElector,
    SharedInformerFactory,
    run_component,
)
from clusternet.runtime.apimetrics import APIRequestMetrics

log = structlog.get_logger(__name__)
T = TypeVar("T")

# Loopback only: the hub reaches the built-in predictor through this agent's tunnel, and a
# scheduler with direct access must run beside the agent (upstream advertises localhost too).
PREDICTOR_HOST = "127.0.0.1"


class LeadershipLost(Exception):
    """Another replica holds the lease now: this process must stop working."""


def main(argv: Sequence[str] | None = None) -> NoReturn:
    options = parse_options(argv)
    common = options.common
    run_component(
        partial(run_agent, options),
        name=COMPONENT,
        port=common.secure_port,
        host=common.bind_address,
        log_format="json" if common.log_format == "json" else "console",
        log_level=common.log_level,
    )


async def run_agent(options: AgentOptions, component: Component) -> None:
    for item in options.malformed_labels:
        log.warning("skipping malformed --cluster-labels item", item=item)
    if options.use_metrics_server:
        log.warning("--use-metrics-server is not supported yet: no pod or usage statistics")
    child_config = _child_config(options)
    async with KubeClient(
        child_config, cluster="child", user_agent=COMPONENT, observer=api_metrics
    ) as child:
        identity = await _retrying("read the cluster ID", lambda: cluster_id(child))
        log.info("cluster ID", cluster_id=identity)
        work = partial(_lead, options, child, child_config, identity)
        election = options.common.leader_election
        if not election.enabled:
            await work()
            return
        elector = LeaderElector(
            child,
            name=election.resource_name,
            namespace=election.resource_namespace,
            identity=f"{socket.gethostname()}_{uuid.uuid4()}",
            on_started_leading=work,
            lease_duration=election.lease_duration,
            renew_deadline=election.renew_deadline,
            retry_period=election.retry_period,
        )
        component.health.add_liveness_check("leader-election", elector.check)
        await elector.run()
        raise LeadershipLost("lost the leader election lease")


async def _lead(
    options: AgentOptions, child: KubeClient, child_config: ClusterConfig, identity: str
) -> None:
    registration = await register(child, options, identity)
    # The status reporter and the predictor share one Node watch.
    informers = SharedInformerFactory(child)
    predictor = PredictorServer(informers) if options.serves_predictor else None
    predictor_address = options.external_predictor_address
    async with contextlib.AsyncExitStack() as cleanup:
        if predictor is not None:
            # Before anything reports or tunnels: the address holds the port actually bound.
            port = await predictor.start(PREDICTOR_HOST, options.predictor_port)
            cleanup.push_async_callback(predictor.stop)
            predictor_address = f"http://{PREDICTOR_HOST}:{port}"
        await _serve(options, child, child_config, identity, registration, informers,
                     predictor_address)  # fmt: skip


async def _serve(
    options: AgentOptions,
    child: KubeClient,
    child_config: ClusterConfig,
    identity: str,
    registration: Registration,
    informers: SharedInformerFactory,
    predictor_address: str | None,
) -> None:
    """Report status, keep the deployer credentials current and hold the tunnel."""
    gates = options.common.feature_gates
    settings = ReportSettings(
        apiserver_url=child_config.server,
        agent_version=f"v{clusternet.__version__}",
        kube_qps=options.common.kube_api_qps,
        kube_burst=options.common.kube_api_burst,
        heartbeat_frequency_seconds=round(options.status_update_frequency),
        app_pusher="AppPusher" in gates,
        use_socket="SocketConnection" in gates,
        predictor_address=predictor_address,
        predictor_direct_access=options.predictor_direct_access,
    )
    nodes = informers.informer("v1", "Node")
    token_secrets = informers.informer(
        "v1",
        "Secret",
        namespace=known.SYSTEM_NAMESPACE,
        field_selector=f"type={SERVICE_ACCOUNT_TOKEN_TYPE}",
    )
    async with (
        KubeClient(
            registration.parent, cluster="parent", user_agent=COMPONENT, observer=api_metrics
        ) as parent,
        EventRecorder(parent, component=COMPONENT) as recorder,
        asyncio.TaskGroup() as tasks,
    ):
        reporter = StatusReporter(
            child=child,
            parent=parent,
            registration=registration,
            nodes=nodes,
            settings=settings,
            collect_frequency=options.status_collect_frequency,
            update_frequency=options.status_update_frequency,
            label_prefixes=options.labels_aggregate_prefixes,
            label_threshold=options.labels_aggregate_threshold,
            environ=os.environ,
        )
        if "MultiClusterService" in gates:  # before the loop: it adds child informers
            exports = ServiceExportController(
                child,
                parent,
                informers,
                SourceCluster(registration.namespace, identity, registration.cluster_name),
            )
            tasks.create_task(exports.run())
        # Run here rather than by informers.start(): a failing informer ends the lead.
        for informer in informers.informers.values():
            tasks.create_task(informer.run())
        tasks.create_task(
            keep_child_cluster_deployer(parent, token_secrets, registration, child_config.server)
        )
        tasks.create_task(reporter.run())
        _start_deployers(options, parent, child, registration, recorder, tasks)
        if settings.use_socket:
            tunnel = new_tunnel_client(
                registration.parent,
                identity,
                child_server=child_config.server,
                predictor_address=predictor_address,
                verbose=options.enable_tunnel_logging,
            )
            tasks.create_task(tunnel.run())


def _start_deployers(
    options: AgentOptions,
    parent: KubeClient,
    child: KubeClient,
    registration: Registration,
    recorder: EventRecorder,
    tasks: asyncio.TaskGroup,
) -> None:
    """Pull (when this agent deploys, spec §4.7) and Recovery (gate ``Recovery``): both
    driven by one watch on the Descriptions of the dedicated namespace in the parent."""
    gates = options.common.feature_gates
    pulls = agent_pulls(options.sync_mode, "AppPusher" in gates)
    recovers = "Recovery" in gates
    if not pulls and not recovers:
        return
    parent_informers = SharedInformerFactory(parent)
    descriptions = parent_informers.informer(
        f"{known.APPS_GROUP}/v1alpha1", "Description", namespace=registration.namespace
    )
    sync = DescriptionSync(parent, recorder)
    if pulls:
        log.info("deploying the Descriptions of this cluster (pull)", mode=options.sync_mode)
        tasks.create_task(Puller(child, descriptions, sync).run())
        # HelmReleases of this cluster: installed here with the real helm binary.
        releases = parent_informers.informer(
            f"{known.APPS_GROUP}/v1alpha1", "HelmRelease", namespace=registration.namespace
        )
        helm_path = find_helm(options.helm_binary)
        if helm_path is None:
            log.warning("no helm binary: pulled HelmReleases fail until one is given")
        helm = Helm(helm_path) if helm_path else None
        puller = HelmPuller(child.config, releases, ReleaseSync(parent, recorder, helm))
        tasks.create_task(puller.run())
        tasks.create_task(releases.run())
    if recovers:
        recovery = Recovery(parent, child, descriptions, sync, registration.namespace)
        tasks.create_task(recovery.run())
    tasks.create_task(descriptions.run())


def _child_config(options: AgentOptions) -> ClusterConfig:
    if options.common.kubeconfig:
        return load_kubeconfig(options.common.kubeconfig)
    return in_cluster_config()


async def _retrying(what: str, action: Callable[[], Awaitable[T]]) -> T:
    """``action()`` until it succeeds: the child may be briefly unreachable at startup."""
    for delay in backoff_delays(1.0, 30.0):
        try:
            return await action()
        except (ApiError, ClusterUnreachable) as err:
            log.warning(f"cannot {what}, retrying", error=str(err), retry_in=round(delay, 1))
            await asyncio.sleep(delay)
    raise AssertionError("unreachable: backoff_delays never ends")


# One per process: rest_client_* metrics of the agent's traffic to the child and the parent.
api_metrics = APIRequestMetrics()
