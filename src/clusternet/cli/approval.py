"""``kubectl clusternet approve|deny <request>``: decide a pending ClusterRegistrationRequest.

With ``--cluster-auto-approve=false`` the controller-manager leaves requests pending until an
operator decides; approving sets ``status.result: Approved`` and the controller-manager then
provisions the cluster's namespace, identity and credentials.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from clusternet.apis import known
from clusternet.cli._common import Context, Kubeconfig, kubeconfig_path
from clusternet.kube import (
    ApiError,
    ClusterUnreachable,
    ConfigError,
    KubeClient,
    NotFound,
    load_kubeconfig,
)

API_VERSION = f"{known.CLUSTERS_GROUP}/v1beta1"
KIND = "ClusterRegistrationRequest"
err = Console(stderr=True, soft_wrap=True, highlight=False)


def decision(result: str, reason: str | None) -> dict[str, Any]:
    """The status patch an operator's decision makes."""
    status: dict[str, Any] = {"result": result}
    if result != "Approved":
        status["errorMessage"] = reason or f"{result.lower()} by an operator"
    return {"status": status}


async def decide(kubeconfig: Path | None, context: str | None, name: str, result: str,
                 reason: str | None) -> str:  # fmt: skip
    config = load_kubeconfig(kubeconfig_path(kubeconfig), context)
    async with KubeClient(config, cluster=context or "") as client:
        current = await client.get(API_VERSION, KIND, name)
        decided = (current.get("status") or {}).get("result")
        if decided:
            raise ValueError(f"{name} is already {decided}: nothing to do")
        await client.patch(API_VERSION, KIND, name, decision(result, reason), subresource="status")
    return f"clusterregistrationrequest/{name} {result.lower()}"


def _run(name: str, result: str, reason: str | None, kubeconfig: Path | None,
         context: str | None) -> None:  # fmt: skip
    try:
        typer.echo(asyncio.run(decide(kubeconfig, context, name, result, reason)))
    except NotFound:
        err.print(f"error: no ClusterRegistrationRequest named {name!r}", style="red")
        raise typer.Exit(code=1) from None
    except (ValueError, ApiError, ClusterUnreachable, ConfigError) as error:
        err.print(f"error: {error}", style="red", markup=False)
        raise typer.Exit(code=1) from None


def approve(name: str, kubeconfig: Kubeconfig = None, context: Context = None) -> None:
    """Approve a pending cluster registration request."""
    _run(name, "Approved", None, kubeconfig, context)


def deny(
    name: str,
    reason: Annotated[str | None, typer.Option(help="Why (shown to the agent).")] = None,
    kubeconfig: Kubeconfig = None,
    context: Context = None,
) -> None:
    """Deny a pending cluster registration request."""
    _run(name, "Denied", reason, kubeconfig, context)
