"""The heartbeat's time is the report's, not the last collection's."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

from clusternet.agent.registration import Registration
from clusternet.agent.reporter import Observation, StatusReporter
from clusternet.agent.status import Probes, ReportSettings
from clusternet.kube import ClusterConfig

T0 = datetime(2026, 11, 28, 12, 0, 0, tzinfo=UTC)
SETTINGS = ReportSettings(
    apiserver_url="https://127.0.0.1:6443",
    agent_version="v0",
    kube_qps=5,
    kube_burst=10,
    heartbeat_frequency_seconds=3,
    app_pusher=True,
    use_socket=True,
    predictor_address=None,
    predictor_direct_access=False,
)


class FakeParent:
    def __init__(self) -> None:
        self.cluster: dict[str, Any] = {
            "metadata": {"name": "child2", "namespace": "clusternet-x", "labels": {}},
            "status": {},
        }
        self.written: list[dict[str, Any]] = []

    async def get(self, *_: Any, **__: Any) -> dict[str, Any]:
        return copy.deepcopy(self.cluster)

    async def update_status(self, obj: dict[str, Any]) -> dict[str, Any]:
        self.written.append(obj["status"])
        return obj


class FakeStore:
    def list(self) -> list[dict[str, Any]]:
        return []


class FakeNodes:
    store = FakeStore()


async def test_last_observed_time_is_the_time_of_the_write() -> None:
    parent = FakeParent()
    clock = [T0 + timedelta(seconds=15)]
    reporter = StatusReporter(
        child=None,  # type: ignore[arg-type]
        parent=parent,  # type: ignore[arg-type]
        registration=Registration(
            "id", "child2", "clusternet-x", ClusterConfig(server="https://p")
        ),
        nodes=FakeNodes(),  # type: ignore[arg-type]
        settings=SETTINGS,
        collect_frequency=20,
        update_frequency=3,
        label_prefixes=(),
        label_threshold=0.8,
        environ={},
        clock=lambda: clock[0],
    )
    reporter._cluster_name = "child2"
    # collected at T0 (collect period 20 s), reported 15 s later (update period 3 s)
    reporter._observation = Observation({}, Probes(True, True, True), T0)
    await reporter._write_status()
    assert parent.written[-1]["lastObservedTime"] == "2026-11-28T12:00:15Z"
    clock[0] += timedelta(seconds=3)
    await reporter._write_status()
    assert parent.written[-1]["lastObservedTime"] == "2026-11-28T12:00:18Z"
