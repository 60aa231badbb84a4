"""What the CLI commands share: where the kubeconfig is, and the common options."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

Kubeconfig = Annotated[
    Path | None, typer.Option(help="Kubeconfig (default: $KUBECONFIG, ~/.kube/config).")
]
Context = Annotated[str | None, typer.Option(help="Context of the parent cluster.")]


def kubeconfig_path(explicit: Path | None) -> Path:
    """As kubectl finds it: the flag, else the first file of $KUBECONFIG, else ~/.kube/config."""
    if explicit is not None:
        return explicit
    first = (os.environ.get("KUBECONFIG") or "").split(os.pathsep)[0]
    return Path(first) if first else Path.home() / ".kube" / "config"
