"""The generated CRDs against a real kube-apiserver: they install, upstream-shaped objects are
accepted, invalid ones are rejected with readable messages, and kubectl shows them nicely."""

from __future__ import annotations

import re
import subprocess

import pytest

from clusternet.apis import ALL_KINDS, known
from clusternet.apis.crdgen import DEFAULT_OUTPUT
from clusternet.local.testing import Clusters, Kubectl

CLUSTER_ID = "7c2f4a10-1111-4e2b-9a00-0c0ffee00001"


@pytest.fixture(scope="module")
def parent(clusters: Clusters) -> Kubectl:
    kubectl = clusters.kubectl("parent")
    # Server-side apply: client-side apply would store each CRD again in an annotation,
    # which overflows the 256 KiB annotation limit for large schemas.
    kubectl("apply", "--server-side", "--force-conflicts", "-f", str(DEFAULT_OUTPUT))
    names = [kind.crd.name for kind in ALL_KINDS]
    kubectl("wait", "--for=condition=Established", "--timeout=60s", *[f"crd/{n}" for n in names])
    return kubectl


def _namespaced(manifest: str, namespace: str) -> str:
    return manifest.replace("NAMESPACE", namespace)


def _try_apply(kubectl: Kubectl, manifest: str) -> subprocess.CompletedProcess[str]:
    return kubectl("apply", "-f", "-", input=manifest, check=False)


VALID_NAMESPACED = """
apiVersion: apps.clusternet.io/v1alpha1
kind: Subscription
metadata: {name: web, namespace: NAMESPACE}
spec:
  schedulingStrategy: Dividing
  dividingScheduling: {type: Static}
  priority: 10
  subscribers:
    - clusterAffinity: {matchLabels: {region: west}}
      weight: 1
    - clusterAffinity: {matchLabels: {region: east}}
      weight: 3
  clusterTolerations:
    - {key: clusters.clusternet.io/initialization, operator: Exists, effect: NoSchedule}
  feeds:
    - {apiVersion: v1, kind: Namespace, name: shop}
    - {apiVersion: apps/v1, kind: Deployment, namespace: shop, name: frontend}
---
apiVersion: clusters.clusternet.io/v1beta1
kind: ManagedCluster
metadata:
  name: edge-a
  namespace: NAMESPACE
  labels: {clusters.clusternet.io/cluster-name: edge-a, region: west}
spec:
  clusterId: 7c2f4a10-1111-4e2b-9a00-0c0ffee00001
  clusterType: EdgeCluster
  syncMode: Dual
  taints:
    - {key: clusters.clusternet.io/unschedulable, value: ClusterStatusUnknown, effect: NoSchedule}
---
apiVersion: apps.clusternet.io/v1alpha1
kind: Base
metadata: {name: web-k3p9z, namespace: NAMESPACE}
spec:
  feeds: [{apiVersion: apps/v1, kind: Deployment, namespace: shop, name: frontend}]
---
apiVersion: apps.clusternet.io/v1alpha1
kind: Description
metadata: {name: web-k3p9z-generic, namespace: NAMESPACE}
spec:
  deployer: Generic
  raw: [eyJhcGlWZXJzaW9uIjoiYXBwcy92MSIsImtpbmQiOiJEZXBsb3ltZW50Ii4uLn0=]
---
apiVersion: apps.clusternet.io/v1alpha1
kind: Localization
metadata: {name: frontend-west-tweaks, namespace: NAMESPACE}
spec:
  priority: 600
  overridePolicy: ApplyNow
  feed: {apiVersion: apps/v1, kind: Deployment, namespace: shop, name: frontend}
  overrides:
    - name: smaller
      type: JSONPatch
      value: '[{"op":"replace","path":"/spec/replicas","value":1}]'
    - {name: tag, type: MergePatch, value: 'metadata: {labels: {site: west}}'}
---
apiVersion: apps.clusternet.io/v1alpha1
kind: HelmChart
metadata: {name: redis, namespace: NAMESPACE}
spec:
  {repo: https://charts.example.org/stable, chart: redis, version: 17.3.2, targetNamespace: cache}
---
apiVersion: apps.clusternet.io/v1alpha1
kind: HelmRelease
metadata: {name: web-k3p9z-helm-default-redis, namespace: NAMESPACE}
spec:
  repo: https://charts.example.org/stable
  chart: redis
  version: 17.3.2
  targetNamespace: cache
  releaseName: redis
  overrides: eyJyZXBsaWNhIjp7InJlcGxpY2FDb3VudCI6MX19
---
apiVersion: apps.clusternet.io/v1alpha1
kind: Manifest
metadata: {name: deployments.shop.frontend, namespace: NAMESPACE}
template:
  apiVersion: apps/v1
  kind: Deployment
  metadata: {name: frontend, namespace: shop}
  spec: {replicas: 3, template: {spec: {containers: [{name: web, image: nginx}]}}}
---
apiVersion: apps.clusternet.io/v1alpha1
kind: FeedInventory
metadata: {name: web, namespace: NAMESPACE}
spec:
  feeds:
    - {apiVersion: v1, kind: Namespace, name: shop}
    - apiVersion: apps/v1
      kind: Deployment
      namespace: shop
      name: frontend
      desiredReplicas: 8
      replicaJsonPath: /spec/replicas
      replicaRequirements: {resources: {requests: {cpu: 500m, memory: 128Mi}, limits: {cpu: 500m}}}
---
apiVersion: multicluster.x-k8s.io/v1alpha1
kind: ServiceExport
metadata:
  {name: nginx-svc, namespace: NAMESPACE, labels: {apps.clusternet.io/subs.namespace: default}}
---
apiVersion: multicluster.x-k8s.io/v1alpha1
kind: ServiceImport
metadata: {name: my-svc, namespace: NAMESPACE}
spec:
  type: ClusterSetIP
  ips: [42.42.42.42]
  ports: [{port: 80, protocol: TCP}]
"""

