"""The Helm charts' output is accepted by real API servers (``kubectl apply --dry-run=server``).

``helm template`` renders each chart (CRDs included) with its default and non-default ``ci/``
values; the parent charts go to the parent, the agent chart to a child.  The server validates
every object against its schema and admission, RBAC included (the roles' rules, the
APIServices, the PodDisruptionBudgets), without persisting anything.  Objects with fixed names
that `clusternet local up` already created (APIServices, registration RBAC, the app deployer)
are validated as updates of the live ones.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from clusternet.apis.install import SYSTEM_NAMESPACE
from clusternet.local.binaries import Toolbox
from clusternet.local.testing import Clusters

CHARTS_DIR = Path(__file__).resolve().parents[2] / "deploy" / "charts"
PARENT_CHARTS = ("clusternet-controller-manager", "clusternet-scheduler", "clusternet-hub")
CHARTS = (*PARENT_CHARTS, "clusternet-agent")
# Not the names `clusternet local up` uses for its own objects (e.g. its hub Service is an
# ExternalName Service named clusternet-hub).
RELEASE = "chart-e2e"


def helm_template(chart: str, values: Path) -> str:
    helm = Toolbox().locate("helm")
    if helm is None:
        pytest.skip("helm is not built: run `clusternet local build`")
    result = subprocess.run(
        [
            str(helm),
            "template",
            RELEASE,
            str(CHARTS_DIR / chart),
            "--namespace",
            SYSTEM_NAMESPACE,
            "--include-crds",
            "-f",
            str(values),
            # The prometheus-operator CRDs are not installed in the local control planes.
            "--set",
            "metrics.serviceMonitor.enabled=false",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def cases() -> list[object]:
    return [
        pytest.param(chart, values, id=f"{chart}-{values.stem}")
        for chart in CHARTS
        for values in sorted((CHARTS_DIR / chart / "ci").glob("*.yaml"))
    ]


@pytest.mark.parametrize(("chart", "values"), cases())
def test_rendered_chart_applies_with_server_dry_run(
    clusters: Clusters, chart: str, values: Path
) -> None:
    manifest = helm_template(chart, values)
    context = "parent" if chart in PARENT_CHARTS else clusters.children[0]
    kinds = re.findall(r"^kind: (\w+)$", manifest, flags=re.MULTILINE)
    applied = clusters.kubectl(context).apply(manifest, "--dry-run=server")
    lines = [line for line in applied.stdout.splitlines() if line.strip()]
    assert len(lines) == len(kinds), applied.stdout
    assert all(line.endswith("(server dry run)") for line in lines), applied.stdout
    assert "Deployment" in kinds
