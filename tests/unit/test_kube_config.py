"""Kubeconfig and in-cluster config, and how they shape requests."""

from __future__ import annotations

import base64
import datetime
import json
import ssl
import sys
from pathlib import Path
from typing import Any

import httpx2
import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from clusternet.kube import (
    ClusterConfig,
    ConfigError,
    KubeClient,
    in_cluster_config,
    load_kubeconfig,
    tls_context,
)

PREFIX = "https://parent.test/apis/proxies.clusternet.io/v1alpha1/sockets/abc/proxy/direct"


def key_pair() -> tuple[bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "clusternet-test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def kubeconfig(users: dict[str, dict[str, Any]], **clusters: dict[str, Any]) -> dict[str, Any]:
    """One context per user, named after it, on cluster "main" unless the user names one."""
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": name, "cluster": spec} for name, spec in clusters.items()],
        "users": [{"name": name, "user": spec} for name, spec in users.items()],
        "contexts": [
            {
                "name": name,
                "context": {
                    "cluster": spec.pop("_cluster", "main"),
                    "user": name,
                    "namespace": f"ns-{name}",
                },
            }
            for name, spec in users.items()
        ],
        "current-context": next(iter(users)),
    }


class Recorder:
    """A fake API server that records requests; answers /version, or 401 to refused tokens."""

    def __init__(self, refuse: set[str] | None = None) -> None:
        self.requests: list[httpx2.Request] = []
        # Auth flows resend the same Request object: keep each try's header by value.
        self.authorizations: list[str] = []
        self.refuse = refuse or set()

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        self.requests.append(request)
        self.authorizations.append(request.headers.get("Authorization", ""))
        if request.headers.get("Authorization", "").removeprefix("Bearer ") in self.refuse:
            return httpx2.Response(
                401, json={"kind": "Status", "code": 401, "reason": "Unauthorized"}
            )
        return httpx2.Response(200, json={"major": "1", "minor": "36"})

    def client(self, config: ClusterConfig) -> KubeClient:
        return KubeClient(config, transport_factory=lambda _tls: httpx2.MockTransport(self))


def test_context_selection() -> None:
    data = kubeconfig(
        {"alice": {"token": "a"}, "bob": {"token": "b", "_cluster": "other"}},
        main={"server": "https://main.test"},
        other={"server": "https://other.test"},
    )
    alice, bob = load_kubeconfig(data), load_kubeconfig(data, "bob")
    assert (alice.server, alice.token, alice.namespace) == ("https://main.test", "a", "ns-alice")
    assert (bob.server, bob.token, bob.namespace) == ("https://other.test", "b", "ns-bob")
    with pytest.raises(ConfigError, match=r"no context 'carol' \(known: alice, bob\)"):
        load_kubeconfig(data, "carol")
    with pytest.raises(ConfigError, match="no current-context"):
        load_kubeconfig({**data, "current-context": ""})


def test_certificates_by_data_and_by_relative_file_are_the_same(tmp_path: Path) -> None:
    cert, key = key_pair()
    (tmp_path / "pki").mkdir()
    for name, content in (("ca.crt", cert), ("tls.crt", cert), ("tls.key", key)):
        (tmp_path / "pki" / name).write_bytes(content)
    by_file = kubeconfig(
        {"u": {"client-certificate": "pki/tls.crt", "client-key": "pki/tls.key"}},
        main={"server": "https://main.test", "certificate-authority": "pki/ca.crt"},
    )
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(by_file))
    by_data = kubeconfig(
        {"u": {"client-certificate-data": b64(cert), "client-key-data": b64(key)}},
        main={"server": "https://main.test", "certificate-authority-data": b64(cert)},
    )

    from_file, from_data = load_kubeconfig(path), load_kubeconfig(by_data)
    assert from_file == from_data
    assert (from_file.ca_data, from_file.client_cert_data, from_file.client_key_data) == (
        cert,
        cert,
        key,
    )
    context = tls_context(from_file)
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert [c["subject"] for c in context.get_ca_certs()] == [
        ((("commonName", "clusternet-test"),),)
    ]


