"""The kubectl verbs of the plugin: the real kubectl, pointed at the shadow proxy.

``kubectl clusternet get deploy -n baz`` runs ``kubectl get deploy -n baz`` with a private
kubeconfig whose server is a :class:`ShadowProxy` in this process.  Flags, output formats,
error messages and exit codes are therefore kubectl's own (docs/kubectl-plugin.md says why).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import typer
import yaml

from clusternet.cli._common import kubeconfig_path
from clusternet.cli.plugin.args import UsageError, split_connection_flags
from clusternet.cli.plugin.output import fail
from clusternet.cli.plugin.proxy import ShadowAPINotServed, ShadowProxy
from clusternet.kube import ClusterUnreachable, ConfigError, load_kubeconfig
from clusternet.runtime.certs import write_private

VERBS: dict[str, str] = {
    "apply": "Apply a configuration to templates by file name or stdin.",
    "create": "Create templates from a file or from stdin.",
    "get": "Display one or many templates.",
    "describe": "Show details of a template or group of templates.",
    "edit": "Edit a template with your editor.",
    "delete": "Delete templates by file names, stdin, resources and names, or selectors.",
    "scale": "Set a new replica count on a template.",
    "label": "Update the labels on a template.",
    "annotate": "Update the annotations on a template.",
}


def proxy_kubeconfig(proxy_url: str, namespace: str) -> dict[str, Any]:
    """The kubeconfig kubectl gets: the proxy (its URL holds the one-off token) and the
    parent context's namespace."""
    name = "clusternet-shadow"
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": name, "cluster": {"server": proxy_url}}],
        "users": [{"name": name, "user": {}}],
        "contexts": [
            {"name": name, "context": {"cluster": name, "user": name, "namespace": namespace}}
        ],
        "current-context": name,
    }


def kubectl_binary() -> str:
    found = shutil.which("kubectl")
    if found is None:
        raise ConfigError("kubectl is not on $PATH (the plugin runs it for this command)")
    return found


async def run_kubectl(verb: str, args: Sequence[str]) -> int:
    """Run ``kubectl <verb> <args>`` against the shadow API; kubectl's exit code."""
    parsed = split_connection_flags(args)
    parent = load_kubeconfig(kubeconfig_path(parsed.kubeconfig), parsed.context)
    binary = kubectl_binary()
    async with ShadowProxy(parent) as proxy:
        with tempfile.TemporaryDirectory(prefix="kubectl-clusternet-") as folder:
            config = Path(folder) / "kubeconfig"
            document = proxy_kubeconfig(proxy.url, parent.namespace)
            write_private(config, yaml.safe_dump(document).encode())
            # kubectl inherits the terminal, so `edit` opens the editor as usual.  Its
            # discovery cache is keyed by server URL, new on every run: keep it in the
            # temporary folder instead of piling up under ~/.kube/cache.
            env = {**os.environ, "KUBECACHEDIR": str(Path(folder) / "cache")}
            process = await asyncio.create_subprocess_exec(
                binary, f"--kubeconfig={config}", verb, *parsed.passthrough, env=env
            )
            return await process.wait()


def command(verb: str) -> Callable[[typer.Context], None]:
    """The typer callback of one verb: all arguments (and ``--help``) go to kubectl."""

    def run(ctx: typer.Context) -> None:
        try:
            code = asyncio.run(run_kubectl(verb, ctx.args))
        except (UsageError, ConfigError, ClusterUnreachable, ShadowAPINotServed, OSError) as err:
            raise fail(err) from None
        except KeyboardInterrupt:  # Ctrl-C reached kubectl too (same process group)
            raise typer.Exit(code=130) from None
        raise typer.Exit(code=code)

    run.__doc__ = VERBS[verb]
    return run


def register(app: typer.Typer) -> None:
    for verb, summary in VERBS.items():
        app.command(
            verb,
            help=f"{summary.rstrip('.')} (kubectl {verb} on the shadow API).",
            context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
            add_help_option=False,  # `-h/--help` shows kubectl's own help for the verb
        )(command(verb))
