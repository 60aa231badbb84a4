"""JSON patches are sent as Go's encoding/json writes them (a `test` op compares raw bytes)."""

from __future__ import annotations

import json

import pytest

from clusternet.kube._client import go_json


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("plain", b'"plain"'),
        ("a <b> & c", b'"a \\u003cb\\u003e \\u0026 c"'),
        ("caf\u00e9 \u2713", '"caf\u00e9 \u2713"'.encode()),  # UTF-8 as is, not \\u00e9
        ("line\u2028sep\u2029", b'"line\\u2028sep\\u2029"'),
        ('quote " and \\ and \n', b'"quote \\" and \\\\ and \\n"'),
        ([{"op": "test", "path": "/a", "value": 1}], b'[{"op":"test","path":"/a","value":1}]'),
    ],
)
def test_go_json(value: object, expected: bytes) -> None:
    assert go_json(value) == expected
    assert json.loads(go_json(value)) == value  # the same JSON value
