"""Which requests of kubectl go to the shadow API, and where (spec §6.1, pkg/wrappers/clientgo)."""

from __future__ import annotations

import pytest

from clusternet.cli.plugin.rewrite import rewrite

MIRRORED = frozenset(
    {"namespaces", "deployments", "deployments/scale", "services", "foos", "events", "configmaps"}
)


@pytest.mark.parametrize(
    ("requested", "sent"),
    [
        # core and named groups of mirrored resources: prefix swapped, sub-path kept
        ("/api/v1/namespaces", "/apis/shadow/v1alpha1/namespaces"),
        ("/api/v1/namespaces/baz", "/apis/shadow/v1alpha1/namespaces/baz"),
        (
            "/api/v1/namespaces/baz/services/web",
            "/apis/shadow/v1alpha1/namespaces/baz/services/web",
        ),
        (
            "/apis/apps/v1/namespaces/baz/deployments/web/scale",
            "/apis/shadow/v1alpha1/namespaces/baz/deployments/web/scale",
        ),
        (
            "/apis/samplecontroller.k8s.io/v1alpha1/namespaces/default/foos",
            "/apis/shadow/v1alpha1/namespaces/default/foos",
        ),
        ("/apis/apps/v1/deployments", "/apis/shadow/v1alpha1/deployments"),  # all namespaces
        ("/apis/events.k8s.io/v1/events", "/apis/shadow/v1alpha1/events"),  # flattened by plural
        # query strings survive untouched
        (
            "/apis/apps/v1/namespaces/baz/deployments?labelSelector=app%3Dweb&limit=500",
            "/apis/shadow/v1alpha1/namespaces/baz/deployments?labelSelector=app%3Dweb&limit=500",
        ),
        (
            "/api/v1/namespaces/baz/configmaps?watch=true&resourceVersion=7",
            "/apis/shadow/v1alpha1/namespaces/baz/configmaps?watch=true&resourceVersion=7",
        ),
        # a Namespace's own subresource is the namespaces resource, not a resource "status"
        ("/api/v1/namespaces/baz/status", "/apis/shadow/v1alpha1/namespaces/baz/status"),
        # the legacy /watch/ prefix
        (
            "/api/v1/watch/namespaces/baz/services",
            "/apis/shadow/v1alpha1/watch/namespaces/baz/services",
        ),
        # Clusternet's own groups and the shadow group itself stay on the parent
        (
            "/apis/clusters.clusternet.io/v1beta1/namespaces/c/managedclusters",
            "/apis/clusters.clusternet.io/v1beta1/namespaces/c/managedclusters",
        ),
        (
            "/apis/apps.clusternet.io/v1alpha1/namespaces/default/deployments",
            "/apis/apps.clusternet.io/v1alpha1/namespaces/default/deployments",
        ),
        (
            "/apis/proxies.clusternet.io/v1alpha1/sockets/abc/proxy/direct/api/v1/namespaces",
            "/apis/proxies.clusternet.io/v1alpha1/sockets/abc/proxy/direct/api/v1/namespaces",
        ),
        (
            "/apis/shadow/v1alpha1/namespaces/baz/deployments",
            "/apis/shadow/v1alpha1/namespaces/baz/deployments",
        ),
        # resources the shadow API does not mirror go to the parent as is
        ("/api/v1/nodes", "/api/v1/nodes"),
        ("/api/v1/namespaces/baz/pods/web-1/log", "/api/v1/namespaces/baz/pods/web-1/log"),
        (
            "/apis/apiregistration.k8s.io/v1/apiservices",
            "/apis/apiregistration.k8s.io/v1/apiservices",
        ),
        # discovery and non-resource paths stay on the parent, so kubectl maps kinds as usual
        ("/api", "/api"),
        ("/api/v1", "/api/v1"),
        ("/apis", "/apis"),
        ("/apis/apps", "/apis/apps"),
        ("/apis/apps/v1", "/apis/apps/v1"),
        ("/apis/apps/v1?timeout=32s", "/apis/apps/v1?timeout=32s"),
        ("/version", "/version"),
        ("/openapi/v3/apis/apps/v1", "/openapi/v3/apis/apps/v1"),
    ],
)
def test_rewrite(requested: str, sent: str) -> None:
    assert rewrite(requested, MIRRORED) == sent


def test_nothing_is_rewritten_when_nothing_is_mirrored() -> None:
    assert rewrite("/apis/apps/v1/namespaces/baz/deployments", frozenset()) == (
        "/apis/apps/v1/namespaces/baz/deployments"
    )
