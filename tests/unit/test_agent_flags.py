"""clusternet-agent flags: upstream's names and defaults, every validation rule (spec §1.2)."""

from __future__ import annotations

from pathlib import Path

import pytest

from clusternet.agent.options import parse_options
from clusternet.apis.clusters.v1beta1 import ClusterSyncMode

BOOTSTRAP = "07401b.f395accd246ae52d"
JWT = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2EifQ.c2lnbmF0dXJl"
URL = "--cluster-reg-parent-url=https://parent"
REQUIRED = ["--cluster-reg-parent-url=https://parent:6443", f"--cluster-reg-token={BOOTSTRAP}"]


def rejected(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    with pytest.raises(SystemExit) as exit_info:
        parse_options(list(argv))
    assert exit_info.value.code == 2
    return capsys.readouterr().err


def test_defaults_are_upstreams() -> None:
    options = parse_options(REQUIRED)
    assert options.parent_url == "https://parent:6443"
    assert options.cluster_name is None
    assert options.cluster_name_prefix == "clusternet-cluster"
    assert options.cluster_type == "StandardCluster"
    assert options.sync_mode is ClusterSyncMode.PULL
    assert options.labels_aggregate_threshold == 0.8
    assert options.labels_aggregate_prefixes == ("node.clusternet.io/",)
    assert options.status_update_frequency == 180
    assert options.status_collect_frequency == 20
    assert options.predictor_port == 8080
    assert options.use_metrics_server is False
    assert options.common.secure_port == 10650
    assert options.common.leader_election.enabled is True
    assert options.common.leader_election.resource_name == "clusternet-agent"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([f"--cluster-reg-token={BOOTSTRAP}"], "--cluster-reg-parent-url is required"),
        (
            ["--cluster-reg-parent-url=parent:6443", f"--cluster-reg-token={BOOTSTRAP}"],
            "is not a URL",
        ),
        (
            ["--cluster-reg-parent-url=https://parent"],
            "--cluster-reg-token or --cluster-reg-token-file is required",
        ),
        (
            [*REQUIRED, "--cluster-reg-token-file=/nonexistent/token"],
            "are exclusive",
        ),
        (
            ["--cluster-reg-parent-url=https://parent", "--cluster-reg-token-file=/nonexistent/t"],
            "cannot read /nonexistent/t",
        ),
        (
            [
                "--cluster-reg-parent-url=https://parent",
                "--cluster-reg-token=ABCDEF.0123456789abcdef",
            ],
            "neither a bootstrap token",
        ),
        (
            ["--cluster-reg-parent-url=https://parent", "--cluster-reg-token=abcdef.0123"],
            "neither a bootstrap token",
        ),
        ([*REQUIRED, "--cluster-reg-name=" + "a" * 31], "--cluster-reg-name"),
        ([*REQUIRED, "--cluster-reg-name=Edge_A"], "--cluster-reg-name"),
        ([*REQUIRED, "--cluster-reg-name=-edge"], "--cluster-reg-name"),
        ([*REQUIRED, "--cluster-reg-name-prefix=" + "p" * 25], "--cluster-reg-name-prefix"),
        ([*REQUIRED, "--cluster-reg-namespace=" + "n" * 64], "--cluster-reg-namespace"),
        ([*REQUIRED, "--cluster-reg-type=BigCluster"], "--cluster-reg-type"),
        ([*REQUIRED, "--cluster-sync-mode=Both"], "--cluster-sync-mode"),
        ([*REQUIRED, "--cluster-sync-mode=Push"], "needs the feature gate AppPusher=true"),
        ([*REQUIRED, "--labels-aggregate-threshold=1.5"], "between 0 and 1"),
        ([*REQUIRED, "--cluster-status-update-frequency=0"], "must be positive"),
        ([*REQUIRED, "--cluster-status-collect-frequency=5x"], "invalid duration"),
        ([*REQUIRED, "--predictor-port=65536"], "is not a TCP port"),
        ([*REQUIRED, "--feature-gates=NoSuchGate=true"], "unknown feature gate"),
        ([*REQUIRED, "--cluster-reg-parent-ca-file=/nonexistent/ca.crt"], "cannot read"),
    ],
)
def test_invalid_flags_exit_2_with_a_message(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    assert message in rejected(capsys, *argv)


def test_cluster_name_may_have_the_crd_maximum_of_30() -> None:
    options = parse_options([*REQUIRED, "--cluster-reg-name=" + "a" * 30])
    assert options.cluster_name == "a" * 30


def test_name_prefix_leaves_room_for_the_random_suffix() -> None:
    # 24 + "-" + 5 random characters = 30, the CRD's limit.
    assert parse_options([*REQUIRED, "--cluster-reg-name-prefix=" + "p" * 24])


def test_a_service_account_jwt_is_a_registration_token() -> None:
    options = parse_options(
        ["--cluster-reg-parent-url=https://parent", f"--cluster-reg-token={JWT}"]
    )
    assert options.token == JWT


def test_the_token_can_come_from_a_file(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(f"{BOOTSTRAP}\n")  # a mounted Secret key may end with a newline
    options = parse_options(
        ["--cluster-reg-parent-url=https://parent", f"--cluster-reg-token-file={token_file}"]
    )
    assert options.token == BOOTSTRAP


def test_push_is_allowed_with_the_app_pusher_gate() -> None:
    options = parse_options(
        [*REQUIRED, "--cluster-sync-mode=Push", "--feature-gates=AppPusher=true"]
    )
    assert options.sync_mode is ClusterSyncMode.PUSH


def test_malformed_cluster_labels_are_skipped_not_fatal() -> None:
    options = parse_options([*REQUIRED, "--cluster-labels=region=west,broken,bad key=x,tier=gold"])
    assert options.cluster_labels == {"region": "west", "tier": "gold"}
    assert options.malformed_labels == ("broken", "bad key=x")


def test_aggregate_prefixes_are_repeatable_and_comma_separated() -> None:
    options = parse_options(
        [*REQUIRED, "--labels-aggregate-prefix=a.io/,b.io/", "--labels-aggregate-prefix=c.io/"]
    )
    assert options.labels_aggregate_prefixes == ("a.io/", "b.io/", "c.io/")


def test_go_style_booleans_and_durations() -> None:
    options = parse_options(
        [
            *REQUIRED,
            "--use-metrics-server",
            "--predictor-direct-access=true",
            "--enable-tunnel-logging=false",
            "--cluster-status-update-frequency=1m30s",
        ]
    )
    assert options.use_metrics_server is True
    assert options.predictor_direct_access is True
    assert options.enable_tunnel_logging is False
    assert options.status_update_frequency == 90


def test_parent_ca_file_must_hold_a_pem_certificate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    garbage = tmp_path / "ca.crt"
    garbage.write_text("not a certificate")
    assert "holds no PEM certificate" in rejected(
        capsys, *REQUIRED, f"--cluster-reg-parent-ca-file={garbage}"
    )
    pem = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    garbage.write_bytes(pem)
    assert parse_options([*REQUIRED, f"--cluster-reg-parent-ca-file={garbage}"]).parent_ca == pem


def test_an_external_predictor_is_advertised_only_with_the_gate() -> None:
    ungated = parse_options([*REQUIRED, "--predictor-addr=http://p:8080"])
    assert (ungated.external_predictor_address, ungated.serves_predictor) == (None, False)
    gated = parse_options(
        [*REQUIRED, "--predictor-addr=http://p:8080", "--feature-gates=Predictor=true"]
    )
    assert (gated.external_predictor_address, gated.serves_predictor) == ("http://p:8080", False)


def test_the_gate_without_an_address_serves_the_built_in_predictor() -> None:
    options = parse_options([*REQUIRED, "--feature-gates=Predictor=true", "--predictor-port=0"])
    assert options.serves_predictor is True
    assert options.external_predictor_address is None
    assert options.predictor_port == 0  # any free port
    assert parse_options(REQUIRED).serves_predictor is False
