"""``clusternet install``: CRDs, namespaces and RBAC into a parent (or, with --child, a child)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from clusternet.apis.install import child_manifests, parent_manifests
from clusternet.cli._common import Kubeconfig, kubeconfig_path
from clusternet.kube import (
    ApiError,
    Applied,
    ClusterUnreachable,
    ConfigError,
    KubeClient,
    apply_manifests,
)

FIELD_MANAGER = "clusternet-install"
err = Console(stderr=True, soft_wrap=True, highlight=False)


async def install(kubeconfig: Path | None, context: str | None, child: bool) -> list[Applied]:
    source = kubeconfig_path(kubeconfig)
    manifests = child_manifests() if child else parent_manifests()
    async with KubeClient.from_kubeconfig(source, context) as client, asyncio.timeout(120):
        return await apply_manifests(client, manifests, field_manager=FIELD_MANAGER)


def command(
    kubeconfig: Kubeconfig = None,
    context: Annotated[str | None, typer.Option(help="Context to install into.")] = None,
    child: Annotated[
        bool, typer.Option("--child", help="Install the child-cluster side (for the agent).")
    ] = False,
) -> None:
    """Install Clusternet's CRDs, namespaces and RBAC (idempotent: safe to run again)."""
    try:
        results = asyncio.run(install(kubeconfig, context, child))
    except (ApiError, ClusterUnreachable, ConfigError, TimeoutError, OSError) as error:
        err.print(f"error: {error}", style="red", markup=False)
        raise typer.Exit(code=1) from None
    for result in results:
        typer.echo(str(result))
    changed = sum(r.changed for r in results)
    err.print(f"{len(results)} objects, {changed} changed", markup=False)
