"""The HelmChart controller (spec §2.3 HelmChart, §4.1; part of ``deployer``): labels every
HelmChart with its identity (``apps.clusternet.io/config.{group,version,kind,name,namespace}``)
and verifies that the chart exists in its repository:

* HTTP(S) repository: ``<repo>/index.yaml`` is fetched (basic auth from the
  ``chartPullSecret``'s ``username``/``password`` in the parent) and the chart looked up at
  ``spec.version`` (exact, a leading ``v`` ignored), or its latest stable version when empty;
* OCI repository: the tags of ``<repo without oci://>/<chart>`` are listed through the
  registry API (``/v2/<name>/tags/list``, answering a bearer-token challenge;
  ``plainHTTP`` for plain HTTP registries) and the version must be one of them.

``status.phase`` is ``Found`` (``reason`` names the version found) or ``NotFound`` with the
reason.  Finalizers are the feed-protection controller's; Bases referencing the chart are
re-rendered by the Base controller, which watches HelmChart ``status.phase``.

Unreachable repository (network error, HTTP 5xx, an index that is not YAML): a chart never
verified becomes ``NotFound`` with reason ``repository unreachable: ...``; a chart already
``Found`` keeps its phase (a repository outage must not uninstall releases everywhere) and
gets a ``RepositoryUnreachable`` event; either way the check is retried with the work
queue's backoff.  A repository has no watch, so a ``NotFound`` chart is checked again every
:data:`RECHECK_SECONDS` (a version published later is picked up), and any spec change checks
at once.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any, Final

import structlog
from prometheus_client import REGISTRY, CollectorRegistry

from clusternet.apis import known
from clusternet.apis.apps.v1alpha1 import GROUP, VERSION
from clusternet.deployer.helm import ChartLookupError, basic_credentials
from clusternet.deployer.helmcli import RepositoryUnreachable, verify_chart
from clusternet.kube import ApiError, KubeClient, NotFound, Object
from clusternet.runtime import (
    EventRecorder,
    Result,
    SharedInformerFactory,
    WorkQueue,
    object_key,
    run_workers,
)

log = structlog.get_logger(__name__)

NAME: Final = "helmchart"
API_VERSION: Final = f"{GROUP}/{VERSION}"
FOUND: Final = "Found"
NOT_FOUND: Final = "NotFound"
RECHECK_SECONDS: Final = 600.0


class RepositoryDown(Exception):
    """Raised out of a reconcile so that the work queue retries with backoff."""


def config_labels(chart: Mapping[str, Any]) -> dict[str, str]:
    meta = chart["metadata"]
    return {
        known.CONFIG_GROUP_LABEL: GROUP,
        known.CONFIG_VERSION_LABEL: VERSION,
        known.CONFIG_KIND_LABEL: "HelmChart",
        known.CONFIG_NAME_LABEL: meta["name"],
        known.CONFIG_NAMESPACE_LABEL: meta.get("namespace") or "",
    }


def missing_labels(chart: Mapping[str, Any]) -> dict[str, str]:
    labels = chart["metadata"].get("labels") or {}
    return {k: v for k, v in config_labels(chart).items() if labels.get(k) != v}


def unreachable_status(current: Mapping[str, Any] | None, message: str) -> dict[str, Any] | None:
    """The status to write when the repository cannot be asked (None: keep the current)."""
    if (current or {}).get("phase") == FOUND:
        return None
    return {"phase": NOT_FOUND, "reason": f"repository unreachable: {message}"}


class HelmChartController:
    def __init__(
        self,
        client: KubeClient,
        informers: SharedInformerFactory,
        recorder: EventRecorder,
        *,
        registry: CollectorRegistry | None = REGISTRY,
    ) -> None:
        self.client = client
        self.recorder = recorder
        self.queue: WorkQueue[str] = WorkQueue(NAME, registry=registry)
        self.charts = informers.informer(API_VERSION, "HelmChart")
        self.charts.add_event_handler(
            on_add=self._enqueue,
            on_update=lambda old, new: (
                self._enqueue(new)
                if old.get("spec") != new.get("spec")
                or old["metadata"].get("labels") != new["metadata"].get("labels")
                else None
            ),
        )

    async def run(self, workers: int) -> None:
        try:
            await run_workers(self.queue, self.reconcile, workers=workers)
        finally:
            self.queue.shut_down()

    def _enqueue(self, obj: Object) -> None:
        self.queue.add(object_key(obj))

    async def reconcile(self, key: str) -> Result | None:
        chart = self.charts.store.get(key)
        if chart is None or chart["metadata"].get("deletionTimestamp"):
            return None
        meta = chart["metadata"]
        if missing := missing_labels(chart):
            with contextlib.suppress(NotFound):
                await self.client.patch(
                    API_VERSION, "HelmChart", meta["name"], {"metadata": {"labels": missing}},
                    namespace=meta["namespace"],
                )  # fmt: skip
            return None  # the label update event brings it back to verify
        spec = chart.get("spec") or {}
        try:
            credentials = await self._credentials(chart)
            version = await verify_chart(dict(spec), credentials)
        except ChartLookupError as err:
            await self._write_status(chart, {"phase": NOT_FOUND, "reason": str(err)})
            return Result(requeue_after=RECHECK_SECONDS)
        except RepositoryUnreachable as err:
            desired = unreachable_status(chart.get("status"), str(err))
            if desired is not None:
                await self._write_status(chart, desired)
            self.recorder.event(chart, "Warning", "RepositoryUnreachable", str(err))
            raise RepositoryDown(str(err)) from err
        reason = f"found version {version}" if not spec.get("version") else None
        await self._write_status(chart, {"phase": FOUND, "reason": reason})
        return None

    async def _credentials(self, chart: Object) -> tuple[str, str] | None:
        ref = (chart.get("spec") or {}).get("chartPullSecret") or {}
        if not ref.get("name"):
            return None
        namespace = ref.get("namespace") or chart["metadata"]["namespace"]
        try:
            secret = await self.client.get("v1", "Secret", ref["name"], namespace=namespace)
        except NotFound:
            raise ChartLookupError(
                f"chartPullSecret {namespace}/{ref['name']} does not exist"
            ) from None
        except ApiError as err:
            raise RepositoryUnreachable(
                f"reading chartPullSecret {namespace}/{ref['name']}: {err}"
            ) from err
        try:
            return basic_credentials(secret)
        except ValueError as err:
            raise ChartLookupError(f"chartPullSecret {namespace}/{ref['name']}: {err}") from None

    async def _write_status(self, chart: Object, desired: Mapping[str, Any]) -> None:
        status = chart.get("status") or {}
        patch = {k: v for k, v in desired.items() if status.get(k) != v}
        if not patch:
            return
        meta = chart["metadata"]
        try:
            await self.client.patch(
                API_VERSION, "HelmChart", meta["name"], {"status": patch},
                namespace=meta["namespace"], subresource="status",
            )  # fmt: skip
        except NotFound:
            return
        if patch.get("phase"):
            message = str(desired.get("reason") or f"chart {chart['spec'].get('chart')} found")
            if desired["phase"] == FOUND:
                self.recorder.event(chart, "Normal", "HelmChartFound", message)
            else:
                self.recorder.event(chart, "Warning", "HelmChartNotFound", message)
