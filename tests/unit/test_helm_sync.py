"""The Helm deployer's reconcile (:class:`ReleaseSync`) against a recording stand-in for the
helm binary (a script that keeps one release in a JSON file) and a real chart repository:
install once, nothing when nothing changed, upgrade on new values, status written back,
failures reported with the reason, uninstall on removal; credentials never on argv."""

from __future__ import annotations

import base64
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from clusternet.apis import known
from clusternet.deployer import DeployFailed
from clusternet.deployer.helmcli import Helm
from clusternet.deployer.helmsync import ReleaseSync
from clusternet.kube import ClusterConfig, NotFound
from clusternet.local.binaries import Toolbox
from clusternet.local.chartrepo import ChartRepository

CHART = Path(__file__).resolve().parents[1] / "charts" / "demo"
AUTH = ("reader", "s3cret")

FAKE_HELM = r"""#!{python}
import json, os, pathlib, stat, sys
state = pathlib.Path({state!r})
calls = pathlib.Path({calls!r})
args = sys.argv[1:]
kubeconfig = args[args.index("--kubeconfig") + 1]
mode = stat.S_IMODE(os.stat(kubeconfig).st_mode)
with calls.open("a") as out:
    out.write(json.dumps({{"argv": sys.argv, "kubeconfig_mode": mode}}) + "\n")
release = json.loads(state.read_text()) if state.exists() else None
if args[0] == "status":
    if release is None:
        sys.stderr.write("Error: release: not found\n"); sys.exit(1)
    print(json.dumps(release)); sys.exit(0)
if args[0] == "uninstall":
    state.unlink(missing_ok=True); sys.exit(0)
values = json.loads(pathlib.Path(args[args.index("--values") + 1]).read_text())
if values.get("fail"):
    sys.stderr.write("Error: execution error: rendering failed\n"); sys.exit(1)
chart = pathlib.Path(args[2]).name.removesuffix(".tgz")
name, _, version = chart.rpartition("-")
release = {{"name": args[1], "namespace": args[args.index("--namespace") + 1],
           "version": (release or {{}}).get("version", 0) + 1,
           "info": {{"status": "deployed", "first_deployed": "t0", "last_deployed": "t1",
                    "notes": "hello", "description": args[0] + " complete"}},
           "chart": {{"metadata": {{"name": name, "version": version}}}}, "config": values}}
state.write_text(json.dumps(release))
print("WARNING: a warning first"); print(json.dumps(release))
"""


class FakeParent:
    def __init__(self, secret: dict[str, Any] | None) -> None:
        self.secret = secret
        self.patches: list[tuple[str, dict[str, Any], str | None]] = []

    async def get(self, api_version: str, kind: str, name: str, namespace: str) -> Any:
        if self.secret is None:
            raise NotFound(404, {"message": f'secrets "{name}" not found', "code": 404})
        return self.secret

    async def patch(
        self, api_version: str, kind: str, name: str, patch: dict[str, Any],
        namespace: str, subresource: str | None = None,
    ) -> Any:  # fmt: skip
        self.patches.append((kind, patch, subresource))
        return {"metadata": {"finalizers": patch.get("metadata", {}).get("finalizers"),
                             "resourceVersion": "2"}}  # fmt: skip

    def statuses(self) -> list[dict[str, Any]]:
        return [p["status"] for _, p, sub in self.patches if sub == "status"]


class FakeRecorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, str]] = []

    def event(self, obj: Any, type_: str, reason: str, message: str) -> None:
        self.events.append((type_, reason, message))


@pytest.fixture(scope="module")
def repo() -> Iterator[ChartRepository]:
    helm = Toolbox().locate("helm")
    if helm is None:
        pytest.skip("helm is not built: run `clusternet local build`")
    with ChartRepository(helm, basic_auth=AUTH) as repository:
        repository.add(CHART, version="0.1.0")
        repository.add(CHART, version="0.2.0")
        yield repository


@pytest.fixture
def fake_helm(tmp_path: Path) -> tuple[Helm, Path, Path]:
    state, calls = tmp_path / "release.json", tmp_path / "calls.jsonl"
    script = tmp_path / "helm"
    script.write_text(FAKE_HELM.format(python=sys.executable, state=str(state),
                                       calls=str(calls)))  # fmt: skip
    script.chmod(0o755)
    return Helm(str(script)), state, calls


SECRET = {"data": {k: base64.b64encode(v.encode()).decode()
                   for k, v in (("username", AUTH[0]), ("password", AUTH[1]))}}  # fmt: skip
CHILD = ClusterConfig(server="https://child:6443", token="child-token-value")


def helm_release(repo: ChartRepository, values: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "apps.clusternet.io/v1alpha1",
        "kind": "HelmRelease",
        "metadata": {"name": "web-helm-default-demo", "namespace": "clusternet-x",
                     "finalizers": [known.APP_FINALIZER], "resourceVersion": "1"},
        "spec": {"repo": repo.url, "chart": "demo", "version": "0.1.0", "releaseName": "demo",
                 "targetNamespace": "apps",
                 "chartPullSecret": {"name": "reader", "namespace": "default"},
                 "overrides": base64.b64encode(json.dumps(values).encode()).decode(), **spec},
    }  # fmt: skip


