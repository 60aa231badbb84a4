"""Every Clusternet process serves /healthz, /readyz and /metrics with its key series."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest

from clusternet.local.testing import Clusters


def endpoint(clusters: Clusters, process: str) -> str:
    state = json.loads((Path(clusters.state.run_dir) / "state.json").read_text())
    argv = next(p["argv"] for p in reversed(state["processes"]) if p["name"] == process)
    port = next(a.split("=", 1)[1] for a in argv if a.startswith("--secure-port="))
    return f"http://127.0.0.1:{port}"


def fetch(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.status, response.read().decode()


@pytest.mark.parametrize(
    ("process", "series"),
    [
        (
            "parent/clusternet-controller-manager",
            [
                "workqueue_depth",
                "clusternet_reconcile_duration_seconds",
                "rest_client_request_duration_seconds",
                "clusternet_informer_events_total",
            ],
        ),
        (
            "child1/clusternet-agent",
            ["rest_client_request_duration_seconds", "clusternet_informer_events_total"],
        ),
    ],
)
def test_health_and_metrics(clusters: Clusters, process: str, series: list[str]) -> None:
    base = endpoint(clusters, process)
    assert fetch(f"{base}/healthz") == (200, "ok")
    assert fetch(f"{base}/readyz") == (200, "ok")
    status, verbose = fetch(f"{base}/readyz?verbose")
    assert status == 200
    assert "readyz check passed" in verbose
    _, metrics = fetch(f"{base}/metrics")
    for name in series:
        assert f"\n{name}" in metrics, name
    # The traffic of this very process shows up, by cluster.
    assert 'rest_client_requests_total{cluster="' in metrics
