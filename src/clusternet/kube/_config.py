"""Where a cluster is and how to authenticate to it, loaded from kubeconfigs or a Pod.

Everything a connection needs is read into memory when the config is loaded (certificate
and key data, CA bundle), so that a config is a plain value that can be kept per cluster,
copied with :func:`dataclasses.replace` (e.g. to impersonate, or to point ``server`` at a
child cluster through a proxy path) and turned into a client without touching files again.
The exceptions are the ones that must be re-read while running: a rotated token file, and
exec plugins.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
# Where to find the mounted ServiceAccount instead (tests simulate a Pod's filesystem).
SERVICE_ACCOUNT_DIR_ENV = "CLUSTERNET_SERVICEACCOUNT_DIR"


class ConfigError(ValueError):
    """A kubeconfig or in-cluster environment that cannot be used, and why."""


@dataclass(frozen=True)
class ExecPlugin:
    """A client-go credential plugin (``users[].user.exec``) that prints an ExecCredential."""

    command: str
    args: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    api_version: str = "client.authentication.k8s.io/v1"
    # With provideClusterInfo the plugin gets the cluster (server, CA, and the kubeconfig's
    # "client.authentication.k8s.io/exec" cluster extension) in KUBERNETES_EXEC_INFO.
    provide_cluster_info: bool = False
    cluster_extension: Any = None


@dataclass(frozen=True)
class Impersonation:
    """Act as another user: sent as Impersonate-* headers, authorised by the real user's RBAC."""

    user: str
    uid: str | None = None
    groups: tuple[str, ...] = ()
    extra: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class ClusterConfig:
    """How to reach one API server.

    ``server`` may carry a path prefix, e.g.
    ``https://parent/apis/proxies.clusternet.io/v1alpha1/sockets/<id>/proxy/direct``: every
    request path is appended to it.
    """

    server: str
    ca_data: bytes | None = None
    insecure_skip_tls_verify: bool = False
    tls_server_name: str | None = None
    client_cert_data: bytes | None = None
    client_key_data: bytes | None = None
    token: str | None = None
    # Re-read while running (projected ServiceAccount tokens rotate); wins over ``token``.
    token_file: Path | None = None
    exec_plugin: ExecPlugin | None = None
    impersonate: Impersonation | None = None
    namespace: str = "default"

    def __post_init__(self) -> None:
        if not self.server.startswith(("https://", "http://")):
            raise ConfigError(f"server {self.server!r} is not an http(s) URL")
        if (self.client_cert_data is None) != (self.client_key_data is None):
            raise ConfigError("a client certificate needs both the certificate and its key")

    def __repr__(self) -> str:
        # Keep credentials out of logs and tracebacks.
        return f"ClusterConfig(server={self.server!r}, namespace={self.namespace!r})"


def load_kubeconfig(
    source: str | os.PathLike[str] | Mapping[str, Any], context: str | None = None
) -> ClusterConfig:
    """The config of ``context`` (default: current-context) of a kubeconfig file or dict.

    Relative file references are resolved against the kubeconfig's folder, as kubectl does.
    """
    if isinstance(source, Mapping):
        data, base = source, Path.cwd()
    else:
        path = Path(source).expanduser()
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except OSError as err:
            raise ConfigError(f"cannot read kubeconfig {path}: {err}") from err
        except yaml.YAMLError as err:
            raise ConfigError(f"kubeconfig {path} is not YAML: {err}") from err
        base = path.parent
    if not isinstance(data, Mapping):
        raise ConfigError("a kubeconfig must be a mapping")

    name = context or data.get("current-context")
    if not name:
        raise ConfigError("no context given and the kubeconfig has no current-context")
    ctx = _named(data, "contexts", "context", name)
    cluster = _named(data, "clusters", "cluster", ctx.get("cluster"))
    user = _named(data, "users", "user", ctx["user"]) if ctx.get("user") else {}

    # Refuse what would otherwise be silently ignored and fail later as 401 or timeouts.
    for section, key in (
        (user, "auth-provider"), (user, "username"), (cluster, "proxy-url"),
    ):  # fmt: skip
        if section.get(key):
            raise ConfigError(f"context {name!r}: {key} is not supported")

    return ClusterConfig(
        server=_required(cluster, "server", f"cluster of context {name!r}"),
        ca_data=_data_or_file(cluster, "certificate-authority", base),
        insecure_skip_tls_verify=bool(cluster.get("insecure-skip-tls-verify", False)),
        tls_server_name=cluster.get("tls-server-name"),
        client_cert_data=_data_or_file(user, "client-certificate", base),
        client_key_data=_data_or_file(user, "client-key", base),
        token=user.get("token"),
        token_file=_resolve(base, user["tokenFile"]) if user.get("tokenFile") else None,
        exec_plugin=_exec_plugin(user.get("exec"), cluster, base),
        impersonate=_impersonation(user),
        namespace=ctx.get("namespace") or "default",
    )


