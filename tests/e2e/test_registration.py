"""`clusternet local up` registers every child: the acceptance of cluster registration."""

from __future__ import annotations

from pathlib import Path

from clusternet.local.environment import Options
from clusternet.local.testing import start_environment


def test_three_children_register_and_report_ready(tmp_path: Path) -> None:
    options = Options(children=3, nodes_per_child=2, node_cpu="4", node_memory="8Gi")
    with start_environment(tmp_path, options) as clusters:
        parent = clusters.kubectl("parent")
        requests = parent.json("get", "clusterregistrationrequests")["items"]
        assert len(requests) == 3
        assert {r["status"]["result"] for r in requests} == {"Approved"}

        managed = parent.json("get", "managedclusters", "-A")["items"]
        assert sorted(m["metadata"]["name"] for m in managed) == ["child1", "child2", "child3"]
        namespaces = {m["metadata"]["namespace"] for m in managed}
        assert len(namespaces) == 3  # a dedicated namespace each
        by_id = {r["spec"]["clusterId"]: r for r in requests}
        for cluster in managed:
            status = cluster["status"]
            request = by_id[cluster["spec"]["clusterId"]]
            assert request["status"]["dedicatedNamespace"] == cluster["metadata"]["namespace"]
            ready = next(c for c in status["conditions"] if c["type"] == "Ready")
            assert ready["status"] == "True"
            assert status["k8sVersion"] == "v1.36.3"
            assert status["allocatable"]["cpu"] == "8"  # 2 kwok nodes x 4
            assert status["allocatable"]["memory"] == "16Gi"
            assert status["nodeStatistics"]["readyNodes"] == 2
            assert cluster["spec"]["syncMode"] == "Dual"

        table = parent("get", "mcls", "-A").stdout.splitlines()
        header = table[0].split()
        for column in ("CLUSTER", "ID", "SYNC", "MODE", "KUBERNETES", "STATUS"):
            assert column in header
        assert all("v1.36.3" in row and "True" in row for row in table[1:])
