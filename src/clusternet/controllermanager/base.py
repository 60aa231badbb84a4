"""The Base controller (spec §4.5, §4.6, §4.8; part of ``deployer``): renders each Base's
Descriptions (``<base>-generic``, ``<base>-helm``) with :mod:`.descriptions` and writes them
only when the rendered spec or labels differ.

Finding the Bases to re-render without back-reference labels: upstream stamps
``<baseUID>: Base`` and ``<subUID>: Subscription`` labels onto every Manifest and HelmChart a
Base uses, and finds the Bases from those labels.  With thousands of Subscriptions sharing a
feed, thousands of labels would pile up on one Manifest (every write of it then rewrites them
all, and the object grows towards etcd's size limit).  Instead the Bases are indexed in the
informer cache by the identity of their feeds (``group/version/kind/namespace/name``, what a
Manifest's ``config.*`` labels say), so a Manifest, HelmChart, Localization or Globalization
event finds its Bases by one index lookup; nothing is written onto the feeds.

Triggers: a Base's spec or labels; a Manifest's template (add too: a Base waiting for a
missing Manifest is rendered as soon as it appears); a HelmChart's spec or phase; a
Localization (same namespace) or Globalization of a feed with policy ``ApplyNow`` on create,
update and delete (a delete rolls the override back); ``ApplyLater`` ones never trigger and
take effect at the next render; a ManagedCluster's labels (Globalization affinity); a
Description's spec, labels or deletion.  Localizations and Globalizations get no finalizer
here: their delete event is enough to re-render from the cache, and after a restart every
Base is rendered again anyway.

Bad input stays with its feed (:mod:`.descriptions`): a missing template → event
``Nonexistent<Kind>`` on the Base, the template's add event retries; an override that cannot
be applied → ``FailedApplyingOverrides``; in both cases that feed keeps what it was last
rendered to while the other feeds are rendered.  A JSON patch on a missing path is skipped,
as upstream, but reported: ``SkippedOverride``.  What is wrong is recorded on the Base in the
annotation ``apps.clusternet.io/render-error`` (removed by the next clean render), which the
``aggregatestatus`` controller puts into the Subscription's ``Deployed`` condition.  None of
it affects other Bases.  Deletion: the Base's Descriptions are deleted and the Base's
finalizer is dropped when the cache has seen the last one go (their deployer removes the
Descriptions' own finalizer after cleaning the child; this controller never does).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any, Final

import structlog
from prometheus_client import REGISTRY, CollectorRegistry

from clusternet.apis import known, naming
from clusternet.controllermanager import bases as plan
from clusternet.controllermanager import descriptions as render
from clusternet.controllermanager import finalizers
from clusternet.controllermanager.feedinventory import manifest_identity
from clusternet.kube import AlreadyExists, Conflict, KubeClient, NotFound, Object
from clusternet.runtime import (
    DeletedFinalStateUnknown,
    EventRecorder,
    Informer,
    Result,
    SharedInformerFactory,
    StaleCache,
    WorkQueue,
    last_state,
    object_key,
    run_workers,
)

log = structlog.get_logger(__name__)

NAME: Final = "base"
APPS_API_VERSION: Final = render.APPS_API_VERSION
CLUSTERS_API_VERSION: Final = f"{known.CLUSTERS_GROUP}/v1beta1"
# The same index (name and function) as the FeedInventory controller's, so it is shared.
BY_FEED: Final = "feed-identity"
BY_NAMESPACED_FEED: Final = "namespaced-feed-identity"
BY_BASE_UID: Final = "pipeline-base-uid"
BY_NAMESPACE: Final = "namespace"  # built into every Store
RENDER_ERROR_LIMIT: Final = 4096  # characters of the render-error annotation


def base_feed_identities(base: Object) -> list[str]:
    return [render.identity_of(f) for f in (base.get("spec") or {}).get("feeds") or ()]


def base_namespaced_feed_identities(base: Object) -> list[str]:
    namespace = base["metadata"].get("namespace", "")
    return [f"{namespace}|{identity}" for identity in base_feed_identities(base)]


def override_feed_identity(obj: Object) -> list[str]:
    feed = (obj.get("spec") or {}).get("feed")
    return [render.identity_of(feed)] if isinstance(feed, dict) else []


def localization_namespaced_feed_identity(obj: Object) -> list[str]:
    namespace = obj["metadata"].get("namespace", "")
    return [f"{namespace}|{identity}" for identity in override_feed_identity(obj)]


def description_base_uid(obj: Object) -> list[str]:
    uid = (obj["metadata"].get("labels") or {}).get(known.CONFIG_UID_LABEL)
    return [uid] if uid else []


def _apply_now(obj: Object) -> bool:
    return (obj.get("spec") or {}).get("overridePolicy") == "ApplyNow"


class BaseController:
    def __init__(
        self,
        client: KubeClient,
        informers: SharedInformerFactory,
        recorder: EventRecorder,
        *,
        reserved_namespace: str = known.RESERVED_NAMESPACE,
        registry: CollectorRegistry | None = REGISTRY,
    ) -> None:
        self.client = client
        self.recorder = recorder
        self.queue: WorkQueue[str] = WorkQueue(NAME, registry=registry)
        self.bases = informers.informer(APPS_API_VERSION, "Base")
        self.manifests = informers.informer(
            APPS_API_VERSION, "Manifest", namespace=reserved_namespace
        )
        self.charts = informers.informer(APPS_API_VERSION, "HelmChart")
        self.localizations = informers.informer(APPS_API_VERSION, "Localization")
        self.globalizations = informers.informer(APPS_API_VERSION, "Globalization")
        self.clusters = informers.informer(CLUSTERS_API_VERSION, "ManagedCluster")
        # The same informer (selector) as the cluster lifecycle controller's.
        self.descriptions = informers.informer(
            APPS_API_VERSION, "Description", label_selector=f"{known.CONFIG_KIND_LABEL}=Base"
        )
        self.bases.add_indexer(BY_FEED, base_feed_identities)
        self.bases.add_indexer(BY_NAMESPACED_FEED, base_namespaced_feed_identities)
        self.manifests.add_indexer(BY_FEED, manifest_identity)
        self.localizations.add_indexer(BY_NAMESPACED_FEED, localization_namespaced_feed_identity)
        self.globalizations.add_indexer(BY_FEED, override_feed_identity)
        self.descriptions.add_indexer(BY_BASE_UID, description_base_uid)

        self.bases.add_event_handler(
            on_add=self._enqueue,
            on_update=lambda old, new: self._enqueue(new) if _base_changed(old, new) else None,
        )
        self.manifests.add_event_handler(
            on_add=self._manifest_changed,
            on_update=lambda old, new: (
                self._manifest_changed(new) if old.get("template") != new.get("template") else None
            ),
            on_delete=self._manifest_changed,
        )
        self.charts.add_event_handler(
            on_add=self._chart_changed,
            on_update=lambda old, new: (
                self._chart_changed(new) if _chart_view(old) != _chart_view(new) else None
            ),
            on_delete=self._chart_changed,
        )
        self._watch_overrides(
            self.localizations, BY_NAMESPACED_FEED, localization_namespaced_feed_identity
        )
        self._watch_overrides(self.globalizations, BY_FEED, override_feed_identity)
        self.clusters.add_event_handler(
            on_update=lambda old, new: (
                self._enqueue_namespace(new["metadata"].get("namespace", ""))
                if old["metadata"].get("labels") != new["metadata"].get("labels")
                else None
            ),
        )
        self.descriptions.add_event_handler(
            on_update=lambda old, new: (
                self._enqueue_described(new) if _description_changed(old, new) else None
            ),
            on_delete=self._enqueue_described,
        )

    async def run(self, workers: int) -> None:
        try:
            await run_workers(self.queue, self.reconcile, workers=workers)
        finally:
            self.queue.shut_down()

    # -- event handlers -------------------------------------------------------------------

    def _enqueue(self, obj: Object | DeletedFinalStateUnknown) -> None:
        self.queue.add(object_key(obj))

    def _enqueue_feed(self, identity: str) -> None:
        for key in self.bases.store.index_keys(BY_FEED, identity):
            self.queue.add(key)

    def _manifest_changed(self, manifest: Object | DeletedFinalStateUnknown) -> None:
        for identity in manifest_identity(last_state(manifest)):
            self._enqueue_feed(identity)

    def _chart_changed(self, chart: Object | DeletedFinalStateUnknown) -> None:
        meta = last_state(chart)["metadata"]
        feed = {
            "apiVersion": APPS_API_VERSION,
            "kind": "HelmChart",
            "namespace": meta.get("namespace"),
            "name": meta.get("name", ""),
        }
        self._enqueue_feed(render.identity_of(feed))

    def _watch_overrides(
        self, informer: Informer, index: str, feeds_of: Callable[[Object], list[str]]
    ) -> None:
        """Re-render the Bases (found by ``index`` over ``feeds_of``) of an ApplyNow override
        created, changed or deleted (a delete rolls it back); an override moved to another
        feed re-renders the Bases of both.  ApplyLater ones take effect at the next render."""

        def changed(new: Object, old: Object | None) -> None:
            if not _apply_now(new) or (
                old is not None and _override_view(old) == _override_view(new)
            ):
                return
            feeds = {*feeds_of(new), *(feeds_of(old) if old is not None else ())}
            for value in feeds:
                for key in self.bases.store.index_keys(index, value):
                    self.queue.add(key)

        informer.add_event_handler(
            on_add=lambda obj: changed(obj, None),
            on_update=lambda old, new: changed(new, old),
            on_delete=lambda obj: changed(last_state(obj), None),
        )

    def _enqueue_namespace(self, namespace: str) -> None:
        for key in self.bases.store.index_keys(BY_NAMESPACE, namespace):
            self.queue.add(key)

    def _enqueue_described(self, desc: Object | DeletedFinalStateUnknown) -> None:
        desc = last_state(desc)
        uid = (desc["metadata"].get("labels") or {}).get(known.CONFIG_UID_LABEL)
        for owner in desc["metadata"].get("ownerReferences") or ():
            if owner.get("kind") == "Base" and (uid is None or owner.get("uid") == uid):
                self.queue.add(f"{desc['metadata']['namespace']}/{owner['name']}")

    # -- reconcile ------------------------------------------------------------------------

    async def reconcile(self, key: str) -> Result | None:
        base = self.bases.store.get(key)
        if base is None:
            return None
        if base["metadata"].get("deletionTimestamp"):
            await self._finalize(base)
            return None
        if known.APP_FINALIZER not in (base["metadata"].get("finalizers") or []):
            await finalizers.ensure_finalizer(self.client, base)
            return None  # the update event brings it back
        waiting = plan.missing_replica_localizations(
            base, lambda key: self.localizations.store.get(key) is not None
        )
        if waiting is not None:
            # Their add events (or the annotation's update) bring the Base back.
            log.debug("waiting for replica Localizations", base=key, missing=waiting)
            return None
        inputs = self._inputs(base)
        generic = self._current(base, naming.description_name(base["metadata"]["name"], helm=False))
        failures: list[str] = []
        problems: list[str] = []
        for rendered in (
            render.render_generic(base, inputs, render.rendered_objects(generic)),
            render.render_helm_description(base, inputs),
        ):
            problems += rendered.problems
            error = await self._sync(base, rendered)
            if error:
                failures.append(error)
        await self._record_problems(base, problems)
        if failures:
            raise RuntimeError("; ".join(failures))
        return None

    def _cluster_labels(self, namespace: str) -> dict[str, str] | None:
        clusters = self.clusters.store.by_index(BY_NAMESPACE, namespace)
        if not clusters:
            return None
        labels: dict[str, str] = clusters[0]["metadata"].get("labels") or {}
        return labels

    def _inputs(self, base: Object) -> list[render.FeedInput]:
        namespace = base["metadata"]["namespace"]
        cluster_labels = self._cluster_labels(namespace)
        inputs = []
        for feed in (base.get("spec") or {}).get("feeds") or ():
            identity = render.identity_of(feed)
            template: Object | None
            if render.is_helm_feed(feed):
                template = self.charts.store.get(f"{feed.get('namespace')}/{feed.get('name')}")
            else:
                template = self._template(identity)
            sources = render.override_sources(
                feed,
                namespace,
                cluster_labels,
                self.localizations.store.by_index(BY_NAMESPACED_FEED, f"{namespace}|{identity}"),
                self.globalizations.store.by_index(BY_FEED, identity),
            )
            inputs.append(render.FeedInput(feed, template, sources))
        return inputs

    def _template(self, identity: str) -> Object | None:
        # A Manifest whose deletion is blocked (feed in use) is still the template.
        manifests = self.manifests.store.by_index(BY_FEED, identity)
        if not manifests:
            return None
        # A legacy dash-named Manifest next to a new one: the newest wins.
        newest = max(manifests, key=lambda m: m["metadata"].get("creationTimestamp") or "")
        template = newest.get("template")
        return template if isinstance(template, dict) else None

    def _current(self, base: Object, name: str) -> Object | None:
        return self.descriptions.store.get(f"{base['metadata']['namespace']}/{name}")

    async def _record_problems(self, base: Object, problems: list[str]) -> None:
        """Keep the Base's render-error annotation saying what is wrong with its input (the
        Subscription's Deployed condition reads it); removed once a render is clean."""
        text = "; ".join(problems)
        if len(text) > RENDER_ERROR_LIMIT:
            text = text[: RENDER_ERROR_LIMIT - 3] + "..."
        meta = base["metadata"]
        if (meta.get("annotations") or {}).get(known.RENDER_ERROR_ANNOTATION) == (text or None):
            return
        patch = {"metadata": {"annotations": {known.RENDER_ERROR_ANNOTATION: text or None}}}
        with contextlib.suppress(NotFound):
            await self.client.patch(
                APPS_API_VERSION, "Base", meta["name"], patch, namespace=meta["namespace"]
            )

    def _report(self, base: Object, rendered: render.Rendered) -> None:
        """Events for bad input; the Description is still written from what can be rendered
        (see :func:`.descriptions.render_generic`)."""
        for feed in rendered.missing:
            kind = feed.get("kind", "")
            self.recorder.event(
                base, "Warning", f"Nonexistent{kind}",
                f"{kind} {feed.get('namespace') or ''}/{feed.get('name')} does not exist "
                f"(yet); {rendered.name} keeps what it last rendered of it until it does",
            )  # fmt: skip
        for reason in rendered.skipped:
            self.recorder.event(base, "Warning", "ChartNotFound", reason)
        if rendered.errors:
            self.recorder.event(
                base, "Warning", "FailedApplyingOverrides",
                f"{rendered.name}: {'; '.join(rendered.errors)}; the feed keeps what it last "
                "rendered to",
            )  # fmt: skip
        if rendered.warnings:
            self.recorder.event(
                base, "Warning", "SkippedOverride",
                f"{rendered.name}: {'; '.join(rendered.warnings)}",
            )  # fmt: skip

    async def _sync(self, base: Object, rendered: render.Rendered) -> str | None:
        """Write one rendered Description; returns an error to retry with, if any."""
        self._report(base, rendered)
        current = self._current(base, rendered.name)
        if rendered.unused:
            if current is not None and not current["metadata"].get("deletionTimestamp"):
                return await finalizers.delete(self.client, current)
            return None
        desired = rendered.description
        if desired is None:
            return None  # waiting for a template or a fixed override (their events)
        try:
            if current is None:
                await self.client.create(desired)
                self.recorder.event(
                    base, "Normal", "DescriptionCreated", f"{rendered.name} is created"
                )
            elif current["metadata"].get("deletionTimestamp"):
                return None  # being removed; its delete event brings the Base back
            elif (updated := render.description_update(current, desired)) is not None:
                await self.client.update(updated)
                self.recorder.event(
                    base, "Normal", "DescriptionUpdated", f"{rendered.name} is updated"
                )
        except (AlreadyExists, Conflict) as err:
            # The cache is behind (e.g. a deployer wrote the status meanwhile, an update this
            # controller's filter ignores): retried with backoff.
            raise StaleCache(f"{rendered.name}: {err}") from err
        except NotFound:
            return None  # the namespace is going away
        except Exception as err:
            return f"writing {rendered.name}: {err}"
        return None

    async def _finalize(self, base: Object) -> None:
        """Delete the Base's Descriptions; the finalizer goes once the cache has seen the
        last one go (their delete events bring the Base back)."""
        owned = self.descriptions.store.by_index(BY_BASE_UID, base["metadata"]["uid"])
        await finalizers.release_after_dependents(self.client, base, owned)


def _base_changed(old: Object, new: Object) -> bool:
    o, n = old["metadata"], new["metadata"]
    return (
        old.get("spec") != new.get("spec")
        or o.get("labels") != n.get("labels")
        or o.get("deletionTimestamp") != n.get("deletionTimestamp")
        or o.get("finalizers") != n.get("finalizers")
        or (o.get("annotations") or {}).get(known.REPLICA_LOCALIZATIONS_ANNOTATION)
        != (n.get("annotations") or {}).get(known.REPLICA_LOCALIZATIONS_ANNOTATION)
    )


def _chart_view(chart: Object) -> Any:
    meta = chart["metadata"]
    return (
        chart.get("spec"),
        meta.get("labels"),
        meta.get("annotations"),
        (chart.get("status") or {}).get("phase"),
    )


def _override_view(obj: Object) -> Any:
    return (obj.get("spec"), obj["metadata"].get("deletionTimestamp"))


def _description_changed(old: Object, new: Object) -> bool:
    o, n = old["metadata"], new["metadata"]
    return (
        old.get("spec") != new.get("spec")
        or o.get("labels") != n.get("labels")
        or (n.get("deletionTimestamp") is not None and o.get("deletionTimestamp") is None)
    )
