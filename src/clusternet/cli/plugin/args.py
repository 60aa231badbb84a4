"""The plugin's share of a kubectl command line.

The verbs run the real kubectl, so every flag but two is passed through untouched:
``--kubeconfig`` and ``--context`` choose the parent cluster, which the plugin itself talks
to, and kubectl instead gets a kubeconfig of the plugin's local shadow proxy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

_CONNECTION_FLAGS = ("--kubeconfig", "--context")


class UsageError(ValueError):
    """A command line kubectl would reject before talking to any server."""


@dataclass(frozen=True)
class KubectlArgs:
    kubeconfig: Path | None = None
    context: str | None = None
    passthrough: list[str] = field(default_factory=list)


def split_connection_flags(args: Sequence[str]) -> KubectlArgs:
    """Take ``--kubeconfig``/``--context`` (``--flag value`` or ``--flag=value``) out of
    ``args``; everything else, in order, is for kubectl.  After ``--`` nothing is a flag."""
    found: dict[str, str] = {}
    passthrough: list[str] = []
    index = 0
    while index < len(args):
        arg = args[index]
        if arg == "--":
            passthrough += args[index:]
            break
        name, equals, value = arg.partition("=")
        if name in _CONNECTION_FLAGS:
            if not equals:
                if index + 1 >= len(args):
                    raise UsageError(f"flag needs an argument: {name}")
                index += 1
                value = args[index]
            found[name] = value
        else:
            passthrough.append(arg)
        index += 1
    kubeconfig = found.get("--kubeconfig")
    return KubectlArgs(
        kubeconfig=Path(kubeconfig) if kubeconfig else None,
        context=found.get("--context") or None,
        passthrough=passthrough,
    )
