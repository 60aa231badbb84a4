"""clusternet-controller-manager's command line: upstream's flags, defaults and errors."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from clusternet.controllermanager.app import (
    KNOWN_CONTROLLERS,
    parse_controllers,
    parse_options,
    runnable_controllers,
)


def test_defaults_are_upstreams() -> None:
    options = parse_options([])

    assert options.controllers == frozenset(KNOWN_CONTROLLERS)
    assert options.cluster_auto_approve is True
    assert options.anonymous_auth_supported is True
    assert options.reserved_namespace == "clusternet-reserved"
    assert options.threadiness == 10
    assert options.cluster_api_kubeconfig is None
    assert options.common.secure_port == 10660
    election = options.common.leader_election
    assert (election.enabled, election.resource_name, election.resource_namespace) == (
        True,
        "clusternet-controller-manager",
        "clusternet-system",
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("*", set(KNOWN_CONTROLLERS)),
        ("*,-clusterlifecycle", set(KNOWN_CONTROLLERS) - {"clusterlifecycle"}),
        ("-clusterlifecycle,*", set(KNOWN_CONTROLLERS) - {"clusterlifecycle"}),
        ("crrapprover", {"crrapprover"}),
        ("crrapprover, clusterlifecycle", {"crrapprover", "clusterlifecycle"}),
        ("crrapprover,-crrapprover", set()),
        ("", set()),
    ],
)
def test_controllers(text: str, expected: set[str]) -> None:
    assert parse_controllers(text) == expected


@pytest.mark.parametrize("text", ["foo", "*,-foo", "crrapprover,bar"])
def test_unknown_controllers_are_errors(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="unknown controller"):
        parse_controllers(text)


def test_auto_approve_can_be_turned_off() -> None:
    assert parse_options(["--cluster-auto-approve=false"]).cluster_auto_approve is False
    assert parse_options(["--cluster-auto-approve"]).cluster_auto_approve is True


def test_only_implemented_and_ungated_controllers_run() -> None:
    plain = parse_options([])
    with_gates = parse_options(
        ["--feature-gates=Deployer=true,MultiClusterService=true", "--cluster-api-kubeconfig=k"]
    )

    assert runnable_controllers(plain) == ["clusterlifecycle", "crrapprover"]
    # Gated or not implemented here: logged and skipped, never a crash.
    assert runnable_controllers(with_gates) == [
        "clusterlifecycle",
        "crrapprover",
        "deployer",
        "serviceimport",
    ]
    assert runnable_controllers(parse_options(["--controllers=*,-crrapprover"])) == [
        "clusterlifecycle"
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--controllers=foo"], "unknown controller(s) foo"),
        (["--leader-elect-lease-duration=15"], "invalid duration '15'"),
        (["--leader-elect-retry-period=2 s"], "invalid duration '2 s'"),
        (["--feature-gates=Teleport=true"], "unknown feature gate 'Teleport'"),
        (["--feature-gates=ClusterInit=yes"], "ClusterInit: 'yes' is not true or false"),
        (["--threadiness=0"], "'0' must be at least 1"),
        (["--cluster-auto-approve=maybe"], "'maybe' is not true or false"),
        (
            ["--leader-elect-renew-deadline=20s"],
            "--leader-elect-renew-deadline must be less than --leader-elect-lease-duration",
        ),
    ],
)
def test_bad_flags_exit_2_with_a_clear_message(args: list[str], message: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "clusternet.controllermanager", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 2
    assert message in result.stderr
    assert result.stderr.startswith("usage: clusternet-controller-manager")


def test_help_lists_the_controller_manager_flags() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "clusternet.controllermanager", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )

    for flag in (
        "--controllers",
        "--cluster-auto-approve",
        "--threadiness",
        "--anonymous-auth-supported",
        "--reserved-namespace",
        "--cluster-api-kubeconfig",
        "--leader-elect",
        "--feature-gates",
    ):
        assert flag in result.stdout
