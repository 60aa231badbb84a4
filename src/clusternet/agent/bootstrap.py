"""Trusting the parent before the first credentialed request: registration tokens and the
``kube-public/cluster-info`` CA, verified the way ``kubeadm join`` verifies it.

The parent publishes its CA in the ConfigMap ``cluster-info`` (key ``kubeconfig``), readable
anonymously.  kube-controller-manager's bootstrapsigner adds ``jws-kubeconfig-<token-id>``: a
JWS with detached payload (``<header>..<signature>``), HS256 over that kubeconfig keyed by the
token's secret.  Only someone who knows the bootstrap token can produce it, so a verified
signature proves the CA is the parent's, even though the ConfigMap was fetched without TLS
verification.  The token itself is sent only once the CA is trusted.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from dataclasses import dataclass
from typing import Any

import yaml

BOOTSTRAP_TOKEN = re.compile(r"^(?P<id>[a-z0-9]{6})\.(?P<secret>[a-z0-9]{16})$")
# A JWT: three dot-separated base64url segments (the signature may be empty only for alg none,
# which no apiserver accepts; require all three).
SERVICE_ACCOUNT_JWT = re.compile(r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$")
CLUSTER_INFO_NAMESPACE = "kube-public"
CLUSTER_INFO_NAME = "cluster-info"
JWS_KEY_PREFIX = "jws-kubeconfig-"


class UntrustedParent(Exception):
    """The parent's CA could not be verified: registering would hand the token to anyone."""


@dataclass(frozen=True)
class BootstrapToken:
    id: str
    secret: str

    @classmethod
    def parse(cls, token: str) -> BootstrapToken | None:
        match = BOOTSTRAP_TOKEN.match(token)
        return cls(match["id"], match["secret"]) if match else None


def is_registration_token(token: str) -> bool:
    return bool(BOOTSTRAP_TOKEN.match(token) or SERVICE_ACCOUNT_JWT.match(token))


def _b64url_decode(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def _b64url_encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def detached_signature_valid(signature: str, content: str, token: BootstrapToken) -> bool:
    """Whether ``signature`` (``<header>..<sig>``) is the HS256 JWS of ``content`` for
    ``token``: header alg HS256 and kid = token id, HMAC keyed by the token secret."""
    parts = signature.split(".")
    if len(parts) != 3 or parts[1]:  # the payload segment of a detached JWS is empty
        return False
    header_segment, _, signature_segment = parts
    try:
        header = json.loads(_b64url_decode(header_segment))
        received = _b64url_decode(signature_segment)
    except (binascii.Error, ValueError):
        return False
    if not isinstance(header, dict) or header.get("alg") != "HS256":
        return False
    if header.get("kid") != token.id:
        return False
    signing_input = f"{header_segment}.{_b64url_encode(content.encode())}".encode()
    expected = hmac.new(token.secret.encode(), signing_input, hashlib.sha256).digest()
    return hmac.compare_digest(expected, received)


def ca_from_cluster_info(cluster_info: dict[str, Any], token: BootstrapToken) -> bytes:
    """The parent's CA bundle (PEM) from the ``cluster-info`` ConfigMap, once its signature
    for ``token`` is verified; :class:`UntrustedParent` otherwise."""
    data = cluster_info.get("data") or {}
    kubeconfig = data.get("kubeconfig")
    signature = data.get(JWS_KEY_PREFIX + token.id)
    if not kubeconfig:
        raise UntrustedParent("kube-public/cluster-info has no kubeconfig")
    if not signature:
        raise UntrustedParent(
            f"kube-public/cluster-info is not signed for token id {token.id!r} (is "
            "kube-controller-manager's bootstrapsigner running and the token's "
            "usage-bootstrap-signing true?)"
        )
    if not detached_signature_valid(signature, kubeconfig, token):
        raise UntrustedParent(
            "kube-public/cluster-info has an invalid signature for this token: the parent "
            "is not who it claims to be, or the token is wrong"
        )
    try:
        config = yaml.safe_load(kubeconfig) or {}
        clusters = config.get("clusters") or []
        ca = clusters[0]["cluster"]["certificate-authority-data"]
        return base64.b64decode(ca, validate=True)
    except (yaml.YAMLError, AttributeError, IndexError, KeyError, TypeError, binascii.Error) as e:
        raise UntrustedParent(f"kube-public/cluster-info has no usable CA: {e!r}") from e
