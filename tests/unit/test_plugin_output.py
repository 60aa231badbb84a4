"""Output of the plugin's own commands: tables, ages, errors, the via-hub kubeconfig."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from clusternet.cli.plugin.clusters import clusters_table
from clusternet.cli.plugin.kubeconfig import via_hub_kubeconfig
from clusternet.cli.plugin.output import api_error_message, fail, human_duration, table
from clusternet.kube import ApiError, ConfigError, NotFound

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def test_table_pads_columns_like_kubectl() -> None:
    assert table(["NAME", "READY"], [["a", "True"], ["longer-name", "False"]]) == (
        "NAME          READY\na             True\nlonger-name   False\n"
    )


@pytest.mark.parametrize(
    ("age", "shown"),
    [
        (timedelta(seconds=-5), "<invalid>"),
        (timedelta(seconds=-1), "0s"),
        (timedelta(seconds=59), "59s"),
        (timedelta(seconds=119), "119s"),
        (timedelta(minutes=3, seconds=5), "3m5s"),
        (timedelta(minutes=4), "4m"),
        (timedelta(minutes=95), "95m"),
        (timedelta(hours=3, minutes=20), "3h20m"),
        (timedelta(hours=20), "20h"),
        (timedelta(days=3, hours=4), "3d4h"),
        (timedelta(days=40), "40d"),
        (timedelta(days=365 * 3 + 10), "3y10d"),
        (timedelta(days=365 * 9), "9y"),
    ],
)
def test_human_duration_matches_kubectl(age: timedelta, shown: str) -> None:
    assert human_duration(age) == shown


def test_server_errors_read_like_kubectl(capsys: pytest.CaptureFixture[str]) -> None:
    error = NotFound(404, {"reason": "NotFound", "message": 'deployments.apps "web" not found'})
    assert (
        api_error_message(error) == 'Error from server (NotFound): deployments.apps "web" not found'
    )
    assert fail(error).exit_code == 1
    assert capsys.readouterr().err.strip() == (
        'Error from server (NotFound): deployments.apps "web" not found'
    )
    assert api_error_message(ApiError(500, {"message": "boom"})) == (
        "Error from server (Unknown): boom"
    )


def test_client_errors_read_like_kubectl(capsys: pytest.CaptureFixture[str]) -> None:
    assert fail(ConfigError("context 'x' not found")).exit_code == 1
    assert capsys.readouterr().err.strip() == "error: context 'x' not found"


def managed_cluster(name: str, namespace: str, ready: str | None) -> dict[str, object]:
    status: dict[str, object] = {}
    if ready is not None:
        status = {
            "k8sVersion": "v1.36.0",
            "capacity": {"cpu": "8", "memory": "16Gi"},
            "conditions": [{"type": "Ready", "status": ready}],
        }
    return {
        "metadata": {
            "name": name,
            "namespace": namespace,
            "creationTimestamp": (NOW - timedelta(minutes=4)).isoformat().replace("+00:00", "Z"),
        },
        "spec": {"clusterId": f"id-{name}", "syncMode": "Pull"},
        "status": status,
    }


def test_clusters_table_sorted_with_unknowns_before_the_first_report() -> None:
    shown = clusters_table(
        [
            managed_cluster("child2", "clusternet-b", None),
            managed_cluster("child1", "clusternet-a", "True"),
        ],
        now=NOW,
    ).splitlines()
    assert shown[0].split() == [
        "NAMESPACE", "NAME", "CLUSTER", "ID", "SYNC", "MODE", "KUBERNETES", "READY", "CPU",
        "MEMORY", "AGE",
    ]  # fmt: skip
    assert shown[1].split() == [
        "clusternet-a", "child1", "id-child1", "Pull", "v1.36.0", "True", "8", "16Gi", "4m",
    ]  # fmt: skip
    assert shown[2].split() == [
        "clusternet-b", "child2", "id-child2", "Pull", "<unknown>", "Unknown", "<none>", "<none>",
        "4m",
    ]  # fmt: skip


PARENT_KUBECONFIG = {
    "clusters": [
        {
            "name": "p",
            "cluster": {"server": "https://127.0.0.1:6443/", "certificate-authority": "ca.crt"},
        }
    ],
    "users": [
        {"name": "admin", "user": {"client-certificate-data": "Q0VSVA==", "client-key": "/abs/key"}}
    ],
    "contexts": [{"name": "parent", "context": {"cluster": "p", "user": "admin"}}],
    "current-context": "parent",
}


def test_via_hub_kubeconfig_keeps_parent_credentials_and_impersonates_clusternet() -> None:
    config = via_hub_kubeconfig(
        PARENT_KUBECONFIG, Path("/home/me/.kube"), None, "child1", "a b", "tok"
    )
    assert config["current-context"] == "child1-via-hub"
    cluster = config["clusters"][0]["cluster"]
    assert cluster == {
        "server": "https://127.0.0.1:6443/apis/proxies.clusternet.io/v1alpha1/sockets/a%20b/proxy/direct",
        "certificate-authority": "/home/me/.kube/ca.crt",  # relative files made absolute
    }
    assert config["users"][0]["user"] == {
        "client-certificate-data": "Q0VSVA==",
        "client-key": "/abs/key",
        "as": "clusternet",
        "as-user-extra": {"clusternet-token": ["tok"]},
    }
    assert PARENT_KUBECONFIG["users"][0]["user"].get("as") is None  # the input is left alone


def test_via_hub_kubeconfig_errors() -> None:
    with pytest.raises(ConfigError, match="no context 'other'"):
        via_hub_kubeconfig(PARENT_KUBECONFIG, Path("/"), "other", "child1", "id", "tok")
    impersonating = {
        **PARENT_KUBECONFIG,
        "users": [{"name": "admin", "user": {"token": "t", "as": "alice"}}],
    }
    with pytest.raises(ConfigError, match="already impersonates 'alice'"):
        via_hub_kubeconfig(impersonating, Path("/"), None, "child1", "id", "tok")
