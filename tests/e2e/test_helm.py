"""Issue 10's acceptance: Helm charts distributed to real children with the real helm binary.

A chart repository (tests/charts/demo packaged by ``helm package`` at 0.1.0 and 0.2.0, plus a
chart ``broken`` that cannot render, indexed by ``helm repo index``) is served on 127.0.0.1
behind basic auth; HelmCharts name it with a ``chartPullSecret``.  The session environment's
children are pushed to (Dual with AppPusher) through the hub; one test starts its own
environment whose child pulls.  What lands in a child is read with
``helm --kube-context childN list`` and ``kubectl --context childN``.
"""

from __future__ import annotations

import base64
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from clusternet.apis import known
from clusternet.local.binaries import Toolbox
from clusternet.local.chartrepo import ChartRepository
from clusternet.local.environment import Options
from clusternet.local.testing import Clusters, Kubectl, start_environment, wait_until

CHART = Path(__file__).resolve().parents[1] / "charts" / "demo"
AUTH = ("reader", "s3cret")
TIMEOUT = 120
APPS = "apps.clusternet.io/v1alpha1"
CHILDREN = ("child1", "child2")  # the Subscriptions' subscribers


@pytest.fixture(scope="module")
def helm() -> str:
    found = Toolbox().locate("helm")
    if found is None:
        pytest.skip("helm is not built: run `clusternet local build`")
    return str(found)


@pytest.fixture(scope="module")
def repo(helm: str) -> Iterator[ChartRepository]:
    with ChartRepository(helm, basic_auth=AUTH) as repository:
        repository.add(CHART, version="0.1.0")
        repository.add(CHART, version="0.2.0")
        repository.add(CHART, version="0.1.0", name="broken", values={"fail": True})
        yield repository


def helm_chart(namespace: str, name: str, repo: str, version: str, target: str) -> str:
    return yaml.safe_dump_all(
        [
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": "chart-reader", "namespace": namespace},
                "stringData": {"username": AUTH[0], "password": AUTH[1]},
            },
            {
                "apiVersion": APPS,
                "kind": "HelmChart",
                "metadata": {"name": name, "namespace": namespace},
                "spec": {
                    "repo": repo,
                    "chart": name,
                    "version": version,
                    "targetNamespace": target,
                    "chartPullSecret": {"name": "chart-reader", "namespace": namespace},
                },
            },
        ]
    )


def subscription(namespace: str, name: str, chart: str) -> str:
    return yaml.safe_dump(
        {
            "apiVersion": APPS,
            "kind": "Subscription",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {
                "subscribers": [
                    {
                        "clusterAffinity": {
                            "matchExpressions": [
                                {
                                    "key": known.CLUSTER_NAME_LABEL,
                                    "operator": "In",
                                    "values": list(CHILDREN),
                                }
                            ]
                        }
                    }
                ],
                "feeds": [
                    {"apiVersion": APPS, "kind": "HelmChart", "namespace": namespace,
                     "name": chart}
                ],
            },
        }
    )  # fmt: skip


def subscribed_namespaces(clusters: Clusters) -> dict[str, str]:
    """The subscribed children → their dedicated namespace in the parent."""
    return {c: n for c, n in clusters.dedicated_namespaces().items() if c in CHILDREN}


def get(kubectl: Kubectl, *args: str) -> Any | None:
    got = kubectl("get", *args, "-o", "json", check=False)
    return json.loads(got.stdout) if got.returncode == 0 else None


def releases_of(kubectl: Kubectl, target: str, chart: str) -> dict[str, Any]:
    """HelmReleases (all namespaces) installing ``chart`` into ``target``, by namespace."""
    listed = kubectl.json("get", "helmreleases.apps.clusternet.io", "-A")
    return {
        hr["metadata"]["namespace"]: hr
        for hr in listed["items"]
        if hr["spec"].get("targetNamespace") == target and hr["spec"].get("chart") == chart
    }


