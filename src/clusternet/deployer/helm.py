"""Pure decisions of the Helm deployer (spec §2.3 HelmChart/HelmRelease, §4.7 "Helm path"):
where a chart is in a repository index, which version is the latest, what a HelmRelease asks
for, whether the release in the child must be installed, upgraded or left alone, the
HelmRelease status a release gives, and the Description phase its HelmReleases give.

No I/O here; :mod:`.helmcli` runs the helm binary and fetches charts.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final
from urllib.parse import urljoin, urlsplit

from clusternet.apis.apps.v1alpha1 import DescriptionPhase
from clusternet.kube import ClusterConfig

Object = dict[str, Any]

# Release states of ``helm status`` (helm.sh/helm/v4/pkg/release/common).
DEPLOYED: Final = "deployed"
FAILED: Final = "failed"
PENDING_INSTALL: Final = "pending-install"
PENDING_UPGRADE: Final = "pending-upgrade"
PENDING_ROLLBACK: Final = "pending-rollback"
UNINSTALLING: Final = "uninstalling"
SUPERSEDED: Final = "superseded"
MAX_HISTORY: Final = 5  # spec §4.7
MAX_MESSAGE: Final = 4096


class ChartLookupError(Exception):
    """The repository does not have the chart (or version) asked for."""


# ---------------------------------------------------------------- versions


_SEMVER = re.compile(
    r"^v?(?P<major>0|[1-9]\d*)(?:\.(?P<minor>0|[1-9]\d*))?(?:\.(?P<patch>0|[1-9]\d*))?"
    r"(?:-(?P<pre>[0-9A-Za-z.-]+))?(?:\+(?P<build>[0-9A-Za-z.-]+))?$"
)


def version_key(version: str) -> tuple[Any, ...] | None:
    """A sort key of a semantic version (build metadata ignored, a pre-release sorts before
    its release), or None when ``version`` is not one."""
    match = _SEMVER.match(version.strip())
    if match is None:
        return None
    core = tuple(int(match.group(part) or 0) for part in ("major", "minor", "patch"))
    pre = match.group("pre")
    if pre is None:
        return (*core, 1, ())
    ids = tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in pre.split("."))
    return (*core, 0, ids)


def is_prerelease(version: str) -> bool:
    match = _SEMVER.match(version.strip())
    return match is not None and match.group("pre") is not None


def same_version(a: str, b: str) -> bool:
    """Helm's notion: ``1.2.3`` is ``v1.2.3``; otherwise exact."""
    return a == b or a.lstrip("v") == b.lstrip("v")


def latest_version(versions: Iterable[str]) -> str | None:
    """The highest stable semantic version (helm ignores pre-releases unless asked)."""
    stable = [(k, v) for v in versions if (k := version_key(v)) is not None and k[3] == 1]
    return max(stable)[1] if stable else None


# ---------------------------------------------------------------- repositories


@dataclass(frozen=True)
class ChartVersion:
    name: str
    version: str
    urls: tuple[str, ...]
    digest: str | None = None


def find_chart(index: Mapping[str, Any], chart: str, version: str | None) -> ChartVersion:
    """The entry of ``chart`` at ``version`` (latest stable when empty) in a repository's
    ``index.yaml``; :class:`ChartLookupError` says why there is none."""
    entries = (index.get("entries") or {}) if isinstance(index, Mapping) else {}
    if not isinstance(entries, Mapping):
        raise ChartLookupError("the repository index has no entries")
    listed = entries.get(chart)
    if not listed:
        raise ChartLookupError(f"chart {chart!r} is not in the repository")
    versions = [e for e in listed if isinstance(e, Mapping) and e.get("version")]
    if version:
        found = [e for e in versions if same_version(str(e["version"]), version)]
        if not found:
            available = ", ".join(sorted({str(e["version"]) for e in versions})[:10])
            raise ChartLookupError(
                f"chart {chart!r} has no version {version!r} (available: {available or 'none'})"
            )
        entry = found[0]
    else:
        wanted = latest_version(str(e["version"]) for e in versions)
        if wanted is None:
            raise ChartLookupError(f"chart {chart!r} has no stable semantic version")
        entry = next(e for e in versions if str(e["version"]) == wanted)
    urls = tuple(str(u) for u in entry.get("urls") or ())
    if not urls:
        raise ChartLookupError(f"chart {chart!r} {entry['version']} has no download URL")
    return ChartVersion(chart, str(entry["version"]), urls, entry.get("digest"))


def index_url(repo: str) -> str:
    return f"{repo.rstrip('/')}/index.yaml"


