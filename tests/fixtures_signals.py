"""Start a real CLI subprocess that a test can interrupt with SIGINT, as a user's Ctrl-C does."""

from __future__ import annotations

import signal
import subprocess


def _default_sigint() -> None:
    # A job started in the background by a non-interactive shell (a CI runner, `cmd &`) inherits SIGINT ignored,
    # and Python then keeps ignoring it; a terminal's foreground job has the default, which the tests mean.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def interruptible(cmd: list[str], **kwargs) -> subprocess.Popen:
    """`subprocess.Popen(cmd, **kwargs)` with SIGINT at its default, so `send_signal(SIGINT)` raises KeyboardInterrupt."""
    return subprocess.Popen(cmd, preexec_fn=_default_sigint, **kwargs)
