"""Find, or build from the Go module proxy, the binaries of a local control plane.

Nothing is downloaded as a prebuilt binary: every binary is compiled from a Go module
through a small "wrapper" module shipped in ``clusternet/local/gomod/<component>/`` (its
go.mod/go.sum pin every dependency).  Results are cached outside the repository, keyed by
version, so the first build is slow and every later one is instant::

    ${XDG_CACHE_HOME:-~/.cache}/clusternet/bin/<component>-<version>/<binary>

Look-up order for a binary: ``$KUBEBUILDER_ASSETS`` (the envtest convention), the cache,
``$PATH``; only then is it built, and only when Go is installed.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

KUBERNETES_VERSION = "v1.36.3"
ETCD_VERSION = "v3.6.16"
KWOK_VERSION = "v0.8.0"
HELM_VERSION = "v4.3.1"

# etcd older than these lacks the RequestWatchProgress feature that kube-apiserver >= 1.35
# needs for consistent watches (Debian's etcd 3.4.23 is one of them).
_ETCD_MINIMUM = {(3, 4): (3, 4, 31), (3, 5): (3, 5, 13)}


class MissingBinariesError(RuntimeError):
    """Some binaries are neither provided nor buildable here."""


class BuildError(RuntimeError):
    """``go build`` failed; the message carries the tail of its output."""


@dataclass(frozen=True)
class Component:
    """A Go module that yields one or more binaries, built through a wrapper module."""

    name: str
    version: str
    # binary name -> Go package path
    packages: dict[str, str]
    ldflags: tuple[str, ...] = ()
    # Extra files to keep beside the binaries: (source relative to a module dir in
    # GOMODCACHE, destination relative to the binary dir).
    module_files: tuple[tuple[str, str, str], ...] = ()
    # The wrapper module under clusternet/local/gomod/ (default: the component's name).
    wrapper: str = ""
    # A binary of another version on $PATH is only a fallback for machines without Go
    # (kubectl: the tests want the server's exact version, without skew warnings).
    path_is_fallback: bool = False

    @property
    def key(self) -> str:
        return f"{self.name}-{self.version}"

    @property
    def binaries(self) -> tuple[str, ...]:
        return tuple(self.packages)


def _kubernetes_ldflags(version: str) -> tuple[str, ...]:
    # Stamp the version the way hack/lib/version.sh does: without it /version says
    # v0.0.0-master and version-dependent clients (kwok, kubectl) misbehave.
    major, minor = version.lstrip("v").split(".")[:2]
    flags: list[str] = []
    for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        for key, value in (
            ("gitVersion", version),
            ("gitMajor", major),
            ("gitMinor", minor),
            ("gitTreeState", "clean"),
            ("buildDate", "2026-01-01T00:00:00Z"),
        ):
            flags.append(f"-X {pkg}.{key}={value}")
    return tuple(flags)


# kubectl has its own cache folder so that adding it never forces a rebuild of the servers.
KUBECTL = Component(
    name="kubectl",
    version=KUBERNETES_VERSION,
    packages={"kubectl": "k8s.io/kubernetes/cmd/kubectl"},
    ldflags=_kubernetes_ldflags(KUBERNETES_VERSION),
    wrapper="kubernetes",
    path_is_fallback=True,
)
KUBERNETES = Component(
    name="kubernetes",
    version=KUBERNETES_VERSION,
    packages={
        "kube-apiserver": "k8s.io/kubernetes/cmd/kube-apiserver",
        "kube-controller-manager": "k8s.io/kubernetes/cmd/kube-controller-manager",
        "kube-scheduler": "k8s.io/kubernetes/cmd/kube-scheduler",
    },
    ldflags=_kubernetes_ldflags(KUBERNETES_VERSION),
)
ETCD = Component(
    name="etcd",
    version=ETCD_VERSION,
    packages={"etcd": "go.etcd.io/etcd/server/v3"},
)
KWOK = Component(
    name="kwok",
    version=KWOK_VERSION,
    packages={"kwok": "sigs.k8s.io/kwok/cmd/kwok"},
    # kwok refuses to start without stage documents; keep the ones its module ships.
    module_files=(("sigs.k8s.io/kwok", "kustomize/stage", "stages"),),
)
# Helm charts are rendered and installed by the real helm CLI (Helm 3 is end-of-life).
HELM = Component(
    name="helm",
    version=HELM_VERSION,
    packages={"helm": "helm.sh/helm/v4/cmd/helm"},
    ldflags=(
        f"-X helm.sh/helm/v4/internal/version.version={HELM_VERSION}",
        "-X helm.sh/helm/v4/internal/version.gitTreeState=clean",
    ),
    path_is_fallback=True,
)
CONTROL_PLANE: tuple[Component, ...] = (ETCD, KUBERNETES, KWOK, KUBECTL)
# Everything `clusternet local build` provides: the control planes and the tools around them.
ALL_COMPONENTS: tuple[Component, ...] = (*CONTROL_PLANE, HELM)


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "clusternet"


def go_available() -> str | None:
    return shutil.which("go")


def _go_env() -> dict[str, str]:
    env = dict(os.environ)
    # Never let Go fetch a toolchain, and build static binaries like the releases do.
    env.setdefault("GOTOOLCHAIN", "local")
    env["CGO_ENABLED"] = "0"
    env.setdefault("GOFLAGS", "-buildvcs=false")
    return env


def _etcd_version_ok(path: str) -> bool:
    try:
        out = subprocess.run(
            [path, "--version"], capture_output=True, text=True, timeout=20, check=False
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return False
    match = re.search(r"etcd Version:\s*(\d+)\.(\d+)\.(\d+)", out)
    if not match:
        return False
    major, minor, patch = (int(x) for x in match.groups())
    version = (major, minor, patch)
    minimum = _ETCD_MINIMUM.get((major, minor))
    if minimum is not None:
        return version >= minimum
    return version >= (3, 6, 0)


@dataclass
class Toolbox:
    """Where each binary of the local control plane lives, building what is missing."""

    cache: Path = field(default_factory=cache_root)
    components: tuple[Component, ...] = ALL_COMPONENTS
    log: Callable[[str], None] = lambda _msg: None

    def bin_dir(self, component: Component) -> Path:
        return self.cache / "bin" / component.key

    def _component_of(self, binary: str) -> Component:
        for component in self.components:
            if binary in component.packages:
                return component
        raise KeyError(binary)

    def locate(self, binary: str) -> Path | None:
        """The binary's path if it is already available, without building anything."""
        assets = os.environ.get("KUBEBUILDER_ASSETS")
        if assets and (Path(assets) / binary).is_file():
            return Path(assets) / binary
        component = self._component_of(binary)
        cached = self.bin_dir(component) / binary
        if cached.is_file() and os.access(cached, os.X_OK):
            return cached
        if component.path_is_fallback and go_available():
            return None
        on_path = shutil.which(binary)
        if on_path and (binary != "etcd" or _etcd_version_ok(on_path)):
            return Path(on_path)
        return None

    def missing(self, binaries: Iterable[str] | None = None) -> list[str]:
        wanted = binaries or [b for c in self.components for b in c.binaries]
        return [b for b in wanted if self.locate(b) is None]

    def ensure(self, binaries: Iterable[str] | None = None) -> dict[str, Path]:
        """Paths of the binaries, building the missing ones from Go modules."""
        wanted = list(binaries or [b for c in self.components for b in c.binaries])
        missing = [b for b in wanted if self.locate(b) is None]
        if missing:
            if not go_available():
                raise MissingBinariesError(_missing_message(missing, self))
            for component in self.components:
                if any(b in component.packages for b in missing):
                    self.build(component)
        found = {b: self.locate(b) for b in wanted}
        still = [b for b, p in found.items() if p is None]
        if still:
            raise MissingBinariesError(_missing_message(still, self))
        return {b: p for b, p in found.items() if p is not None}

    def build(self, component: Component) -> Path:
        """Compile a component into its cache folder (atomically: all or nothing)."""
        target = self.bin_dir(component)
        target.parent.mkdir(parents=True, exist_ok=True)
        workdir = Path(tempfile.mkdtemp(prefix=f".{component.key}.", dir=target.parent))
        try:
            module = workdir / "module"
            _copy_wrapper(component.wrapper or component.name, module)
            out = workdir / "bin"
            out.mkdir()
            log_file = target.parent / f"{component.key}.build.log"
            started = time.monotonic()
            self.log(f"building {component.key} from the Go module proxy (log: {log_file})")
            for binary, package in component.packages.items():
                cmd = [
                    "go",
                    "build",
                    "-mod=mod",
                    "-trimpath",
                    "-ldflags",
                    " ".join(("-s", "-w", *component.ldflags)),
                    "-o",
                    str(out / binary),
                    package,
                ]
                _run_logged(cmd, module, log_file)
            for module_path, inner, dest in component.module_files:
                source = _module_dir(module, module_path) / inner
                shutil.copytree(source, out / dest)
                for path in (out / dest).rglob("*"):
                    path.chmod(0o755 if path.is_dir() else 0o644)
            if target.exists():
                shutil.rmtree(target)
            out.rename(target)
            self.log(f"built {component.key} in {time.monotonic() - started:.0f}s")
            return target
        finally:
            shutil.rmtree(workdir, ignore_errors=True)

    def kwok_stages(self) -> Path:
        """The kwok stage documents (shipped in the kwok module) next to the kwok binary."""
        stages = self.bin_dir(KWOK) / "stages"
        if stages.is_dir():
            return stages
        if go_available():
            with tempfile.TemporaryDirectory() as tmp:
                module = Path(tmp) / "module"
                _copy_wrapper("kwok", module)
                source = _module_dir(module, "sigs.k8s.io/kwok") / "kustomize" / "stage"
                stages.parent.mkdir(parents=True, exist_ok=True)
                shutil.copytree(source, stages)
            return stages
        raise MissingBinariesError(
            "kwok's stage documents are missing: they come from the Go module "
            f"sigs.k8s.io/kwok@{KWOK_VERSION}; install Go (1.26+) so they can be fetched, "
            f"or copy its kustomize/stage folder to {stages}"
        )