def chart_download_url(repo: str, url: str) -> str:
    """A chart URL of an index, absolute (relative ones are relative to the repository)."""
    return urljoin(f"{repo.rstrip('/')}/", url)


def same_origin(a: str, b: str) -> bool:
    """Credentials of a repository go only to its own host (helm's default, without
    ``--pass-credentials``)."""
    sa, sb = urlsplit(a), urlsplit(b)
    return (sa.scheme, sa.netloc) == (sb.scheme, sb.netloc)


def is_oci(repo: str) -> bool:
    return repo.startswith("oci://")


@dataclass(frozen=True)
class OCIReference:
    host: str  # host[:port]
    repository: str  # path of the chart's repository in the registry

    @property
    def url(self) -> str:
        return f"oci://{self.host}/{self.repository}"


def oci_reference(repo: str, chart: str) -> OCIReference:
    """``oci://host/path`` + ``chart`` → the registry host and ``path/chart``."""
    rest = repo.removeprefix("oci://").strip("/")
    host, _, path = rest.partition("/")
    repository = f"{path}/{chart}" if path else chart
    return OCIReference(host, repository)


def oci_tag(version: str) -> str:
    """OCI tags cannot hold ``+``: helm pushes ``1.0.0+build`` as ``1.0.0_build``."""
    return version.replace("+", "_")


def find_oci_version(tags: Sequence[str], chart: str, version: str | None) -> str:
    """The version to install from an OCI repository's tags (exact match, or the latest)."""
    versions = [t.replace("_", "+") for t in tags]
    if version:
        for candidate in versions:
            if same_version(candidate, version):
                return candidate
        raise ChartLookupError(f"chart {chart!r} has no tag {oci_tag(version)!r}")
    found = latest_version(versions)
    if found is None:
        raise ChartLookupError(f"chart {chart!r} has no tag that is a stable semantic version")
    return found


def basic_credentials(secret: Mapping[str, Any] | None) -> tuple[str, str] | None:
    """``(username, password)`` of a chart pull Secret (data keys ``username``/``password``)."""
    if secret is None:
        return None
    data = secret.get("data") or {}
    try:
        username = base64.b64decode(data.get("username") or "", validate=True).decode()
        password = base64.b64decode(data.get("password") or "", validate=True).decode()
    except (binascii.Error, ValueError) as err:
        raise ValueError(f"chart pull Secret is not valid base64: {err}") from None
    if not username and not password:
        raise ValueError("chart pull Secret has neither username nor password")
    return username, password


def registry_config(host: str, credentials: tuple[str, str]) -> Object:
    """A docker-style registry config (helm's ``--registry-config``): credentials by file."""
    auth = base64.b64encode(f"{credentials[0]}:{credentials[1]}".encode()).decode()
    return {"auths": {host: {"auth": auth}}}


# ---------------------------------------------------------------- kubeconfig for helm


class UnsupportedCredentials(ValueError):
    pass


def kubeconfig_document(config: ClusterConfig, context: str = "clusternet") -> Object:
    """A kubeconfig that says what ``config`` says, for the helm binary (written 0600 by
    :mod:`.helmcli`, never passed on a command line)."""
    if config.exec_plugin is not None:
        raise UnsupportedCredentials("exec credential plugins cannot be handed to helm")
    cluster: Object = {"server": config.server}
    if config.ca_data:
        cluster["certificate-authority-data"] = base64.b64encode(config.ca_data).decode()
    if config.insecure_skip_tls_verify:
        cluster["insecure-skip-tls-verify"] = True
    if config.tls_server_name:
        cluster["tls-server-name"] = config.tls_server_name
    user: Object = {}
    if config.client_cert_data and config.client_key_data:
        user["client-certificate-data"] = base64.b64encode(config.client_cert_data).decode()
        user["client-key-data"] = base64.b64encode(config.client_key_data).decode()
    if config.token_file is not None:
        user["tokenFile"] = str(config.token_file)
    elif config.token:
        user["token"] = config.token
    if config.impersonate is not None:
        user["as"] = config.impersonate.user
        if config.impersonate.uid:
            user["as-uid"] = config.impersonate.uid
        if config.impersonate.groups:
            user["as-groups"] = list(config.impersonate.groups)
        if config.impersonate.extra:
            user["as-user-extra"] = {k: list(v) for k, v in config.impersonate.extra.items()}
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": context, "cluster": cluster}],
        "users": [{"name": context, "user": user}],
        "contexts": [{"name": context, "context": {"cluster": context, "user": context}}],
        "current-context": context,
    }


# ---------------------------------------------------------------- releases