def helm_list(helm: str, clusters: Clusters, child: str, namespace: str) -> list[Any]:
    result = subprocess.run(
        [helm, "--kubeconfig", str(clusters.kubeconfig), "--kube-context", child, "list",
         "-n", namespace, "-o", "json"],
        capture_output=True, text=True, timeout=60, check=True,
        env={"HOME": "/tmp", "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    found: list[Any] = json.loads(result.stdout or "[]")
    return found


def settings(clusters: Clusters, child: str, namespace: str, release: str) -> Any | None:
    found = get(clusters.kubectl(child), "configmap", f"{release}-settings", "-n", namespace)
    return None if found is None else found["data"]


def delete_subscription(parent: Kubectl, namespace: str, name: str) -> None:
    parent("delete", "subscriptions.apps.clusternet.io", name, "-n", namespace,
           "--ignore-not-found", "--wait=false")  # fmt: skip


def test_chart_lifecycle_overrides_and_uninstall(
    clusters: Clusters, namespace: str, repo: ChartRepository, helm: str
) -> None:
    parent = clusters.kubectl("parent")
    namespaces = subscribed_namespaces(clusters)
    target = namespace  # exists in every child too (the fixture creates it everywhere)
    # A version the repository does not have: NotFound with the reason, no release.
    parent.apply(helm_chart(namespace, "demo", repo.url, "9.9.9", target))
    chart = wait_until(
        lambda: (c := get(parent, "helmcharts.apps.clusternet.io", "demo", "-n", namespace))
        and (c.get("status") or {}).get("phase") == "NotFound" and c,
        "HelmChart NotFound", TIMEOUT,
    )  # fmt: skip
    assert "has no version '9.9.9'" in chart["status"]["reason"]
    labels = chart["metadata"]["labels"]
    assert labels[known.CONFIG_KIND_LABEL] == "HelmChart"
    assert labels[known.CONFIG_NAME_LABEL] == "demo"
    parent.apply(subscription(namespace, "web", "demo"))
    wait_until(
        lambda: len(parent.json("get", "bases.apps.clusternet.io", "-A", "-l",
                                f"{known.CONFIG_SUBSCRIPTION_NAME_LABEL}=web,"
                                f"{known.CONFIG_SUBSCRIPTION_NAMESPACE_LABEL}={namespace}")["items"])
            == len(CHILDREN),
        "a Base per child", TIMEOUT,
    )  # fmt: skip
    assert releases_of(parent, target, "demo") == {}

    try:
        # A good version: Found, then a HelmRelease per child, deployed there.
        parent("patch", "helmcharts.apps.clusternet.io", "demo", "-n", namespace,
               "--type=merge", "-p", '{"spec":{"version":"0.1.0"}}')  # fmt: skip
        wait_until(
            lambda: len(releases_of(parent, target, "demo")) == 2, "two HelmReleases", TIMEOUT
        )
        for child in CHILDREN:
            wait_until(
                lambda c=child: (r := helm_list(helm, clusters, c, target))  # type: ignore[misc]
                and r[0]["status"] == "deployed" and r,
                f"the release deployed in {child}", TIMEOUT,
            )  # fmt: skip
            assert settings(clusters, child, target, "demo") == {
                "greeting": "hello", "chartVersion": "0.1.0",
            }  # fmt: skip
            assert get(clusters.kubectl(child), "deployment", "demo", "-n", target)
        hrs = releases_of(parent, target, "demo")
        for child, cluster_ns in namespaces.items():
            hr = hrs[cluster_ns]
            assert hr["metadata"]["name"].endswith(f"-helm-{namespace}-demo")
            assert hr["spec"]["releaseName"] == "demo"
            wait_until(
                lambda n=cluster_ns: (releases_of(parent, target, "demo")[n].get("status") or {})  # type: ignore[misc]
                .get("phase") == "deployed",
                f"HelmRelease status in {child}", TIMEOUT,
            )  # fmt: skip
            desc_name = hr["metadata"]["labels"][known.CONFIG_NAME_LABEL]
            wait_until(
                lambda n=cluster_ns, d=desc_name: (  # type: ignore[misc]
                    get(parent, "descriptions.apps.clusternet.io", d, "-n", n) or {}
                ).get("status", {}).get("phase") == "Success",
                "the Helm Description Success", TIMEOUT,
            )  # fmt: skip

        # Helm values for child1 only; a chart override pins 0.2.0 for child2 only.
        feed = {"apiVersion": APPS, "kind": "HelmChart", "namespace": namespace, "name": "demo"}
        for child, name, override in (
            ("child1", "greeting", {"name": "hola", "type": "Helm",
                                    "value": '{"greeting": "hola"}'}),
            ("child2", "pin", {"name": "pin", "type": "Helm", "overrideChart": True,
                               "value": "spec: {version: 0.2.0}"}),
        ):  # fmt: skip
            parent.apply(yaml.safe_dump({
                "apiVersion": APPS, "kind": "Localization",
                "metadata": {"name": f"{namespace}-{name}", "namespace": namespaces[child]},
                "spec": {"overridePolicy": "ApplyNow", "feed": feed, "overrides": [override]},
            }))  # fmt: skip
        wait_until(
            lambda: (settings(clusters, "child1", target, "demo") or {}).get("greeting")
            == "hola",
            "child1's values", TIMEOUT,
        )  # fmt: skip
        wait_until(
            lambda: (settings(clusters, "child2", target, "demo") or {}).get("chartVersion")
            == "0.2.0",
            "child2's chart version", TIMEOUT,
        )  # fmt: skip
        assert settings(clusters, "child1", target, "demo") == {
            "greeting": "hola", "chartVersion": "0.1.0",
        }  # fmt: skip
        assert settings(clusters, "child2", target, "demo") == {
            "greeting": "hello", "chartVersion": "0.2.0",
        }  # fmt: skip
        (release,) = helm_list(helm, clusters, "child2", target)
        assert release["chart"] == "demo-0.2.0"
        assert release["revision"] == "2"
    finally:
        delete_subscription(parent, namespace, "web")
        for child, name in (("child1", "greeting"), ("child2", "pin")):
            parent("delete", "localizations.apps.clusternet.io", f"{namespace}-{name}", "-n",
                   namespaces[child], "--ignore-not-found", "--wait=false")  # fmt: skip
    # Deleting the Subscription uninstalls the releases and the HelmReleases go.
    for child in CHILDREN:
        wait_until(lambda c=child: helm_list(helm, clusters, c, target) == [],  # type: ignore[misc]
                   f"the release uninstalled from {child}", TIMEOUT)  # fmt: skip
        assert settings(clusters, child, target, "demo") is None
    wait_until(lambda: releases_of(parent, target, "demo") == {}, "HelmReleases gone", TIMEOUT)


def test_a_chart_that_fails_to_render(
    clusters: Clusters, namespace: str, repo: ChartRepository
) -> None:
    parent = clusters.kubectl("parent")
    parent.apply(helm_chart(namespace, "broken", repo.url, "0.1.0", namespace))
    parent.apply(subscription(namespace, "broken", "broken"))
    try:
        for cluster_ns in subscribed_namespaces(clusters).values():
            hr = wait_until(
                lambda n=cluster_ns: (r := releases_of(parent, namespace, "broken").get(n))  # type: ignore[misc]
                and (r.get("status") or {}).get("phase") == "failed" and r,
                "HelmRelease failed", TIMEOUT,
            )  # fmt: skip
            assert "rendering failed because .Values.fail is set" in hr["status"]["notes"]
            desc_name = hr["metadata"]["labels"][known.CONFIG_NAME_LABEL]
            desc = wait_until(
                lambda n=cluster_ns, d=desc_name: (  # type: ignore[misc]
                    s := (get(parent, "descriptions.apps.clusternet.io", d, "-n", n) or {})
                    .get("status") or {}
                ).get("phase") == "Failure" and s,
                "the Description Failure", TIMEOUT,
            )  # fmt: skip
            assert "rendering failed because .Values.fail is set" in desc["reason"]
            events = parent.json("get", "events", "-n", cluster_ns,
                                 "--field-selector", "reason=HelmReleaseFailed")  # fmt: skip
            assert any(hr["metadata"]["name"] == e["involvedObject"]["name"]
                       for e in events["items"])  # fmt: skip
    finally:
        delete_subscription(parent, namespace, "broken")
    wait_until(lambda: releases_of(parent, namespace, "broken") == {}, "gone", TIMEOUT)


def test_pull_mode_agent_installs(tmp_path: Path, repo: ChartRepository, helm: str) -> None:
    """A HelmRelease of a Pull child is installed by its agent, with the agent's own
    credentials, and uninstalled when deleted."""
    with start_environment(tmp_path, Options(children=1, sync_modes=("Pull",))) as env:
        parent, child = env.kubectl("parent"), env.children[0]
        cluster_ns = env.dedicated_namespaces()[child]
        values = base64.b64encode(json.dumps({"greeting": "pulled"}).encode()).decode()
        parent.apply(yaml.safe_dump({
            "apiVersion": APPS, "kind": "HelmRelease",
            "metadata": {"name": "pulled-demo", "namespace": cluster_ns},
            "spec": {"repo": repo.url, "chart": "demo", "version": "0.2.0",
                     "targetNamespace": "pulled", "releaseName": "demo",
                     "overrides": values,
                     "chartPullSecret": {"name": "chart-reader", "namespace": cluster_ns}},
        }))  # fmt: skip
        parent.apply(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "chart-reader", "namespace": cluster_ns},
            "stringData": {"username": AUTH[0], "password": AUTH[1]},
        }))  # fmt: skip
        wait_until(
            lambda: (s := settings(env, child, "pulled", "demo")) and s["greeting"] == "pulled",
            "the pulled release's ConfigMap", TIMEOUT,
        )  # fmt: skip
        hr = wait_until(
            lambda: (r := get(parent, "helmreleases.apps.clusternet.io", "pulled-demo", "-n",
                              cluster_ns)) and (r.get("status") or {}).get("phase") == "deployed"
            and r,
            "HelmRelease deployed", TIMEOUT,
        )  # fmt: skip
        assert hr["status"]["version"] == 1
        assert "pulled" in hr["status"]["notes"]
        parent("delete", "helmreleases.apps.clusternet.io", "pulled-demo", "-n", cluster_ns)
        assert helm_list(helm, env, child, "pulled") == []


