"""The public-key infrastructure of a local environment, generated with ``cryptography``.

One CA signs every cluster's serving and client certificates (they all live on 127.0.0.1),
a second "front-proxy" CA signs the client certificate the parent's aggregator presents to
aggregated API servers such as clusternet-hub, and one key pair signs ServiceAccount tokens.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from clusternet.runtime.certs import (
    CertificateAuthority,
    PrivateKey,
    cert_pem,
    key_pem,
    new_key,
    public_key_pem,
    write_private,
)

__all__ = [
    "APISERVER_DNS_NAMES",
    "FRONT_PROXY_CLIENT_CN",
    "PKI",
    "CertificateAuthority",
    "PrivateKey",
    "cert_pem",
    "key_pem",
    "write_private",
]

# Names the cluster-internal DNS gives the apiserver, so in-cluster style clients verify too.
APISERVER_DNS_NAMES = (
    "localhost",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
)
FRONT_PROXY_CLIENT_CN = "front-proxy-client"


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