VALID_CLUSTER_SCOPED = f"""
apiVersion: clusters.clusternet.io/v1beta1
kind: ClusterRegistrationRequest
metadata:
  name: clusternet-{CLUSTER_ID}
  labels:
    clusters.clusternet.io/cluster-id: {CLUSTER_ID}
    clusters.clusternet.io/cluster-name: edge-a
spec: {{clusterId: {CLUSTER_ID}, clusterName: edge-a, clusterType: EdgeCluster, syncMode: Dual,
        ClusterLabels: {{region: west}}}}
---
apiVersion: apps.clusternet.io/v1alpha1
kind: Globalization
metadata: {{name: mysql-common-NAMESPACE}}
spec:
  priority: 300
  clusterAffinity:
    matchExpressions: [{{key: clusters.clusternet.io/cluster-name, operator: In, values: [west-1]}}]
  feed:
    {{apiVersion: apps.clusternet.io/v1alpha1, kind: HelmChart, namespace: default, name: mysql}}
  overrides:
    - {{name: no-pvc, type: Helm, value: '{{"primary":{{"persistence":{{"enabled":false}}}}}}'}}
    - {{name: pin-version, type: Helm, overrideChart: true, value: 'spec: {{version: 9.1.0}}'}}
"""


def test_every_kind_is_established_and_listed_in_the_clusternet_category(parent: Kubectl) -> None:
    resources = parent("api-resources", "--categories=clusternet", "-o", "name").stdout.split()
    clusternet_kinds = [k for k in ALL_KINDS if "clusternet" in k.crd.categories]
    assert sorted(resources) == sorted(k.crd.name for k in clusternet_kinds)
    assert parent("get", "clusternet", "-A").returncode == 0


