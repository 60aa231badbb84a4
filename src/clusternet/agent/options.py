"""The agent's command line: upstream's flags (spec §1.2), names and defaults, validated.

A bad flag ends the process with a message naming the flag and exit code 2 (argparse's
convention), before anything talks to a cluster.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from clusternet.agent.bootstrap import is_registration_token
from clusternet.apis import known
from clusternet.apis.clusters.v1beta1 import ClusterSyncMode, ClusterType
from clusternet.runtime.flags import (
    CommonOptions,
    add_bool_flag,
    add_common_flags,
    common_options,
    parse_duration,
    parse_labels,
)

COMPONENT = "clusternet-agent"
SECURE_PORT = 10650
# The CRR CRD caps spec.clusterName at 30 characters (upstream's agent allowed 60 and let the
# apiserver reject 31-60, spec §12.12); a generated name is "<prefix>-<5 chars>".
MAX_CLUSTER_NAME = 30
MAX_NAME_PREFIX = MAX_CLUSTER_NAME - 1 - known.DEFAULT_RANDOM_SUFFIX_LENGTH
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


@dataclass(frozen=True)
class AgentOptions:
    common: CommonOptions
    parent_url: str
    token: str
    parent_ca: bytes | None  # PEM of --cluster-reg-parent-ca-file
    cluster_name: str | None
    cluster_name_prefix: str
    cluster_namespace: str | None
    cluster_type: str
    sync_mode: ClusterSyncMode
    cluster_labels: dict[str, str]
    labels_aggregate_threshold: float
    labels_aggregate_prefixes: tuple[str, ...]
    status_update_frequency: float
    status_collect_frequency: float
    use_metrics_server: bool
    predictor_addr: str
    predictor_port: int
    predictor_direct_access: bool
    enable_tunnel_logging: bool
    malformed_labels: tuple[str, ...] = ()  # skipped --cluster-labels items, to warn about
    helm_binary: str | None = None  # helm for pulled HelmReleases (default: $PATH)

    @property
    def predictor_enabled(self) -> bool:
        return "Predictor" in self.common.feature_gates

    @property
    def serves_predictor(self) -> bool:
        """Whether this agent serves the built-in predictor: gate on, no external one named."""
        return self.predictor_enabled and not self.predictor_addr

    @property
    def external_predictor_address(self) -> str | None:
        """The external predictor to advertise (``--predictor-addr``), if the gate is on."""
        return self.predictor_addr if self.predictor_enabled and self.predictor_addr else None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=COMPONENT,
        description="Registers this (child) cluster with a Clusternet parent and reports "
        "its status.",
    )
    add_common_flags(parser, COMPONENT, secure_port=SECURE_PORT)
    reg = parser.add_argument_group("cluster registration")
    reg.add_argument("--cluster-reg-parent-url", default="", help="Parent apiserver URL.")
    reg.add_argument(
        "--cluster-reg-token",
        default="",
        help="Bootstrap token (<id>.<secret>) or ServiceAccount token used to register. "
        "Prefer --cluster-reg-token-file: a flag's value is visible in the process list.",
    )
    reg.add_argument(
        "--cluster-reg-token-file",
        type=Path,
        default=None,
        metavar="PATH",
        help="File holding the registration token (e.g. a mounted Secret key).",
    )
    reg.add_argument(
        "--cluster-reg-parent-ca-file",
        type=Path,
        default=None,
        help="PEM CA bundle of the parent; without it, a bootstrap token's signature on the "
        "parent's kube-public/cluster-info is what proves the parent's CA.",
    )
    reg.add_argument("--cluster-reg-name", default="", help="Name of the ManagedCluster.")
    reg.add_argument(
        "--cluster-reg-name-prefix",
        default="clusternet-cluster",
        help="Prefix of a generated cluster name: <prefix>-<5 random characters>.",
    )
    reg.add_argument("--cluster-reg-namespace", default="", help="Dedicated namespace wanted.")
    reg.add_argument(
        "--cluster-reg-type",
        default=ClusterType.STANDARD.value,
        choices=[t.value for t in ClusterType],
    )
    reg.add_argument(
        "--cluster-sync-mode",
        default=ClusterSyncMode.PULL.value,
        choices=[m.value for m in ClusterSyncMode],
    )
    reg.add_argument("--cluster-labels", default="", help="k1=v1,k2=v2 for the ManagedCluster.")
    status = parser.add_argument_group("cluster status")
    status.add_argument("--labels-aggregate-threshold", type=float, default=0.8)
    status.add_argument(
        "--labels-aggregate-prefix",
        action="append",
        default=None,
        help=f"Node label prefix to aggregate (repeatable; default {known.NODE_LABELS_PREFIX}).",
    )
    status.add_argument("--cluster-status-update-frequency", type=parse_duration, default=180.0)
    status.add_argument("--cluster-status-collect-frequency", type=parse_duration, default=20.0)
    add_bool_flag(status, "--use-metrics-server", "Report pod and usage statistics (unsupported).")
    predictor = parser.add_argument_group("predictor")
    predictor.add_argument("--predictor-addr", default="", help="External predictor URL.")
    predictor.add_argument(
        "--predictor-port",
        type=int,
        default=8080,
        help="Port of the built-in predictor on 127.0.0.1 (0: any free port).",
    )
    add_bool_flag(predictor, "--predictor-direct-access", "Scheduler calls the predictor directly.")
    add_bool_flag(parser.add_argument_group("tunnel"), "--enable-tunnel-logging", "Verbose tunnel.")
    parser.add_argument_group("helm").add_argument(
        "--helm-binary",
        default=None,
        metavar="PATH",
        help="The helm binary (v4) that installs pulled HelmReleases. Default: helm on $PATH.",
    )
    return parser


def parse_options(argv: Sequence[str] | None = None) -> AgentOptions:
    parser = build_parser()
    args = parser.parse_args(argv)
    common = common_options(args, parser)

    url = urlsplit(args.cluster_reg_parent_url)
    if not args.cluster_reg_parent_url:
        parser.error("--cluster-reg-parent-url is required")
    if url.scheme not in ("https", "http") or not url.hostname:
        parser.error(f"--cluster-reg-parent-url {args.cluster_reg_parent_url!r} is not a URL")
    if args.cluster_reg_token_file is not None:
        if args.cluster_reg_token:
            parser.error("--cluster-reg-token and --cluster-reg-token-file are exclusive")
        try:
            args.cluster_reg_token = args.cluster_reg_token_file.read_text().strip()
        except OSError as err:
            parser.error(
                f"--cluster-reg-token-file: cannot read {args.cluster_reg_token_file}: "
                f"{err.strerror}"
            )
    if not args.cluster_reg_token:
        parser.error("--cluster-reg-token or --cluster-reg-token-file is required")
    if not is_registration_token(args.cluster_reg_token):
        parser.error(
            "--cluster-reg-token is neither a bootstrap token ([a-z0-9]{6}.[a-z0-9]{16}) nor a "
            "ServiceAccount token (a JWT)"
        )
    parent_ca = None
    if (ca_file := args.cluster_reg_parent_ca_file) is not None:
        try:
            parent_ca = ca_file.read_bytes()
        except OSError as err:
            parser.error(f"--cluster-reg-parent-ca-file: cannot read {ca_file}: {err.strerror}")
        if b"-----BEGIN CERTIFICATE-----" not in parent_ca:
            parser.error(f"--cluster-reg-parent-ca-file {ca_file} holds no PEM certificate")

    name = args.cluster_reg_name
    if name and (len(name) > MAX_CLUSTER_NAME or not DNS_LABEL.match(name)):
        parser.error(
            f"--cluster-reg-name {name!r} must be at most {MAX_CLUSTER_NAME} lower-case "
            "alphanumerics or '-', starting and ending alphanumeric"
        )
    prefix = args.cluster_reg_name_prefix
    if len(prefix) > MAX_NAME_PREFIX or not DNS_LABEL.match(prefix):
        parser.error(
            f"--cluster-reg-name-prefix {prefix!r} must be at most {MAX_NAME_PREFIX} lower-case "
            "alphanumerics or '-', starting and ending alphanumeric"
        )
    namespace = args.cluster_reg_namespace
    if namespace and (len(namespace) > 63 or not DNS_LABEL.match(namespace)):
        parser.error(f"--cluster-reg-namespace {namespace!r} is not a DNS label (at most 63)")

    sync_mode = ClusterSyncMode(args.cluster_sync_mode)
    if sync_mode is ClusterSyncMode.PUSH and "AppPusher" not in common.feature_gates:
        parser.error("--cluster-sync-mode=Push needs the feature gate AppPusher=true")
    if not 0 <= args.labels_aggregate_threshold <= 1:
        parser.error("--labels-aggregate-threshold must be between 0 and 1")
    for flag, seconds in (
        ("--cluster-status-update-frequency", args.cluster_status_update_frequency),
        ("--cluster-status-collect-frequency", args.cluster_status_collect_frequency),
    ):
        if seconds <= 0:
            parser.error(f"{flag} must be positive")
    if not 0 <= args.predictor_port < 65536:
        parser.error(f"--predictor-port {args.predictor_port} is not a TCP port")

    labels, malformed = parse_labels(args.cluster_labels)
    # Like upstream's StringSlice: repeatable and comma-separated.
    prefixes = [p for raw in args.labels_aggregate_prefix or [known.NODE_LABELS_PREFIX]
                for p in raw.split(",") if p]  # fmt: skip
    return AgentOptions(
        common=common,
        parent_url=args.cluster_reg_parent_url.rstrip("/"),
        token=args.cluster_reg_token,
        parent_ca=parent_ca,
        cluster_name=name or None,
        cluster_name_prefix=prefix,
        cluster_namespace=namespace or None,
        cluster_type=args.cluster_reg_type,
        sync_mode=sync_mode,
        cluster_labels=labels,
        labels_aggregate_threshold=args.labels_aggregate_threshold,
        labels_aggregate_prefixes=tuple(prefixes),
        status_update_frequency=args.cluster_status_update_frequency,
        status_collect_frequency=args.cluster_status_collect_frequency,
        use_metrics_server=args.use_metrics_server,
        predictor_addr=args.predictor_addr,
        predictor_port=args.predictor_port,
        predictor_direct_access=args.predictor_direct_access,
        enable_tunnel_logging=args.enable_tunnel_logging,
        malformed_labels=tuple(malformed),
        helm_binary=args.helm_binary or None,
    )
