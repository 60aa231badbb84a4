"""Run a component and start it again when it exits, as the kubelet does for a pod.

``python -m clusternet.local.supervise [--startup-grace=SECONDS] <name> -- <command>...``

Clusternet's components exit on purpose when they lose their leader-election Lease (an
apiserver or etcd that was away longer than the renew deadline) and expect to be restarted,
as in a Deployment.  The local environment has no kubelet, so each Clusternet process runs
under this supervisor: restarts with a doubling delay (1 s to 30 s, back to 1 s after a
minute of running), SIGTERM/SIGINT passed on and the supervisor gone with its child.

A command that fails at once on its first start (within :data:`STARTUP_GRACE` seconds) or
exits with code 2 (bad flags) is not restarted: that is a configuration error to report,
and ``clusternet local up`` reports it with the log instead of waiting for a timeout.
"""

from __future__ import annotations

import contextlib
import ctypes
import signal
import subprocess
import sys
import time
from types import FrameType
from typing import Final

STARTUP_GRACE: Final = 5.0
MAX_DELAY: Final = 30.0
HEALTHY_RUN: Final = 60.0
USAGE_EXIT: Final = 2


_PR_SET_PDEATHSIG: Final = 1  # linux/prctl.h


class _Stop(Exception):
    pass


def _die_with_supervisor() -> None:
    """In the child before exec: SIGTERM when the supervisor dies (even by SIGKILL of the
    supervisor alone), so a component never outlives it unsupervised.  Linux only."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def supervise(name: str, command: list[str], startup_grace: float = STARTUP_GRACE) -> int:
    child: subprocess.Popen[bytes] | None = None
    stopping = False

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        if child is not None and child.poll() is None:
            child.send_signal(signum)
        else:
            raise _Stop  # waiting between two runs: nothing to pass the signal to

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    delay = 1.0
    first = True
    try:
        while True:
            started = time.monotonic()
            # same session: a group kill takes both
            child = subprocess.Popen(command, preexec_fn=_die_with_supervisor)
            code = child.wait()
            ran = time.monotonic() - started
            if stopping or code == USAGE_EXIT or (first and ran < startup_grace):
                return code
            first = False
            if ran >= HEALTHY_RUN:
                delay = 1.0
            print(
                f"supervise: {name} exited with code {code} after {ran:.1f}s; "
                f"starting it again in {delay:.0f}s",
                file=sys.stderr,
                flush=True,
            )
            time.sleep(delay)
            delay = min(delay * 2, MAX_DELAY)
    except _Stop:
        return 0


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    grace = STARTUP_GRACE
    if args and args[0].startswith("--startup-grace="):
        try:
            grace = float(args.pop(0).partition("=")[2])
        except ValueError:
            args = []
    if len(args) < 3 or args[1] != "--":
        print(
            "usage: python -m clusternet.local.supervise [--startup-grace=SECONDS] <name> -- "
            "<command>...",
            file=sys.stderr,
        )
        return USAGE_EXIT
    return supervise(args[0], args[2:], grace)


if __name__ == "__main__":
    sys.exit(main())
