"""A tiny synchronous REST client for bootstrapping local control planes.

The local environment must talk to API servers before any controller exists (readiness,
Nodes, APIServices), from a plain CLI process. The standard library is enough for that and
keeps ``clusternet local`` free of the async client stack used by the components.
"""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class APIError(RuntimeError):
    def __init__(self, status: int, message: str, body: Any = None) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.body = body


@dataclass
class RestClient:
    server: str
    ca_file: Path
    cert_file: Path | None = None
    key_file: Path | None = None
    token: str | None = None
    timeout: float = 10.0

    def __post_init__(self) -> None:
        context = ssl.create_default_context(cafile=str(self.ca_file))
        if self.cert_file and self.key_file:
            context.load_cert_chain(str(self.cert_file), str(self.key_file))
        self._context = context

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        content_type: str = "application/json",
        timeout: float | None = None,
    ) -> Any:
        data = None if body is None else json.dumps(body).encode()
        headers = {"Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = content_type
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        req = urllib.request.Request(self.server + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(
                req, context=self._context, timeout=timeout or self.timeout
            ) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as err:
            raw = err.read()
            try:
                parsed = json.loads(raw)
                message = parsed.get("message", raw.decode(errors="replace"))
            except ValueError:
                parsed, message = None, raw.decode(errors="replace")
            raise APIError(err.code, message, parsed) from None
        if not raw:
            return None
        try:
            return json.loads(raw)
        except ValueError:
            return raw.decode(errors="replace")

    def get(self, path: str, **kw: Any) -> Any:
        return self.request("GET", path, **kw)

    def post(self, path: str, body: Any, **kw: Any) -> Any:
        return self.request("POST", path, body, **kw)

    def delete(self, path: str, **kw: Any) -> Any:
        return self.request("DELETE", path, **kw)

    def patch(self, path: str, body: Any, patch_type: str = "merge", **kw: Any) -> Any:
        content_type = {
            "merge": "application/merge-patch+json",
            "json": "application/json-patch+json",
            "strategic": "application/strategic-merge-patch+json",
        }[patch_type]
        return self.request("PATCH", path, body, content_type=content_type, **kw)

    def create_or_get(self, path: str, body: Any) -> Any:
        """Create an object; an existing one with the same name counts as success."""
        try:
            return self.post(path, body)
        except APIError as err:
            if err.status != 409:
                raise
            return self.get(f"{path}/{body['metadata']['name']}")
