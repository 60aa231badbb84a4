"""Clusternet API types (pydantic models) and the CRDs generated from them.

Every kind served through a CRD is listed in :data:`ALL_KINDS`; ``python -m
clusternet.apis.crdgen`` writes one CRD per entry to ``manifests/crds``.
"""

from __future__ import annotations

from clusternet.apis.apps import v1alpha1 as apps_v1alpha1
from clusternet.apis.clusters import v1beta1 as clusters_v1beta1
from clusternet.apis.meta import KubeObject
from clusternet.apis.multicluster import v1alpha1 as multicluster_v1alpha1

ALL_KINDS: tuple[type[KubeObject], ...] = (
    *clusters_v1beta1.KINDS,
    *apps_v1alpha1.KINDS,
    *multicluster_v1alpha1.KINDS,
)

__all__ = ["ALL_KINDS", "KubeObject", "apps_v1alpha1", "clusters_v1beta1", "multicluster_v1alpha1"]
