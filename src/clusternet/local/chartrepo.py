"""A Helm chart repository on 127.0.0.1 for tests and demos: charts are packaged by the real
``helm package`` (at any version, optionally with changed default values or name), indexed
by ``helm repo index`` and served with ``http.server`` on a free port, optionally behind
HTTP basic auth (what a HelmChart's ``chartPullSecret`` is for).

    with ChartRepository(helm) as repo:
        repo.add(Path("tests/charts/demo"), version="0.2.0")
        repo.url  # http://127.0.0.1:<port>
"""

from __future__ import annotations

import base64
import shutil
import subprocess
import tempfile
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any

import yaml


class _Handler(SimpleHTTPRequestHandler):
    auth: str | None = None

    def do_GET(self) -> None:
        if self.auth is not None and self.headers.get("Authorization") != self.auth:
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="charts"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        super().do_GET()

    def log_message(self, format: str, *args: Any) -> None:
        pass


class ChartRepository:
    def __init__(self, helm: Path | str, *, basic_auth: tuple[str, str] | None = None) -> None:
        self.helm = str(helm)
        self.root = Path(tempfile.mkdtemp(prefix="clusternet-charts-"))
        self.packages = self.root / "repo"
        self.packages.mkdir()
        auth = None
        if basic_auth is not None:
            token = base64.b64encode(f"{basic_auth[0]}:{basic_auth[1]}".encode()).decode()
            auth = f"Basic {token}"
        handler: type[_Handler] = type("Handler", (_Handler,), {"auth": auth})
        self.server = ThreadingHTTPServer(
            ("127.0.0.1", 0), partial(handler, directory=str(self.packages))
        )
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> ChartRepository:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        shutil.rmtree(self.root, ignore_errors=True)

    def add(
        self,
        chart_dir: Path,
        *,
        version: str,
        name: str | None = None,
        values: dict[str, Any] | None = None,
    ) -> Path:
        """Package ``chart_dir`` at ``version`` (as ``name``, with ``values`` merged into its
        default values) and re-index the repository."""
        work = Path(tempfile.mkdtemp(dir=self.root))
        source = work / (name or chart_dir.name)
        shutil.copytree(chart_dir, source)
        if name is not None:
            chart = yaml.safe_load((source / "Chart.yaml").read_text())
            chart["name"] = name
            (source / "Chart.yaml").write_text(yaml.safe_dump(chart))
        if values:
            defaults = yaml.safe_load((source / "values.yaml").read_text()) or {}
            defaults.update(values)
            (source / "values.yaml").write_text(yaml.safe_dump(defaults))
        self._helm("package", str(source), "--version", version, "--destination",
                   str(self.packages))  # fmt: skip
        self._helm("repo", "index", str(self.packages), "--url", self.url)
        shutil.rmtree(work, ignore_errors=True)
        return self.packages / f"{name or chart_dir.name}-{version}.tgz"

    def _helm(self, *args: str) -> None:
        env = {"HOME": str(self.root), "PATH": "/usr/bin:/bin"}
        result = subprocess.run(
            [self.helm, *args], capture_output=True, text=True, env=env, timeout=120,
            check=False,
        )  # fmt: skip
        if result.returncode != 0:
            raise RuntimeError(f"helm {args[0]} failed: {result.stderr.strip()}")
