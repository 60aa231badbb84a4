"""The PKI of local environments: chains, usages and names that Kubernetes checks."""

import ssl
import threading
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from clusternet.local.pki import PKI


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    return PKI.generate(tmp_path_factory.mktemp("pki"))


def load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def usages(cert: x509.Certificate) -> set[x509.ObjectIdentifier]:
    return set(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)


def sans(cert: x509.Certificate) -> set[str]:
    ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return {str(v) for v in ext.get_values_for_type(x509.DNSName)} | {
        str(v) for v in ext.get_values_for_type(x509.IPAddress)
    }


@pytest.mark.parametrize(
    ("cert", "issuer", "usage", "subject"),
    [
        ("apiserver.crt", "ca.crt", ExtendedKeyUsageOID.SERVER_AUTH, "kube-apiserver"),
        ("admin.crt", "ca.crt", ExtendedKeyUsageOID.CLIENT_AUTH, "admin"),
        (
            "front-proxy-client.crt",
            "front-proxy-ca.crt",
            ExtendedKeyUsageOID.CLIENT_AUTH,
            "front-proxy-client",
        ),
    ],
)
def test_leaf_certificates(pki: PKI, cert: str, issuer: str, usage: object, subject: str) -> None:
    leaf, ca = load(pki.path(cert)), load(pki.path(issuer))
    leaf.verify_directly_issued_by(ca)
    assert usages(leaf) == {usage}
    assert leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == subject
    # Go (>= 1.23) rejects non-positive serial numbers.
    assert leaf.serial_number > 0


def test_admin_is_cluster_admin(pki: PKI) -> None:
    org = load(pki.admin_cert).subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    assert [a.value for a in org] == ["system:masters"]


def test_apiserver_names(pki: PKI) -> None:
    assert {"localhost", "kubernetes.default.svc", "127.0.0.1"} <= sans(load(pki.apiserver_cert))


def test_keys_are_private(pki: PKI) -> None:
    for key in ("ca.key", "admin.key", "sa.key", "apiserver.key", "front-proxy-ca.key"):
        assert pki.path(key).stat().st_mode & 0o077 == 0, key


def test_service_serving_cert_has_the_names_the_aggregator_verifies(
    pki: PKI, tmp_path: Path
) -> None:
    cert_file, _ = pki.serving_cert_for_service(
        tmp_path, "hub", "clusternet-hub", "clusternet-system"
    )
    cert = load(cert_file)
    cert.verify_directly_issued_by(load(pki.ca_cert))
    assert {"clusternet-hub.clusternet-system.svc", "localhost", "127.0.0.1"} <= sans(cert)


def test_mutual_tls_handshake_with_front_proxy_client(pki: PKI, tmp_path: Path) -> None:
    """What the aggregator does: SNI <svc>.<ns>.svc, presenting the front-proxy client cert."""
    cert_file, key_file = pki.serving_cert_for_service(tmp_path, "hub", "hub", "ns")
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=pki.front_proxy_ca_cert)
    server_ctx.load_cert_chain(cert_file, key_file)
    server_ctx.verify_mode = ssl.CERT_REQUIRED
    client_ctx = ssl.create_default_context(cafile=pki.ca_cert)
    client_ctx.load_cert_chain(pki.front_proxy_client_cert, pki.front_proxy_client_key)

    import socket

    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    peer: dict[str, object] = {}

    def serve() -> None:
        conn, _ = listener.accept()
        with server_ctx.wrap_socket(conn, server_side=True) as tls:
            peer.update(tls.getpeercert() or {})
            tls.sendall(b"ok")

    thread = threading.Thread(target=serve)
    thread.start()
    with (
        socket.create_connection(("127.0.0.1", port)) as raw,
        client_ctx.wrap_socket(raw, server_hostname="hub.ns.svc") as tls,
    ):
        assert tls.recv(2) == b"ok"
    thread.join(timeout=10)
    listener.close()
    assert peer["subject"] == ((("commonName", "front-proxy-client"),),)
