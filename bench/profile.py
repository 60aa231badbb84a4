"""Sampling profiles of Clusternet's components during a scenario (``--profile``).

py-spy (an optional dependency, in the ``bench`` extra) attaches to each running Clusternet
process — never to the control planes, which are Go — and samples its Python stacks without
stopping it (``--nonblocking``). Idle time (waiting in the event loop's ``select``) is not
sampled, so shares are of the time the component was runnable (on a core or waiting for
one). The collapsed stacks are kept next to the report, gzipped, for flame-graph tools; the
report gets, per component, the layers its time is spent in and the functions with the
largest inclusive share.

Profiled runs are extra runs: a profiler costs the sampled processes a little, so the figures
of the measured runs never come from a profiled one.
"""

from __future__ import annotations

import gzip
import re
import shutil
import signal
import subprocess
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

PY_SPY = "py-spy"
RATE = 100  # samples per second

# Frames that are on every stack and say nothing: the interpreter, asyncio's loop, our main.
_PLUMBING = re.compile(
    r"^(<module>|_run_code|_run_module_as_main|run|main|run_component|Runner\.run|"
    r"BaseEventLoop\.\w+|Handle\._run|Context\.run|_work|_reconcile_one|Task\.\w+)$"
)
_FRAME = re.compile(r"^(?P<function>.+?) \((?P<file>[^:()]+)(?::\d+)?\)$")

# Where a frame's file lives, as the layer the report names (first match wins).
LAYERS: tuple[tuple[str, str], ...] = (
    ("clusternet/kube/", "clusternet.kube (API client)"),
    ("clusternet/runtime/informer", "informers"),
    ("clusternet/runtime/events", "event recorder"),
    ("clusternet/runtime/", "clusternet.runtime"),
    ("clusternet/tunnel/", "tunnel"),
    ("clusternet/", "Clusternet logic"),
    ("httpx2/", "HTTP client (httpx2)"),
    ("httpcore2/", "HTTP client (httpcore2)"),
    ("anyio/", "HTTP client (anyio)"),
    ("h11/", "HTTP client (h11)"),
    ("aiohttp/", "aiohttp"),
    ("ssl.py", "TLS"),
    ("json/", "JSON"),
    ("asyncio/", "asyncio"),
)


def available() -> bool:
    return shutil.which(PY_SPY) is not None


@dataclass
class Profile:
    """Collapsed stacks of one process: counts per function (``name (file)``)."""

    samples: int = 0
    own: Counter[str] = field(default_factory=Counter)  # the frame on top of the stack
    inclusive: Counter[str] = field(default_factory=Counter)  # anywhere on the stack
    layers: Counter[str] = field(default_factory=Counter)  # top frame's layer

    def share(self, count: int) -> float:
        return count / self.samples if self.samples else 0.0


def _frame(raw: str) -> tuple[str, str]:
    """``function (path/to/file.py:123)`` → (``function``, ``short/path.py``)."""
    match = _FRAME.match(raw.strip())
    if match is None:
        return raw.strip(), ""
    path = match["file"]
    for marker in ("site-packages/", "/src/", "/lib/python3"):
        if marker in path:
            path = path.split(marker, 1)[1]
            if marker == "/lib/python3":
                path = path.split("/", 1)[1] if "/" in path else path
            break
    return match["function"], path


def layer_of(path: str) -> str:
    for prefix, name in LAYERS:
        if path.startswith(prefix) or f"/{prefix}" in path:
            return name
    return "other (standard library, interpreter)"


def parse_collapsed(lines: Iterable[str]) -> Profile:
    """py-spy's ``--format raw`` (collapsed stacks: ``a;b;c 12``) as a Profile."""
    profile = Profile()
    for line in lines:
        line = line.rstrip("\n")
        if not line.strip():
            continue
        stack, _, count_text = line.rpartition(" ")
        try:
            count = int(count_text)
        except ValueError:
            continue
        frames = [_frame(f) for f in stack.split(";") if f]
        if not frames:
            continue
        profile.samples += count
        names = [f"{function} ({path})" for function, path in frames]
        profile.own[names[-1]] += count
        profile.layers[layer_of(frames[-1][1])] += count
        for name, (function, _path) in set(zip(names, frames, strict=True)):
            if not _PLUMBING.match(function):
                profile.inclusive[name] += count
    return profile


class Profiler:
    """``with Profiler(processes, folder) as p: ...; profiles = p.profiles``.

    ``processes`` gives process name → pid (the harness's :meth:`Context.processes`); those
    whose name has ``clusternet-`` are sampled.
    """

    def __init__(self, processes: Callable[[], dict[str, int]], folder: Path) -> None:
        self._processes = processes
        self.folder = folder
        self._running: dict[str, tuple[subprocess.Popen[bytes], Path]] = {}
        self.profiles: dict[str, Profile] = {}

    def __enter__(self) -> Profiler:
        self.folder.mkdir(parents=True, exist_ok=True)
        for name, pid in sorted(self._processes().items()):
            if "clusternet-" not in name:
                continue
            out = self.folder / f"{name.replace('/', '-')}.collapsed.txt"
            argv = [PY_SPY, "record", "--pid", str(pid), "--rate", str(RATE)]
            argv += ["--nonblocking", "--format", "raw", "--output", str(out)]
            process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            self._running[name] = (process, out)
        return self

    def __exit__(self, *_: object) -> None:
        for process, _out in self._running.values():
            process.send_signal(signal.SIGINT)  # py-spy writes its output on Ctrl-C
        for name, (process, out) in self._running.items():
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                continue
            if out.exists():
                with out.open() as lines:
                    self.profiles[name] = parse_collapsed(lines)
                with out.open("rb") as raw, gzip.open(f"{out}.gz", "wb") as packed:
                    shutil.copyfileobj(raw, packed)
                out.unlink()
