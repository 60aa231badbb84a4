"""Hub replicas: tunnel Leases, the peer to forward to, and what a forwarded request carries."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from clusternet.hub.app import parse_options
from clusternet.hub.authn import AuthenticationConfig, Authenticator, RequestHeaderConfig
from clusternet.hub.peers import (
    FORWARDED_HEADER,
    PEER_URL_ANNOTATION,
    PeerConfig,
    lease_holder,
    lease_name,
    lease_object,
    peer_headers,
)

NOW = dt.datetime(2026, 1, 1, 12, 0, 0, tzinfo=dt.UTC)
CONFIG = PeerConfig("10.0.0.1:443", "https://10.0.0.1:443", None, None)


def _lease(holder: str | None, renewed: dt.datetime | None, url: str | None) -> dict[str, Any]:
    spec: dict[str, Any] = {"leaseDurationSeconds": 30}
    if holder:
        spec["holderIdentity"] = holder
    if renewed:
        spec["renewTime"] = renewed.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    annotations = {PEER_URL_ANNOTATION: url} if url else {}
    return {"metadata": {"annotations": annotations}, "spec": spec}


@pytest.mark.parametrize(
    ("lease", "expected"),
    [
        (None, None),
        (_lease("10.0.0.2:443", NOW, "https://10.0.0.2:443"), "https://10.0.0.2:443"),
        # Held by this replica: served locally (or the tunnel just ended), never forwarded.
        (_lease("10.0.0.1:443", NOW, "https://10.0.0.1:443"), None),
        # Expired: the holder stopped renewing (it died).
        (_lease("10.0.0.2:443", NOW - dt.timedelta(seconds=31), "https://10.0.0.2:443"), None),
        (_lease("10.0.0.2:443", NOW - dt.timedelta(seconds=29), "https://x:1"), "https://x:1"),
        (_lease("10.0.0.2:443", NOW, None), None),
        (_lease(None, NOW, "https://10.0.0.2:443"), None),
        (_lease("10.0.0.2:443", None, "https://10.0.0.2:443"), None),
    ],
)
def test_lease_holder(lease: dict[str, Any] | None, expected: str | None) -> None:
    assert lease_holder(lease, CONFIG.identity, NOW) == expected


def test_lease_object_round_trips() -> None:
    lease = lease_object("abc", PeerConfig("other:1", "https://other:1", None, None), NOW)
    assert lease["metadata"]["name"] == lease_name("abc") == "clusternet-hub-tunnel-abc"
    assert lease["metadata"]["namespace"] == "clusternet-system"
    assert lease_holder(lease, CONFIG.identity, NOW + dt.timedelta(seconds=5)) == "https://other:1"


def test_peer_headers_carry_the_caller_and_the_marker() -> None:
    headers = peer_headers(
        [("Accept", "application/json"), (FORWARDED_HEADER, "spoofed")],
        "alice",
        ("devs", "system:authenticated"),
        {"clusternet-token": ("t",), "a/b": ("x", "y")},
    )
    assert headers == [
        ("Accept", "application/json"),
        ("X-Remote-User", "alice"),
        ("X-Remote-Group", "devs"),
        ("X-Remote-Group", "system:authenticated"),
        ("X-Remote-Extra-clusternet-token", "t"),
        ("X-Remote-Extra-a%2Fb", "x"),
        ("X-Remote-Extra-a%2Fb", "y"),
        (FORWARDED_HEADER, "1"),
    ]


def test_peer_headers_authenticate_as_the_same_user() -> None:
    """What a replica sends is read back, by a peer trusting the front proxy, as the caller."""
    from multidict import CIMultiDict

    from clusternet.hub.authn import _user_from_headers

    config = RequestHeaderConfig(ca_pem=b"")
    extra = {"clusternet-token": ("t",), "a/b": ("x",)}
    user = _user_from_headers(config, CIMultiDict(peer_headers([], "alice", ("devs",), extra)))
    assert user is not None
    assert (user.name, user.groups, dict(user.extra)) == ("alice", ("devs",), extra)
    assert Authenticator(AuthenticationConfig(config, b"")) is not None


def test_peer_flags(tmp_path: Path) -> None:
    assert parse_options(["--secure-port=6443"]).peer_config() is None
    cert, key = tmp_path / "c", tmp_path / "k"
    options = parse_options(
        [
            "--secure-port=6443",
            "--peer-advertise-address=10.0.0.7",
            f"--peer-client-cert-file={cert}",
            f"--peer-client-key-file={key}",
        ]
    )
    assert options.peer_config() == PeerConfig(
        "10.0.0.7:6443", "https://10.0.0.7:6443", cert, key, None
    )
    ipv6 = parse_options(["--secure-port=1", "--peer-advertise-address=fd00::1", "--peer-port=9"])
    assert ipv6.peer_config() == PeerConfig("[fd00::1]:9", "https://[fd00::1]:9", None, None)
    assert options.peer_config().request_extensions() == {}  # type: ignore[union-attr]
    named = parse_options(
        [
            "--secure-port=1",
            "--peer-advertise-address=10.0.0.7",
            "--peer-tls-server-name=hub.ns.svc",
        ]
    ).peer_config()
    assert named is not None
    assert named.tls_server_name == "hub.ns.svc"
    assert named.request_extensions() == {"sni_hostname": "hub.ns.svc"}
    with pytest.raises(SystemExit):
        parse_options(["--secure-port=1", f"--peer-client-cert-file={cert}"])
