"""The public-key infrastructure of a local environment, generated with ``cryptography``.

One CA signs every cluster's serving and client certificates (they all live on 127.0.0.1),
a second "front-proxy" CA signs the client certificate the parent's aggregator presents to
aggregated API servers such as clusternet-hub, and one key pair signs ServiceAccount tokens.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

PrivateKey = ec.EllipticCurvePrivateKey

# Names the cluster-internal DNS gives the apiserver, so in-cluster style clients verify too.
APISERVER_DNS_NAMES = (
    "localhost",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
)
FRONT_PROXY_CLIENT_CN = "front-proxy-client"


def _name(common_name: str, organizations: Iterable[str] = ()) -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in organizations]
    attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    return x509.Name(attributes)


def _key_usage(**allowed: bool) -> x509.KeyUsage:
    """Digital signatures plus the usages named; everything else off."""
    usages = dict.fromkeys(
        (
            "content_commitment",
            "key_encipherment",
            "data_encipherment",
            "key_agreement",
            "key_cert_sign",
            "crl_sign",
            "encipher_only",
            "decipher_only",
        ),
        False,
    )
    return x509.KeyUsage(digital_signature=True, **(usages | allowed))


def new_key() -> PrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def key_pem(key: PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def public_key_pem(key: PrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


@dataclass(frozen=True)
class CertificateAuthority:
    cert: x509.Certificate
    key: PrivateKey

    @classmethod
    def create(cls, common_name: str, days: int = 3650) -> CertificateAuthority:
        key = new_key()
        now = dt.datetime.now(dt.UTC)
        name = _name(common_name)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(_key_usage(key_cert_sign=True, crl_sign=True), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
            .sign(key, hashes.SHA256())
        )
        return cls(cert, key)

    @classmethod
    def load(cls, cert_file: Path, key_file: Path) -> CertificateAuthority:
        cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
        key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{key_file}: expected an EC private key")
        return cls(cert, key)

    def issue(
        self,
        common_name: str,
        *,
        organizations: Iterable[str] = (),
        dns_names: Iterable[str] = (),
        ip_addresses: Iterable[str] = (),
        server: bool = False,
        client: bool = False,
        days: int = 365,
    ) -> tuple[x509.Certificate, PrivateKey]:
        """A leaf certificate signed by this CA (serverAuth and/or clientAuth)."""
        key = new_key()
        now = dt.datetime.now(dt.UTC)
        usages = []
        if server:
            usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
        if client:
            usages.append(ExtendedKeyUsageOID.CLIENT_AUTH)
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(common_name, organizations))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_key_usage(key_encipherment=True), critical=True)
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), False
            )
        )
        sans: list[x509.GeneralName] = [x509.DNSName(n) for n in dns_names]
        sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ip_addresses]
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        return builder.sign(self.key, hashes.SHA256()), key

    def issue_to_files(self, directory: Path, stem: str, **kwargs: object) -> tuple[Path, Path]:
        cert, key = self.issue(**kwargs)  # type: ignore[arg-type]
        cert_file, key_file = directory / f"{stem}.crt", directory / f"{stem}.key"
        write_private(key_file, key_pem(key))
        cert_file.write_bytes(cert_pem(cert))
        return cert_file, key_file


def write_private(path: Path, data: bytes) -> None:
    path.touch(mode=0o600, exist_ok=True)
    path.chmod(0o600)
    path.write_bytes(data)


@dataclass(frozen=True)
class PKI:
    """The files of a local environment's PKI, all below one folder."""

    root: Path

    def path(self, name: str) -> Path:
        return self.root / name

    ca_cert = property(lambda self: self.root / "ca.crt")
    ca_key = property(lambda self: self.root / "ca.key")
    front_proxy_ca_cert = property(lambda self: self.root / "front-proxy-ca.crt")
    front_proxy_ca_key = property(lambda self: self.root / "front-proxy-ca.key")
    front_proxy_client_cert = property(lambda self: self.root / "front-proxy-client.crt")
    front_proxy_client_key = property(lambda self: self.root / "front-proxy-client.key")
    apiserver_cert = property(lambda self: self.root / "apiserver.crt")
    apiserver_key = property(lambda self: self.root / "apiserver.key")
    admin_cert = property(lambda self: self.root / "admin.crt")
    admin_key = property(lambda self: self.root / "admin.key")
    sa_key = property(lambda self: self.root / "sa.key")
    sa_pub = property(lambda self: self.root / "sa.pub")

    @classmethod
    def generate(cls, root: Path) -> PKI:
        root.mkdir(parents=True, exist_ok=True)
        root.chmod(0o700)
        pki = cls(root)
        ca = CertificateAuthority.create("clusternet-local-ca")
        write_private(pki.ca_key, key_pem(ca.key))
        pki.ca_cert.write_bytes(cert_pem(ca.cert))
        front = CertificateAuthority.create("clusternet-local-front-proxy-ca")
        write_private(pki.front_proxy_ca_key, key_pem(front.key))
        pki.front_proxy_ca_cert.write_bytes(cert_pem(front.cert))
        front.issue_to_files(
            root, "front-proxy-client", common_name=FRONT_PROXY_CLIENT_CN, client=True
        )
        ca.issue_to_files(
            root,
            "apiserver",
            common_name="kube-apiserver",
            dns_names=APISERVER_DNS_NAMES,
            ip_addresses=("127.0.0.1",),
            server=True,
        )
        ca.issue_to_files(
            root, "admin", common_name="admin", organizations=("system:masters",), client=True
        )
        sa = new_key()
        write_private(pki.sa_key, key_pem(sa))
        pki.sa_pub.write_bytes(public_key_pem(sa))
        return pki

    def ca(self) -> CertificateAuthority:
        return CertificateAuthority.load(self.ca_cert, self.ca_key)

    def front_proxy_ca(self) -> CertificateAuthority:
        return CertificateAuthority.load(self.front_proxy_ca_cert, self.front_proxy_ca_key)

    def serving_cert_for_service(
        self, directory: Path, stem: str, service: str, namespace: str
    ) -> tuple[Path, Path]:
        """A serving cert an aggregated API server needs behind an ExternalName Service.

        The aggregator dials ``spec.externalName`` (localhost) but verifies the certificate
        against ``<service>.<namespace>.svc``, so both names go in the SAN.
        """
        return self.ca().issue_to_files(
            directory,
            stem,
            common_name=f"{service}.{namespace}.svc",
            dns_names=(f"{service}.{namespace}.svc", "localhost"),
            ip_addresses=("127.0.0.1",),
            server=True,
        )