def test_upstream_examples_are_accepted_with_defaults(parent: Kubectl, namespace: str) -> None:
    parent.apply(_namespaced(VALID_NAMESPACED, namespace))
    cluster_scoped = _namespaced(VALID_CLUSTER_SCOPED, namespace)
    try:
        parent.apply(cluster_scoped)
        subscription = parent.json("get", "subs", "web", "-n", namespace)["spec"]
        assert subscription["schedulerName"] == "default"
        assert subscription["preemptionPolicy"] == "PreemptLowerPriority"
        chart = parent.json("get", "charts", "redis", "-n", namespace)["spec"]
        assert (chart["createNamespace"], chart["timeoutSeconds"]) == (True, 300)
        crr = parent.json("get", "clsrr", f"clusternet-{CLUSTER_ID}")
        assert crr["spec"]["ClusterLabels"] == {"region": "west"}
        glob = parent.json("get", "glob", f"mysql-common-{namespace}")["spec"]
        assert glob["overridePolicy"] == "ApplyLater"
        template = parent.json("get", "manifests", "deployments.shop.frontend", "-n", namespace)
        assert template["template"]["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx"
    finally:
        # The session's controller-manager approves the request: once it has, what it made
        # for edge-a (a dedicated namespace with a ManagedCluster that no agent runs, and the
        # cluster's RBAC) goes too, or later tests would see a NotReady cluster that is not
        # one of the environment's children.
        parent("wait", f"clsrr/clusternet-{CLUSTER_ID}", "--timeout=60s",
               "--for=jsonpath={.status.result}=Approved", check=False)  # fmt: skip
        parent("delete", "-f", "-", "--wait=false", input=cluster_scoped, check=False)
        owned = f"{known.OBJECT_CREATED_BY_LABEL}={known.CLUSTERNET_AGENT_NAME},{known.CLUSTER_ID_LABEL}={CLUSTER_ID}"  # noqa: E501
        parent("delete", "namespaces", "-l", owned, "--timeout=60s", check=False)
        parent("delete", "clusterrolebindings,clusterroles", known.cluster_role_name(CLUSTER_ID),
               "--ignore-not-found", check=False)  # fmt: skip


@pytest.mark.parametrize(
    ("manifest", "message"),
    [
        pytest.param(
            """
apiVersion: apps.clusternet.io/v1alpha1
kind: Subscription
metadata: {name: no-subscribers, namespace: NAMESPACE}
spec: {feeds: [{apiVersion: v1, kind: Namespace, name: shop}]}
""",
            "spec.subscribers: Required value",
            id="subscription-without-subscribers",
        ),
        pytest.param(
            """
apiVersion: apps.clusternet.io/v1alpha1
kind: Subscription
metadata: {name: empty-feeds, namespace: NAMESPACE}
spec: {subscribers: [{clusterAffinity: {}}], feeds: []}
""",
            "spec.feeds: Invalid value: 0: spec.feeds in body should have at least 1 items",
            id="subscription-with-empty-feeds",
        ),
        pytest.param(
            """
apiVersion: apps.clusternet.io/v1alpha1
kind: Subscription
metadata: {name: bad-strategy, namespace: NAMESPACE}
spec:
  schedulingStrategy: Spread
  subscribers: [{clusterAffinity: {}}]
  feeds: [{apiVersion: v1, kind: Namespace, name: shop}]
""",
            'spec.schedulingStrategy: Unsupported value: "Spread": supported values: '
            '"Replication", "Dividing"',
            id="subscription-bad-enum",
        ),
        pytest.param(
            """
apiVersion: apps.clusternet.io/v1alpha1
kind: Localization
metadata: {name: too-important, namespace: NAMESPACE}
spec:
  priority: 5000
  feed: {apiVersion: v1, kind: ConfigMap, namespace: shop, name: cfg}
""",
            "spec.priority: Invalid value: 5000: spec.priority in body should be less than or "
            "equal to 1000",
            id="localization-priority-5000",
        ),
        pytest.param(
            """
apiVersion: apps.clusternet.io/v1alpha1
kind: Localization
metadata: {name: field-patch-without-path, namespace: NAMESPACE}
spec:
  feed: {apiVersion: v1, kind: ConfigMap, namespace: shop, name: cfg}
  overrides: [{type: FieldMergePatch, value: 'a: b'}]
""",
            "fieldPath is required for FieldJSONPatch and FieldMergePatch overrides",
            id="field-patch-without-field-path",
        ),
        pytest.param(
            """
apiVersion: clusters.clusternet.io/v1beta1
kind: ClusterRegistrationRequest
metadata: {name: clusternet-not-a-uuid-NAMESPACE}
spec: {clusterId: x7c2f4a10-1111-4e2b-9a00-0c0ffee00001-not-a-uuid}
""",
            "spec.clusterId in body should match",
            id="registration-request-bad-uuid",
        ),
        pytest.param(
            """
apiVersion: apps.clusternet.io/v1alpha1
kind: HelmChart
metadata: {name: bad-repo, namespace: NAMESPACE}
spec: {repo: ftp://charts.example.org, chart: redis, targetNamespace: cache}
""",
            "spec.repo in body should match",
            id="helm-chart-bad-repo",
        ),
        pytest.param(
            """
apiVersion: multicluster.x-k8s.io/v1alpha1
kind: ServiceImport
metadata: {name: bad-type, namespace: NAMESPACE}
spec: {type: LoadBalancer, ports: [{port: 80}]}
""",
            'spec.type: Unsupported value: "LoadBalancer"',
            id="service-import-bad-type",
        ),
    ],
)
def test_invalid_objects_are_rejected_with_readable_messages(
    parent: Kubectl, namespace: str, manifest: str, message: str
) -> None:
    result = _try_apply(parent, _namespaced(manifest, namespace))
    assert result.returncode != 0, result.stdout
    assert message in result.stderr


def test_cluster_init_base_name_is_immutable_once_set(parent: Kubectl, namespace: str) -> None:
    cluster = f"""
apiVersion: clusters.clusternet.io/v1beta1
kind: ManagedCluster
metadata: {{name: init, namespace: {namespace}}}
spec: {{clusterId: {CLUSTER_ID}, syncMode: Pull, clusterInitBaseName: BASE}}
"""
    parent.apply(cluster.replace("BASE", "init-base"))
    changed = _try_apply(parent, cluster.replace("BASE", "other-base"))
    assert "clusterInitBaseName is immutable" in changed.stderr
    removed = _try_apply(parent, cluster.replace(", clusterInitBaseName: BASE", ""))
    assert "clusterInitBaseName cannot be removed once set" in removed.stderr


def test_printer_columns(parent: Kubectl, namespace: str) -> None:
    parent.apply(_namespaced(VALID_NAMESPACED, namespace))
    header = parent("get", "subs", "-n", namespace).stdout.splitlines()[0]
    assert header.split() == ["NAME", "AGE"]
    charts = parent("get", "charts", "-n", namespace).stdout.splitlines()
    assert re.split(r"\s{2,}", charts[0].strip()) == [
        "NAME",
        "CHART",
        "VERSION",
        "REPO",
        "STATUS",
        "AGE",
    ]
    assert charts[1].split()[:4] == [
        "redis",
        "redis",
        "17.3.2",
        "https://charts.example.org/stable",
    ]
    wide = parent("get", "mcls", "-n", namespace, "-o", "wide").stdout.splitlines()[0]
    assert re.split(r"\s{2,}", wide.strip()) == [
        "NAME", "CLUSTER ID", "CLUSTER TYPE", "SYNC MODE", "KUBERNETES", "STATUS", "AGE",
        "AGENT VERSION",
    ]  # fmt: skip
