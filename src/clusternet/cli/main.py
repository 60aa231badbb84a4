"""The ``clusternet`` command (also installed as the kubectl plugin ``kubectl-clusternet``)."""

from __future__ import annotations

import typer

from clusternet import __version__
from clusternet.cli import approval, demo, install, local, plugin

app = typer.Typer(
    help="clusternet-py: manage many Kubernetes clusters as one (also `kubectl clusternet`).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(local.app, name="local")
app.add_typer(demo.app, name="demo")
app.command("install")(install.command)
app.command("approve")(approval.approve)
app.command("deny")(approval.deny)
plugin.register(app)  # get/apply/...: kubectl against the shadow API; clusters; kubeconfig


@app.command()
def version() -> None:
    """Print the version."""
    typer.echo(__version__)


if __name__ == "__main__":
    app()
