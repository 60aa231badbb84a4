"""Prometheus metric families that are created once per registry.

prometheus_client refuses to register a metric name twice in one registry, while every queue
and controller wants the same families (told apart by a ``name``/``controller`` label).  Tests
inject a fresh ``CollectorRegistry`` so their values start from zero.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Generic, TypeVar

from prometheus_client import CollectorRegistry

_Families = TypeVar("_Families")


class PerRegistry(Generic[_Families]):
    """Builds a set of metric families on first use for each registry and reuses it after."""

    def __init__(self, build: Callable[[CollectorRegistry], _Families]) -> None:
        self._build = build
        self._by_registry: weakref.WeakKeyDictionary[CollectorRegistry, _Families] = (
            weakref.WeakKeyDictionary()
        )

    def __call__(self, registry: CollectorRegistry) -> _Families:
        families = self._by_registry.get(registry)
        if families is None:
            families = self._by_registry[registry] = self._build(registry)
        return families
