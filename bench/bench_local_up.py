"""How long `clusternet local up` takes and how much memory the clusters use.

    python bench/bench_local_up.py [--children 2 3] [--runs 3]

Prints a table: per environment size, up time (min/median/max over runs), down time, and the
resident memory of all its processes (sum of RSS, read from /proc) once ready.
Binaries must already be built (`clusternet local build`).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from clusternet.local.environment import LocalEnvironment, Options
from clusternet.local.processes import child_pids


def rss_mib(pids: list[int]) -> float:
    total_kib = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total_kib += int(line.split()[1])
        except OSError:
            continue
    return total_kib / 1024


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--children", type=int, nargs="+", default=[2, 3])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--settle",
        type=float,
        default=10.0,
        help="seconds to let controllers settle before reading memory",
    )
    args = parser.parse_args()

    rows = []
    for children in args.children:
        ups, downs, memory, per_process = [], [], [], {}
        for _ in range(args.runs):
            with tempfile.TemporaryDirectory() as tmp:
                env = LocalEnvironment(Path(tmp) / "run", Path(tmp) / "kubeconfig")
                started = time.monotonic()
                state = env.up(Options(children=children))
                ups.append(time.monotonic() - started)
                time.sleep(args.settle)  # a benchmark, not a test: let memory settle
                # the supervisors of Clusternet's processes count too: they run on the machine
                pids = [p.pid for p in state.processes if p.alive()]
                pids += [c for p in state.processes if p.supervised for c in child_pids(p.pid)]
                memory.append(rss_mib(pids))
                for p in state.processes:
                    kind = p.name.split("/")[-1]
                    pid = p.component_pid()
                    if pid is not None:
                        per_process.setdefault(kind, []).append(rss_mib([pid]))
                started = time.monotonic()
                env.down()
                downs.append(time.monotonic() - started)
        rows.append((f"1+{children}", ups, downs, memory, per_process))

    print(
        f"{'clusters':>8} {'up min':>7} {'up med':>7} {'up max':>7} {'down med':>8} {'RSS MiB':>8}"
    )
    for name, ups, downs, memory, _ in rows:
        print(
            f"{name:>8} {min(ups):7.1f} {statistics.median(ups):7.1f} {max(ups):7.1f} "
            f"{statistics.median(downs):8.1f} {statistics.median(memory):8.0f}"
        )
    print("\nmedian RSS per process (MiB):")
    for name, *_, per_process in rows:
        parts = ", ".join(f"{k} {statistics.median(v):.0f}" for k, v in sorted(per_process.items()))
        print(f"  1+{name[2:]}: {parts}")


if __name__ == "__main__":
    main()
