"""The plugin's command line: what it keeps for itself, and what reaches kubectl."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from clusternet.cli import main
from clusternet.cli.plugin import kubectl
from clusternet.cli.plugin.args import UsageError, split_connection_flags


@pytest.mark.parametrize(
    ("args", "kubeconfig", "context", "passthrough"),
    [
        (["get", "deploy"], None, None, ["get", "deploy"]),
        (
            ["--kubeconfig", "/k", "get", "--context", "parent", "-n", "baz"],
            Path("/k"),
            "parent",
            ["get", "-n", "baz"],
        ),
        (["--kubeconfig=/k", "--context=parent", "-oyaml"], Path("/k"), "parent", ["-oyaml"]),
        # the last occurrence wins, as with kubectl's flag parsing
        (["--context=a", "--context", "b"], None, "b", []),
        # a flag whose name merely starts like ours is kubectl's
        (["--contexts=x", "--kubeconfigs"], None, None, ["--contexts=x", "--kubeconfigs"]),
        # after `--` nothing is a flag of ours
        (["exec", "--", "--context", "x"], None, None, ["exec", "--", "--context", "x"]),
    ],
)
def test_split_connection_flags(
    args: list[str], kubeconfig: Path | None, context: str | None, passthrough: list[str]
) -> None:
    parsed = split_connection_flags(args)
    assert (parsed.kubeconfig, parsed.context, parsed.passthrough) == (
        kubeconfig,
        context,
        passthrough,
    )


def test_a_connection_flag_without_value_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="flag needs an argument: --context"):
        split_connection_flags(["get", "pods", "--context"])


def test_verbs_hand_every_argument_to_kubectl_in_order(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, list[str]]] = []

    async def fake_run(verb: str, args: list[str]) -> int:
        calls.append((verb, list(args)))
        return 3  # kubectl's exit code becomes the plugin's

    monkeypatch.setattr(kubectl, "run_kubectl", fake_run)
    argv = ["get", "deploy", "-oyaml", "-n", "baz", "-A", "-l", "app=web", "--help"]
    result = CliRunner().invoke(main.app, argv)
    assert result.exit_code == 3
    assert calls == [("get", argv[1:])]  # --help too: kubectl prints the verb's own help


def test_usage_error_exits_1_with_kubectl_wording(monkeypatch: pytest.MonkeyPatch) -> None:
    result = CliRunner().invoke(main.app, ["get", "pods", "--context"])
    assert result.exit_code == 1
    assert "error: flag needs an argument: --context" in result.output


def test_top_level_help_lists_the_plugin_commands() -> None:
    result = CliRunner().invoke(main.app, ["--help"])
    assert result.exit_code == 0
    for name in [*kubectl.VERBS, "clusters", "kubeconfig", "approve", "deny", "version", "local"]:
        assert f" {name} " in result.output
