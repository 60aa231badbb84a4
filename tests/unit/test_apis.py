"""The API models: upstream JSON names, defaults and validation."""

from __future__ import annotations

import base64
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from clusternet.apis.apps.v1alpha1 import (
    DividingScheduling,
    Feed,
    HelmChart,
    Localization,
    PreemptionPolicy,
    ReplicaDividingType,
    SchedulingStrategy,
    Subscription,
)
from clusternet.apis.clusters.v1beta1 import (
    ClusterRegistrationRequest,
    ClusterSyncMode,
    ManagedCluster,
)
from clusternet.apis.meta import KubeObject
from clusternet.apis.multicluster.v1alpha1 import ServiceImport

CLUSTER_ID = "7c2f4a10-1111-4e2b-9a00-0c0ffee00001"
FEEDS = [{"apiVersion": "v1", "kind": "Namespace", "name": "shop"}]
SUBSCRIBERS = [{"clusterAffinity": {"matchLabels": {"region": "west"}}}]
LOCAL_FEED = {"apiVersion": "v1", "kind": "ConfigMap", "namespace": "shop", "name": "cfg"}


def _subscription(**spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "web"},
        "spec": {"subscribers": SUBSCRIBERS, "feeds": FEEDS, **spec},
    }


def test_subscription_defaults_match_upstream() -> None:
    sub = Subscription.model_validate(_subscription())
    assert (sub.api_version, sub.kind) == ("apps.clusternet.io/v1alpha1", "Subscription")
    assert sub.spec.scheduler_name == "default"
    assert sub.spec.scheduling_strategy is SchedulingStrategy.REPLICATION
    assert sub.spec.preemption_policy is PreemptionPolicy.PREEMPT_LOWER_PRIORITY
    assert DividingScheduling().type is ReplicaDividingType.STATIC


@pytest.mark.parametrize(
    ("kind", "document", "field", "expected"),
    [
        (Localization, {"spec": {"feed": LOCAL_FEED}}, "priority", 500),
        (Localization, {"spec": {"feed": LOCAL_FEED}}, "override_policy", "ApplyLater"),
        (
            HelmChart,
            {"spec": {"repo": "oci://r.example/charts", "chart": "c", "targetNamespace": "t"}},
            "timeout_seconds",
            300,
        ),
        (
            HelmChart,
            {"spec": {"repo": "https://r.example", "chart": "c", "targetNamespace": "t"}},
            "create_namespace",
            True,
        ),
        (ClusterRegistrationRequest, {"spec": {"clusterId": CLUSTER_ID}}, "sync_mode", "Pull"),
    ],
)
def test_defaults(
    kind: type[KubeObject], document: dict[str, Any], field: str, expected: Any
) -> None:
    assert getattr(kind.model_validate(document).spec, field) == expected  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("kind", "document", "error"),
    [
        (Subscription, _subscription(subscribers=[]), "at least 1 item"),
        (Subscription, _subscription(feeds=[]), "at least 1 item"),
        (Subscription, {"spec": {"feeds": FEEDS}}, "subscribers\n  Field required"),
        (Subscription, _subscription(schedulingStrategy="Spread"), "'Replication' or 'Dividing'"),
        (Subscription, _subscription(preemptionPolicy="Never"), "PreemptNever"),
        (Subscription, _subscription(subscriber=SUBSCRIBERS), "Extra inputs are not permitted"),
        (
            Subscription,
            _subscription(subscribers=[{"clusterAffinity": {}, "weight": -1}]),
            "greater than or equal to 0",
        ),
        (
            Localization,
            {"spec": {"feed": LOCAL_FEED, "priority": 5000}},
            "less than or equal to 1000",
        ),
        (
            Localization,
            {"spec": {"feed": LOCAL_FEED, "priority": -1}},
            "greater than or equal to 0",
        ),
        (
            Localization,
            {"spec": {"feed": LOCAL_FEED, "overrides": [{"type": "Kustomize", "value": "x"}]}},
            "'Helm', 'JSONPatch', 'MergePatch', 'FieldJSONPatch' or 'FieldMergePatch'",
        ),
        (ClusterRegistrationRequest, {"spec": {"clusterId": "not-a-uuid"}}, "should match pattern"),
        # Upstream's unanchored pattern would accept a UUID buried in other text.
        (
            ClusterRegistrationRequest,
            {"spec": {"clusterId": f"x{CLUSTER_ID}"}},
            "should match pattern",
        ),
        (
            ClusterRegistrationRequest,
            {"spec": {"clusterId": CLUSTER_ID, "clusterName": "a" * 31}},
            "at most 30 characters",
        ),
        (
            ClusterRegistrationRequest,
            {"spec": {"clusterId": CLUSTER_ID, "clusterName": "Edge_A"}},
            "should match pattern",
        ),
        (ManagedCluster, {"spec": {"clusterId": CLUSTER_ID}}, "syncMode\n  Field required"),
        (
            ManagedCluster,
            {
                "spec": {"clusterId": CLUSTER_ID, "syncMode": "Pull"},
                "status": {"capacity": {"cpu": "lots"}},
            },
            "not a Kubernetes quantity",
        ),
        (
            HelmChart,
            {"spec": {"repo": "ftp://r.example", "chart": "c", "targetNamespace": "t"}},
            "should match pattern",
        ),
        (
            ServiceImport,
            {"spec": {"type": "ClusterSetIP", "ports": [], "ips": ["1.1.1.1", "2.2.2.2"]}},
            "at most 1 item",
        ),
        (
            ServiceImport,
            {"kind": "ServiceExport", "spec": {"type": "Headless", "ports": []}},
            "expected",
        ),
    ],
)
def test_invalid_documents_are_rejected(
    kind: type[KubeObject], document: dict[str, Any], error: str
) -> None:
    with pytest.raises(ValidationError) as failure:
        kind.model_validate(document)
    assert error in str(failure.value)


