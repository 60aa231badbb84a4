"""``kubectl clusternet kubeconfig <cluster>``: reach a child through the hub's socket proxy.

The kubeconfig keeps the user's own parent credentials (the parent authenticates and
authorizes every request), points at ``.../sockets/<cluster-id>/proxy/direct`` and
impersonates user ``clusternet`` with the child's ``child-cluster-deployer`` token as the
``clusternet-token`` extra, which the hub presents to the child (spec §6.3; the same shape
as ``clusternet local kubeconfig --via-hub``).
"""

from __future__ import annotations

import asyncio
import base64
import copy
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

import typer
import yaml

from clusternet.apis import known
from clusternet.cli._common import Context, Kubeconfig, kubeconfig_path
from clusternet.cli.plugin.clusters import MANAGED_CLUSTER_API_VERSION
from clusternet.cli.plugin.output import err, fail
from clusternet.kube import (
    ApiError,
    ClusterUnreachable,
    ConfigError,
    KubeClient,
    NotFound,
    load_kubeconfig,
)
from clusternet.local.components import SOCKETS_PATH
from clusternet.runtime.certs import write_private

# Kubeconfig fields that name files relative to the kubeconfig's own folder.
_FILE_FIELDS = ("certificate-authority", "client-certificate", "client-key", "tokenFile")


def _entry(document: dict[str, Any], section: str, name: str) -> dict[str, Any]:
    for item in document.get(section) or ():
        if item.get("name") == name:
            found: dict[str, Any] = copy.deepcopy(item.get(section[:-1]) or {})
            return found
    raise ConfigError(f"kubeconfig has no {section[:-1]} {name!r}")


def _absolute_files(entry: dict[str, Any], base: Path) -> dict[str, Any]:
    for key in _FILE_FIELDS:
        if entry.get(key):
            entry[key] = str((base / entry[key]).resolve())
    return entry


def via_hub_kubeconfig(
    parent_kubeconfig: dict[str, Any],
    base: Path,
    context: str | None,
    cluster: str,
    cluster_id: str,
    child_token: str,
) -> dict[str, Any]:
    """A kubeconfig for ``cluster`` built from the parent context's cluster and user."""
    context_name = context or parent_kubeconfig.get("current-context")
    if not context_name:
        raise ConfigError("kubeconfig has no current-context: pass --context")
    parent_context = _entry(parent_kubeconfig, "contexts", context_name)
    server = _absolute_files(_entry(parent_kubeconfig, "clusters", parent_context["cluster"]), base)
    user = _absolute_files(_entry(parent_kubeconfig, "users", parent_context["user"]), base)
    if user.get("as"):
        raise ConfigError(
            f"user of context {context_name!r} already impersonates {user['as']!r}; the hub "
            "proxy needs to impersonate `clusternet`"
        )
    server["server"] = (
        f"{server['server'].rstrip('/')}{SOCKETS_PATH}/{quote(cluster_id)}/proxy/direct"
    )
    user["as"] = "clusternet"
    user["as-user-extra"] = {"clusternet-token": [child_token]}
    name = f"{cluster}-via-hub"
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": name, "cluster": server}],
        "users": [{"name": name, "user": user}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": name}}],
        "current-context": name,
    }


async def find_cluster(client: KubeClient, cluster: str) -> dict[str, Any]:
    """The ManagedCluster named ``cluster``, or whose cluster ID is ``cluster``."""
    listed = await client.list(MANAGED_CLUSTER_API_VERSION, "ManagedCluster")
    items: list[dict[str, Any]] = listed.get("items") or []
    by_name = [c for c in items if c["metadata"]["name"] == cluster]
    by_id = [c for c in items if (c.get("spec") or {}).get("clusterId") == cluster]
    matches = by_name or by_id
    if not matches:
        message = f'managedclusters.{known.CLUSTERS_GROUP} "{cluster}" not found'
        raise NotFound(404, {"reason": "NotFound", "message": message, "code": 404})
    if len(matches) > 1:
        places = ", ".join(c["metadata"]["namespace"] for c in matches)
        raise ConfigError(
            f"{cluster!r} names clusters in several namespaces ({places}): pass its ID"
        )
    return matches[0]


async def kubeconfig_for(
    kubeconfig: Path | None, context: str | None, cluster: str
) -> dict[str, Any]:
    path = kubeconfig_path(kubeconfig)
    config = load_kubeconfig(path, context)
    async with KubeClient(config, cluster=context or "") as client:
        managed = await find_cluster(client, cluster)
        namespace = managed["metadata"]["namespace"]
        try:
            secret = await client.get(
                "v1", "Secret", known.CHILD_CLUSTER_SECRET_NAME, namespace=namespace
            )
        except NotFound:
            raise ConfigError(
                f"secret {namespace}/{known.CHILD_CLUSTER_SECRET_NAME} not found: the agent of "
                f"{cluster} has not published its credentials yet"
            ) from None
    token = base64.b64decode((secret.get("data") or {}).get("token", "")).decode()
    if not token:
        raise ConfigError(f"secret {namespace}/{known.CHILD_CLUSTER_SECRET_NAME} has no token")
    document = yaml.safe_load(path.read_text()) or {}
    return via_hub_kubeconfig(
        document,
        path.parent,
        context,
        managed["metadata"]["name"],
        managed["spec"]["clusterId"],
        token,
    )


def kubeconfig(
    cluster: Annotated[str, typer.Argument(help="ManagedCluster name (or cluster ID).")],
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="File to write (default: stdout).")
    ] = None,
    kubeconfig: Kubeconfig = None,
    context: Context = None,
) -> None:
    """Print a kubeconfig that reaches a child cluster through the parent and clusternet-hub."""
    try:
        document = asyncio.run(kubeconfig_for(kubeconfig, context, cluster))
    except (ApiError, ClusterUnreachable, ConfigError, OSError) as error:
        raise fail(error) from None
    text = yaml.safe_dump(document)
    if output is None:
        typer.echo(text, nl=False)
        return
    output.parent.mkdir(parents=True, exist_ok=True)
    write_private(output, text.encode())  # it holds the child's cluster-admin token
    err.print(f"wrote {output} (context {document['current-context']})")