def in_cluster_config(
    service_account_dir: Path | None = None, environ: Mapping[str, str] = os.environ
) -> ClusterConfig:
    """The config of a Pod: the kubernetes Service from env, the mounted ServiceAccount.

    The token is not read here but by the client, again while running: bound ServiceAccount
    tokens expire (hourly) and the kubelet rotates the file.  The folder is
    ``$CLUSTERNET_SERVICEACCOUNT_DIR`` when set, else the kubelet's mount point.
    """
    if service_account_dir is None:
        override = environ.get(SERVICE_ACCOUNT_DIR_ENV)
        service_account_dir = Path(override) if override else SERVICE_ACCOUNT_DIR
    host, port = environ.get("KUBERNETES_SERVICE_HOST"), environ.get("KUBERNETES_SERVICE_PORT")
    if not host or not port:
        raise ConfigError("not in a cluster: KUBERNETES_SERVICE_HOST/PORT are not set")
    token_file = service_account_dir / "token"
    if not token_file.is_file():
        raise ConfigError(f"not in a cluster: no ServiceAccount token at {token_file}")
    namespace_file = service_account_dir / "namespace"
    host = f"[{host}]" if ":" in host else host  # IPv6 service IP
    return ClusterConfig(
        server=f"https://{host}:{port}",
        ca_data=_read(service_account_dir / "ca.crt"),
        token_file=token_file,
        namespace=namespace_file.read_text().strip() if namespace_file.is_file() else "default",
    )


def _named(data: Mapping[str, Any], section: str, key: str, name: Any) -> Mapping[str, Any]:
    entries = data.get(section) or []
    for entry in entries:
        if isinstance(entry, Mapping) and entry.get("name") == name:
            value = entry.get(key) or {}
            if not isinstance(value, Mapping):
                raise ConfigError(f"{section} entry {name!r} has no {key} mapping")
            return value
    known = ", ".join(str(e.get("name")) for e in entries if isinstance(e, Mapping)) or "none"
    raise ConfigError(f"kubeconfig has no {key} {name!r} (known: {known})")


def _required(section: Mapping[str, Any], key: str, where: str) -> str:
    value = section.get(key)
    if not value or not isinstance(value, str):
        raise ConfigError(f"{where} has no {key}")
    return value


def _resolve(base: Path, file: str) -> Path:
    return (base / Path(file).expanduser()).absolute()


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as err:
        raise ConfigError(f"cannot read {path}: {err}") from err


def _data_or_file(section: Mapping[str, Any], key: str, base: Path) -> bytes | None:
    """``<key>-data`` (base64, wins as in client-go) or the file named by ``<key>``."""
    if data := section.get(f"{key}-data"):
        try:
            return base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError) as err:
            raise ConfigError(f"{key}-data is not base64: {err}") from err
    if file := section.get(key):
        return _read(_resolve(base, file))
    return None


def _exec_plugin(
    spec: Mapping[str, Any] | None, cluster: Mapping[str, Any], base: Path
) -> ExecPlugin | None:
    if not spec:
        return None
    command = _required(spec, "command", "exec plugin")
    # client-go: a relative command with a path separator is relative to the kubeconfig.
    if os.sep in command and not Path(command).is_absolute():
        command = str(_resolve(base, command))
    extension = next(
        (
            e.get("extension")
            for e in cluster.get("extensions") or ()
            if e.get("name") == "client.authentication.k8s.io/exec"
        ),
        None,
    )
    return ExecPlugin(
        command=command,
        args=tuple(str(a) for a in spec.get("args") or ()),
        env={str(e["name"]): str(e["value"]) for e in spec.get("env") or ()},
        api_version=spec.get("apiVersion") or "client.authentication.k8s.io/v1",
        provide_cluster_info=bool(spec.get("provideClusterInfo", False)),
        cluster_extension=extension,
    )


def _impersonation(user: Mapping[str, Any]) -> Impersonation | None:
    if not user.get("as"):
        return None
    extra = user.get("as-user-extra") or {}
    return Impersonation(
        user=user["as"],
        uid=user.get("as-uid"),
        groups=tuple(user.get("as-groups") or ()),
        extra={k: tuple(v) for k, v in extra.items()},
    )
