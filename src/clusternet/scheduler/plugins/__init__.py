"""In-tree plugins and the default profile (spec §5.3)."""

from __future__ import annotations

from collections.abc import Mapping

from clusternet.scheduler.framework import ExtensionPoint, PluginRef, Registry
from clusternet.scheduler.plugins import (
    assigners,
    clusteraffinity,
    clusterready,
    defaultbinder,
    predictor,
    tainttoleration,
)


def in_tree_registry() -> Registry:
    """A new registry with every in-tree plugin; add out-of-tree ones with ``register``."""
    return Registry(
        {
            clusteraffinity.NAME: clusteraffinity.new,
            clusterready.NAME: clusterready.new,
            tainttoleration.NAME: tainttoleration.new,
            predictor.NAME: predictor.new,
            assigners.STATIC: assigners.new_static,
            assigners.DYNAMIC: assigners.new_dynamic,
            defaultbinder.NAME: defaultbinder.new,
        }
    )


DEFAULT_PLUGINS: Mapping[ExtensionPoint, tuple[PluginRef, ...]] = {
    ExtensionPoint.PRE_FILTER: (PluginRef(clusteraffinity.NAME),),
    ExtensionPoint.FILTER: (
        PluginRef(clusteraffinity.NAME),
        PluginRef(clusterready.NAME),
        PluginRef(tainttoleration.NAME),
    ),
    ExtensionPoint.PREDICT: (PluginRef(predictor.NAME),),
    ExtensionPoint.SCORE: (PluginRef(tainttoleration.NAME, weight=3),),
    ExtensionPoint.PRE_ASSIGN: (PluginRef(assigners.DYNAMIC),),
    ExtensionPoint.ASSIGN: (PluginRef(assigners.STATIC), PluginRef(assigners.DYNAMIC)),
    ExtensionPoint.BIND: (PluginRef(defaultbinder.NAME),),
}
"""The default plugin set every profile is merged over."""