def test_an_unreachable_repository(
    clusters: Clusters, namespace: str, helm: str, tmp_path: Path
) -> None:
    """Never reachable: the HelmChart is NotFound and says why.  Reachable once, then down:
    the HelmChart stays Found (releases stay installed), and a change that needs the chart
    fails on the HelmRelease and the Description with the reason."""
    parent = clusters.kubectl("parent")
    parent.apply(helm_chart(namespace, "ghost", "http://127.0.0.1:9", "0.1.0", namespace))
    ghost = wait_until(
        lambda: (c := get(parent, "helmcharts.apps.clusternet.io", "ghost", "-n", namespace))
        and (c.get("status") or {}).get("phase") == "NotFound" and c,
        "HelmChart NotFound", TIMEOUT,
    )  # fmt: skip
    assert ghost["status"]["reason"].startswith("repository unreachable: ")

    namespaces = subscribed_namespaces(clusters)
    with ChartRepository(helm, basic_auth=AUTH) as flaky:
        flaky.add(CHART, version="0.1.0")
        parent.apply(helm_chart(namespace, "demo", flaky.url, "0.1.0", namespace))
        parent.apply(subscription(namespace, "flaky", "demo"))
        for child in CHILDREN:
            wait_until(lambda c=child: settings(clusters, c, namespace, "demo"),  # type: ignore[misc]
                       f"the release in {child}", TIMEOUT)  # fmt: skip
    try:
        feed = {"apiVersion": APPS, "kind": "HelmChart", "namespace": namespace, "name": "demo"}
        parent.apply(yaml.safe_dump({
            "apiVersion": APPS, "kind": "Localization",
            "metadata": {"name": f"{namespace}-values", "namespace": namespaces["child1"]},
            "spec": {"overridePolicy": "ApplyNow", "feed": feed, "overrides": [
                {"name": "greeting", "type": "Helm", "value": "greeting: unreachable"}]},
        }))  # fmt: skip
        hr = wait_until(
            lambda: (r := releases_of(parent, namespace, "demo").get(namespaces["child1"]))
            and (r.get("status") or {}).get("phase") == "failed" and r,
            "HelmRelease failed", TIMEOUT,
        )  # fmt: skip
        assert "locating the chart" in hr["status"]["notes"]
        desc_name = hr["metadata"]["labels"][known.CONFIG_NAME_LABEL]
        desc = wait_until(
            lambda: (s := (get(parent, "descriptions.apps.clusternet.io", desc_name, "-n",
                               namespaces["child1"]) or {}).get("status") or {})
            .get("phase") == "Failure" and s,
            "the Description Failure", TIMEOUT,
        )  # fmt: skip
        assert "locating the chart" in desc["reason"]
        # The release installed before is still there, and child2 is untouched.
        assert settings(clusters, "child1", namespace, "demo") == {
            "greeting": "hello", "chartVersion": "0.1.0"}  # fmt: skip
        chart = get(parent, "helmcharts.apps.clusternet.io", "demo", "-n", namespace)
        assert chart is not None
        assert chart["status"]["phase"] == "Found"
        status2 = releases_of(parent, namespace, "demo")[namespaces["child2"]]["status"]
        assert status2["phase"] == "deployed"
    finally:
        delete_subscription(parent, namespace, "flaky")
        parent("delete", "localizations.apps.clusternet.io", f"{namespace}-values", "-n",
               namespaces["child1"], "--ignore-not-found", "--wait=false")  # fmt: skip
    wait_until(lambda: releases_of(parent, namespace, "demo") == {}, "gone", TIMEOUT)
