"""``clusternet-scheduler``: places Subscriptions onto ManagedClusters, under leader election.

Flags are upstream's (spec §1.1, §1.5): the common component flags with ``--secure-port``
10659, ``--config`` for scheduler profiles; plus ``--min-reschedule-interval``, the rate limit
on reschedules caused by cluster changes (a fix of spec §12 item 2 that upstream lacks).
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, NoReturn

import structlog

from clusternet.apis import known
from clusternet.kube import KubeClient, in_cluster_config, load_kubeconfig
from clusternet.runtime import (
    Component,
    EventRecorder,
    SharedInformerFactory,
    run_component,
)
from clusternet.runtime.apimetrics import APIRequestMetrics
from clusternet.runtime.flags import CommonOptions, add_common_flags, common_options, parse_duration
from clusternet.runtime.leaderelection import run_while_leading
from clusternet.scheduler.config import ConfigError, load_profiles
from clusternet.scheduler.framework import Framework, Profile, Registry
from clusternet.scheduler.plugins import in_tree_registry
from clusternet.scheduler.scheduler import Scheduler, SchedulerHandle

log = structlog.get_logger(__name__)

NAME: Final = known.CLUSTERNET_SCHEDULER_NAME


@dataclass(frozen=True)
class Options:
    common: CommonOptions
    config: str | None
    min_reschedule_interval: float


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=NAME, description="Schedules Clusternet Subscriptions onto managed clusters."
    )
    add_common_flags(parser, NAME, secure_port=10659)
    group = parser.add_argument_group("scheduler")
    group.add_argument(
        "--config",
        default=None,
        metavar="PATH",
        help="SchedulerConfiguration YAML with profiles (camelCase or snake_case keys); "
        "without it the default profile runs.",
    )
    group.add_argument(
        "--min-reschedule-interval",
        type=parse_duration,
        default=30.0,
        metavar="DURATION",
        help="Least time between two reschedules of one Subscription caused by cluster "
        "changes (the first one is immediate), so a flapping cluster cannot churn "
        "placements. Spec changes are never delayed. Default 30s.",
    )
    return parser


def parse_options(argv: Sequence[str] | None = None) -> Options:
    parser = build_parser()
    args = parser.parse_args(argv)
    return Options(
        common=common_options(args, parser),
        config=args.config,
        min_reschedule_interval=args.min_reschedule_interval,
    )


async def run_scheduler(
    options: Options,
    client: KubeClient,
    recorder: EventRecorder,
    profiles: Sequence[Profile],
    registry: Registry,
) -> None:
    handle = SchedulerHandle(client, recorder)
    tolerate = "FeasibleClustersToleration" in options.common.feature_gates
    frameworks = [
        Framework(p, registry, handle, tolerate_predictor_failures=tolerate) for p in profiles
    ]
    informers = SharedInformerFactory(client)
    scheduler = Scheduler(
        client,
        informers,
        recorder,
        frameworks,
        min_reschedule_interval=options.min_reschedule_interval,
    )
    informers.start()
    try:
        if not await informers.wait_for_sync():
            raise RuntimeError("informers stopped before they synced")
        log.info("informers synced, scheduling", profiles=[p.scheduler_name for p in profiles])
        await scheduler.run()
    finally:
        await informers.stop()
        await asyncio.gather(*(f.close() for f in frameworks))


async def serve(
    component: Component, options: Options, registry: Registry, profiles: Sequence[Profile]
) -> None:
    common = options.common
    config = load_kubeconfig(common.kubeconfig) if common.kubeconfig else in_cluster_config()
    async with (
        KubeClient(
            config, cluster="parent", user_agent=NAME, observer=APIRequestMetrics()
        ) as client,
        EventRecorder(client, component=NAME) as recorder,
    ):
        await run_while_leading(
            client,
            common.leader_election,
            lambda: run_scheduler(options, client, recorder, profiles, registry),
            health=component.health,
        )


def main(argv: Sequence[str] | None = None, registry: Registry | None = None) -> NoReturn:
    """The process entry point.  Out-of-tree plugins: build ``registry`` with
    :func:`~clusternet.scheduler.plugins.in_tree_registry`, ``register`` yours, pass it here."""
    options = parse_options(argv)
    registry = registry or in_tree_registry()
    try:
        profiles = load_profiles(options.config, registry)
    except (ConfigError, OSError) as err:
        raise SystemExit(f"{NAME}: --config {options.config}: {err}") from None
    common = options.common

    async def entry(component: Component) -> None:
        await serve(component, options, registry, profiles)

    run_component(
        entry,
        name=NAME,
        port=common.secure_port,
        host=common.bind_address,
        log_format="json" if common.log_format == "json" else "console",
        log_level=common.log_level,
    )
