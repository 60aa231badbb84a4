"""clusternet-controller-manager against a real parent: registration approval, least-privilege
credentials, crash safety and cluster lifecycle.

Each test runs its own controller-manager process (killed in a finally) on one private parent
where `clusternet install` has run.  Requests are created the way an agent creates them: with
a bootstrap token.  Everything waits on watched conditions, never on sleeps.
"""

from __future__ import annotations

import asyncio
import base64
import secrets
import string
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from clusternet.apis import known
from clusternet.apis.install import BOOTSTRAP_GROUP
from clusternet.kube import ClusterConfig, Forbidden, KubeClient, load_kubeconfig
from clusternet.local.environment import Options
from clusternet.local.testing import Clusters, start_environment

CLUSTERS_API = "clusters.clusternet.io/v1beta1"
CRR = "ClusterRegistrationRequest"
TIMEOUT = 60.0
Object = dict[str, Any]


@dataclass
class Parent:
    clusters: Clusters
    kubeconfig: Path  # admin kubeconfig of the parent alone
    config: ClusterConfig
    bootstrap_token: str
    logs: Path

    def admin(self) -> KubeClient:
        return KubeClient(self.config, cluster="parent-admin")

    def bootstrap(self) -> KubeClient:
        """The identity an agent registers with."""
        config = replace(
            self.config, client_cert_data=None, client_key_data=None, token=self.bootstrap_token
        )
        return KubeClient(config, cluster="parent-bootstrap")

    def as_cluster(self, status: Object) -> KubeClient:
        """The identity the approver handed to a registered cluster."""
        config = ClusterConfig(
            server=self.config.server,
            ca_data=base64.b64decode(status["caCertificate"]),
            token=base64.b64decode(status["token"]).decode(),
        )
        return KubeClient(config, cluster="parent-as-cluster")


def _random(length: int) -> str:
    return "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(length))


@pytest.fixture(scope="module")
def parent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Parent]:
    run_dir = tmp_path_factory.mktemp("controllermanager")
    with start_environment(run_dir, Options(children=1, clusternet=False)) as clusters:
        installed = subprocess.run(
            [
                sys.executable,
                "-m",
                "clusternet.cli.main",
                "install",
                "--kubeconfig",
                str(clusters.kubeconfig),
                "--context",
                "parent",
            ],
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        assert installed.returncode == 0, installed.stderr
        token_id, token_secret = _random(6), _random(16)
        clusters.kubectl("parent").apply(
            f"""
apiVersion: v1
kind: Secret
type: bootstrap.kubernetes.io/token
metadata: {{name: bootstrap-token-{token_id}, namespace: kube-system}}
stringData:
  token-id: {token_id}
  token-secret: {token_secret}
  usage-bootstrap-authentication: "true"
  auth-extra-groups: {BOOTSTRAP_GROUP}
"""
        )
        kubeconfig = Path(clusters.state.cluster("parent").kubeconfig)
        yield Parent(
            clusters,
            kubeconfig,
            load_kubeconfig(kubeconfig),
            f"{token_id}.{token_secret}",
            run_dir / "logs",
        )


@contextmanager
def controller_manager(parent: Parent, *args: str) -> Iterator[subprocess.Popen[bytes]]:
    parent.logs.mkdir(exist_ok=True)
    log = parent.logs / f"controller-manager-{uuid.uuid4().hex[:6]}.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "clusternet.controllermanager",
                f"--kubeconfig={parent.kubeconfig}",
                "--secure-port=0",
                "--leader-elect=false",
                *args,
            ],
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
        try:
            yield process
        finally:
            process.kill()
            process.wait()
            print(f"--- {log}\n{log.read_text()}")  # shown by pytest when the test fails


def registration_request(cluster_id: str, cluster_name: str, name: str | None = None) -> Object:
    """A request as clusternet-agent creates it (spec §3.2)."""
    return {
        "apiVersion": CLUSTERS_API,
        "kind": CRR,
        "metadata": {
            "name": name or known.registration_request_name(cluster_id),
            "labels": {
                known.CLUSTER_REGISTERED_BY_LABEL: known.CLUSTERNET_AGENT_NAME,
                known.CLUSTER_ID_LABEL: cluster_id,
                known.CLUSTER_NAME_LABEL: cluster_name,
            },
        },
        "spec": {
            "clusterId": cluster_id,
            "clusterName": cluster_name,
            "clusterType": "EdgeCluster",
            "syncMode": "Dual",
            "ClusterLabels": {"region": "west"},
        },
    }


