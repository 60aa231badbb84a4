"""Who is calling: delegated authentication of an aggregated API server.

kube-apiserver authenticates the real caller and proxies the request with the identity in
``X-Remote-User`` / ``X-Remote-Group`` / ``X-Remote-Extra-<key>`` headers, over a TLS
connection on which it presents its front-proxy client certificate.  Those headers are
trusted **only** when that certificate was issued by a requestheader CA and its common name
is one of the allowed names: otherwise anyone who can reach the hub could claim any identity.
A certificate issued by the client CA instead authenticates its subject directly (CN = user,
O = groups), as kube-apiserver's x509 authenticator does.

The configuration comes from ``kube-system/extension-apiserver-authentication`` (published by
kube-apiserver) unless flags override it.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from urllib.parse import unquote

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.x509.oid import NameOID
from multidict import CIMultiDict, CIMultiDictProxy

__all__ = [
    "ANONYMOUS",
    "AuthenticationConfig",
    "Authenticator",
    "RequestHeaderConfig",
    "UserInfo",
    "load_pem_certificates",
]

AUTHENTICATION_CONFIGMAP = ("kube-system", "extension-apiserver-authentication")
# Request headers with repeated names (X-Remote-Group may come many times).
Headers = CIMultiDictProxy[str] | CIMultiDict[str]


@dataclass(frozen=True)
class UserInfo:
    name: str
    uid: str = ""
    groups: tuple[str, ...] = ()
    extra: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def is_anonymous(self) -> bool:
        return self.name == ANONYMOUS.name


ANONYMOUS = UserInfo("system:anonymous", groups=("system:unauthenticated",))


def load_pem_certificates(pem: bytes) -> tuple[x509.Certificate, ...]:
    return tuple(x509.load_pem_x509_certificates(pem)) if pem.strip() else ()


@dataclass(frozen=True)
class RequestHeaderConfig:
    """The ``--requestheader-*`` settings of kube-apiserver (and of this hub)."""

    ca_pem: bytes
    allowed_names: tuple[str, ...] = ()  # empty: any certificate of the CA
    username_headers: tuple[str, ...] = ("X-Remote-User",)
    uid_headers: tuple[str, ...] = ()
    group_headers: tuple[str, ...] = ("X-Remote-Group",)
    extra_header_prefixes: tuple[str, ...] = ("X-Remote-Extra-",)

    @property
    def ca_certs(self) -> tuple[x509.Certificate, ...]:
        return load_pem_certificates(self.ca_pem)

    def identity_headers(self) -> tuple[str, ...]:
        """Every header that carries identity: never forwarded to a child cluster."""
        return (*self.username_headers, *self.uid_headers, *self.group_headers)


@dataclass(frozen=True)
class AuthenticationConfig:
    requestheader: RequestHeaderConfig | None
    client_ca_pem: bytes = b""

    @classmethod
    def from_configmap(cls, data: Mapping[str, str]) -> AuthenticationConfig:
        """Parse ``extension-apiserver-authentication``'s data (lists are JSON arrays)."""

        def names(key: str, default: Sequence[str] = ()) -> tuple[str, ...]:
            raw = data.get(key)
            if not raw:
                return tuple(default)
            try:
                parsed = json.loads(raw)
            except ValueError:
                parsed = None
            if not isinstance(parsed, list) or not all(isinstance(v, str) for v in parsed):
                raise ValueError(f"{key} is not a JSON list of strings: {raw!r}")
            return tuple(parsed)

        requestheader = None
        if ca := data.get("requestheader-client-ca-file", ""):
            requestheader = RequestHeaderConfig(
                ca_pem=ca.encode(),
                allowed_names=names("requestheader-allowed-names"),
                username_headers=names("requestheader-username-headers", ("X-Remote-User",)),
                uid_headers=names("requestheader-uid-headers"),
                group_headers=names("requestheader-group-headers", ("X-Remote-Group",)),
                extra_header_prefixes=names(
                    "requestheader-extra-headers-prefix", ("X-Remote-Extra-",)
                ),
            )
        return cls(requestheader, data.get("client-ca-file", "").encode())

    @property
    def trusted_ca_pem(self) -> bytes:
        """What the TLS server verifies client certificates against."""
        parts = [self.client_ca_pem]
        if self.requestheader is not None:
            parts.append(self.requestheader.ca_pem)
        return b"\n".join(p.strip() for p in parts if p.strip()) + b"\n"


def _common_name(cert: x509.Certificate) -> str:
    values = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(values[0].value) if values else ""