def test_broken_credentials_are_config_errors() -> None:
    cert, _ = key_pair()
    with pytest.raises(ConfigError, match="both the certificate and its key"):
        load_kubeconfig(
            kubeconfig(
                {"u": {"client-certificate-data": b64(cert)}}, main={"server": "https://main.test"}
            )
        )
    with pytest.raises(ConfigError, match="not base64"):
        load_kubeconfig(
            kubeconfig(
                {"u": {"token": "t"}},
                main={"server": "https://main.test", "certificate-authority-data": "%%%"},
            )
        )
    with pytest.raises(ConfigError, match="cannot read"):
        load_kubeconfig(
            kubeconfig(
                {"u": {"client-certificate": "absent.crt"}}, main={"server": "https://main.test"}
            )
        )
    mismatched = ClusterConfig(
        server="https://main.test", client_cert_data=cert, client_key_data=key_pair()[1]
    )
    with pytest.raises(ConfigError, match="unusable"):
        tls_context(mismatched)


@pytest.mark.parametrize(
    ("user", "cluster", "key"),
    [
        ({"auth-provider": {"name": "oidc"}}, {}, "auth-provider"),
        ({"username": "admin", "password": "x"}, {}, "username"),
        ({}, {"proxy-url": "socks5://proxy:1080"}, "proxy-url"),
    ],
)
def test_unsupported_kubeconfig_fields_are_refused(
    user: dict[str, Any], cluster: dict[str, Any], key: str
) -> None:
    data = kubeconfig({"u": user}, main={"server": "https://main.test", **cluster})
    with pytest.raises(ConfigError, match=f"{key} is not supported"):
        load_kubeconfig(data)


def test_insecure_skip_tls_verify() -> None:
    config = load_kubeconfig(
        kubeconfig(
            {"u": {}}, main={"server": "https://main.test", "insecure-skip-tls-verify": True}
        )
    )
    assert tls_context(config).verify_mode == ssl.CERT_NONE


async def test_path_prefix_token_impersonation_and_tls_server_name() -> None:
    user = {
        "token": "secret",
        "as": "jane",
        "as-groups": ["devs", "ops"],
        "as-user-extra": {"acme.com/project": ["x"]},
    }
    config = load_kubeconfig(
        kubeconfig({"u": user}, main={"server": PREFIX, "tls-server-name": "kubernetes.default"})
    )
    server = Recorder()
    async with server.client(config) as client:
        assert await client.request("GET", "/version") == {"major": "1", "minor": "36"}
        await client.request("GET", "/readyz", params={"verbose": True})
    first, second = server.requests
    assert str(first.url) == f"{PREFIX}/version"
    assert str(second.url) == f"{PREFIX}/readyz?verbose=true"
    assert first.headers["Authorization"] == "Bearer secret"
    assert first.headers["Impersonate-User"] == "jane"
    assert first.headers.get_list("Impersonate-Group") == ["devs", "ops"]
    assert first.headers["Impersonate-Extra-acme.com%2Fproject"] == "x"
    assert first.extensions["sni_hostname"] == "kubernetes.default"
    assert "secret" not in repr(config)


EXEC_PLUGIN = """
import json, os, sys
from pathlib import Path
calls = Path(sys.argv[1])
calls.write_text(calls.read_text() + os.environ["KUBERNETES_EXEC_INFO"] + "\\n")
run = len(calls.read_text().splitlines())
print(json.dumps({"apiVersion": "client.authentication.k8s.io/v1", "kind": "ExecCredential",
                  "status": {"token": os.environ["TOKEN_PREFIX"] + str(run),
                             "expirationTimestamp": sys.argv[2]}}))
"""


@pytest.mark.parametrize(
    ("expires", "runs"), [("2999-01-01T00:00:00Z", 1), ("2000-01-01T00:00:00Z", 3)]
)
async def test_exec_plugin_tokens_are_cached_until_they_expire(
    tmp_path: Path, expires: str, runs: int
) -> None:
    calls = tmp_path / "calls"
    calls.write_text("")
    (tmp_path / "plugin.py").write_text(EXEC_PLUGIN)
    exec_spec = {
        "apiVersion": "client.authentication.k8s.io/v1",
        "command": sys.executable,
        "args": [str(tmp_path / "plugin.py"), str(calls), expires],
        "env": [{"name": "TOKEN_PREFIX", "value": "tok-"}],
        "provideClusterInfo": True,
        "interactiveMode": "Never",
    }
    path = tmp_path / "kubeconfig"
    path.write_text(
        yaml.safe_dump(kubeconfig({"u": {"exec": exec_spec}}, main={"server": "https://main.test"}))
    )
    config = load_kubeconfig(path)
    server = Recorder()
    async with server.client(config) as client:
        for _ in range(3):
            await client.request("GET", "/version")
    assert len(calls.read_text().splitlines()) == runs
    assert server.authorizations[-1] == f"Bearer tok-{runs}"
    info = json.loads(calls.read_text().splitlines()[0])
    assert info["spec"] == {"interactive": False, "cluster": {"server": "https://main.test"}}


