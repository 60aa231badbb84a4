"""The harness's figures and their Markdown report (pure functions, unit-tested).

A report is a list of sections; each has prose notes and tables.  Latencies are summarised
as p50/p90/p99 with *linear interpolation between the closest ranks* (numpy's default, the
same definition as ``statistics.quantiles(method="inclusive")``), so a percentile of a small
sample is never an invented extreme and p100 is the maximum.
"""

from __future__ import annotations

import math
import os
import platform
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path


def percentile(values: Iterable[float], q: float) -> float:
    """The ``q`` quantile (0 ≤ q ≤ 1) of ``values``, linearly interpolated between ranks."""
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"quantile {q} is not between 0 and 1")
    ordered = sorted(values)
    if not ordered:
        raise ValueError("percentile of no values")
    position = q * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


@dataclass(frozen=True)
class Summary:
    n: int
    p50: float
    p90: float
    p99: float
    max: float
    mean: float


def summarize(values: Sequence[float]) -> Summary | None:
    """p50/p90/p99/max/mean of ``values``; None for no values (a scenario that measured
    nothing reports "n/a" rather than failing the whole report)."""
    if not values:
        return None
    return Summary(
        n=len(values),
        p50=percentile(values, 0.50),
        p90=percentile(values, 0.90),
        p99=percentile(values, 0.99),
        max=max(values),
        mean=math.fsum(values) / len(values),
    )


def throughput(count: int, seconds: float) -> float | None:
    """Items per second, or None when nothing was timed."""
    return count / seconds if seconds > 0 else None


def linear_fit(xs: Sequence[float], ys: Sequence[float]) -> tuple[float, float] | None:
    """Least-squares (slope, intercept) of ys over xs; None below two distinct xs."""
    if len(xs) != len(ys):
        raise ValueError("xs and ys differ in length")
    if len(set(xs)) < 2:
        return None
    mean_x = math.fsum(xs) / len(xs)
    mean_y = math.fsum(ys) / len(ys)
    sxx = math.fsum((x - mean_x) ** 2 for x in xs)
    sxy = math.fsum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True))
    slope = sxy / sxx
    return slope, mean_y - slope * mean_x


# --- formatting -------------------------------------------------------------------------------


def fmt_seconds(value: float | None) -> str:
    """A duration in the unit that reads best: µs below 1 ms, ms below 1 s, else s."""
    if value is None or math.isnan(value):
        return "n/a"
    if value < 0.001:
        return f"{value * 1e6:.0f} µs"
    if value < 1.0:
        return f"{value * 1000:.1f} ms"
    return f"{value:.2f} s"


def fmt_number(value: float | None, digits: int = 1, unit: str = "") -> str:
    if value is None or math.isnan(value):
        return "n/a"
    text = f"{value:,.{digits}f}"
    return f"{text} {unit}" if unit else text


def latency_row(label: str, values: Sequence[float]) -> list[str]:
    """``label | n | p50 | p90 | p99 | max`` for a latency table."""
    summary = summarize(values)
    if summary is None:
        return [label, "0", "n/a", "n/a", "n/a", "n/a"]
    return [
        label,
        str(summary.n),
        *(fmt_seconds(v) for v in (summary.p50, summary.p90, summary.p99, summary.max)),
    ]


LATENCY_HEADERS = ["measure", "n", "p50", "p90", "p99", "max"]


@dataclass
class Table:
    headers: list[str]
    rows: list[list[str]] = field(default_factory=list)

    def add(self, *cells: object) -> None:
        if len(cells) != len(self.headers):
            raise ValueError(f"row of {len(cells)} cells for {len(self.headers)} columns")
        self.rows.append([str(c) for c in cells])

    def to_markdown(self) -> str:
        def line(cells: Sequence[str]) -> str:
            return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

        lines = [line(self.headers), "|" + "---|" * len(self.headers)]
        lines += [line(r) for r in self.rows]
        return "\n".join(lines)


@dataclass
class Section:
    title: str
    notes: list[str] = field(default_factory=list)
    tables: list[tuple[str, Table]] = field(default_factory=list)
    images: list[tuple[str, str]] = field(default_factory=list)  # (alt text, relative path)

    def note(self, text: str) -> None:
        self.notes.append(text)

    def table(self, caption: str, table: Table) -> Table:
        self.tables.append((caption, table))
        return table

    def to_markdown(self) -> str:
        parts = [f"## {self.title}"]
        parts += self.notes
        for caption, table in self.tables:
            if caption:
                parts.append(f"**{caption}**")
            parts.append(table.to_markdown())
        parts += [f"![{alt}]({path})" for alt, path in self.images]
        return "\n\n".join(parts)


@dataclass
class Report:
    title: str
    preamble: list[str] = field(default_factory=list)
    sections: list[Section] = field(default_factory=list)

    def section(self, title: str) -> Section:
        section = Section(title)
        self.sections.append(section)
        return section

    def to_markdown(self) -> str:
        parts = [f"# {self.title}", *self.preamble]
        parts += [s.to_markdown() for s in self.sections]
        return "\n\n".join(parts) + "\n"

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.to_markdown())


def machine_description() -> str:
    """One line about the machine the figures come from (cores, memory, CPU model, OS)."""
    cpu = "unknown CPU"
    memory = "unknown memory"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = f"{int(line.split()[1]) / 2**20:.0f} GiB"
                break
    except OSError:
        pass
    return (
        f"{os.cpu_count()} cores ({cpu}), {memory}, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}"
    )
