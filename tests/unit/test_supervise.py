"""The local environment's supervisor restarts a component that exits, like the kubelet."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from clusternet.local import supervise


def script(tmp_path: Path, body: str) -> list[str]:
    path = tmp_path / "component.py"
    path.write_text(body)
    return [sys.executable, str(path)]


def test_usage() -> None:
    assert supervise.main(["c", "python"]) == 2
    assert supervise.main(["--startup-grace=x", "c", "--", "python"]) == 2


def test_a_bad_flag_is_not_restarted(tmp_path: Path) -> None:
    assert supervise.supervise("c", script(tmp_path, "raise SystemExit(2)")) == 2


def test_a_failure_on_the_first_start_is_reported_not_restarted(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    body = f"open({str(runs)!r}, 'a').write('x'); raise SystemExit(1)"
    assert supervise.supervise("c", script(tmp_path, body)) == 1
    assert runs.read_text() == "x"


def test_an_exit_after_running_a_while_is_restarted_and_sigterm_stops_both(
    tmp_path: Path,
) -> None:
    """Run 1 is healthy past the start-up grace, then exits 1 (a lost Lease); the supervisor
    starts run 2, which stays up; SIGTERM reaches run 2 and both end."""
    runs = tmp_path / "runs"
    body = (
        "import signal, sys, time\n"
        f"with open({str(runs)!r}, 'a') as f: f.write('x')\n"
        f"n = len(open({str(runs)!r}).read())\n"
        "signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))\n"
        "if n == 1:\n    time.sleep(0.5); sys.exit(1)\n"
        "time.sleep(600)\n"
    )
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "clusternet.local.supervise",
            "--startup-grace=0.3",
            "c",
            "--",
            *script(tmp_path, body),
        ],
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while not (runs.exists() and runs.read_text() == "xx"):
            assert time.monotonic() < deadline, "the component was not started again"
            assert proc.poll() is None
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
        assert b"exited with code 1" in (proc.stderr.read() if proc.stderr else b"")
    finally:
        proc.kill()


def test_the_component_does_not_outlive_a_killed_supervisor(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    body = (
        f"import os, time\nopen({str(pid_file)!r}, 'w').write(str(os.getpid()))\ntime.sleep(600)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "clusternet.local.supervise", "c", "--", *script(tmp_path, body)]
    )
    try:
        deadline = time.monotonic() + 30
        while not (pid_file.exists() and pid_file.read_text()):
            assert time.monotonic() < deadline, "the component did not start"
            time.sleep(0.05)
        child = int(pid_file.read_text())
        proc.kill()  # the supervisor alone, not its group
        proc.wait(10)
        deadline = time.monotonic() + 10
        while Path(f"/proc/{child}").exists() and "Z" not in _state(child):
            assert time.monotonic() < deadline, "the component outlived its supervisor"
            time.sleep(0.05)
    finally:
        proc.kill()


def _state(pid: int) -> str:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return "Z"
    return stat[stat.rindex(")") + 2 :].split()[0]
