from prometheus_client import CollectorRegistry

from clusternet.runtime.apimetrics import APIRequestMetrics


def test_requests_are_counted_and_timed_per_cluster() -> None:
    registry = CollectorRegistry()
    observe = APIRequestMetrics(registry)
    observe("child1", "list", "configmaps", 200, 0.01)
    observe("child1", "list", "configmaps", 200, 0.3)
    observe("child2", "get", "/readyz", 0, 1.0)
    sample = registry.get_sample_value
    assert (
        sample("rest_client_requests_total", {"cluster": "child1", "verb": "list", "code": "200"})
        == 2
    )
    assert (
        sample("rest_client_requests_total", {"cluster": "child2", "verb": "get", "code": "0"}) == 1
    )
    labels = {"cluster": "child1", "verb": "list", "resource": "configmaps"}
    assert sample("rest_client_request_duration_seconds_count", labels) == 2
    assert sample("rest_client_request_duration_seconds_bucket", {**labels, "le": "0.025"}) == 1
    raw = {"cluster": "child2", "verb": "get", "resource": "raw"}
    assert sample("rest_client_request_duration_seconds_count", raw) == 1


def test_two_observers_share_one_registry() -> None:
    registry = CollectorRegistry()
    APIRequestMetrics(registry)("a", "get", "pods", 200, 0.1)
    APIRequestMetrics(registry)("a", "get", "pods", 200, 0.1)
    assert (
        registry.get_sample_value(
            "rest_client_requests_total", {"cluster": "a", "verb": "get", "code": "200"}
        )
        == 2
    )