@dataclass(frozen=True)
class DesiredRelease:
    """What a HelmRelease asks for in its child."""

    name: str
    namespace: str
    repo: str
    chart: str
    version: str | None
    values: Object
    options: Mapping[str, Any]  # the HelmOptions of the spec (wire names)


class BadRelease(ValueError):
    """A HelmRelease spec that cannot be installed (reported, not retried)."""


def decode_values(raw: Any) -> Object:
    """``spec.overrides``: base64 of a JSON object (an already-decoded mapping is accepted)."""
    if raw in (None, ""):
        return {}
    if isinstance(raw, dict):
        return raw
    try:
        value = json.loads(base64.b64decode(raw, validate=True))
    except (binascii.Error, ValueError, TypeError) as err:
        raise BadRelease(f"spec.overrides is not base64 of JSON: {err}") from None
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BadRelease("spec.overrides must be a JSON object (Helm values)")
    return value


def desired_release(helm_release: Mapping[str, Any]) -> DesiredRelease:
    spec = helm_release.get("spec") or {}
    for key in ("repo", "chart", "targetNamespace"):
        if not spec.get(key):
            raise BadRelease(f"spec.{key} is required")
    name = spec.get("releaseName") or spec["chart"]
    return DesiredRelease(
        name=str(name),
        namespace=str(spec["targetNamespace"]),
        repo=str(spec["repo"]),
        chart=str(spec["chart"]),
        version=str(spec["version"]) if spec.get("version") else None,
        values=decode_values(spec.get("overrides")),
        options=spec,
    )


class ReleaseAction(StrEnum):
    INSTALL = "install"
    UPGRADE = "upgrade"
    REINSTALL = "reinstall"  # uninstall what is left, then install
    NONE = "none"
    WAIT = "wait"  # another helm operation is in flight


def release_action(
    desired: DesiredRelease, version: str, current: Mapping[str, Any] | None
) -> ActionDecision:
    """What to do given the release ``helm status -o json`` shows (None: no release) and the
    chart ``version`` the repository resolved.  Upgrades only when the chart, its version,
    the values or the names differ, or the last attempt did not deploy."""
    if current is None:
        return ActionDecision(ReleaseAction.INSTALL, "no release yet")
    info = current.get("info") or {}
    status = str(info.get("status") or "")
    atomic = bool(desired.options.get("atomic"))
    if status == PENDING_INSTALL:
        return ActionDecision(ReleaseAction.REINSTALL, "an earlier install did not finish")
    if status in (PENDING_UPGRADE, PENDING_ROLLBACK, UNINSTALLING):
        return ActionDecision(ReleaseAction.WAIT, f"the release is {status}")
    if status != DEPLOYED and atomic and int(current.get("version") or 0) <= 1:
        return ActionDecision(
            ReleaseAction.REINSTALL, f"the first install is {status or 'unknown'}"
        )
    metadata = (current.get("chart") or {}).get("metadata") or {}
    differences = []
    if current.get("name") != desired.name or current.get("namespace") != desired.namespace:
        differences.append("release name or namespace")
    if metadata.get("name") != desired.chart:
        differences.append("chart")
    if not same_version(str(metadata.get("version") or ""), version):
        differences.append(f"version {metadata.get('version')} -> {version}")
    if (current.get("config") or {}) != desired.values:
        differences.append("values")
    if status != DEPLOYED:
        differences.append(f"status {status or 'unknown'}")
    if differences:
        return ActionDecision(ReleaseAction.UPGRADE, ", ".join(differences))
    return ActionDecision(ReleaseAction.NONE, "up to date")


@dataclass(frozen=True)
class ActionDecision:
    action: ReleaseAction
    why: str


def _flag(options: Mapping[str, Any], key: str) -> bool:
    return bool(options.get(key))


def install_args(desired: DesiredRelease, chart_ref: Sequence[str], values_file: str) -> list[str]:
    """``helm install`` arguments (the kubeconfig and registry config come separately)."""
    o = desired.options
    args = ["install", desired.name, *chart_ref, "--namespace", desired.namespace]
    args += ["--values", values_file, "--timeout", f"{int(o.get('timeoutSeconds') or 300)}s"]
    if o.get("createNamespace", True):
        args.append("--create-namespace")
    if _flag(o, "atomic"):
        args.append("--rollback-on-failure")
    if _flag(o, "replace"):
        args.append("--replace")
    args += _common_flags(o)
    if _flag(o, "skipCRDs"):
        args.append("--skip-crds")
    return [*args, "--output", "json"]