async def register(parent: Parent, cluster_name: str, name: str | None = None) -> str:
    cluster_id = str(uuid.uuid4())
    request = registration_request(cluster_id, cluster_name, name)
    async with parent.bootstrap() as bootstrap:
        await bootstrap.create(request)
    return str(request["metadata"]["name"])


async def first_match(
    client: KubeClient,
    api_version: str,
    kind: str,
    predicate: Callable[[Object], bool],
    *,
    namespace: str | None = None,
    label_selector: str | None = None,
    field_selector: str | None = None,
) -> Object:
    """The first object (existing, or coming) that satisfies ``predicate``: list, then watch."""
    async with asyncio.timeout(TIMEOUT):
        query = {
            "namespace": namespace,
            "label_selector": label_selector,
            "field_selector": field_selector,
        }
        listed = await client.list(api_version, kind, **query)
        for item in listed["items"]:
            if predicate(item):
                return dict(item)
        version = listed["metadata"]["resourceVersion"]
        async with client.watch(api_version, kind, resource_version=version, **query) as events:
            async for event in events:
                if event.type in ("ADDED", "MODIFIED") and predicate(event.object):
                    return event.object
    raise AssertionError(f"the watch of {kind} ended without a match")


def decided(request: Object) -> bool:
    status = request.get("status") or {}
    return status.get("result") in ("Denied", "Failed") or bool(status.get("token"))


async def decision(client: KubeClient, name: str) -> Object:
    request = await first_match(
        client, CLUSTERS_API, CRR, decided, field_selector=f"metadata.name={name}"
    )
    return dict(request["status"])


async def event(client: KubeClient, name: str, reason: str) -> Object:
    return await first_match(
        client,
        "v1",
        "Event",
        lambda e: e["reason"] == reason,
        namespace="default",
        field_selector=f"involvedObject.name={name}",
    )


async def owned(client: KubeClient, kind: str, cluster_id: str) -> list[Object]:
    api_version = CLUSTERS_API if kind == "ManagedCluster" else "v1"
    listed = await client.list(
        api_version, kind, label_selector=f"{known.CLUSTER_ID_LABEL}={cluster_id}"
    )
    return list(listed["items"])


def cluster_id_of(name: str) -> str:
    return name.removeprefix("clusternet-")