def _copy_wrapper(name: str, dest: Path) -> None:
    source = resources.files("clusternet.local") / "gomod" / name
    dest.mkdir(parents=True)
    for filename in ("go.mod", "go.sum"):
        (dest / filename).write_bytes((source / filename).read_bytes())


def _module_dir(wrapper: Path, module_path: str) -> Path:
    out = subprocess.run(
        ["go", "list", "-m", "-mod=mod", "-f", "{{.Dir}}", module_path],
        cwd=wrapper,
        env=_go_env(),
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0 or not out.stdout.strip():
        raise BuildError(f"cannot locate module {module_path}: {out.stderr.strip()}")
    return Path(out.stdout.strip())


def _run_logged(cmd: list[str], cwd: Path, log_file: Path) -> None:
    with log_file.open("a") as log:
        log.write(f"$ {' '.join(cmd)}\n")
        log.flush()
        result = subprocess.run(
            cmd, cwd=cwd, env=_go_env(), stdout=log, stderr=subprocess.STDOUT, check=False
        )
    if result.returncode != 0:
        tail = "\n".join(log_file.read_text(errors="replace").splitlines()[-30:])
        raise BuildError(f"`{' '.join(cmd[:2])} {cmd[-1]}` failed (see {log_file}):\n{tail}")


def _missing_message(missing: list[str], toolbox: Toolbox) -> str:
    lines = [f"missing binaries: {', '.join(missing)}."]
    if not go_available():
        lines.append(
            "Go (1.26 or newer) is not installed, so they cannot be built from the Go module "
            "proxy. Either install Go, or provide the binaries: put them in a folder named by "
            "$KUBEBUILDER_ASSETS, or on $PATH."
        )
    lines.append("Versions clusternet expects:")
    for component in toolbox.components:
        if any(b in component.packages for b in missing):
            binaries = ", ".join(component.binaries)
            lines.append(
                f"  {binaries}: {component.version} (cached build: {toolbox.bin_dir(component)})"
            )
    return "\n".join(lines)
