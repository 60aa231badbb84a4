"""The controller runtime: work queues, reconcile workers, and the component process shell.

Nothing here talks to Kubernetes: the client layer (:mod:`clusternet.kube`) builds on it.
"""

from clusternet.runtime.clock import Clock, FakeClock, MonotonicClock
from clusternet.runtime.reconcile import Result, run_workers
from clusternet.runtime.server import Component, HealthChecks, run_component, serve_component
from clusternet.runtime.workqueue import (
    BucketRateLimiter,
    ItemExponentialFailureRateLimiter,
    MaxOfRateLimiter,
    QueueShutDown,
    RateLimiter,
    WorkQueue,
    default_controller_rate_limiter,
)

__all__ = [
    "BucketRateLimiter",
    "Clock",
    "Component",
    "FakeClock",
    "HealthChecks",
    "ItemExponentialFailureRateLimiter",
    "MaxOfRateLimiter",
    "MonotonicClock",
    "QueueShutDown",
    "RateLimiter",
    "Result",
    "WorkQueue",
    "default_controller_rate_limiter",
    "run_component",
    "run_workers",
    "serve_component",
]
