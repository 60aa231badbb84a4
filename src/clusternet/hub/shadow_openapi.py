"""Patch schemas of the parent's kinds, from its OpenAPI v3 documents (strategic merge patch).

kube-apiserver publishes one document per group version (``/openapi/v3/api/v1``,
``/openapi/v3/apis/<group>/<version>``), each listed in ``/openapi/v3`` with a content hash
in its URL.  A document is fetched the first time a strategic patch needs one of its kinds
and kept; :meth:`OpenAPISchemas.invalidate` (called when the mirrored resources change)
forgets the index and the documents, so the next lookup reads the current ones.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import structlog

from clusternet.apis import naming
from clusternet.kube import ApiError, KubeClient, PatchSchema, kind_schema

log = structlog.get_logger(__name__)

INDEX_PATH = "/openapi/v3"


def document_key(group: str, version: str) -> str:
    """The key of a group version in ``/openapi/v3``'s ``paths``."""
    return f"apis/{group}/{version}" if group else f"api/{version}"


class OpenAPISchemas:
    """Lazily fetched, cached OpenAPI v3 documents of the parent, by group version."""

    def __init__(self, parent: KubeClient) -> None:
        self.parent = parent
        self._lock = asyncio.Lock()
        self._index: dict[str, str] | None = None
        self._documents: dict[str, dict[str, Any] | None] = {}
        self._schemas: dict[tuple[str, str], PatchSchema | None] = {}
        self.fetches = 0  # documents fetched (tests check the cache)

    def invalidate(self) -> None:
        self._index = None
        self._documents.clear()
        self._schemas.clear()

    async def schema(self, api_version: str, kind: str) -> PatchSchema | None:
        """The patch schema of ``kind`` in ``api_version``, or None when the parent publishes
        no OpenAPI for it."""
        cache_key = (api_version, kind)
        if cache_key in self._schemas:
            return self._schemas[cache_key]
        group, version = naming.split_api_version(api_version)
        key = document_key(group, version)
        async with self._lock:
            if cache_key in self._schemas:
                return self._schemas[cache_key]
            document = await self._document(key)
            schema = kind_schema(document, group, version, kind) if document else None
            if key in self._documents:  # not after a failed read: the next patch tries again
                self._schemas[cache_key] = schema
        return schema

    async def _document(self, key: str) -> dict[str, Any] | None:
        if key in self._documents:
            return self._documents[key]
        if self._index is None:
            index = _decoded(await self.parent.request("GET", INDEX_PATH))
            paths = (index or {}).get("paths") or {}
            self._index = {
                name: entry.get("serverRelativeURL", f"{INDEX_PATH}/{name}")
                for name, entry in paths.items()
                if isinstance(entry, dict)
            }
        url = self._index.get(key)
        document: dict[str, Any] | None = None
        if url is not None:
            try:
                fetched = await self.parent.request("GET", url)
            except ApiError as err:
                log.warning("cannot read the parent's OpenAPI", path=url, error=err.message)
                return None  # not cached: the next patch tries again
            document = _decoded(fetched)
            self.fetches += 1
        self._documents[key] = document
        return document


def _decoded(body: Any) -> dict[str, Any] | None:
    """A JSON document; kube-apiserver serves OpenAPI with a Content-Type the client does
    not decode as JSON (the body is JSON all the same)."""
    if isinstance(body, str | bytes):
        try:
            body = json.loads(body)
        except ValueError:
            return None
    return body if isinstance(body, dict) else None
