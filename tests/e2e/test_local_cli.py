"""`clusternet local` as a user drives it: up, status, down, and clear errors on bad input."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from clusternet.local.environment import STATE_FILE

CLI = [sys.executable, "-m", "clusternet.cli.main", "local"]


def run(
    *args: str, env: dict[str, str] | None = None, check: bool = False, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [*CLI, *args], capture_output=True, text=True, env=env, timeout=timeout, check=False
    )
    if check:
        assert result.returncode == 0, result.stdout + result.stderr
    return result


def listening_ports(pids: list[int]) -> list[str]:
    out = subprocess.run(["ss", "-Hltnp"], capture_output=True, text=True, check=False).stdout
    return [line for line in out.splitlines() if any(f"pid={p}," in line for p in pids)]


def test_up_twice_status_and_down_leave_nothing_behind(tmp_path: Path) -> None:
    run_dir, kubeconfig = tmp_path / "run", tmp_path / "kubeconfig"
    flags = ["--run-dir", str(run_dir)]
    for _ in range(2):  # up twice in a row: the second start is as clean as the first
        up = run("up", "--children", "1", *flags, "--kubeconfig", str(kubeconfig), check=True)
        assert f"export KUBECONFIG={kubeconfig}" in up.stdout
        state = json.loads((run_dir / STATE_FILE).read_text())
        pids = [p["pid"] for p in state["processes"]]
        assert listening_ports(pids)

        again = run("up", "--children", "1", *flags, "--kubeconfig", str(kubeconfig))
        assert again.returncode == 1
        assert "already running" in again.stderr

        status = run("status", *flags, check=True)
        assert "child1" in status.stdout
        assert "ok" in status.stdout

        contexts = subprocess.run(
            ["kubectl", f"--kubeconfig={kubeconfig}", "config", "get-contexts", "-o", "name"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        assert sorted(contexts) == ["child1", "parent"]

        down = run("down", *flags, check=True)
        assert "stopped 11 processes" in down.stderr  # 7 of Kubernetes, 4 of clusternet
        assert not run_dir.exists()
        assert not kubeconfig.exists()
        assert not [
            p
            for p in pids
            if Path(f"/proc/{p}").exists()
            and "Z" not in Path(f"/proc/{p}/stat").read_text().split(")")[-1][:3]
        ]
        assert listening_ports(pids) == []

    assert "nothing to stop" in run("down", *flags, check=True).stderr
    assert run("status", *flags).returncode == 1


def test_children_zero_is_refused(tmp_path: Path) -> None:
    result = run("up", "--children", "0", "--run-dir", str(tmp_path / "run"))
    assert result.returncode == 1
    assert "--children must be at least 1" in result.stderr
    assert not (tmp_path / "run").exists()


def test_busy_parent_port_is_refused(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        result = run(
            "up",
            "--children",
            "1",
            "--parent-port",
            str(port),
            "--run-dir",
            str(tmp_path / "run"),
            "--kubeconfig",
            str(tmp_path / "kc"),
        )
    assert result.returncode == 1
    assert f"127.0.0.1:{port} is already in use" in result.stderr


def test_missing_binaries_without_go_are_named(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "KUBEBUILDER_ASSETS"}
    env["XDG_CACHE_HOME"] = str(tmp_path / "empty-cache")
    env["PATH"] = str(Path(sys.executable).parent)  # no go, no binaries
    result = run("up", "--run-dir", str(tmp_path / "run"), env=env)
    assert result.returncode == 1
    assert "missing binaries: etcd, kube-apiserver" in result.stderr
    assert "Go (1.26 or newer) is not installed" in result.stderr
    assert "Traceback" not in result.stderr


def test_stale_run_folder_is_replaced_and_foreign_folder_refused(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "notes.txt").write_text("not ours")
    refused = run("up", "--children", "1", "--run-dir", str(run_dir))
    assert refused.returncode == 1
    assert "not removing a folder clusternet did not create" in refused.stderr
    assert (run_dir / "notes.txt").exists()

    shutil.rmtree(run_dir)
    run_dir.mkdir()
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    (run_dir / STATE_FILE).write_text(
        json.dumps(
            {
                "run_dir": str(run_dir),
                "kubeconfig": str(tmp_path / "kc"),
                "etcd_port": 1,
                "clusters": [],
                "options": {},
                "started_at": 0,
                "timings": {},
                "processes": [
                    {
                        "name": "etcd",
                        "pid": int(dead.stdout),
                        "start_ticks": 1,
                        "argv": ["etcd"],
                        "log": "x",
                    }
                ],
            }
        )
    )
    try:
        up = run(
            "up", "--children", "1", "--run-dir", str(run_dir), "--kubeconfig", str(tmp_path / "kc")
        )
        assert up.returncode == 0, up.stderr
        assert "removing stale run folder" in up.stderr
    finally:
        run("down", "--run-dir", str(run_dir))


@pytest.mark.parametrize("bad", [["--node-cpu", "lots"], ["--nodes-per-child", "0"]])
def test_bad_node_options(tmp_path: Path, bad: list[str]) -> None:
    result = run("up", *bad, "--run-dir", str(tmp_path / "run"))
    assert result.returncode == 1
    assert "error:" in result.stderr
    assert "Traceback" not in result.stderr
