"""``kubectl clusternet clusters``: the ManagedClusters of the parent at a glance."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Annotated, Any

import typer

from clusternet.apis import known
from clusternet.cli._common import Context, Kubeconfig, kubeconfig_path
from clusternet.cli.plugin.output import age, fail, table
from clusternet.kube import ApiError, ClusterUnreachable, ConfigError, KubeClient, load_kubeconfig

MANAGED_CLUSTER_API_VERSION = f"{known.CLUSTERS_GROUP}/v1beta1"
HEADER = ("NAMESPACE", "NAME", "CLUSTER ID", "SYNC MODE", "KUBERNETES", "READY", "CPU", "MEMORY",
          "AGE")  # fmt: skip


def ready(cluster: dict[str, Any]) -> str:
    """The Ready condition's status (True/False/Unknown); Unknown before the first report."""
    for condition in (cluster.get("status") or {}).get("conditions") or ():
        if condition.get("type") == "Ready":
            return str(condition.get("status") or "Unknown")
    return "Unknown"


def cluster_row(cluster: dict[str, Any], now: datetime | None = None) -> list[str]:
    metadata, spec = cluster.get("metadata") or {}, cluster.get("spec") or {}
    status = cluster.get("status") or {}
    capacity = status.get("capacity") or {}
    return [
        metadata.get("namespace", ""),
        metadata.get("name", ""),
        spec.get("clusterId", ""),
        spec.get("syncMode", ""),
        status.get("k8sVersion") or "<unknown>",
        ready(cluster),
        str(capacity.get("cpu", "<none>")),
        str(capacity.get("memory", "<none>")),
        age(metadata.get("creationTimestamp"), now),
    ]


def clusters_table(items: list[dict[str, Any]], now: datetime | None = None) -> str:
    ordered = sorted(items, key=lambda c: (c["metadata"]["namespace"], c["metadata"]["name"]))
    return table(HEADER, [cluster_row(c, now) for c in ordered])


async def list_clusters(
    kubeconfig: Kubeconfig, context: str | None, selector: str | None
) -> list[dict[str, Any]]:
    config = load_kubeconfig(kubeconfig_path(kubeconfig), context)
    async with KubeClient(config, cluster=context or "") as client:
        listed = await client.list(
            MANAGED_CLUSTER_API_VERSION, "ManagedCluster", label_selector=selector
        )
    items: list[dict[str, Any]] = listed.get("items") or []
    return items


def clusters(
    selector: Annotated[
        str | None, typer.Option("--selector", "-l", help="Label selector on ManagedClusters.")
    ] = None,
    kubeconfig: Kubeconfig = None,
    context: Context = None,
) -> None:
    """List the registered clusters: ID, sync mode, Kubernetes version, Ready and capacity."""
    try:
        items = asyncio.run(list_clusters(kubeconfig, context, selector))
    except (ApiError, ClusterUnreachable, ConfigError, OSError) as error:
        raise fail(error) from None
    if not items:
        typer.echo("No resources found", err=True)  # kubectl's wording for an empty list
        return
    typer.echo(clusters_table(items), nl=False)
