"""``clusternet local up|down|status|kubeconfig|build``: a parent and children on this machine."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer
import yaml
from rich.console import Console
from rich.table import Table

from clusternet.local import components
from clusternet.local._rest import APIError
from clusternet.local.binaries import BuildError, MissingBinariesError, Toolbox
from clusternet.local.environment import (
    LocalEnvironment,
    LocalEnvironmentError,
    Options,
    default_kubeconfig,
    default_run_dir,
)
from clusternet.local.pki import PKI, write_private
from clusternet.local.processes import ProcessExitedError

app = typer.Typer(
    help="Run a parent and child clusters on this machine (127.0.0.1 only).", no_args_is_help=True
)
err = Console(stderr=True, soft_wrap=True)
out = Console(soft_wrap=True)

RunDir = Annotated[
    Path,
    typer.Option("--run-dir", help="Where state, PKI, etcd data and logs live."),
]
Kubeconfig = Annotated[
    Path,
    typer.Option("--kubeconfig", help="Kubeconfig to write, with contexts parent, child1..N."),
]


def _progress() -> tuple[float, Callable[[str], None]]:
    started = time.monotonic()

    def log(message: str) -> None:
        err.print(f"[dim]{time.monotonic() - started:6.1f}s[/dim] {message}")

    return started, log


def _fail(error: Exception) -> typer.Exit:
    err.print(f"error: {error}", style="red", highlight=False, markup=False)
    return typer.Exit(code=1)


@app.command()
def up(
    children: Annotated[int, typer.Option(help="Number of child clusters.")] = 2,
    nodes_per_child: Annotated[int, typer.Option(help="Fake (kwok) Nodes per child.")] = 1,
    node_cpu: Annotated[str, typer.Option(help="CPU capacity of each Node.")] = "8",
    node_memory: Annotated[str, typer.Option(help="Memory capacity of each Node.")] = "32Gi",
    node_pods: Annotated[str, typer.Option(help="Pod capacity of each Node.")] = "110",
    parent_port: Annotated[
        int, typer.Option(help="Port of the parent kube-apiserver (0: any free port).")
    ] = 0,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for each step.")] = 180.0,
    clusternet: Annotated[
        bool,
        typer.Option(
            "--clusternet/--no-clusternet",
            help="Install Clusternet and start its controller-manager and agents.",
        ),
    ] = True,
    run_dir: RunDir = default_run_dir(),  # noqa: B008
    kubeconfig: Kubeconfig = default_kubeconfig(),  # noqa: B008
) -> None:
    """Start a parent and N child clusters (builds the binaries on first use)."""
    _, log = _progress()
    env = LocalEnvironment(run_dir=run_dir, kubeconfig=kubeconfig, log=log)
    options = Options(
        children=children,
        nodes_per_child=nodes_per_child,
        node_cpu=node_cpu,
        node_memory=node_memory,
        node_pods=node_pods,
        parent_port=parent_port,
        timeout=timeout,
        clusternet=clusternet,
    )
    try:
        state = env.up(options)
    except (LocalEnvironmentError, MissingBinariesError, BuildError, ProcessExitedError) as e:
        raise _fail(e) from None
    timings = ", ".join(f"{k} {v:.1f}s" for k, v in state.timings.items())
    log(f"ready ({timings})")
    _print_status(env)
    out.print(f"export KUBECONFIG={state.kubeconfig}", highlight=False, soft_wrap=True)


@app.command()
def down(run_dir: RunDir = default_run_dir()) -> None:  # noqa: B008
    """Stop the processes of the local environment (by pid) and remove its run folder."""
    env = LocalEnvironment(run_dir=run_dir)
    try:
        state = env.load_state()
        stopped = env.down()
    except LocalEnvironmentError as e:
        raise _fail(e) from None
    if state is None:
        err.print(f"no local environment in {env.run_dir}: nothing to stop")
        return
    err.print(f"stopped {len(stopped)} processes; removed {env.run_dir}")


@app.command()
def status(run_dir: RunDir = default_run_dir()) -> None:  # noqa: B008
    """Show the clusters of the local environment, their ports and health."""
    env = LocalEnvironment(run_dir=run_dir)
    try:
        if env.load_state() is None:
            err.print(f"no local environment in {env.run_dir} (start one: clusternet local up)")
            raise typer.Exit(code=1)
    except LocalEnvironmentError as e:
        raise _fail(e) from None
    _print_status(env)


@app.command()
def kubeconfig(
    via_hub: Annotated[
        str,
        typer.Option(
            "--via-hub",
            metavar="CHILD",
            help="The child cluster to reach through the parent and clusternet-hub.",
        ),
    ],
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="File to write (default: stdout).")
    ] = None,
    run_dir: RunDir = default_run_dir(),  # noqa: B008
) -> None:
    """A kubeconfig for a child whose server is the parent's socket proxy to that child.

    The parent admin certificate impersonates user `clusternet`; the child's
    clusternet-app-deployer token travels as its `clusternet-token` extra.
    """
    env = LocalEnvironment(run_dir=run_dir)
    try:
        state = env.load_state()
        if state is None:
            raise LocalEnvironmentError(f"no local environment in {env.run_dir}")
        children = [c.name for c in state.children]
        if via_hub not in children:
            raise LocalEnvironmentError(
                f"{via_hub!r} is not a child of this environment (children: {', '.join(children)})"
            )
        ids = components.cluster_ids(env.client("parent"))
        if via_hub not in ids:
            raise LocalEnvironmentError(
                f"{via_hub} has not registered with the parent (is clusternet running? "
                "`clusternet local up` without --no-clusternet)"
            )
        pki = PKI(env.run_dir / "pki")
        config = components.via_hub_kubeconfig(
            parent_server=state.cluster("parent").server,
            ca_pem=pki.ca_cert.read_bytes(),
            client_cert_pem=pki.admin_cert.read_bytes(),
            client_key_pem=pki.admin_key.read_bytes(),
            cluster=via_hub,
            cluster_id=ids[via_hub],
            child_token=components.child_deployer_token(env.client(via_hub)),
        )
    except (LocalEnvironmentError, APIError, OSError) as e:
        raise _fail(e) from None
    text = yaml.safe_dump(config)
    if output is None:
        out.print(text, highlight=False, markup=False, end="")
        return
    output.parent.mkdir(parents=True, exist_ok=True)
    write_private(output, text.encode())  # it holds a key and a token
    err.print(f"wrote {output} (context {via_hub}-via-hub)")


@app.command()
def build() -> None:
    """Build (or find) the control-plane binaries without starting anything."""
    _, log = _progress()
    toolbox = Toolbox(log=log)
    try:
        paths = toolbox.ensure()
        stages = toolbox.kwok_stages()
    except (MissingBinariesError, BuildError) as e:
        raise _fail(e) from None
    for name, path in paths.items():
        out.print(f"{name:24} {path}", highlight=False)
    out.print(f"{'kwok stages':24} {stages}", highlight=False)


def _print_status(env: LocalEnvironment) -> None:
    rows = env.status()
    table = Table(box=None, header_style="bold")
    for column in rows[0] if rows else []:
        table.add_column(column.upper())
    for row in rows:
        table.add_row(*[str(v) for v in row.values()])
    out.print(table)
