"""Helm Descriptions → HelmReleases (spec §2.3 HelmRelease, §4.7 "Helm path"; part of
``deployer``).

For each Description with ``spec.deployer: Helm`` one HelmRelease per chart, named
``<descName>-<chartNamespace>-<chartName>``: spec = the chart's HelmOptions and
``targetNamespace`` from ``spec.chartRaw[i]`` (the HelmChart after chart overrides),
``releaseName`` = the HelmChart's name, ``overrides`` = ``spec.raw[i]`` (values JSON); labels
``created-by``, ``config.kind: Description``, ``config.name/namespace/uid`` of the
Description, its cluster and ``subs.*`` labels, plus the chart's own labels and annotations;
controller owner reference → the Description.  HelmReleases of the Description that are no
longer listed are deleted.  The Description's ``status.phase``/``reason`` follow its
HelmReleases (:func:`clusternet.deployer.helm.description_status`).

Deletion: this controller is the one that holds a Helm Description's finalizer
(``apps.clusternet.io/finalizer``; the Generic pusher and puller skip Helm Descriptions): it
deletes the HelmReleases, waits until the cache has seen the last one go (each HelmRelease's
own finalizer is released by its deployer after ``helm uninstall``), then drops the
Description's finalizer.

Watch-driven: Descriptions (spec, labels, deletion) and HelmReleases (any change, mapped to
the owning Description by its owner reference).
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import structlog
from prometheus_client import REGISTRY, CollectorRegistry

from clusternet.apis import known
from clusternet.apis.apps.v1alpha1 import GROUP, VERSION
from clusternet.controllermanager.descriptions import decode
from clusternet.deployer.helm import description_status
from clusternet.kube import AlreadyExists, Conflict, KubeClient, NotFound, Object
from clusternet.runtime import (
    DeletedFinalStateUnknown,
    EventRecorder,
    Result,
    SharedInformerFactory,
    WorkQueue,
    object_key,
    run_workers,
)
from clusternet.runtime.reconcile import StaleCache

log = structlog.get_logger(__name__)

NAME: Final = "helmrelease"
API_VERSION: Final = f"{GROUP}/{VERSION}"
BY_DESCRIPTION_UID: Final = "helmrelease-description-uid"
# HelmOptions (spec §2.3) + targetNamespace: what a HelmRelease takes from its HelmChart.
HELM_OPTION_KEYS: Final = (
    "repo", "chart", "version", "chartPullSecret", "plainHTTP", "createNamespace",
    "timeoutSeconds", "wait", "waitForJob", "replace", "atomic", "upgradeAtomic", "skipCRDs",
    "replaceCRDs", "disableHooks", "force", "targetNamespace",
)  # fmt: skip
_DESCRIPTION_LABELS: Final = (
    known.CLUSTER_ID_LABEL,
    known.CLUSTER_NAME_LABEL,
    known.CONFIG_SUBSCRIPTION_NAME_LABEL,
    known.CONFIG_SUBSCRIPTION_NAMESPACE_LABEL,
    known.CONFIG_SUBSCRIPTION_UID_LABEL,
)


def release_name(description_name: str, chart_namespace: str, chart_name: str) -> str:
    return f"{description_name}-{chart_namespace}-{chart_name}"


def is_helm(description: Mapping[str, Any]) -> bool:
    return (description.get("spec") or {}).get("deployer") == "Helm"


@dataclass
class Built:
    releases: list[Object] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def helm_releases(description: Mapping[str, Any]) -> Built:
    """The HelmReleases a Helm Description asks for (pure)."""
    meta = description["metadata"]
    spec = description.get("spec") or {}
    charts = spec.get("charts") or []
    chart_raw = spec.get("chartRaw") or []
    raw = spec.get("raw") or []
    built = Built()
    if not (len(charts) == len(chart_raw) == len(raw)):
        built.errors.append(
            f"spec.charts ({len(charts)}), spec.chartRaw ({len(chart_raw)}) and spec.raw "
            f"({len(raw)}) must have the same length"
        )
        return built
    labels_from_description = meta.get("labels") or {}
    for index, (ref, chart_text, values) in enumerate(zip(charts, chart_raw, raw, strict=True)):
        try:
            chart = chart_text if isinstance(chart_text, dict) else decode(chart_text)
        except ValueError as err:
            built.errors.append(f"spec.chartRaw[{index}] is not base64 of JSON: {err}")
            continue
        if not isinstance(chart, dict):
            built.errors.append(f"spec.chartRaw[{index}] is not a HelmChart object")
            continue
        chart_meta = chart.get("metadata") or {}
        chart_spec = chart.get("spec") or {}
        chart_namespace = str(ref.get("namespace") or chart_meta.get("namespace") or "")
        chart_name = str(ref.get("name") or chart_meta.get("name") or "")
        hr_spec = {k: chart_spec[k] for k in HELM_OPTION_KEYS if k in chart_spec}
        hr_spec["releaseName"] = str(chart_meta.get("name") or chart_name)
        hr_spec["overrides"] = values
        labels = {
            **(chart_meta.get("labels") or {}),
            known.OBJECT_CREATED_BY_LABEL: known.CLUSTERNET_CONTROLLER_MANAGER_NAME,
            known.CONFIG_KIND_LABEL: "Description",
            known.CONFIG_NAMESPACE_LABEL: meta["namespace"],
            known.CONFIG_UID_LABEL: meta["uid"],
        }
        if len(meta["name"]) <= 63:
            labels[known.CONFIG_NAME_LABEL] = meta["name"]
        for key in _DESCRIPTION_LABELS:
            if key in labels_from_description:
                labels[key] = labels_from_description[key]
        release: Object = {
            "apiVersion": API_VERSION,
            "kind": "HelmRelease",
            "metadata": {
                "name": release_name(meta["name"], chart_namespace, chart_name),
                "namespace": meta["namespace"],
                "labels": labels,
                "ownerReferences": [
                    {
                        "apiVersion": API_VERSION,
                        "kind": "Description",
                        "name": meta["name"],
                        "uid": meta["uid"],
                        "controller": True,
                        "blockOwnerDeletion": True,
                    }
                ],
            },
            "spec": hr_spec,
        }
        if chart_meta.get("annotations"):
            release["metadata"]["annotations"] = dict(chart_meta["annotations"])
        built.releases.append(release)
    return built


def release_update(current: Mapping[str, Any], desired: Mapping[str, Any]) -> Object | None:
    """``current`` with the desired spec, labels, annotations and owner (status, finalizers
    and other metadata kept), or None when nothing differs."""
    meta = dict(current["metadata"])
    want = desired["metadata"]
    changed = current.get("spec") != desired["spec"]
    labels = dict(meta.get("labels") or {})
    for key, value in want["labels"].items():
        if labels.get(key) != value:
            labels[key] = value
            changed = True
    annotations = dict(meta.get("annotations") or {})
    for key, value in (want.get("annotations") or {}).items():
        if annotations.get(key) != value:
            annotations[key] = value
            changed = True
    owner = want["ownerReferences"][0]
    owners = list(meta.get("ownerReferences") or [])
    if not any(o.get("uid") == owner["uid"] and o.get("controller") for o in owners):
        owners = [o for o in owners if not o.get("controller")] + [owner]
        changed = True
    if not changed:
        return None
    meta.update(labels=labels, ownerReferences=owners)
    if annotations:
        meta["annotations"] = annotations
    return {**current, "metadata": meta, "spec": desired["spec"]}


def description_uid_of(release: Object) -> list[str]:
    return [
        str(o["uid"])
        for o in release["metadata"].get("ownerReferences") or ()
        if o.get("kind") == "Description" and o.get("controller") and o.get("uid")
    ]


class HelmReleaseController:
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
        self.descriptions = informers.informer(API_VERSION, "Description")
        self.releases = informers.informer(API_VERSION, "HelmRelease")
        self.releases.add_indexer(BY_DESCRIPTION_UID, description_uid_of)
        self.descriptions.add_event_handler(
            on_add=self._enqueue,
            on_update=lambda old, new: (
                self._enqueue(new) if _description_changed(old, new) else None
            ),
        )
        self.releases.add_event_handler(
            on_add=self._enqueue_owner,
            on_update=lambda old, new: self._enqueue_owner(new),
            on_delete=self._enqueue_owner,
        )

    async def run(self, workers: int) -> None:
        try:
            await run_workers(self.queue, self.reconcile, workers=workers)
        finally:
            self.queue.shut_down()

    def _enqueue(self, obj: Object | DeletedFinalStateUnknown) -> None:
        if isinstance(obj, DeletedFinalStateUnknown) or is_helm(obj):
            self.queue.add(object_key(obj))

    def _enqueue_owner(self, obj: Object | DeletedFinalStateUnknown) -> None:
        if isinstance(obj, DeletedFinalStateUnknown):
            obj = obj.object
        for owner in obj["metadata"].get("ownerReferences") or ():
            if owner.get("kind") == "Description" and owner.get("controller"):
                self.queue.add(f"{obj['metadata']['namespace']}/{owner['name']}")

    def _owned(self, description: Object) -> list[Object]:
        return self.releases.store.by_index(BY_DESCRIPTION_UID, description["metadata"]["uid"])

    async def reconcile(self, key: str) -> Result | None:
        desc = self.descriptions.store.get(key)
        if desc is None or not is_helm(desc):
            return None
        if desc["metadata"].get("deletionTimestamp"):
            await self._finalize(desc)
            return None
        built = helm_releases(desc)
        if built.errors:
            message = "; ".join(built.errors)
            self.recorder.event(desc, "Warning", "UnequalLengths", message)
            await self._write_status(desc, {"phase": "Failure", "reason": message})
            return None  # a new spec brings it back
        wanted = {r["metadata"]["name"] for r in built.releases}
        owned = self._owned(desc)
        failures = []
        for release in built.releases:
            if (error := await self._apply(desc, release)) is not None:
                failures.append(error)
        for release in owned:
            meta = release["metadata"]
            if meta["name"] not in wanted and not meta.get("deletionTimestamp"):
                with contextlib.suppress(NotFound):
                    await self.client.delete(
                        API_VERSION, "HelmRelease", meta["name"], namespace=meta["namespace"]
                    )
        current = [r for r in self._owned(desc) if r["metadata"]["name"] in wanted]
        await self._write_status(desc, description_status(current, len(built.releases)))
        if failures:
            raise RuntimeError("; ".join(failures))
        return None

    async def _apply(self, desc: Object, release: Object) -> str | None:
        meta = release["metadata"]
        current = self.releases.store.get(f"{meta['namespace']}/{meta['name']}")
        try:
            if current is None:
                await self.client.create(release)
                self.recorder.event(
                    desc, "Normal", "HelmReleaseCreated", f"HelmRelease {meta['name']} created"
                )
                return None
            if current["metadata"].get("deletionTimestamp"):
                return None  # recreated after its uninstall finishes (its delete event)
            updated = release_update(current, release)
            if updated is not None:
                await self.client.update(updated)
        except (AlreadyExists, Conflict) as err:
            raise StaleCache(f"HelmRelease {meta['name']}: {err}") from err
        except NotFound:
            return None  # the namespace is going away
        except Exception as err:
            return f"writing HelmRelease {meta['name']}: {err}"
        return None

    async def _finalize(self, desc: Object) -> None:
        meta = desc["metadata"]
        if known.APP_FINALIZER not in (meta.get("finalizers") or ()):
            return
        owned = self._owned(desc)
        for release in owned:
            rmeta = release["metadata"]
            if not rmeta.get("deletionTimestamp"):
                with contextlib.suppress(NotFound):
                    await self.client.delete(
                        API_VERSION, "HelmRelease", rmeta["name"], namespace=rmeta["namespace"]
                    )
        if owned:
            await self._write_status(desc, {"phase": "Uninstalling", "reason": None})
            log.info("waiting for HelmReleases to go", description=object_key(desc),
                     left=len(owned))  # fmt: skip
            return  # each HelmRelease's delete event brings the Description back
        finalizers = [f for f in meta.get("finalizers") or () if f != known.APP_FINALIZER]
        patch = {"metadata": {"finalizers": finalizers or None,
                              "resourceVersion": meta.get("resourceVersion")}}  # fmt: skip
        try:
            await self.client.patch(
                API_VERSION, "Description", meta["name"], patch, namespace=meta["namespace"]
            )
        except NotFound:
            return
        except Conflict as err:
            raise StaleCache(f"Description {meta['name']}: {err}") from err

    async def _write_status(self, desc: Object, desired: Mapping[str, Any]) -> None:
        status = desc.get("status") or {}
        patch = {k: v for k, v in desired.items() if status.get(k) != v}
        if not patch:
            return
        meta = desc["metadata"]
        try:
            await self.client.patch(
                API_VERSION, "Description", meta["name"], {"status": patch},
                namespace=meta["namespace"], subresource="status",
            )  # fmt: skip
        except NotFound:
            return


def _description_changed(old: Object, new: Object) -> bool:
    o, n = old["metadata"], new["metadata"]
    return (
        old.get("spec") != new.get("spec")
        or o.get("labels") != n.get("labels")
        or o.get("deletionTimestamp") != n.get("deletionTimestamp")
    )
