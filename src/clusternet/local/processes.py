"""Start and stop the long-running processes of a local environment.

Processes are detached (their own session), so they outlive the ``clusternet local up``
command; each one's identity is recorded as (pid, start time) so that ``local down`` signals
only processes it started, even after pids have been reused by the system.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any


def _start_ticks(pid: int) -> int | None:
    """The process start time in clock ticks since boot (field 22 of /proc/<pid>/stat)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may contain spaces and parentheses: split after the last ')'.
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] == "Z":  # a zombie has exited already
        return None
    return int(fields[19])


def child_pids(pid: int) -> list[int]:
    """The direct children of a process (/proc/<pid>/task/*/children)."""
    found: list[int] = []
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return found
    for task in tasks:
        try:
            found.extend(int(p) for p in (task / "children").read_text().split())
        except (OSError, ValueError):
            continue
    return found


@dataclass
class ProcessRecord:
    name: str
    pid: int
    start_ticks: int
    argv: list[str]
    log: str
    # run under clusternet.local.supervise (restarted when it exits); argv is the component's
    supervised: bool = False

    def alive(self) -> bool:
        """True while the very process that was started is still running."""
        return _start_ticks(self.pid) == self.start_ticks

    def component_pid(self) -> int | None:
        """The pid of the program itself: a supervised record's pid is the supervisor's,
        whose one child is the program (None between two restarts)."""
        if not self.supervised:
            return self.pid
        children = child_pids(self.pid)
        return children[0] if children else None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ProcessRecord:
        return cls(**data)

    def log_tail(self, lines: int = 25) -> str:
        try:
            text = Path(self.log).read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])


class ProcessExitedError(RuntimeError):
    def __init__(self, record: ProcessRecord, code: int | None) -> None:
        self.record = record
        self.code = code
        super().__init__(
            f"{record.name} exited (code {code}) right after starting; last lines of "
            f"{record.log}:\n{record.log_tail()}"
        )


# Keep Popen handles of the processes this Python process started, so they are reaped
# (no zombies) and their exit codes can be read.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


def start(
    name: str,
    argv: Sequence[str],
    log_file: Path,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    *,
    supervised: bool = False,
) -> ProcessRecord:
    """Start ``argv`` detached, output to ``log_file``; ``supervised`` runs it under
    :mod:`clusternet.local.supervise`, which starts it again whenever it exits."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    command = list(argv)
    if supervised:
        command = [sys.executable, "-m", "clusternet.local.supervise", name, "--", *command]
    with log_file.open("ab") as log:
        proc = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env,
            cwd=cwd,
        )
    _CHILDREN[proc.pid] = proc
    ticks = _start_ticks(proc.pid)
    if ticks is None:  # exited at once
        code = proc.wait()
        record = ProcessRecord(name, proc.pid, -1, list(argv), str(log_file), supervised)
        raise ProcessExitedError(record, code)
    return ProcessRecord(name, proc.pid, ticks, list(argv), str(log_file), supervised)


def exit_code(record: ProcessRecord) -> int | None:
    """The exit code if the process was ours and has exited, else None."""
    proc = _CHILDREN.get(record.pid)
    return None if proc is None else proc.poll()


def check_running(record: ProcessRecord) -> None:
    if not record.alive():
        raise ProcessExitedError(record, exit_code(record))


def stop(records: Sequence[ProcessRecord], grace: float = 10.0) -> list[str]:
    """SIGTERM the processes (their whole session), SIGKILL what is left after ``grace``.

    Returns the names of processes that were found running and had to be stopped.
    """
    running = [r for r in records if r.alive()]
    for record in running:
        _signal(record, signal.SIGTERM)
    deadline = time.monotonic() + grace
    pending = list(running)
    while pending and time.monotonic() < deadline:
        for record in pending:
            proc = _CHILDREN.get(record.pid)
            if proc is not None:
                proc.poll()
        pending = [r for r in pending if r.alive()]
        if pending:
            time.sleep(0.05)
    for record in pending:
        _signal(record, signal.SIGKILL)
    for record in running:
        proc = _CHILDREN.pop(record.pid, None)
        if proc is not None:
            with suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
    deadline = time.monotonic() + 5
    while any(r.alive() for r in pending) and time.monotonic() < deadline:
        time.sleep(0.05)
    return [r.name for r in running]


def kill(record: ProcessRecord) -> bool:
    """SIGKILL the process (its whole session) with no warning, as a crash or an OOM kill
    would; wait until it is gone.  Returns whether it was running."""
    if not record.alive():
        return False
    _signal(record, signal.SIGKILL)
    proc = _CHILDREN.pop(record.pid, None)
    if proc is not None:
        with suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)
    deadline = time.monotonic() + 5
    while record.alive() and time.monotonic() < deadline:
        time.sleep(0.02)
    return True


def _signal(record: ProcessRecord, sig: signal.Signals) -> None:
    if not record.alive():
        return
    if record.supervised and sig != signal.SIGKILL:
        # The supervisor passes it on: signalling the group too would deliver it twice.
        with suppress(ProcessLookupError):
            os.kill(record.pid, sig)
        return
    try:
        # The process leads its own session and group: signal the group so helpers it
        # spawned go too, but only while the leader is the process we started.
        os.killpg(record.pid, sig)
    except ProcessLookupError:
        pass
    except PermissionError:
        os.kill(record.pid, sig)
