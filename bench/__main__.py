"""``python -m bench``: Clusternet's benchmark harness, one command, one report.

Brings up what it needs with `clusternet local up`'s code (or measures a running environment
given by ``--kubeconfig``/``--run-dir``), runs the scenarios (sizes are flags; the defaults
fit in 30 minutes on 2 cores) and writes ``<output-dir>/<YYYY-MM-DD>.md`` with PNG plots in
``<output-dir>/<YYYY-MM-DD>/`` (when matplotlib, the ``bench`` extra, is installed).

Run from the repository's root: ``.venv/bin/python -m bench --help``.
See docs/performance.md for what each scenario measures and how to read the report.
"""

from __future__ import annotations

import argparse
import shlex
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from bench import plots, scenarios
from bench.report import Report, Section, machine_description
from clusternet.local.environment import LocalEnvironment, Options, default_run_dir

SCENARIOS = (
    "registration",
    "propagation",
    "template",
    "scheduling",
    "proxy",
    "failover",
    "scale",
)


def _ints(text: str) -> list[int]:
    return [int(part) for part in text.replace(",", " ").split()]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description="Run Clusternet's benchmark scenarios and write a Markdown report.",
    )
    p.add_argument(
        "--scenarios",
        default=",".join(SCENARIOS),
        help=f"comma-separated subset of {', '.join(SCENARIOS)} (default: all)",
    )
    p.add_argument("--output-dir", type=Path, default=Path(__file__).parent / "results")
    p.add_argument("--date", help="report name (default: today, UTC, YYYY-MM-DD)")
    env = p.add_argument_group("environment")
    env.add_argument(
        "--kubeconfig",
        type=Path,
        help="measure a running `clusternet local up` environment (contexts parent, "
        "child1..N) instead of starting one",
    )
    env.add_argument(
        "--run-dir",
        type=Path,
        help="that environment's run folder (pids, PKI; default: clusternet local's default); "
        "without it the proxy, failover and scale scenarios and process figures are skipped",
    )
    env.add_argument("--children", type=int, default=3, help="real children (default 3)")
    env.add_argument(
        "--pull-children",
        type=int,
        default=1,
        help="how many of them run their agent with --cluster-sync-mode=Pull; the others "
        "Push (default 1)",
    )
    env.add_argument("--timeout", type=float, default=300.0, help="limit of one wait (s)")
    sizes = p.add_argument_group("sizes")
    sizes.add_argument(
        "--registration-runs", type=int, default=1, help="runs of 3 real agents (default 1)"
    )
    sizes.add_argument("--runs", type=int, default=50, help="sequential propagations")
    sizes.add_argument("--burst", type=int, default=300, help="Subscriptions created at once")
    sizes.add_argument("--template-runs", type=int, default=20, help="template updates")
    sizes.add_argument(
        "--clusters",
        type=_ints,
        default=[100, 1000],
        help="simulated clusters for scheduling (default 100,1000)",
    )
    sizes.add_argument("--subscriptions", type=int, default=1000, help="for scheduling")
    sizes.add_argument("--no-scheduler-e2e", action="store_true", help="scheduling in-process only")
    sizes.add_argument("--requests", type=int, default=300, help="proxied/direct GETs")
    sizes.add_argument("--watch-events", type=int, default=100, help="proxied watch events")
    sizes.add_argument("--configmaps", type=int, default=2000, help="large-list size")
    sizes.add_argument("--failover-child", help="whose agent stops (default: the first child)")
    sizes.add_argument(
        "--scale-steps",
        type=_ints,
        default=[50, 100, 200],
        help="cumulative simulated clusters registered in batches (default 50,100,200; the "
        "issue's target is 1000)",
    )
    sizes.add_argument(
        "--heartbeat", type=float, default=30.0, help="simulated clusters' report period (s)"
    )
    sizes.add_argument("--scale-settle", type=float, default=10.0, help="s before a window")
    sizes.add_argument("--scale-window", type=float, default=20.0, help="measured s per step")
    p.add_argument(
        "--profile",
        action="store_true",
        help="after the measured burst, run it again with py-spy sampling Clusternet's "
        "components, and report where their CPU time goes (pip install py-spy)",
    )
    return p


