"""Prometheus metrics of API traffic, fed by :class:`clusternet.kube.RequestObserver` calls.

Named like client-go's ``rest_client_*`` families so that dashboards written for Kubernetes
controllers work; labelled by cluster, because one process talks to many.
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram

from clusternet.runtime.metrics import PerRegistry


@dataclass(frozen=True)
class _Families:
    latency: Histogram
    requests: Counter


def _build(registry: CollectorRegistry) -> _Families:
    return _Families(
        latency=Histogram(
            "rest_client_request_duration_seconds",
            "API request latency (for a watch: the time to its response headers).",
            ["cluster", "verb", "resource"],
            buckets=(0.005, 0.025, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0, 60.0),
            registry=registry,
        ),
        requests=Counter(
            "rest_client_requests",
            "API requests by HTTP status code (0: no answer, e.g. the cluster is unreachable).",
            ["cluster", "verb", "code"],
            registry=registry,
        ),
    )


_families = PerRegistry(_build)


class APIRequestMetrics:
    """A ``RequestObserver`` for ``KubeClient(observer=...)``."""

    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self._families = _families(registry)

    def __call__(self, cluster: str, verb: str, resource: str, code: int, seconds: float) -> None:
        # Raw paths (proxy requests) would make the label unbounded: keep only their kind.
        if resource.startswith("/"):
            resource = "raw"
        self._families.latency.labels(cluster, verb, resource).observe(seconds)
        self._families.requests.labels(cluster, verb, str(code)).inc()
