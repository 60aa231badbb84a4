"""Subgroup selection (spec §5.2 step 5, ``spec.schedulingBySubGroup``).

Not an extension point of its own: it picks, for every subscriber in order, its best
``subGroupStrategy.minClusters`` clusters from the scored list.
"""

from __future__ import annotations

from collections.abc import Sequence

from clusternet.apis.apps.v1alpha1 import Subscription
from clusternet.scheduler.framework import ClusterInfo
from clusternet.scheduler.selectors import compile_selector


def select_by_subgroup(
    sub: Subscription, ranked: Sequence[ClusterInfo]
) -> tuple[list[str], list[str]]:
    """The selected cluster keys (best first per subscriber), and the problems found.

    A subscriber with fewer matching clusters than ``minClusters`` gets all of them, as
    upstream.  A cluster matching two subscribers is bound once (upstream bound it twice,
    which yields two Bases for one namespace).  A subscriber without ``subGroupStrategy`` is
    a spec error, reported rather than guessed.
    """
    selected: list[str] = []
    seen: set[str] = set()
    problems: list[str] = []
    for index, subscriber in enumerate(sub.spec.subscribers):
        strategy = subscriber.sub_group_strategy
        if strategy is None or strategy.min_clusters is None:
            problems.append(
                f"subscriber {index} has no subGroupStrategy.minClusters, which "
                "schedulingBySubGroup requires"
            )
            continue
        matches = compile_selector(subscriber.cluster_affinity)
        taken = 0
        for cluster in ranked:
            if taken >= strategy.min_clusters:
                break
            if cluster.key in seen or not matches(cluster.labels):
                continue
            seen.add(cluster.key)
            selected.append(cluster.key)
            taken += 1
    return selected, problems
