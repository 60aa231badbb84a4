"""Shared component flags: Go durations, feature gates, labels (upstream's syntax)."""

import argparse

import pytest

from clusternet.runtime.flags import (
    FeatureGates,
    add_common_flags,
    common_options,
    is_label_key,
    parse_duration,
    parse_labels,
)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("0", 0.0),
        ("20s", 20.0),
        ("3m", 180.0),
        ("1h30m", 5400.0),
        ("500ms", 0.5),
        ("1.5s", 1.5),
        ("2m0s", 120.0),
    ],
)
def test_go_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "3", "m", "3 m", "-1s", "1d", "1s2"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="invalid duration"):
        parse_duration(text)


def test_feature_gates_default_off_and_parse() -> None:
    gates = FeatureGates.parse("SocketConnection=true, AppPusher=false,Deployer=TRUE")
    assert "SocketConnection" in gates
    assert "Deployer" in gates
    assert "AppPusher" not in gates
    assert "ShadowAPI" not in FeatureGates.parse("")
    assert "Recovery" in FeatureGates.parse("", {"Recovery": True})
    assert "Recovery" not in FeatureGates.parse("Recovery=false", {"Recovery": True})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("Nope=true", "unknown feature gate 'Nope'"),
        ("Deployer", "not of the form"),
        ("Deployer=yes", "'yes' is not true or false"),
    ],
)
def test_bad_feature_gates(text: str, message: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match=message):
        FeatureGates.parse(text)


def test_asking_for_an_unknown_gate_is_a_programming_error() -> None:
    with pytest.raises(KeyError):
        assert "Typo" in FeatureGates()


def test_labels_skip_malformed_pairs() -> None:
    labels, bad = parse_labels("region=west,bad,k=v=w, tier=, example.com/team=a-b,-x=1")
    assert labels == {"region": "west", "tier": "", "example.com/team": "a-b"}
    assert bad == ["bad", "k=v=w", "-x=1"]


@pytest.mark.parametrize(
    ("key", "ok"),
    [
        ("app", True),
        ("node.clusternet.io/gpu", True),
        ("/x", False),
        ("a/b/c", False),
        ("x" * 63, True),
        ("x" * 64, False),
        ("UPPER.example.com/x", False),
    ],
)
def test_label_keys(key: str, ok: bool) -> None:
    assert is_label_key(key) is ok


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(exit_on_error=False)
    add_common_flags(parser, "clusternet-test", secure_port=10600)
    return parser.parse_args(argv)


def test_common_flags_have_upstream_defaults() -> None:
    parser = argparse.ArgumentParser()
    add_common_flags(parser, "clusternet-test", secure_port=10600)
    options = common_options(parser.parse_args([]), parser)
    assert (options.kube_api_qps, options.kube_api_burst) == (50.0, 100)
    le = options.leader_election
    assert (le.enabled, le.lease_duration, le.renew_deadline, le.retry_period) == (
        True,
        15.0,
        10.0,
        2.0,
    )
    assert (le.resource_name, le.resource_namespace) == ("clusternet-test", "clusternet-system")
    assert options.secure_port == 10600


def test_leader_election_timings_are_checked(capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    add_common_flags(parser, "clusternet-test", secure_port=10600)
    args = parser.parse_args(
        ["--leader-elect-lease-duration=5s", "--leader-elect-renew-deadline=6s"]
    )
    with pytest.raises(SystemExit) as exit_info:
        common_options(args, parser)
    assert exit_info.value.code == 2
    assert "renew-deadline must be less than" in capsys.readouterr().err


def test_leader_elect_accepts_go_bool_syntax() -> None:
    assert parse("--leader-elect=false").leader_elect is False
    assert parse("--leader-elect").leader_elect is True
    assert parse("--secure-port=-1", "--leader-elect=true").leader_elect is True