def cli(parent: Parent, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "clusternet.cli.main",
            *args,
            "--kubeconfig",
            str(parent.kubeconfig),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def can_i(parent: Parent, account: str, *args: str) -> str:
    kubectl = parent.clusters.kubectl("parent")
    return kubectl("auth", "can-i", *args, f"--as={account}", check=False).stdout.strip()


async def test_registration_is_approved_with_least_privilege_credentials(parent: Parent) -> None:
    with controller_manager(parent):
        edge_a = await register(parent, "edge-a")
        edge_b = await register(parent, "edge-b")
        async with parent.admin() as admin:
            status_a = await decision(admin, edge_a)
            status_b = await decision(admin, edge_b)
            approved = await event(admin, edge_a, "Approved")

            assert status_a["result"] == "Approved"
            namespace_a, namespace_b = (
                status_a["dedicatedNamespace"],
                status_b["dedicatedNamespace"],
            )
            assert namespace_a.startswith("clusternet-")
            assert namespace_a != namespace_b
            assert status_a["managedClusterName"] == "edge-a"
            assert base64.b64decode(status_a["caCertificate"]) == parent.config.ca_data
            assert namespace_a in approved["message"]
            for kind in ("Namespace", "ManagedCluster", "ServiceAccount", "Secret"):
                assert len(await owned(admin, kind, cluster_id_of(edge_a))) == 1, kind
            cluster = (await owned(admin, "ManagedCluster", cluster_id_of(edge_a)))[0]
            assert cluster["metadata"]["labels"]["region"] == "west"
            assert cluster["spec"]["syncMode"] == "Dual"
            account = (await owned(admin, "ServiceAccount", cluster_id_of(edge_a)))[0]
            secret_b = (await owned(admin, "Secret", cluster_id_of(edge_b)))[0]["metadata"]

        async with parent.as_cluster(status_a) as edge:
            await edge.list("v1", "ConfigMap", namespace=namespace_a)
            await edge.list("v1", "Secret", namespace=namespace_a)
            await edge.get(CLUSTERS_API, CRR, edge_a)
            reported = await edge.patch(
                CLUSTERS_API,
                "ManagedCluster",
                "edge-a",
                {"status": {"k8sVersion": "v1.30.2", "heartbeatFrequencySeconds": 180}},
                namespace=namespace_a,
                subresource="status",
            )
            assert reported["status"]["k8sVersion"] == "v1.30.2"
            bootstrap_secret = f"bootstrap-token-{parent.bootstrap_token.split('.')[0]}"
            for forbidden in (
                edge.get("v1", "Secret", bootstrap_secret, namespace="kube-system"),
                edge.get("v1", "Secret", secret_b["name"], namespace=namespace_b),
                edge.list("v1", "Secret", namespace="kube-system"),
                edge.list("v1", "Secret", namespace=namespace_b),
                edge.list("v1", "Secret"),
                edge.get(CLUSTERS_API, CRR, edge_b),
                edge.list(CLUSTERS_API, CRR),
            ):
                with pytest.raises(Forbidden):
                    await forbidden

    identity = f"system:serviceaccount:{namespace_a}:{account['metadata']['name']}"
    assert can_i(parent, identity, "create", "configmaps", "-n", namespace_a) == "yes"
    assert can_i(parent, identity, "get", "secrets", "-n", "kube-system") == "no"
    assert can_i(parent, identity, "get", "secrets", "-n", namespace_b) == "no"
    assert can_i(parent, identity, "get", "secrets", "--all-namespaces") == "no"
    assert (
        can_i(parent, identity, "create", "clusterregistrationrequests.clusters.clusternet.io")
        == "yes"
    )


async def test_a_request_whose_name_and_cluster_id_disagree_is_denied(parent: Parent) -> None:
    impostor = f"clusternet-{uuid.uuid4()}"
    with controller_manager(parent):
        await register(parent, "impostor", name=impostor)
        async with parent.admin() as admin:
            status = await decision(admin, impostor)
            denied = await event(admin, impostor, "Denied")

    assert status["result"] == "Denied"
    assert "does not match spec.clusterId" in status["errorMessage"]
    assert not {"token", "caCertificate", "dedicatedNamespace"} & set(status)
    assert denied["type"] == "Warning"
    assert denied["message"] == status["errorMessage"]


async def test_without_auto_approval_an_operator_decides(parent: Parent) -> None:
    with controller_manager(parent, "--cluster-auto-approve=false"):
        accepted = await register(parent, "accepted")
        rejected = await register(parent, "rejected")
        async with parent.admin() as admin:
            for name in (accepted, rejected):
                await event(admin, name, "WaitingForApproval")
                assert "result" not in (
                    (await admin.get(CLUSTERS_API, CRR, name)).get("status") or {}
                )

            # The operator decides with the CLI (kubectl clusternet approve|deny).
            assert cli(parent, "deny", rejected, "--reason", "not this one").returncode == 0
            approved = cli(parent, "approve", accepted)
            assert approved.stdout.strip() == f"clusterregistrationrequest/{accepted} approved"
            again = cli(parent, "approve", accepted)
            assert again.returncode == 1
            assert "is already Approved: nothing to do" in again.stderr
            missing = cli(parent, "approve", "clusternet-nope")
            assert "no ClusterRegistrationRequest named 'clusternet-nope'" in missing.stderr
            status = await decision(admin, accepted)

            assert status["result"] == "Approved"
            assert status["token"]
            assert status["dedicatedNamespace"]
            left_alone = (await admin.get(CLUSTERS_API, CRR, rejected))["status"]
            assert left_alone == {"result": "Denied", "errorMessage": "not this one"}
            assert await owned(admin, "Namespace", cluster_id_of(rejected)) == []


async def test_a_crash_mid_registration_neither_loses_nor_duplicates_anything(
    parent: Parent,
) -> None:
    with controller_manager(parent) as first:
        names = [await register(parent, f"crash-{i}") for i in range(3)]
        ids = [cluster_id_of(name) for name in names]
        async with parent.admin() as admin:
            # Kill as soon as the first ServiceAccount exists: provisioning is under way.
            await first_match(
                admin,
                "v1",
                "ServiceAccount",
                lambda _: True,
                label_selector=f"{known.CLUSTER_ID_LABEL} in ({','.join(ids)})",
            )
        first.kill()

    with controller_manager(parent):
        async with parent.admin() as admin:
            for name in names:
                assert (await decision(admin, name))["result"] == "Approved"
            for cluster_id in ids:
                for kind in ("Namespace", "ManagedCluster", "ServiceAccount", "Secret"):
                    assert len(await owned(admin, kind, cluster_id)) == 1, (kind, cluster_id)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _ready(reason: str = "ManagedClusterReady") -> Object:
    return {
        "type": "Ready",
        "status": "True",
        "reason": reason,
        "message": "managed cluster is ready.",
        "lastTransitionTime": _now(),
    }


def _taints(cluster: Object) -> list[Object]:
    return list((cluster.get("spec") or {}).get("taints") or [])


async def test_a_silent_cluster_turns_unknown_and_unschedulable_until_it_reports(
    parent: Parent,
) -> None:
    other_taint = {"key": "example.com/maintenance", "value": "planned", "effect": "NoSchedule"}
    with controller_manager(parent):
        name = await register(parent, "heartbeat")
        async with parent.admin() as admin:
            status = await decision(admin, name)
            namespace, cluster_name = status["dedicatedNamespace"], status["managedClusterName"]

            async def patch(body: Object, subresource: str | None = None) -> None:
                await admin.patch(
                    CLUSTERS_API,
                    "ManagedCluster",
                    cluster_name,
                    body,
                    namespace=namespace,
                    subresource=subresource,
                )

            async def cluster_where(predicate: Callable[[Object], bool]) -> Object:
                return await first_match(
                    admin,
                    CLUSTERS_API,
                    "ManagedCluster",
                    predicate,
                    namespace=namespace,
                    field_selector=f"metadata.name={cluster_name}",
                )

            await patch({"spec": {"taints": [other_taint]}})
            heartbeat = {
                "heartbeatFrequencySeconds": 1,
                "healthz": True,
                "livez": True,
                "readyz": True,
            }
            await patch(
                {"status": {**heartbeat, "lastObservedTime": _now(), "conditions": [_ready()]}},
                "status",
            )

            def unknown(cluster: Object) -> bool:
                conditions = (cluster.get("status") or {}).get("conditions") or []
                return any(
                    c["type"] == "Ready" and c["reason"] == "ClusterStatusUnknown"
                    for c in conditions
                ) and any(t["key"] == known.TAINT_CLUSTER_UNSCHEDULABLE for t in _taints(cluster))

            silent = await cluster_where(unknown)

            ready = next(c for c in silent["status"]["conditions"] if c["type"] == "Ready")
            assert (ready["status"], ready["message"]) == (
                "Unknown",
                "Clusternet agent stopped posting cluster status.",
            )
            assert (silent["status"]["healthz"], silent["status"]["readyz"]) == (False, False)
            assert _taints(silent) == [
                other_taint,
                {
                    "key": known.TAINT_CLUSTER_UNSCHEDULABLE,
                    "value": "ClusterStatusUnknown",
                    "effect": "NoSchedule",
                },
            ]

            await patch(
                {
                    "status": {
                        **heartbeat,
                        "heartbeatFrequencySeconds": 600,
                        "lastObservedTime": _now(),
                        "conditions": [_ready()],
                    }
                },
                "status",
            )
            back = await cluster_where(
                lambda c: all(t["key"] != known.TAINT_CLUSTER_UNSCHEDULABLE for t in _taints(c))
            )

            assert _taints(back) == [other_taint]
            assert (
                next(c for c in back["status"]["conditions"] if c["type"] == "Ready")["status"]
                == "True"
            )


async def test_it_leads_under_a_lease_and_releases_it_on_sigterm(parent: Parent) -> None:
    lease = known.CLUSTERNET_CONTROLLER_MANAGER_NAME
    with controller_manager(parent, "--leader-elect=true") as process:
        async with parent.admin() as admin:
            held = await first_match(
                admin,
                "coordination.k8s.io/v1",
                "Lease",
                lambda lease: bool(lease["spec"].get("holderIdentity")),
                namespace=known.SYSTEM_NAMESPACE,
                field_selector=f"metadata.name={lease}",
            )
            name = await register(parent, "leader")
            assert (await decision(admin, name))["result"] == "Approved"

            process.terminate()
            assert await asyncio.to_thread(process.wait, TIMEOUT) == 0
            released = await admin.get(
                "coordination.k8s.io/v1", "Lease", lease, namespace=known.SYSTEM_NAMESPACE
            )

    assert held["spec"]["holderIdentity"]
    assert not released["spec"].get("holderIdentity")
