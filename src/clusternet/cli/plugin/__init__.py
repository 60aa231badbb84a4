"""``kubectl clusternet``: kubectl against the shadow API, plus Clusternet's own commands.

See docs/kubectl-plugin.md.
"""

from __future__ import annotations

import typer

from clusternet.cli.plugin import clusters, kubeconfig, kubectl


def register(app: typer.Typer) -> None:
    """Add the plugin's commands at the top level of ``app``."""
    kubectl.register(app)
    app.command("clusters")(clusters.clusters)
    app.command("kubeconfig")(kubeconfig.kubeconfig)
