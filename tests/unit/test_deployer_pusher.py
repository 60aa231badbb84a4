"""How the controller-manager reaches a child to push (spec §4.7): through the hub, or
directly when the cluster does not use the socket; and the local environment's agents."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest

from clusternet.controllermanager.pusher import MissingCredentials, child_config
from clusternet.kube import ClusterConfig, Impersonation
from clusternet.local import components
from clusternet.local.environment import LocalEnvironmentError, Options


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


PARENT = ClusterConfig(server="https://parent:6443/", token="admin")
SECRET = {"data": {"token": b64("child-token"), "ca.crt": b64("CA"),
                   "apiserver-advertise-url": b64("https://child:6443")}}  # fmt: skip


def cluster(use_socket: bool | None) -> dict[str, Any]:
    status = {} if use_socket is None else {"useSocket": use_socket}
    return {"spec": {"clusterId": "7c2f4a10-aaaa"}, "status": status}


@pytest.mark.parametrize(
    ("use_socket", "secret"),
    [(True, SECRET), (None, {"data": {"token": SECRET["data"]["token"]}})],
)
def test_through_the_hub(use_socket: bool | None, secret: dict[str, Any]) -> None:
    config = child_config(PARENT, cluster(use_socket), secret)
    assert config.server == (
        "https://parent:6443/apis/proxies.clusternet.io/v1alpha1/sockets/7c2f4a10-aaaa/proxy/direct"
    )
    assert config.token == "admin"  # the controller-manager's own parent credentials
    assert config.impersonate == Impersonation(
        user="clusternet", extra={"clusternet-token": ("child-token",)}
    )


def test_direct_without_the_socket() -> None:
    config = child_config(PARENT, cluster(False), SECRET)
    assert (config.server, config.token, config.ca_data) == ("https://child:6443", "child-token",
                                                             b"CA")  # fmt: skip
    assert config.impersonate is None


@pytest.mark.parametrize("secret", [None, {"data": {}}, {"data": {"token": "%%"}}])
def test_missing_credentials(secret: dict[str, Any] | None) -> None:
    with pytest.raises(MissingCredentials):
        child_config(PARENT, cluster(True), secret)


# ---------------------------------------------------------------- local environment wiring


def test_local_agents_run_recovery_and_the_asked_sync_mode() -> None:
    argv = components.agent_argv("kc", "child1", "https://p", Path("t"), 1, sync_mode="Pull")
    assert "--cluster-sync-mode=Pull" in argv
    gates = next(a for a in argv if a.startswith("--feature-gates="))
    assert "Recovery=true" in gates
    assert "--cluster-sync-mode=Dual" in components.agent_argv("kc", "c", "https://p", Path("t"), 1)


def test_local_sync_modes_are_checked() -> None:
    Options(sync_modes=("Pull", "Dual")).validate()
    with pytest.raises(LocalEnvironmentError, match="Sideways"):
        Options(sync_modes=("Sideways",)).validate()
