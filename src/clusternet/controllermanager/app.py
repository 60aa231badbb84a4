"""``clusternet-controller-manager``: the parent-side controllers, under leader election.

Flags are upstream's (spec §1.1, §1.4), so upstream Deployment manifests work unchanged, plus
``--cluster-auto-approve`` to put cluster registration under an operator's control.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, NoReturn, Protocol

import structlog

from clusternet.apis import known
from clusternet.controllermanager.aggregatestatus import AggregateStatusController
from clusternet.controllermanager.base import BaseController
from clusternet.controllermanager.clusterlifecycle import ClusterLifecycle
from clusternet.controllermanager.crrapprover import RegistrationApprover
from clusternet.controllermanager.feedinventory import FeedInventoryController
from clusternet.controllermanager.feedprotection import FeedProtectionController
from clusternet.controllermanager.helmchart import HelmChartController
from clusternet.controllermanager.helmpusher import HelmPusher
from clusternet.controllermanager.helmrelease import HelmReleaseController
from clusternet.controllermanager.pusher import Pusher
from clusternet.controllermanager.serviceimport import ServiceImportController
from clusternet.controllermanager.subscription import SubscriptionController
from clusternet.deployer.helmcli import Helm, find_helm
from clusternet.kube import KubeClient, in_cluster_config, load_kubeconfig
from clusternet.runtime import (
    Component,
    EventRecorder,
    SharedInformerFactory,
    run_component,
)
from clusternet.runtime.apimetrics import APIRequestMetrics
from clusternet.runtime.flags import (
    CommonOptions,
    add_bool_flag,
    add_common_flags,
    common_options,
)
from clusternet.runtime.leaderelection import run_while_leading

log = structlog.get_logger(__name__)

NAME: Final = known.CLUSTERNET_CONTROLLER_MANAGER_NAME
KNOWN_CONTROLLERS: Final = (
    "clusterdiscovery",
    "clusterlifecycle",
    "crrapprover",
    "deployer",
    "serviceimport",
)
# Controllers of upstream's controller-manager that other parts of this project provide, or
# that are not available yet; enabling them is not an error, they are reported and skipped.
_NOT_HERE: Final = {
    "clusterdiscovery": "cluster-api discovery is not supported yet",
}
# Controllers that run only with a feature gate (spec §1.4, §1.6).
_GATED: Final = {"deployer": "Deployer", "serviceimport": "MultiClusterService"}


@dataclass(frozen=True)
class Options:
    common: CommonOptions
    controllers: frozenset[str]
    anonymous_auth_supported: bool
    reserved_namespace: str
    threadiness: int
    cluster_api_kubeconfig: str | None
    cluster_auto_approve: bool
    helm_binary: str | None = None


def parse_controllers(text: str) -> frozenset[str]:
    """kube-controller-manager's ``--controllers``: ``*`` enables every controller, ``foo``
    enables one, ``-foo`` disables one (winning over ``*``); unknown names are errors."""
    items = [item.strip() for item in text.split(",") if item.strip()]
    unknown = [i for i in items if i != "*" and i.removeprefix("-") not in KNOWN_CONTROLLERS]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown controller(s) {', '.join(unknown)} (known: {', '.join(KNOWN_CONTROLLERS)})"
        )
    disabled = {i[1:] for i in items if i.startswith("-")}
    enabled = set(KNOWN_CONTROLLERS) if "*" in items else {i for i in items if i[0] != "-"}
    return frozenset(enabled - disabled)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=NAME,
        description="Runs the Clusternet controllers of the parent cluster: cluster "
        "registration approval (crrapprover) and cluster health (clusterlifecycle).",
    )
    add_common_flags(parser, NAME, secure_port=10660)
    group = parser.add_argument_group("controller manager")
    group.add_argument(
        "--controllers",
        type=parse_controllers,
        default=frozenset(KNOWN_CONTROLLERS),
        metavar="LIST",
        help="Comma-separated controllers to run: '*' for all, 'foo' enables, '-foo' "
        f"disables. Known: {', '.join(KNOWN_CONTROLLERS)}. Default: *.",
    )
    add_bool_flag(
        group,
        "--cluster-auto-approve",
        "Approve every valid ClusterRegistrationRequest (true|false). When false, a "
        "request waits until an operator sets its status.result to Approved.",
        default=True,
    )
    group.add_argument(
        "--threadiness", type=_positive_int, default=10, metavar="N", help="Workers per controller."
    )
    add_bool_flag(
        group,
        "--anonymous-auth-supported",
        "Push through the socket proxy as system:anonymous (used by the deployer).",
        default=True,
    )
    group.add_argument(
        "--reserved-namespace",
        default=known.RESERVED_NAMESPACE,
        metavar="NAMESPACE",
        help="Namespace of the shadow objects' Manifests (used by the deployer).",
    )
    group.add_argument(
        "--cluster-api-kubeconfig",
        default=None,
        metavar="PATH",
        help="Kubeconfig of a Cluster API management cluster for clusterdiscovery "
        "(accepted; discovery is not supported yet).",
    )
    group.add_argument(
        "--helm-binary",
        default=None,
        metavar="PATH",
        help="The helm binary (v4) that installs HelmReleases pushed to child clusters. "
        "Default: helm on $PATH.",
    )
    return parser


def parse_options(argv: Sequence[str] | None = None) -> Options:
    parser = build_parser()
    args = parser.parse_args(argv)
    return Options(
        common=common_options(args, parser),
        controllers=args.controllers,
        anonymous_auth_supported=args.anonymous_auth_supported,
        reserved_namespace=args.reserved_namespace,
        threadiness=args.threadiness,
        cluster_api_kubeconfig=args.cluster_api_kubeconfig or None,
        cluster_auto_approve=args.cluster_auto_approve,
        helm_binary=args.helm_binary,
    )


def runnable_controllers(options: Options) -> list[str]:
    """The enabled controllers this process runs; the others are logged once."""
    gates = options.common.feature_gates
    runnable = []
    for name in sorted(options.controllers):
        gate = _GATED.get(name)
        if gate is not None and gate not in gates:
            continue  # off unless its gate is on, as upstream
        if name == "clusterdiscovery" and not options.cluster_api_kubeconfig:
            continue  # only runs with --cluster-api-kubeconfig
        if name in _NOT_HERE:
            log.warning("controller not started", controller=name, reason=_NOT_HERE[name])
            continue
        runnable.append(name)
    return runnable


class Controller(Protocol):
    async def run(self, workers: int) -> None: ...


def deployer_controllers(
    options: Options, client: KubeClient, informers: SharedInformerFactory, recorder: EventRecorder
) -> list[Controller]:
    """The controllers of ``deployer`` (gate Deployer): the distribution pipeline of spec §4."""
    gates = options.common.feature_gates
    controllers: list[Controller] = []
    if "FeedInventory" in gates:
        controllers.append(
            FeedInventoryController(
                client, informers, recorder, reserved_namespace=options.reserved_namespace
            )
        )
    # Subscription.status.aggregatedStatuses and Deployed (spec §4.9).
    controllers.append(AggregateStatusController(client, informers, recorder))
    # Feed finalizers; in-use protection with FeedInUseProtection (spec §4.1, §4.8).
    controllers.append(
        FeedProtectionController(
            client,
            informers,
            recorder,
            protection="FeedInUseProtection" in gates,
            reserved_namespace=options.reserved_namespace,
        )
    )
    controllers.append(Pusher(client, informers, recorder))  # Generic Descriptions, spec §4.7
    # Helm: chart verification, Description -> HelmReleases, helm in pushed clusters (§4.7).
    controllers.append(HelmChartController(client, informers, recorder))
    controllers.append(HelmReleaseController(client, informers, recorder))
    helm_path = find_helm(options.helm_binary)
    if helm_path is None:
        log.warning("no helm binary: pushed HelmReleases fail until one is given",
                    helm_binary=options.helm_binary)  # fmt: skip
    helm = Helm(helm_path) if helm_path else None
    controllers.append(HelmPusher(client, informers, recorder, helm))
    # Subscription -> Bases -> Descriptions (spec §4.3-§4.6).
    controllers.append(SubscriptionController(client, informers, recorder))
    controllers.append(
        BaseController(client, informers, recorder, reserved_namespace=options.reserved_namespace)
    )
    return controllers


async def run_controllers(options: Options, client: KubeClient, recorder: EventRecorder) -> None:
    gates = options.common.feature_gates
    informers = SharedInformerFactory(client)
    controllers: list[Controller] = []
    for name in runnable_controllers(options):
        if name == "crrapprover":
            controllers.append(
                RegistrationApprover(
                    client,
                    informers,
                    recorder,
                    auto_approve=options.cluster_auto_approve,
                    socket_connection="SocketConnection" in gates,
                    cluster_init="ClusterInit" in gates,
                )
            )
        elif name == "clusterlifecycle":
            controllers.append(
                ClusterLifecycle(client, informers, recorder, cluster_init="ClusterInit" in gates)
            )
        elif name == "deployer":
            controllers.extend(deployer_controllers(options, client, informers, recorder))
        elif name == "serviceimport":
            controllers.append(ServiceImportController(client, informers, recorder))
    informers.start()
    try:
        if not await informers.wait_for_sync():
            raise RuntimeError("informers stopped before they synced")
        log.info("informers synced, starting controllers", controllers=len(controllers))
        async with asyncio.TaskGroup() as group:
            for controller in controllers:
                group.create_task(controller.run(options.threadiness))
    finally:
        await informers.stop()


async def serve(component: Component, options: Options) -> None:
    common = options.common
    config = load_kubeconfig(common.kubeconfig) if common.kubeconfig else in_cluster_config()
    async with (
        KubeClient(
            config, cluster="parent", user_agent=NAME, observer=APIRequestMetrics()
        ) as client,
        EventRecorder(client, component=NAME) as recorder,  # flushed before the client closes
    ):
        await run_while_leading(
            client,
            common.leader_election,
            lambda: run_controllers(options, client, recorder),
            health=component.health,
        )


def main(argv: Sequence[str] | None = None) -> NoReturn:
    options = parse_options(argv)
    common = options.common

    async def entry(component: Component) -> None:
        await serve(component, options)

    run_component(
        entry,
        name=NAME,
        port=common.secure_port,
        host=common.bind_address,
        log_format="json" if common.log_format == "json" else "console",
        log_level=common.log_level,
    )
