"""Processes are identified by (pid, start time): `local down` never signals a stranger."""

import sys
from pathlib import Path

import pytest

from clusternet.local import processes


def test_start_stop_and_liveness(tmp_path: Path) -> None:
    record = processes.start(
        "sleeper", [sys.executable, "-c", "import time; time.sleep(60)"], tmp_path / "sleeper.log"
    )
    assert record.alive()
    assert processes.stop([record], grace=5) == ["sleeper"]
    assert not record.alive()
    assert processes.stop([record]) == []  # stopping twice is harmless


def test_a_reused_pid_is_not_ours(tmp_path: Path) -> None:
    record = processes.start(
        "sleeper", [sys.executable, "-c", "import time; time.sleep(60)"], tmp_path / "sleeper.log"
    )
    impostor = processes.ProcessRecord.from_json(
        {**record.to_json(), "start_ticks": record.start_ticks + 1}
    )
    assert not impostor.alive()
    assert processes.stop([impostor]) == []
    assert record.alive()
    processes.stop([record])


def test_sigterm_ignored_means_sigkill(tmp_path: Path) -> None:
    code = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "print('ready', flush=True); time.sleep(60)"
    )
    log = tmp_path / "stubborn.log"
    record = processes.start("stubborn", [sys.executable, "-c", code], log)
    while "ready" not in log.read_text():
        pass
    processes.stop([record], grace=0.5)
    assert not record.alive()


def test_early_exit_is_reported_with_its_log(tmp_path: Path) -> None:
    def start_and_check() -> None:
        record = processes.start(
            "crasher",
            [sys.executable, "-c", "print('bad flag'); raise SystemExit(3)"],
            tmp_path / "crasher.log",
        )
        processes._CHILDREN[record.pid].wait()
        processes.check_running(record)

    # The process may be gone before start() looks at it (start raises) or just after
    # (check_running raises): either way the error carries the exit code and the log.
    with pytest.raises(
        processes.ProcessExitedError, match=r"(?s)crasher exited \(code 3\).*bad flag"
    ):
        start_and_check()