def upgrade_args(desired: DesiredRelease, chart_ref: Sequence[str], values_file: str) -> list[str]:
    o = desired.options
    args = ["upgrade", desired.name, *chart_ref, "--namespace", desired.namespace]
    args += ["--values", values_file, "--reset-values", "--history-max", str(MAX_HISTORY)]
    args += ["--timeout", f"{int(o.get('timeoutSeconds') or 300)}s"]
    if _flag(o, "upgradeAtomic"):
        args.append("--rollback-on-failure")
    if _flag(o, "force"):
        args.append("--force-replace")
    args += _common_flags(o)
    if _flag(o, "skipCRDs"):
        args.append("--skip-crds")
    return [*args, "--output", "json"]


def _common_flags(o: Mapping[str, Any]) -> list[str]:
    flags = []
    if _flag(o, "wait"):
        flags.append("--wait=watcher")
        if _flag(o, "waitForJob"):
            flags.append("--wait-for-jobs")
    if _flag(o, "disableHooks"):
        flags.append("--no-hooks")
    return flags


def release_status(release: Mapping[str, Any]) -> Object:
    """A HelmRelease ``status`` from a release (``helm status/install -o json``)."""
    info = release.get("info") or {}
    status: Object = {
        "phase": info.get("status") or None,
        "version": release.get("version") or None,
        "firstDeployed": info.get("first_deployed") or None,
        "lastDeployed": info.get("last_deployed") or None,
        "description": _truncate(str(info["description"])) if info.get("description") else None,
        "notes": _truncate(str(info["notes"])) if info.get("notes") else None,
    }
    return status


def failed_status(message: str, previous: Mapping[str, Any] | None = None) -> Object:
    """Phase ``failed`` with the error as notes and description (what the Description's
    reason shows), keeping the revision and dates already known."""
    status: Object = {
        k: v
        for k, v in (previous or {}).items()
        if k in ("version", "firstDeployed", "lastDeployed")
    }
    text = _truncate(message)
    status.update({"phase": FAILED, "description": text, "notes": text})
    return status


def _truncate(text: str) -> str:
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 3] + "..."


def status_patch(current: Mapping[str, Any] | None, desired: Mapping[str, Any]) -> Object | None:
    current = current or {}
    patch = {k: v for k, v in desired.items() if current.get(k) != v}
    return patch or None


# ---------------------------------------------------------------- Description phase


_PHASES: Final = {
    DEPLOYED: DescriptionPhase.SUCCESS,
    PENDING_INSTALL: DescriptionPhase.INSTALLING,
    PENDING_UPGRADE: DescriptionPhase.UPGRADING,
    PENDING_ROLLBACK: DescriptionPhase.UPGRADING,
    UNINSTALLING: DescriptionPhase.UNINSTALLING,
    SUPERSEDED: DescriptionPhase.SUPERSEDED,
    FAILED: DescriptionPhase.FAILURE,
}
# When a Description has several charts, the most telling phase wins.
_PRECEDENCE: Final = (
    DescriptionPhase.FAILURE,
    DescriptionPhase.UNINSTALLING,
    DescriptionPhase.UPGRADING,
    DescriptionPhase.INSTALLING,
    DescriptionPhase.UNKNOWN,
    DescriptionPhase.PENDING,
    DescriptionPhase.SUPERSEDED,
    DescriptionPhase.SUCCESS,
)


def release_phase(phase: str | None) -> DescriptionPhase:
    """spec §4.7: deployed→Success, pending-install→Installing, pending-upgrade→Upgrading,
    uninstalling→Uninstalling, superseded→Superseded, failed→Failure, else Unknown; a
    HelmRelease without a status yet is Pending."""
    if not phase:
        return DescriptionPhase.PENDING
    return _PHASES.get(phase, DescriptionPhase.UNKNOWN)


def description_status(releases: Sequence[Mapping[str, Any]], expected: int) -> Object:
    """The Helm Description's ``phase``/``reason`` from its HelmReleases (``expected``: how
    many charts it lists; missing HelmReleases count as Pending)."""
    phases: list[tuple[DescriptionPhase, str, str]] = []
    for hr in releases:
        status = hr.get("status") or {}
        name = (hr.get("metadata") or {}).get("name", "")
        phases.append((release_phase(status.get("phase")), name, str(status.get("notes") or "")))
    if len(releases) < expected:
        phases.append((DescriptionPhase.PENDING, "", ""))
    if not phases:
        return {"phase": DescriptionPhase.PENDING, "reason": None}
    phase = min((p for p, _, _ in phases), key=_PRECEDENCE.index)
    reason = None
    if phase is DescriptionPhase.FAILURE:
        reason = _truncate(
            "; ".join(f"HelmRelease {n}: {notes}" for p, n, notes in phases if p is phase)
        )
    return {"phase": phase, "reason": reason}
