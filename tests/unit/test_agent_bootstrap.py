"""Trusting the parent during bootstrap: the detached JWS on kube-public/cluster-info."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

import pytest
import yaml

from clusternet.agent.bootstrap import (
    BootstrapToken,
    UntrustedParent,
    ca_from_cluster_info,
    detached_signature_valid,
    is_registration_token,
)

TOKEN = BootstrapToken("07401b", "f395accd246ae52d")
CA_PEM = b"-----BEGIN CERTIFICATE-----\nMIIBparent\n-----END CERTIFICATE-----\n"


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def sign(content: str, token_id: str, secret: str, alg: str = "HS256") -> str:
    """What kube-controller-manager's bootstrapsigner writes: ``<header>..<signature>``."""
    header = b64url(json.dumps({"alg": alg, "kid": token_id}, separators=(",", ":")).encode())
    signing_input = f"{header}.{b64url(content.encode())}".encode()
    signature = hmac.new(secret.encode(), signing_input, hashlib.sha256).digest()
    return f"{header}..{b64url(signature)}"


def cluster_info(kubeconfig: str, signature: str | None) -> dict[str, object]:
    data = {"kubeconfig": kubeconfig}
    if signature is not None:
        data[f"jws-kubeconfig-{TOKEN.id}"] = signature
    return {"data": data}


KUBECONFIG = yaml.safe_dump(
    {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "",
                "cluster": {
                    "server": "https://parent:6443",
                    "certificate-authority-data": base64.b64encode(CA_PEM).decode(),
                },
            }
        ],
    }
)


def test_kubernetes_reference_vector_verifies() -> None:
    # The vector of k8s.io/cluster-bootstrap/token/jws's own tests (go-jose output).
    signature = (
        "eyJhbGciOiJIUzI1NiIsImtpZCI6Impvc2h1YSJ9..VShe2taLd-YTrmWuRkcL_8QTNDHYxQIEBsAYYiIj1_8"
    )
    content = "Hello from the other side. I must have called a thousand times."
    token = BootstrapToken("joshua", "my voice is my passcode")
    assert detached_signature_valid(signature, content, token)
    assert not detached_signature_valid(signature, content + " ", token)


def test_a_valid_signature_yields_the_ca() -> None:
    signed = cluster_info(KUBECONFIG, sign(KUBECONFIG, TOKEN.id, TOKEN.secret))
    assert ca_from_cluster_info(signed, TOKEN) == CA_PEM


def test_a_tampered_kubeconfig_is_rejected() -> None:
    signature = sign(KUBECONFIG, TOKEN.id, TOKEN.secret)
    forged = KUBECONFIG.replace(
        base64.b64encode(CA_PEM).decode(), base64.b64encode(b"attacker CA").decode()
    )
    with pytest.raises(UntrustedParent, match="invalid signature"):
        ca_from_cluster_info(cluster_info(forged, signature), TOKEN)


def test_a_signature_made_with_another_secret_is_rejected() -> None:
    signature = sign(KUBECONFIG, TOKEN.id, "0000000000000000")
    with pytest.raises(UntrustedParent, match="invalid signature"):
        ca_from_cluster_info(cluster_info(KUBECONFIG, signature), TOKEN)


def test_a_missing_signature_is_rejected() -> None:
    with pytest.raises(UntrustedParent, match="not signed for token id '07401b'"):
        ca_from_cluster_info(cluster_info(KUBECONFIG, None), TOKEN)


@pytest.mark.parametrize(
    "signature",
    [
        sign(KUBECONFIG, "abcdef", TOKEN.secret),  # kid of another token
        sign(KUBECONFIG, TOKEN.id, TOKEN.secret, alg="none"),  # algorithm downgrade
        sign(KUBECONFIG, TOKEN.id, TOKEN.secret).replace("..", ".e30."),  # attached payload
        "not-a-jws",
        "%%%..%%%",
    ],
)
def test_malformed_or_foreign_signatures_are_rejected(signature: str) -> None:
    assert not detached_signature_valid(signature, KUBECONFIG, TOKEN)


def test_a_signed_kubeconfig_without_ca_is_unusable() -> None:
    empty = yaml.safe_dump({"clusters": [{"name": "", "cluster": {"server": "https://p"}}]})
    with pytest.raises(UntrustedParent, match="no usable CA"):
        ca_from_cluster_info(cluster_info(empty, sign(empty, TOKEN.id, TOKEN.secret)), TOKEN)


@pytest.mark.parametrize(
    ("token", "valid", "bootstrap"),
    [
        ("07401b.f395accd246ae52d", True, True),
        ("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln-_", True, False),  # ServiceAccount JWT
        ("07401B.f395accd246ae52d", False, False),  # upper case
        ("07401b.f395accd246ae52", False, False),  # 15-character secret
        ("07401bf395accd246ae52d", False, False),
        ("a.b", False, False),
        ("a.b.c.d", False, False),
        ("", False, False),
    ],
)
def test_registration_token_formats(token: str, valid: bool, bootstrap: bool) -> None:
    assert is_registration_token(token) is valid
    assert (BootstrapToken.parse(token) is not None) is bootstrap