# Shapes from the upstream documentation (spec §2); they must survive a round trip unchanged.
ROUND_TRIPS = [
    (
        Subscription,
        """
apiVersion: apps.clusternet.io/v1alpha1
kind: Subscription
metadata: {name: web, namespace: team-a}
spec:
  schedulerName: default
  schedulingStrategy: Dividing
  preemptionPolicy: PreemptLowerPriority
  dividingScheduling: {type: Static}
  priority: 10
  subscribers:
    - {clusterAffinity: {matchLabels: {region: west}}, weight: 1}
  clusterTolerations:
    - {key: clusters.clusternet.io/initialization, operator: Exists, effect: NoSchedule}
  feeds:
    - {apiVersion: apps/v1, kind: Deployment, namespace: shop, name: frontend}
status:
  bindingClusters: [clusternet-aaaaa/east-1, clusternet-bbbbb/west-1]
  replicas: {"apps/v1/Deployment/shop/frontend": [6, 2], "v1/Namespace/shop": []}
  specHash: 1234567890
  desiredReleases: 2
""",
    ),
    (
        ManagedCluster,
        f"""
apiVersion: clusters.clusternet.io/v1beta1
kind: ManagedCluster
metadata: {{name: edge-a, namespace: clusternet-q7x2k}}
spec:
  clusterId: {CLUSTER_ID}
  clusterType: EdgeCluster
  syncMode: Dual
  taints: [{{key: clusters.clusternet.io/unschedulable, effect: NoSchedule}}]
status:
  k8sVersion: v1.30.2
  apiserverURL: https://10.96.0.1:443
  clusterCIDR: 10.244.0.0/16
  kubeQPS: 5.5
  readyz: true
  heartbeatFrequencySeconds: 180
  lastObservedTime: "2025-01-01T10:00:00Z"
  allocatable: {{cpu: "8", memory: 16Gi, nvidia.com/gpu: 2}}
  nodeStatistics: {{readyNodes: 3}}
  conditions:
    - {{type: Ready, status: "True", reason: ManagedClusterReady, message: ready,
       lastTransitionTime: "2025-01-01T10:00:00Z"}}
""",
    ),
    (
        ClusterRegistrationRequest,
        f"""
apiVersion: clusters.clusternet.io/v1beta1
kind: ClusterRegistrationRequest
metadata: {{name: clusternet-{CLUSTER_ID}}}
spec:
  {{clusterId: {CLUSTER_ID}, clusterName: edge-a, syncMode: Dual, ClusterLabels: {{region: west}}}}
status: {{result: Approved, token: dG9rZW4=, caCertificate: Y2E=}}
""",
    ),
]


@pytest.mark.parametrize(
    ("kind", "document"), ROUND_TRIPS, ids=lambda v: getattr(v, "__name__", "")
)
def test_upstream_documents_round_trip(kind: type[KubeObject], document: str) -> None:
    data = yaml.safe_load(document)
    assert kind.model_validate(data).to_dict() == data


def test_bytes_are_base64_on_the_wire_and_raw_in_python() -> None:
    pem = b"-----BEGIN CERTIFICATE-----\n" + b"A" * 300
    crr = ClusterRegistrationRequest.model_validate(
        {
            "spec": {"clusterId": CLUSTER_ID},
            "status": {"caCertificate": base64.b64encode(pem).decode()},
        }
    )
    assert crr.status.ca_certificate == pem
    wire = crr.to_dict()["status"]["caCertificate"]
    assert "\n" not in wire  # one line, as Go's encoding/json writes []byte
    assert base64.b64decode(wire) == pem


def test_python_names_and_enums_build_the_same_object() -> None:
    crr = ClusterRegistrationRequest.model_validate(
        {
            "spec": {
                "cluster_id": CLUSTER_ID,
                "sync_mode": ClusterSyncMode.PUSH,
                "cluster_labels": {},
            }
        }
    )
    assert crr.to_dict()["spec"] == {
        "clusterId": CLUSTER_ID,
        "syncMode": "Push",
        "ClusterLabels": {},
    }


@pytest.mark.parametrize(
    ("feed", "key"),
    [
        (
            {"apiVersion": "apps/v1", "kind": "Deployment", "namespace": "shop", "name": "web"},
            "apps/v1/Deployment/shop/web",
        ),
        ({"apiVersion": "v1", "kind": "Namespace", "name": "shop"}, "v1/Namespace/shop"),
    ],
)
def test_feed_key(feed: dict[str, str], key: str) -> None:
    assert Feed.model_validate(feed).key == key
