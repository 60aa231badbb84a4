"""The benchmark harness's figures and report writer (bench/report.py, bench/usage.py)."""

from __future__ import annotations

import os
import statistics
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root: bench/

from bench.report import (
    Report,
    Table,
    fmt_seconds,
    latency_row,
    linear_fit,
    percentile,
    summarize,
    throughput,
)
from bench.usage import CHILD_PLANES, Meter, component_of, cpu_seconds, status_kib


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [
        ([5.0], 0.5, 5.0),
        ([5.0], 0.99, 5.0),
        ([1.0, 2.0], 0.5, 1.5),
        ([3.0, 1.0, 2.0], 0.5, 2.0),  # unsorted input
        ([1.0, 2.0, 3.0, 4.0], 0.0, 1.0),
        ([1.0, 2.0, 3.0, 4.0], 1.0, 4.0),
        ([1.0, 2.0, 3.0, 4.0], 0.5, 2.5),
        (list(range(1, 101)), 0.9, 90.1),
        (list(range(1, 101)), 0.99, 99.01),
        ([0.0, 10.0], 0.25, 2.5),
    ],
)
def test_percentile_interpolates_between_ranks(
    values: list[float], q: float, expected: float
) -> None:
    assert percentile(values, q) == pytest.approx(expected)


def test_percentile_matches_statistics_inclusive() -> None:
    values = [0.3, 1.7, 0.2, 9.0, 4.4, 4.5, 0.01, 2.0, 3.3, 7.7, 5.1]
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    for index, q in ((49, 0.50), (89, 0.90), (98, 0.99)):
        assert percentile(values, q) == pytest.approx(cuts[index])


@pytest.mark.parametrize(("values", "q"), [([], 0.5), ([1.0], -0.1), ([1.0], 1.5)])
def test_percentile_rejects_bad_input(values: list[float], q: float) -> None:
    with pytest.raises(ValueError):  # noqa: PT011
        percentile(values, q)


def test_summarize() -> None:
    summary = summarize([4.0, 1.0, 3.0, 2.0])
    assert summary is not None
    assert (summary.n, summary.p50, summary.max, summary.mean) == (4, 2.5, 4.0, 2.5)
    assert summary.p99 == pytest.approx(3.97)
    assert summarize([]) is None


@pytest.mark.parametrize(
    ("count", "seconds", "expected"), [(100, 4.0, 25.0), (0, 1.0, 0.0), (5, 0.0, None)]
)
def test_throughput(count: int, seconds: float, expected: float | None) -> None:
    assert throughput(count, seconds) == expected


@pytest.mark.parametrize(
    ("xs", "ys", "expected"),
    [
        ([0, 1, 2], [1, 3, 5], (2.0, 1.0)),
        ([0, 50, 100, 200], [70, 75, 80, 90], (0.1, 70.0)),
        ([3, 3], [1, 2], None),  # one distinct x: no slope
        ([1], [1], None),
    ],
)
def test_linear_fit(xs: list[float], ys: list[float], expected: tuple[float, float] | None) -> None:
    fit = linear_fit(xs, ys)
    if expected is None:
        assert fit is None
    else:
        assert fit == pytest.approx(expected)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (None, "n/a"),
        (0.0000123, "12 µs"),
        (0.0123, "12.3 ms"),
        (0.5, "500.0 ms"),
        (1.0, "1.00 s"),
        (12.345, "12.35 s"),
    ],
)
def test_fmt_seconds(seconds: float | None, text: str) -> None:
    assert fmt_seconds(seconds) == text


def test_latency_row() -> None:
    assert latency_row("x", []) == ["x", "0", "n/a", "n/a", "n/a", "n/a"]
    assert latency_row("x", [0.1, 0.2, 0.3]) == [
        "x", "3", "200.0 ms", "280.0 ms", "298.0 ms", "300.0 ms",
    ]  # fmt: skip


def test_report_markdown(tmp_path: Path) -> None:
    report = Report("Title", preamble=["intro"])
    section = report.section("1. Scenario")
    section.note("what it measures")
    table = section.table("caption", Table(["a", "b"]))
    table.add("x|y", 1)
    section.images.append(("plot", "2026-01-01/plot.png"))
    with pytest.raises(ValueError, match="row of 1 cells"):
        table.add("only one")
    path = tmp_path / "results" / "report.md"
    report.write(path)
    assert path.read_text() == (
        "# Title\n\nintro\n\n## 1. Scenario\n\nwhat it measures\n\n**caption**\n\n"
        "| a | b |\n|---|---|\n| x\\|y | 1 |\n\n![plot](2026-01-01/plot.png)\n"
    )


@pytest.mark.parametrize(
    ("process", "component"),
    [
        ("etcd", "etcd"),
        ("parent/kube-apiserver", "parent kube-apiserver"),
        ("parent/clusternet-hub", "clusternet-hub"),
        ("parent/clusternet-controller-manager", "clusternet-controller-manager"),
        ("child2/clusternet-agent", "clusternet-agent (child2)"),
        ("child1/kube-apiserver", CHILD_PLANES),
        ("child3/kwok", CHILD_PLANES),
        ("harness:clusternet.scheduler", "harness:clusternet.scheduler"),
    ],
)
def test_component_of(process: str, component: str) -> None:
    assert component_of(process) == component


def test_proc_readers_and_meter_on_this_process() -> None:
    me = os.getpid()
    assert (cpu_seconds(me) or -1) >= 0
    assert (status_kib(me) or 0) > 0
    assert cpu_seconds(2**22 + 1) is None  # above pid_max: no such process
    meter = Meter(lambda: {"parent/clusternet-hub": me, "gone/x": 2**22 + 1}, interval=0.01)
    with meter:
        sum(i * i for i in range(200_000))  # some CPU to measure
    usage = meter.stop()
    assert set(usage) == {"clusternet-hub"}
    assert usage["clusternet-hub"].cpu_seconds >= 0
    assert usage["clusternet-hub"].peak_rss_mib > 0
    assert meter.wall > 0
