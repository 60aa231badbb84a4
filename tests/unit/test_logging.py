"""Component logging: tracebacks are plain and never carry local variables."""

from __future__ import annotations

import io
import logging

import pytest
import structlog

from clusternet.runtime.logging import LogFormat, configure_logging


def _fail(token: str) -> None:
    secret_in_a_local = f"Bearer {token}"
    raise RuntimeError(f"boom ({len(secret_in_a_local)} chars)")


@pytest.mark.parametrize("log_format", ["json", "console"])
def test_exception_logs_have_the_traceback_but_no_locals(log_format: LogFormat) -> None:
    stream = io.StringIO()
    token = "-".join(["s3cr3t", "token", "value"])  # only ever a value, never in source
    configure_logging(log_format, "INFO", stream)
    try:
        try:
            _fail(token)
        except RuntimeError:
            structlog.get_logger("test").exception("reconcile failed", key="ns/name")
        out = stream.getvalue()
        assert "reconcile failed" in out
        assert "RuntimeError" in out
        assert "_fail" in out  # the frames are there
        assert "s3cr3t-token-value" not in out
        assert "╭" not in out  # no rich panels: plain text, cheap to render
    finally:
        logging.getLogger().handlers = []
