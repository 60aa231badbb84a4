"""Command-line flags shared by every Clusternet component, with upstream's names and defaults.

Upstream's binaries take Go-style flags (``--kube-api-qps=50``, ``--leader-elect-lease-duration
15s``, ``--feature-gates=A=true,B=false``); keeping them means upstream Deployment manifests
work with these binaries unchanged.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final

# Feature gates of spec §1.6: all Alpha, all default false.
KNOWN_FEATURE_GATES: Final = (
    "SocketConnection",
    "AppPusher",
    "Deployer",
    "ShadowAPI",
    "FeedInUseProtection",
    "Recovery",
    "FeedInventory",
    "Predictor",
    "MultiClusterService",
    "FailOver",
    "FeasibleClustersToleration",
    "ClusterInit",
)

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """Seconds in a Go duration (``3m``, ``1h30m``, ``500ms``, ``20s``); ``0`` is allowed."""
    value = text.strip()
    if value == "0":
        return 0.0
    position, total = 0, 0.0
    for match in _DURATION_PART.finditer(value):
        if match.start() != position:
            break
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        position = match.end()
    if position != len(value) or not value:
        raise argparse.ArgumentTypeError(
            f"invalid duration {text!r} (examples: 20s, 3m, 1h30m, 500ms)"
        )
    return total


@dataclass(frozen=True)
class FeatureGates:
    enabled: frozenset[str] = frozenset()

    def __contains__(self, gate: str) -> bool:
        if gate not in KNOWN_FEATURE_GATES:
            raise KeyError(f"unknown feature gate {gate!r}")
        return gate in self.enabled

    @classmethod
    def parse(cls, text: str, defaults: Mapping[str, bool] | None = None) -> FeatureGates:
        """``A=true,B=false``: unknown gates and non-boolean values are errors."""
        enabled = {gate for gate, on in (defaults or {}).items() if on}
        for item in filter(None, (part.strip() for part in text.split(","))):
            gate, sep, raw = item.partition("=")
            if not sep:
                raise argparse.ArgumentTypeError(
                    f"feature gate {item!r} is not of the form Name=true|false"
                )
            if gate not in KNOWN_FEATURE_GATES:
                raise argparse.ArgumentTypeError(
                    f"unknown feature gate {gate!r} (known: {', '.join(KNOWN_FEATURE_GATES)})"
                )
            if raw.lower() not in ("true", "false"):
                raise argparse.ArgumentTypeError(
                    f"feature gate {gate}: {raw!r} is not true or false"
                )
            (enabled.add if raw.lower() == "true" else enabled.discard)(gate)
        return cls(frozenset(enabled))

    def __str__(self) -> str:
        return ",".join(f"{g}={str(g in self.enabled).lower()}" for g in KNOWN_FEATURE_GATES)


@dataclass(frozen=True)
class LeaderElection:
    enabled: bool = True
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0
    resource_name: str = ""
    resource_namespace: str = "clusternet-system"


@dataclass(frozen=True)
class CommonOptions:
    kubeconfig: str | None
    kube_api_qps: float
    kube_api_burst: int
    leader_election: LeaderElection
    feature_gates: FeatureGates
    secure_port: int | None
    bind_address: str
    log_format: str
    verbosity: int

    @property
    def log_level(self) -> str:
        return "DEBUG" if self.verbosity >= 4 else "INFO"


def _positive(kind: Callable[[str], float]) -> Callable[[str], float]:
    def check(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if value < 0:
            raise argparse.ArgumentTypeError(f"{text!r} must not be negative")
        return value

    return check


def parse_bool(text: str) -> bool:
    lowered = text.lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"{text!r} is not true or false")


def add_bool_flag(
    group: argparse._ActionsContainer, name: str, help: str, *, default: bool = False
) -> None:
    """A Go-style boolean flag: ``--name``, ``--name=true`` or ``--name=false``."""
    group.add_argument(
        name, type=parse_bool, nargs="?", const=True, default=default, metavar="BOOL", help=help
    )


def add_common_flags(
    parser: argparse.ArgumentParser,
    component: str,
    secure_port: int,
    gate_defaults: Mapping[str, bool] | None = None,
) -> None:
    """The flags all four binaries share (spec §1.1)."""
    group = parser.add_argument_group("generic")
    group.add_argument(
        "--kubeconfig",
        default=None,
        help="Path to a kubeconfig; empty means the in-cluster configuration.",
    )
    group.add_argument(
        "--kube-api-qps",
        type=_positive(float),
        default=50.0,
        help="QPS to use while talking with kube-apiserver.",
    )
    group.add_argument(
        "--kube-api-burst",
        type=_positive(int),
        default=100,
        help="Burst to use while talking with kube-apiserver.",
    )
    group.add_argument(
        "--feature-gates",
        default="",
        type=lambda text: FeatureGates.parse(text, gate_defaults),
        help="Comma-separated Name=true|false; known gates: " + ", ".join(KNOWN_FEATURE_GATES),
    )
    group.add_argument(
        "--secure-port",
        type=int,
        default=secure_port,
        help="Port of /healthz, /readyz and /metrics (0: any free port; -1: off).",
    )
    group.add_argument(
        "--bind-address", default="127.0.0.1", help="Address of the health and metrics endpoints."
    )
    group.add_argument("--log-format", choices=("console", "json"), default="console")
    group.add_argument(
        "-v",
        "--v",
        dest="verbosity",
        type=int,
        default=2,
        help="Log verbosity (klog style: 4 and above is debug).",
    )
    le = parser.add_argument_group("leader election")
    add_bool_flag(
        le, "--leader-elect", "Run only while holding the lease (true|false).", default=True
    )
    le.add_argument("--leader-elect-lease-duration", type=parse_duration, default=15.0)
    le.add_argument("--leader-elect-renew-deadline", type=parse_duration, default=10.0)
    le.add_argument("--leader-elect-retry-period", type=parse_duration, default=2.0)
    le.add_argument("--leader-elect-resource-name", default=component)
    le.add_argument("--leader-elect-resource-namespace", default="clusternet-system")


def common_options(args: argparse.Namespace, parser: argparse.ArgumentParser) -> CommonOptions:
    if not args.leader_elect_renew_deadline < args.leader_elect_lease_duration:
        parser.error(
            "--leader-elect-renew-deadline must be less than --leader-elect-lease-duration"
        )
    if args.leader_elect_retry_period <= 0:
        parser.error("--leader-elect-retry-period must be positive")
    gates = args.feature_gates
    if isinstance(gates, str):  # the default was not passed through `type`
        gates = FeatureGates.parse(gates)
    return CommonOptions(
        kubeconfig=args.kubeconfig or None,
        kube_api_qps=args.kube_api_qps,
        kube_api_burst=args.kube_api_burst,
        leader_election=LeaderElection(
            enabled=args.leader_elect,
            lease_duration=args.leader_elect_lease_duration,
            renew_deadline=args.leader_elect_renew_deadline,
            retry_period=args.leader_elect_retry_period,
            resource_name=args.leader_elect_resource_name,
            resource_namespace=args.leader_elect_resource_namespace,
        ),
        feature_gates=gates,
        secure_port=None if args.secure_port < 0 else args.secure_port,
        bind_address=args.bind_address,
        log_format=args.log_format,
        verbosity=args.verbosity,
    )


def parse_labels(text: str) -> tuple[dict[str, str], list[str]]:
    """``k1=v1,k2=v2`` → labels, plus the malformed items (skipped, for a warning)."""
    labels: dict[str, str] = {}
    bad: list[str] = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = item.partition("=")
        if sep and is_label_key(key) and is_label_value(value):
            labels[key] = value
        else:
            bad.append(item)
    return labels, bad


_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def is_label_key(key: str) -> bool:
    prefix, slash, name = key.rpartition("/")
    if slash and (not prefix or len(prefix) > 253 or not _DNS_SUBDOMAIN.match(prefix)):
        return False
    return bool(_NAME.match(name))


def is_label_value(value: str) -> bool:
    return value == "" or bool(_NAME.match(value))