async def test_exec_plugin_runs_again_when_its_token_is_refused(tmp_path: Path) -> None:
    calls = tmp_path / "calls"
    calls.write_text("")
    (tmp_path / "plugin.py").write_text(EXEC_PLUGIN)
    # A relative command with a slash is relative to the kubeconfig's folder, like kubectl.
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "plugin").symlink_to(sys.executable)
    exec_spec = {
        "command": "./bin/plugin",
        "apiVersion": "client.authentication.k8s.io/v1beta1",
        "args": [str(tmp_path / "plugin.py"), str(calls), "2999-01-01T00:00:00Z"],
        "env": [{"name": "TOKEN_PREFIX", "value": "t"}],
    }
    path = tmp_path / "kubeconfig"
    path.write_text(
        yaml.safe_dump(kubeconfig({"u": {"exec": exec_spec}}, main={"server": "https://main.test"}))
    )
    server = Recorder(refuse={"t1"})
    async with server.client(load_kubeconfig(path)) as client:
        await client.request("GET", "/version")
    assert server.authorizations == ["Bearer t1", "Bearer t2"]


async def test_failing_exec_plugin_is_a_config_error(tmp_path: Path) -> None:
    config = load_kubeconfig(
        kubeconfig(
            {
                "u": {
                    "exec": {
                        "command": sys.executable,
                        "args": ["-c", "import sys; sys.exit('no login')"],
                        "apiVersion": "client.authentication.k8s.io/v1",
                    }
                }
            },
            main={"server": "https://m.test"},
        )
    )
    async with Recorder().client(config) as client:
        with pytest.raises(ConfigError, match="exited 1: no login"):
            await client.request("GET", "/version")


async def test_in_cluster_config_rereads_a_rotated_token(tmp_path: Path) -> None:
    cert, _ = key_pair()
    (tmp_path / "token").write_text("old\n")
    (tmp_path / "ca.crt").write_bytes(cert)
    (tmp_path / "namespace").write_text("clusternet-system")
    env = {"KUBERNETES_SERVICE_HOST": "fd00::1", "KUBERNETES_SERVICE_PORT": "443"}
    config = in_cluster_config(tmp_path, env)
    assert (config.server, config.ca_data, config.namespace) == (
        "https://[fd00::1]:443",
        cert,
        "clusternet-system",
    )

    server = Recorder()
    async with server.client(config) as client:
        await client.request("GET", "/version")  # reads "old"
        (tmp_path / "token").write_text("new\n")  # the kubelet rotates it ...
        server.refuse.add("old")  # ... and the old one expires: the 401 makes it read again
        await client.request("GET", "/version")
    assert server.authorizations == ["Bearer old", "Bearer old", "Bearer new"]


def test_not_in_a_cluster(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="KUBERNETES_SERVICE_HOST"):
        in_cluster_config(tmp_path, {})
    with pytest.raises(ConfigError, match="no ServiceAccount token"):
        in_cluster_config(
            tmp_path, {"KUBERNETES_SERVICE_HOST": "10.0.0.1", "KUBERNETES_SERVICE_PORT": "443"}
        )


def test_in_cluster_config_folder_from_the_environment(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("t\n")
    env = {
        "KUBERNETES_SERVICE_HOST": "10.0.0.1",
        "KUBERNETES_SERVICE_PORT": "443",
        "CLUSTERNET_SERVICEACCOUNT_DIR": str(tmp_path),
    }
    with pytest.raises(ConfigError, match=r"ca\.crt"):  # read from the overridden folder
        in_cluster_config(environ=env)
    (tmp_path / "ca.crt").write_bytes(key_pair()[0])
    config = in_cluster_config(environ=env)
    assert (config.token_file, config.namespace) == (tmp_path / "token", "default")
