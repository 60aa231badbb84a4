"""Delegated authentication: X-Remote-* headers count only behind a trusted front proxy."""

from __future__ import annotations

import json

import pytest
from cryptography.hazmat.primitives import serialization
from multidict import CIMultiDict

from clusternet.hub.authn import (
    AuthenticationConfig,
    Authenticator,
    RequestHeaderConfig,
    UserInfo,
    is_identity_header,
)
from clusternet.local.pki import CertificateAuthority, cert_pem

FRONT_PROXY = CertificateAuthority.create("front-proxy-ca")
CLIENT_CA = CertificateAuthority.create("client-ca")


def der(authority: CertificateAuthority, cn: str, organizations: tuple[str, ...] = ()) -> bytes:
    cert, _ = authority.issue(cn, organizations=organizations, client=True)
    return cert.public_bytes(serialization.Encoding.DER)


def authenticator(allowed: tuple[str, ...] = ("front-proxy-client",)) -> Authenticator:
    return Authenticator(
        AuthenticationConfig(
            RequestHeaderConfig(ca_pem=cert_pem(FRONT_PROXY.cert), allowed_names=allowed),
            client_ca_pem=cert_pem(CLIENT_CA.cert),
        )
    )


HEADERS = CIMultiDict(
    [
        ("X-Remote-User", "alice"),
        ("X-Remote-Group", "dev"),
        ("X-Remote-Group", "system:authenticated"),
        ("X-Remote-Extra-Clusternet-Token", "child-token"),
        ("X-Remote-Extra-Example.com%2Fteam", "blue"),
        ("X-Remote-Extra-Example.com%2Fteam", "green"),
    ]
)


def test_front_proxy_certificate_makes_the_headers_the_user() -> None:
    user = authenticator().authenticate(der(FRONT_PROXY, "front-proxy-client"), HEADERS)
    assert user == UserInfo(
        "alice",
        groups=("dev", "system:authenticated"),
        extra={"clusternet-token": ("child-token",), "example.com/team": ("blue", "green")},
    )


def test_a_name_outside_the_allowed_names_is_not_a_front_proxy() -> None:
    assert authenticator().authenticate(der(FRONT_PROXY, "someone-else"), HEADERS) is None


def test_any_name_of_the_ca_is_allowed_when_the_list_is_empty() -> None:
    user = authenticator(allowed=()).authenticate(der(FRONT_PROXY, "someone-else"), HEADERS)
    assert user is not None
    assert user.name == "alice"


def test_headers_behind_a_certificate_of_another_ca_are_ignored() -> None:
    # Signed by the client CA: authenticates its own subject, never the asserted headers.
    user = authenticator().authenticate(der(CLIENT_CA, "front-proxy-client", ("ops",)), HEADERS)
    assert user == UserInfo("front-proxy-client", groups=("ops", "system:authenticated"))


def test_unknown_ca_and_missing_certificate_are_unauthenticated() -> None:
    stranger = CertificateAuthority.create("front-proxy-ca")  # same name, other key
    assert authenticator().authenticate(der(stranger, "front-proxy-client"), HEADERS) is None
    assert authenticator().authenticate(None, HEADERS) is None


def test_front_proxy_without_a_user_header_is_unauthenticated() -> None:
    headers = CIMultiDict([("X-Remote-Group", "system:masters")])
    assert authenticator().authenticate(der(FRONT_PROXY, "front-proxy-client"), headers) is None


def test_configmap_settings_are_parsed() -> None:
    config = AuthenticationConfig.from_configmap(
        {
            "client-ca-file": cert_pem(CLIENT_CA.cert).decode(),
            "requestheader-client-ca-file": cert_pem(FRONT_PROXY.cert).decode(),
            "requestheader-allowed-names": json.dumps(["front-proxy-client"]),
            "requestheader-username-headers": json.dumps(["X-Who"]),
            "requestheader-group-headers": json.dumps(["X-Groups"]),
            "requestheader-extra-headers-prefix": json.dumps(["X-Extra-"]),
        }
    )
    assert config.requestheader is not None
    assert config.requestheader.username_headers == ("X-Who",)
    headers = CIMultiDict([("X-Who", "bob"), ("X-Groups", "g"), ("X-Extra-K", "v")])
    user = Authenticator(config).authenticate(der(FRONT_PROXY, "front-proxy-client"), headers)
    assert user == UserInfo("bob", groups=("g",), extra={"k": ("v",)})
    assert is_identity_header("X-Who", config.requestheader)
    assert is_identity_header("x-extra-k", config.requestheader)
    assert not is_identity_header("Accept", config.requestheader)


def test_configmap_with_a_malformed_list_is_rejected() -> None:
    with pytest.raises(ValueError, match="requestheader-allowed-names"):
        AuthenticationConfig.from_configmap(
            {
                "requestheader-client-ca-file": cert_pem(FRONT_PROXY.cert).decode(),
                "requestheader-allowed-names": "front-proxy-client",
            }
        )


def test_a_certificate_is_worked_out_once_but_its_validity_checked_every_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import datetime as dt

    from clusternet.hub import authn

    auth = authenticator()
    cert = der(FRONT_PROXY, "front-proxy-client")
    assert auth.authenticate(cert, HEADERS) is not None
    verified: list[object] = []
    monkeypatch.setattr(authn, "_issued_by", lambda *args: verified.append(args) or True)
    assert auth.authenticate(cert, HEADERS) is not None
    assert verified == []  # served from the cache: no parsing, no signature check

    class Later(dt.datetime):
        @classmethod
        def now(cls, tz: dt.tzinfo | None = None) -> Later:
            return cls(2100, 1, 1, tzinfo=dt.UTC)

    monkeypatch.setattr(authn.dt, "datetime", Later)
    assert auth.authenticate(cert, HEADERS) is None  # expired since: rejected


def test_the_certificate_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    from clusternet.hub import authn

    monkeypatch.setattr(authn, "_CERTIFICATE_CACHE_SIZE", 3)
    auth = authenticator()
    for i in range(5):
        assert auth.authenticate(der(CLIENT_CA, f"user-{i}"), HEADERS) is not None
    assert len(auth._certificates) == 3


def test_one_ca_may_be_both_front_proxy_and_client_ca() -> None:
    auth = Authenticator(
        AuthenticationConfig(
            RequestHeaderConfig(ca_pem=cert_pem(CLIENT_CA.cert), allowed_names=("proxy",)),
            client_ca_pem=cert_pem(CLIENT_CA.cert),
        )
    )
    assert auth.authenticate(der(CLIENT_CA, "proxy"), HEADERS) == UserInfo(
        "alice",
        groups=("dev", "system:authenticated"),
        extra={"clusternet-token": ("child-token",), "example.com/team": ("blue", "green")},
    )
    # Not an allowed front-proxy name: the certificate authenticates its own subject.
    user = auth.authenticate(der(CLIENT_CA, "bob", ("ops",)), HEADERS)
    assert user == UserInfo("bob", groups=("ops", "system:authenticated"))
