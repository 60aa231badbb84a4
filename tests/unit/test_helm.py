"""Pure parts of Helm distribution: versions and index lookup, OCI references, release
decisions and helm arguments, HelmRelease status, the Description phase, HelmReleases built
from a Helm Description, HelmChart labels and the kubeconfig handed to helm."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from clusternet.apis import known
from clusternet.controllermanager.descriptions import FeedInput, encode, render_helm_description
from clusternet.controllermanager.helmchart import (
    config_labels,
    missing_labels,
    unreachable_status,
)
from clusternet.controllermanager.helmrelease import helm_releases, release_name, release_update
from clusternet.controllermanager.overrides import Override, deep_merge, render_helm
from clusternet.deployer.helm import (
    ChartLookupError,
    ReleaseAction,
    UnsupportedCredentials,
    basic_credentials,
    chart_download_url,
    decode_values,
    description_status,
    desired_release,
    failed_status,
    find_chart,
    find_oci_version,
    install_args,
    kubeconfig_document,
    latest_version,
    oci_reference,
    registry_config,
    release_action,
    release_phase,
    release_status,
    same_origin,
    upgrade_args,
)
from clusternet.kube import ClusterConfig, Impersonation
from clusternet.kube._config import ExecPlugin

APPS = "apps.clusternet.io/v1alpha1"

INDEX: dict[str, Any] = {
    "apiVersion": "v1",
    "entries": {
        "demo": [
            {"version": "0.10.0-rc.1", "urls": ["demo-0.10.0-rc.1.tgz"]},
            {"version": "0.2.0", "urls": ["demo-0.2.0.tgz"]},
            {"version": "0.1.0", "urls": ["http://other.example/demo-0.1.0.tgz"]},
            {"version": "0.9.1", "urls": []},
        ]
    },
}


@pytest.mark.parametrize(
    ("versions", "latest"),
    [
        (["0.1.0", "0.2.0", "0.10.0"], "0.10.0"),
        (["1.0.0-rc.1", "0.9.0"], "0.9.0"),
        (["v1.2.3", "1.2.2"], "v1.2.3"),
        (["latest", "not-semver"], None),
        ([], None),
    ],
)
def test_latest_version(versions: list[str], latest: str | None) -> None:
    assert latest_version(versions) == latest


@pytest.mark.parametrize(
    ("chart", "version", "found", "error"),
    [
        ("demo", "0.2.0", "0.2.0", None),
        ("demo", "v0.2.0", "0.2.0", None),
        ("demo", None, "0.9.1", "no download URL"),  # the latest stable has no URL
        ("demo", "0.3.0", None, "has no version '0.3.0' (available: 0.1.0, 0.10.0-rc.1"),
        ("other", None, None, "chart 'other' is not in the repository"),
        ("demo", "0.10.0-rc.1", "0.10.0-rc.1", None),
    ],
)
def test_find_chart(chart: str, version: str | None, found: str | None, error: str | None) -> None:
    if error:
        with pytest.raises(ChartLookupError, match=error.replace("(", r"\(").replace(".", r"\.")):
            find_chart(INDEX, chart, version)
    else:
        assert find_chart(INDEX, chart, version).version == found


def test_find_chart_latest_skips_prereleases() -> None:
    index = {"entries": {"demo": [e for e in INDEX["entries"]["demo"] if e["urls"]]}}
    assert find_chart(index, "demo", None).version == "0.2.0"
    with pytest.raises(ChartLookupError):
        find_chart({"entries": None}, "demo", None)


@pytest.mark.parametrize(
    ("repo", "url", "absolute", "same"),
    [
        (
            "http://r.example/charts",
            "demo-0.1.0.tgz",
            "http://r.example/charts/demo-0.1.0.tgz",
            True,
        ),
        ("http://r.example/charts/", "sub/demo.tgz", "http://r.example/charts/sub/demo.tgz", True),
        (
            "http://r.example/charts",
            "https://cdn.example/demo.tgz",
            "https://cdn.example/demo.tgz",
            False,
        ),
    ],
)  # fmt: skip
def test_chart_download_url(repo: str, url: str, absolute: str, same: bool) -> None:
    assert chart_download_url(repo, url) == absolute
    assert same_origin(absolute, repo) is same


@pytest.mark.parametrize(
    ("repo", "chart", "host", "repository"),
    [
        ("oci://registry.example:5000/charts", "demo", "registry.example:5000", "charts/demo"),
        ("oci://registry.example/", "demo", "registry.example", "demo"),
        ("oci://r.example/a/b", "x", "r.example", "a/b/x"),
    ],
)
def test_oci_reference(repo: str, chart: str, host: str, repository: str) -> None:
    ref = oci_reference(repo, chart)
    assert (ref.host, ref.repository) == (host, repository)
    assert ref.url == f"oci://{host}/{repository}"


def test_find_oci_version() -> None:
    tags = ["0.1.0", "0.2.0", "1.0.0_build.1", "latest"]
    assert find_oci_version(tags, "demo", "0.1.0") == "0.1.0"
    assert find_oci_version(tags, "demo", "1.0.0+build.1") == "1.0.0+build.1"
    assert find_oci_version(tags, "demo", None) == "1.0.0+build.1"
    with pytest.raises(ChartLookupError, match=r"no tag '0\.3\.0'"):
        find_oci_version(tags, "demo", "0.3.0")


def _secret(**data: str) -> dict[str, Any]:
    return {"data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}}


def test_basic_credentials_and_registry_config() -> None:
    assert basic_credentials(None) is None
    assert basic_credentials(_secret(username="u", password="p")) == ("u", "p")
    with pytest.raises(ValueError, match="neither"):
        basic_credentials(_secret())
    with pytest.raises(ValueError, match="base64"):
        basic_credentials({"data": {"username": "!!"}})
    config = registry_config("r.example", ("u", "p"))
    assert base64.b64decode(config["auths"]["r.example"]["auth"]) == b"u:p"


def test_kubeconfig_document_through_the_hub() -> None:
    config = ClusterConfig(
        server="https://parent:6443/apis/proxies.clusternet.io/v1alpha1/sockets/id/proxy/direct",
        ca_data=b"CA",
        client_cert_data=b"CERT",
        client_key_data=b"KEY",
        impersonate=Impersonation(user="clusternet", extra={"clusternet-token": ("tok",)}),
    )
    doc = kubeconfig_document(config)
    cluster = doc["clusters"][0]["cluster"]
    user = doc["users"][0]["user"]
    assert cluster["server"] == config.server
    assert base64.b64decode(cluster["certificate-authority-data"]) == b"CA"
    assert base64.b64decode(user["client-certificate-data"]) == b"CERT"
    assert user["as"] == "clusternet"
    assert user["as-user-extra"] == {"clusternet-token": ["tok"]}
    assert doc["current-context"] == doc["contexts"][0]["name"]


def test_kubeconfig_document_token_file_wins(tmp_path: Path) -> None:
    config = ClusterConfig(
        server="https://c:6443", token="t", token_file=tmp_path / "token",
        insecure_skip_tls_verify=True,
    )  # fmt: skip
    user = kubeconfig_document(config)["users"][0]["user"]
    assert user == {"tokenFile": str(tmp_path / "token")}
    assert kubeconfig_document(config)["clusters"][0]["cluster"]["insecure-skip-tls-verify"]


def test_kubeconfig_document_refuses_exec_plugins() -> None:
    config = ClusterConfig(server="https://c", exec_plugin=ExecPlugin(command="x"))
    with pytest.raises(UnsupportedCredentials):
        kubeconfig_document(config)


def _hr(values: Any = None, **spec: Any) -> dict[str, Any]:
    base = {"repo": "http://r", "chart": "demo", "version": "0.1.0", "targetNamespace": "apps"}
    base.update(spec)
    if values is not None:
        base["overrides"] = base64.b64encode(json.dumps(values).encode()).decode()
    return {"metadata": {"name": "d-default-demo", "namespace": "c1"}, "spec": base}


def _release(
    status: str = "deployed", version: str = "0.1.0", config: Any = None, revision: int = 1,
    name: str = "demo",
) -> dict[str, Any]:  # fmt: skip
    return {
        "name": name,
        "namespace": "apps",
        "version": revision,
        "info": {"status": status, "first_deployed": "t1", "last_deployed": "t2", "notes": "hi"},
        "chart": {"metadata": {"name": "demo", "version": version}},
        "config": config,
    }


def test_desired_release() -> None:
    desired = desired_release(_hr({"a": 1}, releaseName="rel"))
    assert (desired.name, desired.namespace, desired.values) == ("rel", "apps", {"a": 1})
    assert desired_release(_hr()).name == "demo"  # releaseName defaults to the chart
    with pytest.raises(ValueError, match="targetNamespace"):
        desired_release(_hr(targetNamespace=""))
    assert decode_values(None) == {}
    assert decode_values("bnVsbA==") == {}
    with pytest.raises(ValueError, match="JSON object"):
        decode_values(base64.b64encode(b"[1]").decode())
    with pytest.raises(ValueError, match="base64"):
        decode_values("%%%")


@pytest.mark.parametrize(
    ("hr", "version", "current", "action"),
    [
        (_hr(), "0.1.0", None, ReleaseAction.INSTALL),
        (_hr(), "0.1.0", _release(), ReleaseAction.NONE),
        (_hr({}), "0.1.0", _release(config={}), ReleaseAction.NONE),
        (_hr({"a": 1}), "0.1.0", _release(), ReleaseAction.UPGRADE),
        (_hr({"a": 1}), "0.1.0", _release(config={"a": 1}), ReleaseAction.NONE),
        (_hr(version="0.2.0"), "0.2.0", _release(), ReleaseAction.UPGRADE),
        (_hr(version="v0.1.0"), "v0.1.0", _release(), ReleaseAction.NONE),
        (_hr(), "0.1.0", _release(status="failed"), ReleaseAction.UPGRADE),
        (_hr(atomic=True), "0.1.0", _release(status="failed"), ReleaseAction.REINSTALL),
        (_hr(atomic=True), "0.1.0", _release(status="failed", revision=3), ReleaseAction.UPGRADE),
        (_hr(), "0.1.0", _release(status="pending-install"), ReleaseAction.REINSTALL),
        (_hr(), "0.1.0", _release(status="pending-upgrade"), ReleaseAction.WAIT),
        (_hr(), "0.1.0", _release(status="superseded"), ReleaseAction.UPGRADE),
    ],
)
def test_release_action(
    hr: dict[str, Any], version: str, current: dict[str, Any] | None, action: ReleaseAction
) -> None:
    assert release_action(desired_release(hr), version, current).action is action


def test_install_and_upgrade_args() -> None:
    desired = desired_release(
        _hr(atomic=True, wait=True, waitForJob=True, skipCRDs=True, disableHooks=True,
            replace=True, timeoutSeconds=60)
    )  # fmt: skip
    args = install_args(desired, ["/tmp/demo.tgz"], "/tmp/values.json")
    assert args[:3] == ["install", "demo", "/tmp/demo.tgz"]
    for flag in ("--create-namespace", "--rollback-on-failure", "--wait=watcher",
                 "--wait-for-jobs", "--skip-crds", "--no-hooks", "--replace"):  # fmt: skip
        assert flag in args
    assert args[args.index("--timeout") + 1] == "60s"
    assert args[args.index("--values") + 1] == "/tmp/values.json"
    assert args[-2:] == ["--output", "json"]
    plain = install_args(desired_release(_hr(createNamespace=False)), ["c"], "v")
    assert "--create-namespace" not in plain
    assert "--rollback-on-failure" not in plain
    up = upgrade_args(desired_release(_hr(upgradeAtomic=True, force=True)), ["c"], "v")
    assert up[:2] == ["upgrade", "demo"]
    for flag in ("--rollback-on-failure", "--force-replace", "--reset-values", "--history-max"):
        assert flag in up
    assert "--create-namespace" not in up


def test_release_status_and_failure() -> None:
    status = release_status(_release(revision=3))
    assert status == {
        "phase": "deployed", "version": 3, "firstDeployed": "t1", "lastDeployed": "t2",
        "description": None, "notes": "hi",
    }  # fmt: skip
    failed = failed_status("boom", status)
    assert failed["phase"] == "failed"
    assert failed["notes"] == "boom"
    assert failed["version"] == 3
    assert "description" in failed
    assert len(failed_status("x" * 10000)["notes"]) == 4096


@pytest.mark.parametrize(
    ("phase", "expected"),
    [
        ("deployed", "Success"),
        ("pending-install", "Installing"),
        ("pending-upgrade", "Upgrading"),
        ("uninstalling", "Uninstalling"),
        ("superseded", "Superseded"),
        ("failed", "Failure"),
        ("unknown", "Unknown"),
        (None, "Pending"),
    ],
)
def test_release_phase(phase: str | None, expected: str) -> None:
    assert release_phase(phase) == expected


def _with_status(name: str, phase: str | None, notes: str = "") -> dict[str, Any]:
    return {"metadata": {"name": name}, "status": {"phase": phase, "notes": notes}}


@pytest.mark.parametrize(
    ("releases", "expected", "phase", "reason"),
    [
        ([_with_status("a", "deployed"), _with_status("b", "deployed")], 2, "Success", None),
        ([_with_status("a", "deployed")], 2, "Pending", None),
        ([_with_status("a", "deployed"), _with_status("b", "pending-install")], 2, "Installing",
         None),
        ([_with_status("a", "failed", "bad values"), _with_status("b", "pending-upgrade")], 2,
         "Failure", "HelmRelease a: bad values"),
        ([], 0, "Pending", None),
    ],
)  # fmt: skip
def test_description_status(
    releases: list[dict[str, Any]], expected: int, phase: str, reason: str | None
) -> None:
    assert description_status(releases, expected) == {"phase": phase, "reason": reason}


# ---------------------------------------------------------------- controller-manager parts


def _description(**spec: Any) -> dict[str, Any]:
    chart = {
        "apiVersion": "apps.clusternet.io/v1alpha1",
        "kind": "HelmChart",
        "metadata": {"name": "demo", "namespace": "default", "labels": {"team": "a"},
                     "annotations": {"note": "x"}},
        "spec": {"repo": "http://r", "chart": "demo-chart", "version": "0.1.0",
                 "targetNamespace": "apps", "wait": True},
    }  # fmt: skip
    base_spec = {
        "deployer": "Helm",
        "charts": [{"namespace": "default", "name": "demo"}],
        "chartRaw": [encode(chart)],
        "raw": [encode({"greeting": "hi"})],
    }
    base_spec.update(spec)
    return {
        "metadata": {
            "name": "web-abcde-helm",
            "namespace": "clusternet-x",
            "uid": "desc-uid",
            "labels": {
                known.CLUSTER_ID_LABEL: "cid",
                known.CONFIG_SUBSCRIPTION_NAME_LABEL: "web",
                known.CONFIG_SUBSCRIPTION_UID_LABEL: "sub-uid",
                "unrelated": "x",
            },
        },
        "spec": base_spec,
    }


def test_helm_releases() -> None:
    built = helm_releases(_description())
    assert built.errors == []
    (release,) = built.releases
    meta = release["metadata"]
    assert meta["name"] == release_name("web-abcde-helm", "default", "demo")
    assert meta["name"] == "web-abcde-helm-default-demo"
    assert meta["namespace"] == "clusternet-x"
    assert meta["labels"][known.CONFIG_KIND_LABEL] == "Description"
    assert meta["labels"][known.CONFIG_NAME_LABEL] == "web-abcde-helm"
    assert meta["labels"][known.CONFIG_UID_LABEL] == "desc-uid"
    assert meta["labels"][known.CLUSTER_ID_LABEL] == "cid"
    assert meta["labels"][known.CONFIG_SUBSCRIPTION_NAME_LABEL] == "web"
    assert meta["labels"]["team"] == "a"
    assert "unrelated" not in meta["labels"]
    assert meta["annotations"] == {"note": "x"}
    assert meta["ownerReferences"][0]["uid"] == "desc-uid"
    spec = release["spec"]
    assert spec["chart"] == "demo-chart"
    assert spec["releaseName"] == "demo"
    assert spec["wait"] is True
    assert spec["targetNamespace"] == "apps"
    assert decode_values(spec["overrides"]) == {"greeting": "hi"}


def test_helm_releases_unequal_lengths() -> None:
    built = helm_releases(_description(raw=[]))
    assert built.releases == []
    assert "same length" in built.errors[0]
    assert "not base64" in helm_releases(_description(chartRaw=["%%"])).errors[0]


def test_release_update_only_when_different() -> None:
    (desired,) = helm_releases(_description()).releases
    current = {**desired, "metadata": {**desired["metadata"], "resourceVersion": "7",
               "finalizers": [known.APP_FINALIZER]}, "status": {"phase": "deployed"}}  # fmt: skip
    assert release_update(current, desired) is None
    changed = {**desired, "spec": {**desired["spec"], "version": "0.2.0"}}
    updated = release_update(current, changed)
    assert updated is not None
    assert updated["spec"]["version"] == "0.2.0"
    assert updated["status"] == {"phase": "deployed"}
    assert updated["metadata"]["finalizers"] == [known.APP_FINALIZER]


def test_helmchart_labels_and_unreachable_status() -> None:
    chart = {"metadata": {"name": "demo", "namespace": "default", "labels": {"x": "y"}}}
    labels = config_labels(chart)
    assert labels[known.CONFIG_KIND_LABEL] == "HelmChart"
    assert labels[known.CONFIG_GROUP_LABEL] == "apps.clusternet.io"
    assert missing_labels(chart) == labels
    assert missing_labels({"metadata": {**chart["metadata"], "labels": labels}}) == {}
    assert unreachable_status({"phase": "Found"}, "down") is None
    assert unreachable_status(None, "down") == {
        "phase": "NotFound", "reason": "repository unreachable: down",
    }  # fmt: skip


def test_helm_values_deep_merge_in_order() -> None:
    assert deep_merge({"a": {"b": 1, "c": 2}, "l": [1]}, {"a": {"b": 3}, "l": [2]}) == {
        "a": {"b": 3, "c": 2},
        "l": [2],
    }
    chart = {"metadata": {"name": "demo"}, "spec": {"chart": "demo", "version": "0.1.0",
             "targetNamespace": "apps"}}  # fmt: skip
    overrides = [
        Override("Globalization g", {"type": "Helm", "value": "greeting: hi\nnested: {a: 1}"}),
        Override("Localization l", {"type": "Helm", "value": '{"nested": {"b": 2}}'}),
        Override("Localization l", {"type": "Helm", "overrideChart": True,
                                     "value": "spec: {version: 0.2.0, chart: other}"}),
    ]  # fmt: skip
    rendered = render_helm(chart, overrides)
    assert rendered.values == {"greeting": "hi", "nested": {"a": 1, "b": 2}}
    assert rendered.chart["spec"]["version"] == "0.2.0"
    assert rendered.chart["spec"]["chart"] == "demo"  # the chart name cannot be overridden


@pytest.mark.parametrize(
    ("status", "written", "unused"),
    [
        ({}, False, False),  # not verified yet: nothing is written, nothing is deleted
        ({"phase": "Found"}, True, False),
        ({"phase": "NotFound", "reason": "gone"}, False, True),
    ],
)
def test_helm_description_waits_for_verification(
    status: dict[str, str], written: bool, unused: bool
) -> None:
    base = {"metadata": {"name": "web-abcde", "namespace": "c1", "uid": "base-uid",
                         "labels": {}}}  # fmt: skip
    feed = {"apiVersion": APPS, "kind": "HelmChart", "namespace": "default", "name": "demo"}
    chart = {
        "apiVersion": APPS, "kind": "HelmChart",
        "metadata": {"name": "demo", "namespace": "default"},
        "spec": {"repo": "http://r", "chart": "demo", "targetNamespace": "apps"},
        "status": status,
    }  # fmt: skip
    rendered = render_helm_description(base, [FeedInput(feed, chart)])
    assert (rendered.description is not None) is written
    assert rendered.unused is unused


@pytest.mark.parametrize(
    ("file", "kind"),
    [("helm-chart.yaml", "HelmChart"), ("subscription.yaml", "Subscription"),
     ("localization.yaml", "Localization")],
)  # fmt: skip
def test_the_helm_example_is_valid(file: str, kind: str) -> None:
    from clusternet.apis.apps import v1alpha1

    path = Path(__file__).resolve().parents[2] / "examples" / "helm" / file
    document = yaml.safe_load(path.read_text())
    assert document["kind"] == kind
    getattr(v1alpha1, kind).model_validate(document)
