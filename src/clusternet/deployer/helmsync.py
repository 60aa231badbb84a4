"""One reconcile of one HelmRelease against one child (spec §4.7 "Helm path"), shared by the
controller-manager (push, through the hub) and the agent (pull): finalizer, install or
upgrade with the real helm binary only when something changed, uninstall on deletion,
``status`` from the release, events.

Errors (repository unreachable, chart or version missing, a chart that fails to render, the
API refusing objects) set ``status.phase: failed`` with the message in ``description`` and
``notes`` (the owning Description's reason) and raise :class:`DeployFailed`, so the work
queue retries with backoff; a spec that can never work (undecodable values) is reported and
not retried until it changes.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from typing import Any, Final

import structlog

from clusternet.apis import known
from clusternet.apis.apps.v1alpha1 import GROUP, VERSION
from clusternet.deployer.helm import (
    PENDING_INSTALL,
    PENDING_UPGRADE,
    UNINSTALLING,
    BadRelease,
    ChartLookupError,
    ReleaseAction,
    UnsupportedCredentials,
    basic_credentials,
    desired_release,
    failed_status,
    install_args,
    kubeconfig_document,
    release_action,
    release_status,
    status_patch,
    upgrade_args,
)
from clusternet.deployer.helmcli import (
    Helm,
    HelmCommandError,
    HelmSession,
    RepositoryUnreachable,
    locate_chart,
    verify_chart,
)
from clusternet.deployer.sync import DeployFailed
from clusternet.kube import ApiError, ClusterConfig, Conflict, KubeClient, NotFound, Object
from clusternet.runtime import EventRecorder

log = structlog.get_logger(__name__)

API_VERSION: Final = f"{GROUP}/{VERSION}"
KIND: Final = "HelmRelease"


class ReleaseSync:
    """Installs HelmReleases into a child given its :class:`ClusterConfig`; writes back to
    the parent.  ``helm`` None: no helm binary here, every release fails with that reason."""

    def __init__(self, parent: KubeClient, recorder: EventRecorder, helm: Helm | None) -> None:
        self.parent = parent
        self.recorder = recorder
        self.helm = helm

    # -- deploy ---------------------------------------------------------------------------

    async def deploy(self, child: ClusterConfig, helm_release: Object) -> None:
        hr = copy.deepcopy(helm_release)
        if not await self._ensure_finalizer(hr):
            return
        previous = hr.get("status") or {}
        if self.helm is None:
            message = "no helm binary: start the component with --helm-binary or helm on $PATH"
            await self._fail(hr, message, reason="HelmNotAvailable", retry=False)
            return
        try:
            desired = desired_release(hr)
            kubeconfig = kubeconfig_document(child)
        except (BadRelease, UnsupportedCredentials) as err:
            await self._fail(hr, str(err), reason="InvalidHelmRelease", retry=False)
            return
        credentials = await self._credentials(hr)
        async with self.helm.session(kubeconfig) as session:
            try:
                current = await session.status(desired.name, desired.namespace)
            except HelmCommandError as err:
                await self._fail(hr, f"reading the release: {err}", reason="HelmReleaseFailed")
                return
            try:
                version = desired.version or await verify_chart(dict(desired.options), credentials)
            except (ChartLookupError, RepositoryUnreachable) as err:
                await self._fail(hr, f"locating the chart: {err}", reason="ChartLocateFailure")
                return
            decision = release_action(desired, version, current)
            if decision.action is ReleaseAction.NONE:
                assert current is not None
                await self._write_status(hr, release_status(current))
                return
            if decision.action is ReleaseAction.WAIT:
                assert current is not None
                await self._write_status(hr, release_status(current))
                raise DeployFailed(f"{desired.name}: {decision.why}, retrying")
            await self._install(session, hr, desired, version, decision.action, previous,
                                credentials, why=decision.why)  # fmt: skip

    async def _install(
        self,
        session: HelmSession,
        hr: Object,
        desired: Any,
        version: str,
        action: ReleaseAction,
        previous: Mapping[str, Any],
        credentials: tuple[str, str] | None,
        *,
        why: str,
    ) -> None:
        options = desired.options
        timeout = int(options.get("timeoutSeconds") or 300)
        try:
            chart = await locate_chart({**options, "version": version}, credentials,
                                       session.workdir)  # fmt: skip
        except (ChartLookupError, RepositoryUnreachable) as err:
            await self._fail(hr, f"locating the chart: {err}", reason="ChartLocateFailure")
            return
        values = session.private_file("values.json", json.dumps(desired.values))
        try:
            if action is ReleaseAction.REINSTALL:
                await self._write_status(hr, {"phase": UNINSTALLING})
                await session.uninstall(desired.name, desired.namespace, timeout)
                action = ReleaseAction.INSTALL
            if action is ReleaseAction.INSTALL:
                await self._write_status(hr, {"phase": PENDING_INSTALL})
                args = install_args(desired, chart.args, values)
            else:
                await self._write_status(hr, {"phase": PENDING_UPGRADE})
                args = upgrade_args(desired, chart.args, values)
            log.info("helm", action=str(action), release=desired.name, why=why,
                     namespace=desired.namespace, version=version)  # fmt: skip
            release = await session.deploy(args, timeout, chart.registry_config)
        except HelmCommandError as err:
            # What helm left behind (a failed release, or none) is kept in the status.
            await self._fail(hr, f"helm {args_name(action)}: {err}", reason="HelmReleaseFailed",
                             previous=previous)  # fmt: skip
            return
        await self._write_status(hr, release_status(release))
        verb = "installed" if action is ReleaseAction.INSTALL else "upgraded"
        self.recorder.event(
            hr, "Normal", f"HelmRelease{verb.capitalize()}",
            f"release {desired.namespace}/{desired.name} {verb}: chart {desired.chart} "
            f"{version}, revision {release.get('version')}",
        )  # fmt: skip

    # -- remove ---------------------------------------------------------------------------

    async def remove(self, child: ClusterConfig | None, helm_release: Object) -> None:
        """Uninstall (unless ``child`` is None: the cluster is lost) and drop the finalizer."""
        hr = copy.deepcopy(helm_release)
        if known.APP_FINALIZER not in (hr["metadata"].get("finalizers") or ()):
            return
        if child is not None and self.helm is not None:
            try:
                desired = desired_release(hr)
                kubeconfig = kubeconfig_document(child)
            except (BadRelease, UnsupportedCredentials):
                desired = None  # nothing could have been installed from it
            if desired is not None:
                await self._write_status(hr, {"phase": UNINSTALLING})
                try:
                    async with self.helm.session(kubeconfig) as session:
                        await session.uninstall(
                            desired.name,
                            desired.namespace,
                            int(desired.options.get("timeoutSeconds") or 300),
                        )
                except HelmCommandError as err:
                    message = f"helm uninstall: {err}"
                    self.recorder.event(hr, "Warning", "FailedUninstalling", message)
                    raise DeployFailed(message) from err
                self.recorder.event(
                    hr, "Normal", "HelmReleaseUninstalled",
                    f"release {desired.namespace}/{desired.name} uninstalled",
                )  # fmt: skip
        await self._remove_finalizer(hr)

    # -- helpers --------------------------------------------------------------------------

    async def _credentials(self, hr: Object) -> tuple[str, str] | None:
        secret_ref = (hr.get("spec") or {}).get("chartPullSecret") or {}
        if not secret_ref.get("name"):
            return None
        namespace = secret_ref.get("namespace") or hr["metadata"]["namespace"]
        try:
            secret = await self.parent.get("v1", "Secret", secret_ref["name"], namespace=namespace)
            return basic_credentials(secret)
        except (ApiError, ValueError) as err:
            message = f"chart pull Secret {namespace}/{secret_ref['name']}: {err}"
            await self._fail(hr, message, reason="ChartLocateFailure", retry=False)
            raise DeployFailed(message) from err

    async def _fail(
        self,
        hr: Object,
        message: str,
        *,
        reason: str,
        retry: bool = True,
        previous: Mapping[str, Any] | None = None,
    ) -> None:
        await self._write_status(hr, failed_status(message, previous or hr.get("status")))
        self.recorder.event(hr, "Warning", reason, message)
        if retry:
            raise DeployFailed(message)

    async def _write_status(self, hr: Object, desired: Mapping[str, Any]) -> None:
        patch = status_patch(hr.get("status"), desired)
        if patch is None:
            return
        meta = hr["metadata"]
        try:
            await self.parent.patch(
                API_VERSION, KIND, meta["name"], {"status": patch},
                namespace=meta["namespace"], subresource="status",
            )  # fmt: skip
        except NotFound:
            return
        hr["status"] = {**(hr.get("status") or {}), **patch}

    async def _ensure_finalizer(self, hr: Object) -> bool:
        meta = hr["metadata"]
        finalizers = list(meta.get("finalizers") or ())
        if known.APP_FINALIZER in finalizers:
            return True
        patch = {
            "metadata": {
                "finalizers": [*finalizers, known.APP_FINALIZER],
                "resourceVersion": meta.get("resourceVersion"),
            }
        }
        try:
            updated = await self.parent.patch(
                API_VERSION, KIND, meta["name"], patch, namespace=meta["namespace"]
            )
        except NotFound:
            return False
        except Conflict as err:
            raise DeployFailed("the HelmRelease changed meanwhile") from err
        meta["finalizers"] = updated["metadata"].get("finalizers")
        meta["resourceVersion"] = updated["metadata"].get("resourceVersion")
        return True

    async def _remove_finalizer(self, hr: Object) -> None:
        meta = hr["metadata"]
        finalizers = [f for f in meta.get("finalizers") or () if f != known.APP_FINALIZER]
        patch = {
            "metadata": {
                "finalizers": finalizers or None,
                "resourceVersion": meta.get("resourceVersion"),
            }
        }
        try:
            await self.parent.patch(
                API_VERSION, KIND, meta["name"], patch, namespace=meta["namespace"]
            )
        except NotFound:
            return
        except Conflict as err:
            raise DeployFailed("the HelmRelease changed meanwhile") from err


def args_name(action: ReleaseAction) -> str:
    return "upgrade" if action is ReleaseAction.UPGRADE else "install"


def needs_uninstall(helm_release: Mapping[str, Any]) -> bool:
    meta = helm_release.get("metadata") or {}
    return bool(meta.get("deletionTimestamp")) and known.APP_FINALIZER in (
        meta.get("finalizers") or ()
    )
