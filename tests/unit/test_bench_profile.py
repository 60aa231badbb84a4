"""The benchmark's profile reading (py-spy's collapsed stacks) — pure functions."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root: bench/

from bench.profile import layer_of, parse_collapsed

VENV = "/work/x/.venv/lib/python3.11/site-packages"
STACKS = [
    # the event loop idles in select: py-spy leaves idle stacks out, but a busy select counts
    "<module> (clusternet/controllermanager/__main__.py:3);"
    "run_component (/work/x/src/clusternet/runtime/server.py:263);"
    "BaseEventLoop._run_once (/usr/lib/python3.11/asyncio/base_events.py:1922);"
    "_reconcile_one (/work/x/src/clusternet/runtime/reconcile.py:156);"
    "KubeClient._json (/work/x/src/clusternet/kube/_client.py:452);"
    f"AsyncHTTPConnection.has_expired ({VENV}/httpcore2/_async/connection.py:175) 30",
    "<module> (clusternet/controllermanager/__main__.py:3);"
    "_reconcile_one (/work/x/src/clusternet/runtime/reconcile.py:156);"
    "KubeClient._json (/work/x/src/clusternet/kube/_client.py:452);"
    "JSONDecoder.raw_decode (/usr/lib/python3.11/json/decoder.py:353) 10",
    "<module> (clusternet/controllermanager/__main__.py:3);"
    "Pusher.reconcile (/work/x/src/clusternet/controllermanager/pusher.py:263) 10",
    "",
    "garbage line",
]


def test_collapsed_stacks_are_counted_by_layer_and_function() -> None:
    found = parse_collapsed(STACKS)
    assert found.samples == 50
    assert found.layers == {
        "HTTP client (httpcore2)": 30,
        "JSON": 10,
        "Clusternet logic": 10,
    }
    assert found.own["AsyncHTTPConnection.has_expired (httpcore2/_async/connection.py)"] == 30
    # inclusive: a function counts for every sample it is on the stack of ...
    assert found.inclusive["KubeClient._json (clusternet/kube/_client.py)"] == 40
    assert found.share(found.inclusive["KubeClient._json (clusternet/kube/_client.py)"]) == 0.8
    # ... but the plumbing on every stack is left out
    assert not any(name.startswith(("<module>", "_reconcile_one", "run_component",
                                    "BaseEventLoop")) for name in found.inclusive)  # fmt: skip


@pytest.mark.parametrize(
    ("path", "layer"),
    [
        ("clusternet/kube/_client.py", "clusternet.kube (API client)"),
        ("clusternet/runtime/informer.py", "informers"),
        ("clusternet/controllermanager/pusher.py", "Clusternet logic"),
        ("httpx2/_client.py", "HTTP client (httpx2)"),
        ("aiohttp/client.py", "aiohttp"),
        ("asyncio/selector_events.py", "asyncio"),
        ("ssl.py", "TLS"),
        ("selectors.py", "other (standard library, interpreter)"),
    ],
)
def test_layers(path: str, layer: str) -> None:
    assert layer_of(path) == layer


def test_an_empty_profile_has_no_shares() -> None:
    assert parse_collapsed([]).share(0) == 0.0
