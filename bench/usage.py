"""CPU seconds and peak memory of the environment's processes, read from /proc.

The pids come from the local environment's state (``<run-dir>/state.json``), re-read at each
sample so that a process restarted during a scenario (failover) is followed.  CPU is
utime + stime of /proc/<pid>/stat; memory is VmRSS of /proc/<pid>/status, sampled every
``interval`` seconds (peak = the largest sample, summed over a component's processes).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK")

CHILD_PLANES = "children's control planes"


def cpu_seconds(pid: int) -> float | None:
    """utime + stime of a process, in seconds; None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def status_kib(pid: int, key: str = "VmRSS") -> int | None:
    """A ``kB`` field of /proc/<pid>/status (VmRSS: resident now, VmHWM: peak resident)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{key}:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def component_of(process_name: str) -> str:
    """The row a process of the environment is reported under.

    Clusternet's components and the parent's control plane get a row each (agents one per
    child: push and pull children differ); the children's own control planes (API server,
    controller-manager, scheduler, kwok) are one summed row.
    """
    cluster, _, program = process_name.rpartition("/")
    if not cluster:
        return program  # etcd, or a process the harness started itself
    if program.startswith("clusternet-agent"):
        return f"clusternet-agent ({cluster})"
    if program.startswith("clusternet-"):
        return program
    if cluster == "parent":
        return f"parent {program}"
    return CHILD_PLANES


@dataclass(frozen=True)
class Usage:
    cpu_seconds: float
    peak_rss_mib: float
    last_rss_mib: float


class Meter:
    """Measures named processes between ``start()`` and ``stop()`` (a background thread)."""

    def __init__(self, processes: Callable[[], dict[str, int]], interval: float = 0.5) -> None:
        self._processes = processes
        self._interval = interval
        self._first_cpu: dict[int, float] = {}
        self._last_cpu: dict[int, float] = {}
        self._component: dict[int, str] = {}
        self._peak: dict[str, float] = {}
        self._last: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.wall = 0.0

    def __enter__(self) -> Meter:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        self._started = time.monotonic()
        self._sample()
        self._thread = threading.Thread(target=self._run, name="bench-meter", daemon=True)
        self._thread.start()

    def stop(self) -> dict[str, Usage]:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None
            self._sample()
            self.wall = time.monotonic() - self._started
        return self.result()

    def result(self) -> dict[str, Usage]:
        cpu: dict[str, float] = {}
        for pid, component in self._component.items():
            spent = self._last_cpu.get(pid, 0.0) - self._first_cpu.get(pid, 0.0)
            cpu[component] = cpu.get(component, 0.0) + spent
        return {
            c: Usage(cpu.get(c, 0.0), self._peak.get(c, 0.0), self._last.get(c, 0.0))
            for c in sorted(self._component.values() | self._peak.keys())
        }

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self._sample()

    def _sample(self) -> None:
        try:
            processes = self._processes()
        except Exception:  # a state file being rewritten: the next sample reads it
            return
        rss: dict[str, float] = {}
        for name, pid in processes.items():
            component = component_of(name)
            used = cpu_seconds(pid)
            resident = status_kib(pid)
            if used is None or resident is None:
                continue
            self._component[pid] = component
            self._first_cpu.setdefault(pid, used)
            self._last_cpu[pid] = used
            rss[component] = rss.get(component, 0.0) + resident / 1024
        for component, mib in rss.items():
            self._peak[component] = max(self._peak.get(component, 0.0), mib)
            self._last[component] = mib
