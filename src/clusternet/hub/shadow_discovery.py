"""Keeps the built-in half of the shadow resource table current (spec §6.1).

CRDs are read live from an informer (:class:`~clusternet.hub.shadow_resources.ResourceTable`);
built-in kinds and aggregated APIs come from the parent's discovery.  An aggregated API that
is registered, becomes Available, or goes away after the hub started changes that half, so an
informer on APIServices drives a re-walk of the parent's discovery: every relevant event
marks the table dirty and one worker re-discovers (events arriving meanwhile coalesce into
the next walk).  When the mirrored set changes, ``on_change`` runs (the hub forgets its
cached OpenAPI documents).

kube-apiserver updates its discovery a moment after the APIService changes, so a walk right
after the event can still list a removed aggregated API or not yet list a new one.  The
APIService store is therefore the authority: a discovered group version whose aggregated
APIService is gone or unavailable is dropped, and while an available aggregated APIService's
group version is missing from discovery, the walk is repeated with backoff (a few times).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import structlog

from clusternet.hub.shadow_resources import ResourceTable, builtin_resources
from clusternet.kube import ApiError, APIResource, ClusterUnreachable, KubeClient
from clusternet.runtime.informer import DeletedFinalStateUnknown

log = structlog.get_logger(__name__)

_MAX_DELAY = 30.0
# Walks repeated while an available aggregated API is not yet in the parent's discovery (an
# aggregated server that serves no resources stays missing; the next event tries again).
_CATCH_UP_WALKS = 6


def _available(apiservice: Mapping[str, Any]) -> str:
    for condition in (apiservice.get("status") or {}).get("conditions") or ():
        if condition.get("type") == "Available":
            return str(condition.get("status", ""))
    return ""


def aggregated(apiservice: Mapping[str, Any] | None) -> bool:
    """An APIService served by another server.  Local ones (no ``spec.service``) are the
    parent's built-in groups, fixed while it runs, and CRD groups, which the CRD informer
    covers; re-walking discovery for them would also make the parent client's RESTMapper
    believe it is fresh just before a new CRD's kind is served."""
    return bool(apiservice and (apiservice.get("spec") or {}).get("service"))


def changes_discovery(old: Mapping[str, Any] | None, new: Mapping[str, Any] | None) -> bool:
    """Whether an APIService event can change what the parent serves: an aggregated
    APIService was added or removed, its backend (service, group, version) changed, or it
    became (un)available.  Status heartbeats, metadata-only updates and local APIServices
    do not."""
    if not aggregated(old) and not aggregated(new):
        return False
    if old is None or new is None:
        return True

    def served(apiservice: Mapping[str, Any]) -> tuple[Any, ...]:
        spec = apiservice.get("spec") or {}
        return (spec.get("service"), spec.get("group"), spec.get("version"))

    return served(old) != served(new) or _available(old) != _available(new)


def _group_version(apiservice: Mapping[str, Any]) -> tuple[str, str]:
    spec = apiservice.get("spec") or {}
    return (spec.get("group") or "", spec.get("version") or "")


def aggregated_versions(
    apiservices: Iterable[Mapping[str, Any]],
) -> tuple[set[tuple[str, str]], set[tuple[str, str]]]:
    """(available, not available) aggregated group versions, from the APIService store."""
    available: set[tuple[str, str]] = set()
    unavailable: set[tuple[str, str]] = set()
    for apiservice in apiservices:
        if aggregated(apiservice):
            gv = _group_version(apiservice)
            (available if _available(apiservice) == "True" else unavailable).add(gv)
    return available, unavailable


def agreeing_with_apiservices(
    discovered: Iterable[APIResource], apiservices: Sequence[Mapping[str, Any]]
) -> tuple[list[APIResource], set[tuple[str, str]]]:
    """The discovered resources the APIServices still back, and the available aggregated
    group versions discovery does not list yet.

    Every group version the parent serves has an APIService (kube-apiserver registers its
    built-in and CRD groups itself), so one without is a removed aggregated API that
    discovery still remembers.  An empty store (not listed yet) vouches for everything.
    """
    resources = list(discovered)
    if not apiservices:
        return resources, set()
    known_versions = {_group_version(a) for a in apiservices}
    available, unavailable = aggregated_versions(apiservices)
    kept = [
        r
        for r in resources
        if (r.group, r.version) in known_versions and (r.group, r.version) not in unavailable
    ]
    missing = available - {(r.group, r.version) for r in resources}
    return kept, missing


class BuiltinRefresher:
    """Re-walks the parent's discovery when APIServices change (see the module doc)."""

    def __init__(
        self,
        parent: KubeClient,
        table: ResourceTable,
        crd_groups: Callable[[], Iterable[str]],
        on_change: Callable[[], None] = lambda: None,
        apiservices: Callable[[], Sequence[Mapping[str, Any]]] = list,
    ) -> None:
        self.parent = parent
        self.table = table
        self.crd_groups = crd_groups
        self.on_change = on_change
        self.apiservices = apiservices
        self._dirty = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.refreshes = 0
        # available aggregated group versions the last walk did not find in discovery
        self.missing: set[tuple[str, str]] = set()

    # informer handlers -------------------------------------------------------------------

    def on_add(self, obj: Mapping[str, Any]) -> None:
        if changes_discovery(None, obj):
            self._dirty.set()

    def on_update(self, old: Mapping[str, Any], new: Mapping[str, Any]) -> None:
        if changes_discovery(old, new):
            self._dirty.set()

    def on_delete(self, obj: Mapping[str, Any] | DeletedFinalStateUnknown) -> None:
        last = obj.object if isinstance(obj, DeletedFinalStateUnknown) else obj
        if not isinstance(last, Mapping) or changes_discovery(last, None):
            self._dirty.set()

    # the worker -------------------------------------------------------------------------

    def start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self.run(), name="shadow discovery refresher")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def run(self) -> None:
        delay = 1.0
        catch_up = 0
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            try:
                await self.refresh()
                delay = 1.0
            except (ApiError, ClusterUnreachable) as err:
                log.warning("cannot re-discover the parent's resources", error=str(err))
                self._dirty.set()
                await asyncio.sleep(delay)  # back off, then try again
                delay = min(delay * 2, _MAX_DELAY)
                continue
            if self.missing and catch_up < _CATCH_UP_WALKS and not self._dirty.is_set():
                # discovery lags the APIService: look again in a moment, unless an event
                # comes first (it starts a fresh walk and a fresh catch-up count)
                catch_up += 1
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(min(0.25 * 2**catch_up, _MAX_DELAY)):
                        await self._dirty.wait()
                if not self._dirty.is_set():
                    self._dirty.set()
                else:
                    catch_up = 0
            else:
                catch_up = 0

    async def refresh(self) -> bool:
        """Discover again; True when the mirrored built-in resources changed."""
        await self.parent.mapper.refresh()
        self.refreshes += 1
        discovered, self.missing = agreeing_with_apiservices(
            self.parent.mapper.resources, self.apiservices()
        )
        builtins = builtin_resources(discovered, set(self.crd_groups()))
        if builtins == self.table.builtins():
            return False
        added = sorted(set(builtins) - set(self.table.builtins()))
        removed = sorted(set(self.table.builtins()) - set(builtins))
        self.table.set_builtins(builtins)
        log.info("shadow API mirrors a changed parent", added=added, removed=removed)
        self.on_change()
        return True
