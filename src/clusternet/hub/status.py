"""Kubernetes ``Status`` errors, the only error body kubectl and client-go understand."""

from __future__ import annotations

from typing import Any

from aiohttp import web

# HTTP code -> the StatusReason apimachinery uses for it.
_REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}


def status_body(
    code: int, message: str, *, reason: str | None = None, details: dict[str, Any] | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason or _REASONS.get(code, ""),
        "code": code,
    }
    if details:
        body["details"] = details
    return body


def status_response(
    code: int, message: str, *, reason: str | None = None, details: dict[str, Any] | None = None
) -> web.Response:
    return web.json_response(
        status_body(code, message, reason=reason, details=details),
        status=code,
        headers={"X-Content-Type-Options": "nosniff"},
    )


def socket_details(cluster_id: str) -> dict[str, Any]:
    """``details`` naming the socket, as apiserver errors name the object they concern."""
    return {"name": cluster_id, "group": "proxies.clusternet.io", "kind": "sockets"}
