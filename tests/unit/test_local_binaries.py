"""Where binaries come from: $KUBEBUILDER_ASSETS, the build cache, $PATH; or a clear error."""

import os
import stat
from pathlib import Path

import pytest

from clusternet.local import binaries
from clusternet.local.binaries import ETCD, KUBERNETES, MissingBinariesError, Toolbox


def fake_binary(folder: Path, name: str, output: str = "") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(f"#!/bin/sh\necho '{output}'\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


@pytest.fixture
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Toolbox:
    monkeypatch.delenv("KUBEBUILDER_ASSETS", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path / "path"))
    return Toolbox(cache=tmp_path / "cache")


def test_kubebuilder_assets_win_over_cache_and_path(
    isolated: Toolbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assets = fake_binary(tmp_path / "assets", "kube-apiserver")
    fake_binary(isolated.bin_dir(KUBERNETES), "kube-apiserver")
    fake_binary(tmp_path / "path", "kube-apiserver")
    monkeypatch.setenv("KUBEBUILDER_ASSETS", str(tmp_path / "assets"))
    assert isolated.locate("kube-apiserver") == assets


def test_cache_wins_over_path(isolated: Toolbox, tmp_path: Path) -> None:
    cached = fake_binary(isolated.bin_dir(KUBERNETES), "kube-scheduler")
    fake_binary(tmp_path / "path", "kube-scheduler")
    assert isolated.locate("kube-scheduler") == cached


def test_path_is_honoured(isolated: Toolbox, tmp_path: Path) -> None:
    on_path = fake_binary(tmp_path / "path", "kwok")
    assert isolated.locate("kwok") == on_path


@pytest.mark.parametrize(
    ("version", "usable"),
    [
        ("3.4.23", False),  # Debian bookworm's: lacks RequestWatchProgress
        ("3.4.31", True),
        ("3.5.12", False),
        ("3.5.13", True),
        ("3.6.16", True),
        ("3.3.27", False),
    ],
)
def test_etcd_on_path_must_be_recent_enough(
    isolated: Toolbox, tmp_path: Path, version: str, usable: bool
) -> None:
    fake_binary(tmp_path / "path", "etcd", f"etcd Version: {version}")
    assert (isolated.locate("etcd") is not None) is usable


def test_cache_is_keyed_by_version(isolated: Toolbox) -> None:
    assert isolated.bin_dir(ETCD).name == f"etcd-{binaries.ETCD_VERSION}"
    assert isolated.bin_dir(KUBERNETES).name == f"kubernetes-{binaries.KUBERNETES_VERSION}"


def test_without_go_missing_binaries_are_named_with_a_remedy(
    isolated: Toolbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(binaries, "go_available", lambda: None)
    fake_binary(isolated.bin_dir(ETCD), "etcd")
    with pytest.raises(MissingBinariesError) as caught:
        isolated.ensure()
    message = str(caught.value)
    assert (
        "missing binaries: kube-apiserver, kube-controller-manager, kube-scheduler, kwok" in message
    )
    assert "Go (1.26 or newer) is not installed" in message
    assert "KUBEBUILDER_ASSETS" in message
    assert binaries.KUBERNETES_VERSION in message
    assert "etcd:" not in message  # not missing, so not listed


def test_wrapper_modules_are_shipped_with_the_package() -> None:
    from importlib import resources

    for name in ("kubernetes", "etcd", "kwok"):
        module = resources.files("clusternet.local") / "gomod" / name
        text = (module / "go.mod").read_text()
        assert (module / "go.sum").is_file()
        assert "replace" in text or name != "kubernetes"


def test_kubernetes_wrapper_pins_every_staging_module() -> None:
    """A missing replace gives 'unknown revision v0.0.0' at build time."""
    from importlib import resources

    text = (resources.files("clusternet.local") / "gomod" / "kubernetes" / "go.mod").read_text()
    staging = binaries.KUBERNETES_VERSION.replace("v1.", "v0.", 1)
    for module in ("k8s.io/api", "k8s.io/apiserver", "k8s.io/kube-aggregator", "k8s.io/streaming"):
        assert f"{module} => {module} {staging}" in text
    assert f"k8s.io/kubernetes {binaries.KUBERNETES_VERSION}" in text


def test_version_is_stamped_into_kubernetes_binaries() -> None:
    flags = " ".join(KUBERNETES.ldflags)
    assert f"k8s.io/component-base/version.gitVersion={binaries.KUBERNETES_VERSION}" in flags
    assert "k8s.io/client-go/pkg/version.gitMinor=36" in flags


def test_environment_for_go_never_fetches_toolchains(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GOTOOLCHAIN", raising=False)
    env = binaries._go_env()
    assert env["GOTOOLCHAIN"] == "local"
    assert env["CGO_ENABLED"] == "0"
    assert os.environ.get("GOTOOLCHAIN") is None


@pytest.mark.parametrize(("go", "accepted"), [("/usr/local/go/bin/go", False), (None, True)])
def test_kubectl_on_path_is_only_a_fallback_when_go_is_missing(
    isolated: Toolbox,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    go: str | None,
    accepted: bool,
) -> None:
    """The tests want kubectl of the servers' exact version: build it when Go can."""
    on_path = fake_binary(tmp_path / "path", "kubectl")
    monkeypatch.setattr(binaries, "go_available", lambda: go)
    assert (isolated.locate("kubectl") == on_path) is accepted
