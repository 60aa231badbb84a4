"""Apply a set of manifests in order, and wait for conditions, by watching (never polling)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from contextlib import suppress
from dataclasses import dataclass

from clusternet.kube._client import KubeClient, Object
from clusternet.kube._errors import Gone, NotFound

CRD_API_VERSION = "apiextensions.k8s.io/v1"


@dataclass(frozen=True)
class Applied:
    kind: str
    name: str
    namespace: str | None
    changed: bool  # False when the server already had exactly this

    def __str__(self) -> str:
        where = f" -n {self.namespace}" if self.namespace else ""
        return (
            f"{self.kind.lower()}/{self.name}{where} {'applied' if self.changed else 'unchanged'}"
        )


async def apply_manifests(
    client: KubeClient,
    manifests: Iterable[Object],
    *,
    field_manager: str,
) -> list[Applied]:
    """Server-side apply each manifest in order (idempotent; ``force`` takes ownership).

    CRDs are waited for (``Established``) before anything after them is applied, so a list
    may hold a CRD followed by objects of its kind.  Bound the whole call with
    ``asyncio.timeout()``.
    """
    results: list[Applied] = []
    pending_crds: list[str] = []
    for manifest in manifests:
        kind = manifest["kind"]
        if kind != "CustomResourceDefinition" and pending_crds:
            await _wait_established(client, pending_crds)
            pending_crds = []
        meta = manifest["metadata"]
        before = await _resource_version(client, manifest)
        applied = await client.apply(manifest, field_manager=field_manager, force=True)
        after = applied["metadata"]["resourceVersion"]
        results.append(Applied(kind, meta["name"], meta.get("namespace"), before != after))
        if kind == "CustomResourceDefinition":
            pending_crds.append(meta["name"])
    if pending_crds:
        await _wait_established(client, pending_crds)
    return results


async def _resource_version(client: KubeClient, manifest: Object) -> str | None:
    meta = manifest["metadata"]
    try:
        current = await client.get(
            manifest["apiVersion"], manifest["kind"], meta["name"], namespace=meta.get("namespace")
        )
    except NotFound:
        return None
    return str(current["metadata"]["resourceVersion"])


async def _wait_established(client: KubeClient, names: list[str]) -> None:
    await asyncio.gather(
        *(
            wait_for(
                client,
                CRD_API_VERSION,
                "CustomResourceDefinition",
                name,
                condition_true("Established"),
            )
            for name in names
        )
    )
    # New kinds: let the REST mapper learn them before objects of those kinds are applied.
    await client.mapper.refresh()


def condition_true(condition_type: str) -> Callable[[Object], bool]:
    def check(obj: Object) -> bool:
        conditions = obj.get("status", {}).get("conditions") or []
        return any(
            c.get("type") == condition_type and c.get("status") == "True" for c in conditions
        )

    return check


async def wait_for(
    client: KubeClient,
    api_version: str,
    kind: str,
    name: str,
    predicate: Callable[[Object], bool],
    *,
    namespace: str | None = None,
) -> Object:
    """Wait until the named object exists and satisfies ``predicate``: list, then watch.

    Waits as long as it takes: bound it with ``asyncio.timeout()``.
    """
    selector = f"metadata.name={name}"
    while True:
        listed = await client.list(api_version, kind, namespace=namespace, field_selector=selector)
        for item in listed.get("items") or ():
            if predicate(item):
                return dict(item)
        version = listed["metadata"]["resourceVersion"]
        with suppress(Gone):  # too old by now: list again
            async with client.watch(
                api_version,
                kind,
                namespace=namespace,
                field_selector=selector,
                resource_version=version,
                timeout_seconds=300,
            ) as events:
                async for event in events:
                    if event.type in ("ADDED", "MODIFIED") and predicate(event.object):
                        return dict(event.object)
        # The watch ended (server timeout or 410): list again from the current state.
