"""Fault injection for tests that must break things: restart an apiserver, compact etcd."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from clusternet.local.environment import LocalEnvironmentError, Options
from clusternet.local.testing import start_environment


def test_apiserver_restart_keeps_data_and_compaction_expires_old_versions(tmp_path: Path) -> None:
    with start_environment(tmp_path, Options(children=1)) as clusters:
        env = clusters.env
        parent = env.client("parent")
        created = parent.post(
            "/api/v1/namespaces/default/configmaps",
            {"metadata": {"name": "survivor"}, "data": {"k": "v"}},
        )
        old_version = created["metadata"]["resourceVersion"]
        for i in range(5):
            parent.patch("/api/v1/namespaces/default/configmaps/survivor", {"data": {"i": str(i)}})

        env.restart_process("parent/kube-apiserver")
        assert parent.get("/api/v1/namespaces/default/configmaps/survivor")["data"]["i"] == "4"
        assert env.status()[0]["readyz"] == "ok"

        revision = env.compact_etcd()
        assert revision > int(old_version)
        # A watch from before the compaction ends at once with an ERROR event: 410 Expired.
        events = parent.get(
            f"/api/v1/namespaces/default/configmaps?watch=1&resourceVersion={old_version}"
            "&timeoutSeconds=5"
        )
        event = events if isinstance(events, dict) else json.loads(events.splitlines()[0])
        assert event["type"] == "ERROR"
        assert event["object"]["code"] == 410

        with pytest.raises(LocalEnvironmentError, match="already running"):
            env.start_process("parent/kube-apiserver")
        with pytest.raises(LocalEnvironmentError, match="no process named"):
            env.stop_process("nowhere/kube-apiserver")