def calls_of(calls: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in calls.read_text().splitlines()]


async def test_install_then_nothing_then_upgrade_then_uninstall(
    repo: ChartRepository, fake_helm: tuple[Helm, Path, Path]
) -> None:
    helm, state, calls = fake_helm
    parent, recorder = FakeParent(SECRET), FakeRecorder()
    sync = ReleaseSync(parent, recorder, helm)  # type: ignore[arg-type]

    hr = helm_release(repo, {"greeting": "hi"})
    await sync.deploy(CHILD, hr)
    assert [c["argv"][1] for c in calls_of(calls)] == ["status", "install"]
    install = calls_of(calls)[1]["argv"]
    assert "--create-namespace" in install
    assert install[install.index("--namespace") + 1] == "apps"
    assert [s["phase"] for s in parent.statuses()] == ["pending-install", "deployed"]
    assert parent.statuses()[-1]["version"] == 1
    assert parent.statuses()[-1]["notes"] == "hello"
    assert recorder.events[-1][1] == "HelmReleaseInstalled"

    # Nothing changed: only a status read, no write.
    hr["status"] = {**parent.statuses()[0], **parent.statuses()[1]}
    before = len(parent.patches)
    await sync.deploy(CHILD, hr)
    assert [c["argv"][1] for c in calls_of(calls)][-1] == "status"
    assert len(parent.patches) == before

    # New values and version: one upgrade, revision 2.
    hr2 = helm_release(repo, {"greeting": "bonjour"}, version="0.2.0")
    hr2["status"] = hr["status"]
    await sync.deploy(CHILD, hr2)
    upgrade = calls_of(calls)[-1]["argv"]
    assert upgrade[1] == "upgrade"
    assert upgrade[3].endswith("demo-0.2.0.tgz")
    assert json.loads(state.read_text())["version"] == 2
    assert parent.statuses()[-1]["version"] == 2

    # Credentials are never on a command line; the kubeconfig is private.
    for call in calls_of(calls):
        line = " ".join(call["argv"])
        assert AUTH[1] not in line
        assert "child-token-value" not in line
        assert call["kubeconfig_mode"] == 0o600

    await sync.remove(CHILD, {**hr2, "metadata": {**hr2["metadata"], "deletionTimestamp": "x"}})
    assert calls_of(calls)[-1]["argv"][1] == "uninstall"
    assert not state.exists()
    assert parent.patches[-1][1]["metadata"]["finalizers"] is None
    assert recorder.events[-1][1] == "HelmReleaseUninstalled"


async def test_failures_are_reported_and_retried(
    repo: ChartRepository, fake_helm: tuple[Helm, Path, Path]
) -> None:
    helm, _, _ = fake_helm
    parent, recorder = FakeParent(SECRET), FakeRecorder()
    sync = ReleaseSync(parent, recorder, helm)  # type: ignore[arg-type]
    with pytest.raises(DeployFailed, match="rendering failed"):
        await sync.deploy(CHILD, helm_release(repo, {"fail": True}))
    failed = parent.statuses()[-1]
    assert failed["phase"] == "failed"
    assert "helm install: execution error: rendering failed" in failed["notes"]
    assert recorder.events[-1][:2] == ("Warning", "HelmReleaseFailed")

    with pytest.raises(DeployFailed, match=r"has no version '9\.9\.9'"):
        await sync.deploy(CHILD, helm_release(repo, {}, version="9.9.9"))
    assert recorder.events[-1][1] == "ChartLocateFailure"

    no_secret = ReleaseSync(FakeParent(None), FakeRecorder(), helm)  # type: ignore[arg-type]
    with pytest.raises(DeployFailed, match="chart pull Secret default/reader"):
        await no_secret.deploy(CHILD, helm_release(repo, {}))


async def test_bad_spec_and_no_helm_are_not_retried(repo: ChartRepository) -> None:
    parent, recorder = FakeParent(SECRET), FakeRecorder()
    await ReleaseSync(parent, recorder, None).deploy(CHILD, helm_release(repo, {}))  # type: ignore[arg-type]
    assert parent.statuses()[-1]["phase"] == "failed"
    assert recorder.events[-1][1] == "HelmNotAvailable"

    bad = helm_release(repo, {})
    bad["spec"]["overrides"] = base64.b64encode(b"[1, 2]").decode()
    sync = ReleaseSync(parent, recorder, Helm("/nonexistent/helm"))  # type: ignore[arg-type]
    await sync.deploy(CHILD, bad)
    assert "must be a JSON object" in parent.statuses()[-1]["notes"]
    assert recorder.events[-1][1] == "InvalidHelmRelease"


async def test_a_lost_cluster_only_drops_the_finalizer(
    repo: ChartRepository, fake_helm: tuple[Helm, Path, Path]
) -> None:
    helm, _, calls = fake_helm
    parent = FakeParent(SECRET)
    await ReleaseSync(parent, FakeRecorder(), helm).remove(None, helm_release(repo, {}))  # type: ignore[arg-type]
    assert not calls.exists()
    assert parent.patches == [
        ("HelmRelease", {"metadata": {"finalizers": None, "resourceVersion": "1"}}, None)
    ]
