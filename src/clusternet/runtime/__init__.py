"""The controller runtime: informers, work queues, reconcile workers, leader election, events,
and the component process shell (flags, health and metrics endpoints, logging, signals).

API traffic goes through :mod:`clusternet.kube`; everything here is built on top of it.
"""

from clusternet.runtime.clock import Clock, FakeClock, MonotonicClock
from clusternet.runtime.events import EventRecorder, EventType, object_reference
from clusternet.runtime.informer import (
    DeletedFinalStateUnknown,
    EventHandler,
    Informer,
    InformerKey,
    MultiClusterInformers,
    SharedInformerFactory,
    Store,
    last_state,
    object_key,
)
from clusternet.runtime.leaderelection import LeaderElector
from clusternet.runtime.reconcile import Result, StaleCache, run_workers
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
    "DeletedFinalStateUnknown",
    "EventHandler",
    "EventRecorder",
    "EventType",
    "FakeClock",
    "HealthChecks",
    "Informer",
    "InformerKey",
    "ItemExponentialFailureRateLimiter",
    "LeaderElector",
    "MaxOfRateLimiter",
    "MonotonicClock",
    "MultiClusterInformers",
    "QueueShutDown",
    "RateLimiter",
    "Result",
    "SharedInformerFactory",
    "StaleCache",
    "Store",
    "WorkQueue",
    "default_controller_rate_limiter",
    "last_state",
    "object_key",
    "object_reference",
    "run_component",
    "run_workers",
    "serve_component",
]
