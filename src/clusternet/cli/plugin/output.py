"""kubectl-style output of the plugin's own commands (the delegated verbs print kubectl's)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import typer
from rich.console import Console

from clusternet.kube import ApiError

err = Console(stderr=True, soft_wrap=True, highlight=False, markup=False)

COLUMN_GAP = 3  # kubectl's printers pad columns with three spaces


def api_error_message(error: ApiError) -> str:
    """As kubectl prints a server error: ``Error from server (NotFound): <message>``."""
    return f"Error from server ({error.reason or 'Unknown'}): {error.message}"


def fail(error: Exception) -> typer.Exit:
    """Print ``error`` as kubectl would and give the exit to raise (code 1, like kubectl)."""
    if isinstance(error, ApiError):
        err.print(api_error_message(error))
    else:
        err.print(f"error: {error}")
    return typer.Exit(code=1)


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned columns with kubectl's spacing; the last column is not padded."""
    lines = [list(header), *(list(row) for row in rows)]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    out = []
    for line in lines:
        cells = [cell.ljust(width + COLUMN_GAP) for cell, width in zip(line, widths, strict=True)]
        out.append("".join(cells).rstrip())
    return "\n".join(out) + "\n"


def human_duration(age: timedelta) -> str:
    """kubectl's AGE column (k8s.io/apimachinery duration.HumanDuration)."""
    seconds = int(age.total_seconds())
    if seconds < -1:
        return "<invalid>"
    seconds = max(seconds, 0)
    minutes, hours, days = seconds // 60, seconds // 3600, seconds // 86400
    years = days // 365
    if seconds < 120:
        return f"{seconds}s"
    if minutes < 10:
        rest = seconds % 60
        return f"{minutes}m{rest}s" if rest else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    if hours < 8:
        rest = minutes % 60
        return f"{hours}h{rest}m" if rest else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 192:
        rest = hours % 24
        return f"{days}d{rest}h" if rest else f"{days}d"
    if years < 2:
        return f"{days}d"
    if years < 8:
        rest = days % 365
        return f"{years}y{rest}d" if rest else f"{years}y"
    return f"{years}y"


def age(timestamp: str | None, now: datetime | None = None) -> str:
    """The AGE of an object from its RFC 3339 ``creationTimestamp``."""
    if not timestamp:
        return "<unknown>"
    created = datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    return human_duration((now or datetime.now(UTC)) - created)