def _issued_by(cert: x509.Certificate, authorities: Iterable[x509.Certificate]) -> bool:
    """Signed by one of ``authorities`` (validity in time is checked per request).

    The TLS handshake has verified the chain against the union of all trusted CAs already;
    this tells *which* CA issued it, because the two CAs grant very different trust.
    """
    for authority in authorities:
        try:
            cert.verify_directly_issued_by(authority)
        except (ValueError, TypeError, InvalidSignature):
            continue
        return True
    return False


@dataclass(frozen=True)
class _Certificate:
    """What authentication needs of a peer certificate, worked out once per certificate."""

    by_front_proxy_ca: bool  # may assert identities in X-Remote-* headers (if its CN allows)
    by_client_ca: bool  # authenticates its own subject
    common_name: str
    organizations: tuple[str, ...]
    not_before: dt.datetime
    not_after: dt.datetime

    def valid_now(self) -> bool:
        return self.not_before <= dt.datetime.now(dt.UTC) <= self.not_after


# The aggregator keeps a few long-lived connections, each presenting the same certificate on
# every request: parsing it and checking its signature per request cost more than the rest of
# the hub's work on a proxied GET.  Bounded, so a flood of distinct certificates cannot grow it.
_CERTIFICATE_CACHE_SIZE = 256


class Authenticator:
    def __init__(self, config: AuthenticationConfig) -> None:
        self.config = config
        self._requestheader_cas = (
            config.requestheader.ca_certs if config.requestheader is not None else ()
        )
        self._client_cas = load_pem_certificates(config.client_ca_pem)
        self._certificates: dict[bytes, _Certificate] = {}

    def _certificate(self, der: bytes) -> _Certificate:
        known = self._certificates.get(der)
        if known is not None:
            return known
        cert = x509.load_der_x509_certificate(der)
        organizations = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
        found = _Certificate(
            _issued_by(cert, self._requestheader_cas),
            _issued_by(cert, self._client_cas),
            _common_name(cert),
            tuple(str(o.value) for o in organizations),
            cert.not_valid_before_utc,
            cert.not_valid_after_utc,
        )
        if len(self._certificates) >= _CERTIFICATE_CACHE_SIZE:
            self._certificates.pop(next(iter(self._certificates)))  # oldest first
        self._certificates[der] = found
        return found

    def authenticate(self, peer_cert_der: bytes | None, headers: Headers) -> UserInfo | None:
        """The caller, or None if unauthenticated (a certificate proves nothing we trust,
        or a front proxy sent no user)."""
        if not peer_cert_der:
            return None
        cert = self._certificate(peer_cert_der)
        if not cert.valid_now():
            return None
        front_proxy = self.config.requestheader
        if (
            front_proxy is not None
            and cert.by_front_proxy_ca
            and (not front_proxy.allowed_names or cert.common_name in front_proxy.allowed_names)
        ):
            return _user_from_headers(front_proxy, headers)
        if cert.by_client_ca:
            if not cert.common_name:
                return None
            return UserInfo(cert.common_name, groups=(*cert.organizations, "system:authenticated"))
        return None


def _user_from_headers(config: RequestHeaderConfig, headers: Headers) -> UserInfo | None:
    name = next((v for h in config.username_headers for v in headers.getall(h, []) if v), "")
    if not name:
        return None
    uid = next((v for h in config.uid_headers for v in headers.getall(h, []) if v), "")
    groups = tuple(v for h in config.group_headers for v in headers.getall(h, []))
    extra: dict[str, list[str]] = {}
    prefixes = [p.lower() for p in config.extra_header_prefixes]
    for header, value in headers.items():
        lowered = header.lower()
        for prefix in prefixes:
            if lowered.startswith(prefix) and len(lowered) > len(prefix):
                # kube-apiserver lower-cases, then percent-decodes the key (keys may hold '/').
                extra.setdefault(unquote(lowered[len(prefix) :]), []).append(value)
                break
    return UserInfo(name, uid, groups, {k: tuple(v) for k, v in extra.items()})


def is_identity_header(name: str, config: RequestHeaderConfig | None) -> bool:
    """True for headers a front proxy uses to assert identity (never forwarded)."""
    lowered = name.lower()
    if lowered.startswith(("x-remote-", "impersonate-")):
        return True
    if config is None:
        return False
    if lowered in {h.lower() for h in config.identity_headers()}:
        return True
    return any(lowered.startswith(p.lower()) for p in config.extra_header_prefixes)
