"""Property: any override document or JSON patch, however malformed, gives either a result
or an OverrideError with a message, never another exception, and the same input gives the
same output (controllermanager/overrides.py)."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from clusternet.controllermanager.overrides import (
    Override,
    OverrideError,
    OverrideSource,
    apply_override,
    ordered_overrides,
    render,
)

SCALARS = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8)
)
JSON = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)
# Pointers into the template below (valid or not) and garbage.
POINTERS = st.sampled_from(
    [
        "",
        "/",
        "/spec",
        "/spec/replicas",
        "/spec/template/containers/0",
        "/spec/template/containers/-",
        "/metadata/labels/a~1b",
        "/metadata/labels/new",
        "/missing/deep",
        "/data/config",
        "/data",
        "/spec/replicas/x",
        "~",
        "no-slash",
        "/spec/template/containers/9",
    ]
) | st.text(max_size=12)
OPERATION = st.fixed_dictionaries(
    {},
    optional={
        "op": st.sampled_from(["add", "remove", "replace", "move", "copy", "test"])
        | st.text(max_size=5),
        "path": POINTERS | JSON,
        "from": POINTERS,
        "value": JSON,
    },
)
PATCH = st.lists(OPERATION | JSON, max_size=5) | JSON
TEMPLATE: dict[str, Any] = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "web", "namespace": "shop", "labels": {"a/b": "c"}, "uid": "u"},
    "spec": {"replicas": 3, "template": {"containers": [{"name": "c", "image": "i"}]}},
    "data": {"config": "a: 1\nb: [1, 2]\n", "json": '{"x": 1}', "empty": "", "bad": "{: ["},
    "status": {"ready": 1},
}


def dumps(value: Any) -> str:
    return json.dumps(value)


VALUES = PATCH.map(dumps) | st.text(max_size=30) | JSON.map(dumps)
OVERRIDES = st.fixed_dictionaries(
    {
        "type": st.sampled_from(
            ["JSONPatch", "MergePatch", "FieldJSONPatch", "FieldMergePatch", "Helm", "", "Other"]
        ),
    },
    optional={
        "name": st.text(max_size=6),
        "value": VALUES | JSON,
        "fieldPath": st.sampled_from(
            [
                "/data/config",
                "/data/json",
                "/data/empty",
                "/data/bad",
                "/spec/replicas",
                "/nope",
                "",
            ]
        )
        | st.text(max_size=6),
        "fieldFormat": st.sampled_from(["YAML", "JSON", "yaml", "Toml"]),
    },
)


def outcome(template: dict[str, Any], override: Override) -> tuple[str, Any]:
    try:
        return "ok", apply_override(template, override)
    except OverrideError as err:
        message = str(err)
    assert message, "an OverrideError always says why"
    assert override.label in message, "the message names the override"
    return "error", message


@settings(max_examples=300, deadline=None)
@given(config=OVERRIDES)
def test_any_override_gives_a_result_or_an_override_error(config: dict[str, Any]) -> None:
    override = Override("Localization shop/loc", config)
    before = json.dumps(TEMPLATE, sort_keys=True)
    first = outcome(TEMPLATE, override)
    assert json.dumps(TEMPLATE, sort_keys=True) == before, "the template is never changed"
    assert outcome(TEMPLATE, override) == first, "deterministic"
    if first[0] == "ok":
        assert isinstance(first[1], dict)


@settings(max_examples=300, deadline=None)
@given(patch=PATCH)
def test_any_json_patch_gives_a_result_or_an_override_error(patch: Any) -> None:
    override = Override("Globalization g", {"type": "JSONPatch", "value": json.dumps(patch)})
    first = outcome(TEMPLATE, override)
    assert outcome(TEMPLATE, override) == first


@settings(max_examples=150, deadline=None)
@given(
    configs=st.lists(OVERRIDES, max_size=4),
    priorities=st.lists(st.integers(-5, 1005), min_size=1, max_size=3),
    template=st.dictionaries(st.text(max_size=6), JSON, max_size=5),
)
def test_render_of_any_overrides_is_total_and_deterministic(
    configs: list[dict[str, Any]], priorities: list[int], template: dict[str, Any]
) -> None:
    sources = [
        OverrideSource("Localization", f"ns/l{i}", p, "2026-01-01T00:00:00Z", tuple(configs))
        for i, p in enumerate(priorities)
    ]

    def run() -> tuple[str, Any, list[str]]:
        skipped: list[str] = []
        try:
            return "ok", render(template, ordered_overrides(sources), skipped=skipped), skipped
        except OverrideError as err:
            message = str(err)
        assert message
        return "error", message, skipped

    assert run() == run()
