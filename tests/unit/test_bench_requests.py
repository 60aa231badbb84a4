"""The request mix of the parent API server, from two readings of its /metrics."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root: bench/

from bench import requests

# As kube-apiserver 1.36 writes it (the HELP line shortened).
EXPOSITION = """\
# HELP apiserver_request_total [STABLE] Counter of apiserver requests.
# TYPE apiserver_request_total counter
apiserver_request_total{code="201",component="apiserver",dry_run="",group="",resource="events",scope="resource",subresource="",verb="POST",version="v1"} %(events)d
apiserver_request_total{code="200",component="apiserver",dry_run="",group="apps.clusternet.io",resource="subscriptions",scope="resource",subresource="status",verb="PATCH",version="v1alpha1"} %(status)d
apiserver_request_total{code="409",component="apiserver",dry_run="",group="apps.clusternet.io",resource="subscriptions",scope="resource",subresource="",verb="PUT",version="v1alpha1"} %(conflicts)d
apiserver_request_total{code="201",component="apiserver",dry_run="All",group="",resource="configmaps",scope="resource",subresource="",verb="POST",version="v1"} 7
apiserver_request_total{code="200",component="",dry_run="",group="",resource="",scope="",subresource="/healthz",verb="GET",version=""} 99
# HELP apiserver_request_duration_seconds x
# TYPE apiserver_request_duration_seconds histogram
apiserver_request_duration_seconds_count{verb="POST"} 5
"""  # noqa: E501


def reading(events: int, status: int, conflicts: int) -> str:
    return EXPOSITION % {"events": events, "status": status, "conflicts": conflicts}


def test_parse_keys_by_verb_resource_and_code() -> None:
    counts = requests.parse(reading(3, 4, 5))
    assert counts == {
        requests.RequestKind("POST", "events", "201"): 3,
        requests.RequestKind("PATCH", "apps.clusternet.io/subscriptions/status", "200"): 4,
        requests.RequestKind("PUT", "apps.clusternet.io/subscriptions", "409"): 5,
        requests.RequestKind("POST", "configmaps (dry run)", "201"): 7,
    }  # /healthz and other metrics are left out


def test_difference_and_rows_per_subscription() -> None:
    before = requests.parse(reading(10, 0, 5))
    after = requests.parse(reading(30, 10, 5))
    mix = requests.difference(before, after)
    assert mix == {
        requests.RequestKind("POST", "events", "201"): 20,
        requests.RequestKind("PATCH", "apps.clusternet.io/subscriptions/status", "200"): 10,
    }  # unchanged counters are not in the window
    assert requests.rows(mix, per=10, top=1) == [
        ("`POST events 201`", "20", "2.00"),
        ("all others", "10", "1.00"),
        ("**total**", "30", "3.00"),
    ]


def test_a_counter_that_went_back_is_dropped() -> None:
    before = requests.parse(reading(10, 8, 5))
    after = requests.parse(reading(12, 2, 5))  # the API server restarted in between
    assert requests.difference(before, after) == {requests.RequestKind("POST", "events", "201"): 2}
