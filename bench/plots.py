"""PNG plots of the report, with matplotlib (the optional ``bench`` dependency group).

Without matplotlib every function returns None and the report says the plots were skipped.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any


def _pyplot() -> Any | None:
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only, no display
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def available() -> bool:
    return _pyplot() is not None


def latency_cdf(
    path: Path, title: str, series: Mapping[str, Sequence[float]], unit: str = "s"
) -> Path | None:
    """Empirical CDF of each series of latencies (seconds), one line each."""
    plt = _pyplot()
    series = {k: v for k, v in series.items() if v}
    if plt is None or not series:
        return None
    scale = 1000.0 if unit == "ms" else 1.0
    fig, ax = plt.subplots(figsize=(7, 4))
    for label, values in series.items():
        ordered = sorted(v * scale for v in values)
        fractions = [(i + 1) / len(ordered) for i in range(len(ordered))]
        ax.step(ordered, fractions, where="post", label=f"{label} (n={len(ordered)})")
    for q in (0.5, 0.9, 0.99):
        ax.axhline(q, color="grey", linewidth=0.5, linestyle=":")
    ax.set_xlabel(f"latency ({unit})")
    ax.set_ylabel("fraction ≤ latency")
    ax.set_ylim(0, 1.02)
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def scaling(
    path: Path,
    title: str,
    xlabel: str,
    ylabel: str,
    xs: Sequence[float],
    series: Mapping[str, Sequence[float]],
) -> Path | None:
    """One line (with markers) per series over the same xs."""
    plt = _pyplot()
    if plt is None or not xs or not series:
        return None
    fig, ax = plt.subplots(figsize=(7, 4))
    for label, ys in series.items():
        ax.plot(list(xs), list(ys), marker="o", label=label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