def _git_describe(where: Path) -> str:
    try:
        return subprocess.run(
            ["git", "describe", "--always", "--dirty"],
            cwd=where,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def version() -> str:
    """The version under test: the `clusternet` package the components run from.

    A before/after comparison runs the harness of today against an older checkout
    (PYTHONPATH=old/src); the report must name the code measured, and the harness
    only when it differs."""
    import clusternet

    measured = _git_describe(Path(clusternet.__file__).parent)
    harness = _git_describe(Path(__file__).parent)
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as package_version

    try:
        package = package_version("clusternet-py")
    except PackageNotFoundError:
        package = "?"
    if measured == harness:
        return f"clusternet-py {package} (git {measured})"
    return f"clusternet-py (git {measured}, measured with the harness at git {harness})"


def _section_order(section: Section) -> tuple[int, str]:
    number = section.title.split(".", 1)[0]
    digits = "".join(ch for ch in number if ch.isdigit())
    return (int(digits) if digits and len(number) <= 3 else 99, number)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    # Ctrl-C and kill (also when started in the background, where SIGINT is ignored) end the
    # run through the finally blocks, so that the environments it started are stopped.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    if args.heartbeat < 1:
        parser().error("--heartbeat must be at least 1 s (the ManagedCluster field is whole s)")
    chosen = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = set(chosen) - set(SCENARIOS)
    if unknown:
        parser().error(f"unknown scenarios: {', '.join(sorted(unknown))}")
    if min(args.clusters) < 20 and "scheduling" in chosen and not args.no_scheduler_e2e:
        parser().error(
            "--clusters below 20 leave a region without an untainted cluster: the end-to-end "
            "scheduling run would wait for Subscriptions that can never be bound"
        )
    if not 0 <= args.pull_children <= args.children:
        parser().error("--pull-children must be between 0 and --children")
    date = args.date or datetime.now(UTC).strftime("%Y-%m-%d")
    out = args.output_dir.resolve()
    report = Report(f"Clusternet benchmarks, {date}")
    ctx = scenarios.Context(args=args, report=report, images=out / date, image_prefix=date)
    started = time.monotonic()
    timings: list[tuple[str, float, str]] = []

    def run(name: str, fn: Callable[[], None]) -> None:
        print(f"[bench] {name} ...", flush=True)
        begun = time.monotonic()
        outcome = "ok"
        try:
            fn()
        except Exception as err:  # one failed scenario still leaves a report
            traceback.print_exc()
            outcome = f"failed: {type(err).__name__}: {err}"
            report.section(f"{name}: not measured").note(f"The scenario {outcome}")
        took = time.monotonic() - begun
        timings.append((name, took, outcome))
        print(f"[bench] {name}: {outcome} in {took:.0f} s", flush=True)

    # Scenarios with environments of their own first, so that nothing else runs meanwhile.
    if "registration" in chosen:
        run("registration (real agents)", lambda: scenarios.registration_real(ctx))
    if "scheduling" in chosen:
        run("scheduling", lambda: scenarios.scheduling(ctx))

    shared = [s for s in chosen if s not in ("scheduling",)]
    up_seconds: float | None = None
    with tempfile.TemporaryDirectory(prefix="clusternet-bench-") as tmp:
        env: LocalEnvironment | None = None
        owned = False
        try:
            if shared and args.kubeconfig:
                ctx.kubeconfig = args.kubeconfig.resolve()
                candidate = LocalEnvironment(args.run_dir or default_run_dir(), ctx.kubeconfig)
                state = candidate.load_state()
                if state is not None:
                    env = candidate
                    ctx.children = [c.name for c in state.children]
                    modes = state.options.get("sync_modes") or []
                else:
                    import yaml

                    config = yaml.safe_load(ctx.kubeconfig.read_text())
                    names = [c["name"] for c in config["contexts"]]
                    ctx.children = sorted(n for n in names if n != "parent")
                    modes = []
                ctx.modes = {
                    c: (modes[i] if i < len(modes) else "Dual") for i, c in enumerate(ctx.children)
                }
            elif shared:
                modes = ["Push"] * (args.children - args.pull_children)
                modes += ["Pull"] * args.pull_children
                env = LocalEnvironment(
                    Path(tmp) / "run",
                    Path(tmp) / "kubeconfig",
                    log=lambda msg: print(f"[local up] {msg}", flush=True),
                )
                print(f"[bench] local up: {args.children} children ({modes}) ...", flush=True)
                begun = time.monotonic()
                state = env.up(
                    Options(children=args.children, sync_modes=tuple(modes), timeout=300)
                )
                owned = True
                up_seconds = time.monotonic() - begun
                ctx.kubeconfig = Path(state.kubeconfig)
                ctx.children = [c.name for c in state.children]
                ctx.modes = dict(zip(ctx.children, modes, strict=True))
            ctx.env = env

            if {"propagation", "template"} & set(shared):
                run(
                    "propagation / template update",
                    lambda: scenarios.distribution(
                        ctx,
                        push_pull="propagation" in shared,
                        template="template" in shared,
                    ),
                )
            for name, fn in (
                ("proxy", scenarios.proxy_scenario),
                ("failover", scenarios.failover),
                ("scale", scenarios.scale),  # last: it leaves simulated clusters behind
            ):
                if name not in shared:
                    continue
                if env is None:
                    report.section(f"{name}: not measured").note(
                        "Needs the environment's state (pids, PKI): pass --run-dir."
                    )
                    continue
                run(name, lambda fn=fn: fn(ctx))  # type: ignore[misc]
        finally:
            if owned and env is not None:
                print("[bench] local down ...", flush=True)
                env.down()

    total = time.monotonic() - started
    preamble = [
        f"Version: {version()}. Machine: {machine_description()}.",
        f"Command: `python -m bench {shlex.join(argv if argv is not None else sys.argv[1:])}`",
        "Figures marked **(simulated clusters)** come from lightweight simulated agents "
        "(registration and heartbeats through the API) or ManagedCluster objects without an "
        "agent; all others from real `clusternet-agent` processes and real child API "
        "servers (kwok runs the pods). Everything shares this one machine, 127.0.0.1. "
        "How to read this report: docs/performance.md.",
    ]
    if not plots.available():
        preamble.append("Plots skipped: matplotlib is not installed (`pip install -e '.[bench]'`).")
    lines = ["| step | seconds | outcome |", "|---|---|---|"]
    if up_seconds is not None:
        lines.append(f"| local up ({args.children} children) | {up_seconds:.0f} | ok |")
    lines += [f"| {n} | {t:.0f} | {o} |" for n, t, o in timings]
    lines.append(f"| **whole run** | {total:.0f} | |")
    preamble.append("\n".join(lines))
    report.preamble = preamble
    report.sections.sort(key=_section_order)  # by scenario number, not by the order of runs
    path = out / f"{date}.md"
    report.write(path)
    print(f"[bench] report: {path} ({total:.0f} s)", flush=True)
    return 0 if all(o == "ok" for _, _, o in timings) else 1


if __name__ == "__main__":
    sys.exit(main())
