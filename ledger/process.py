"""Whether another process still runs: for stale build directories and server pid files."""

from __future__ import annotations

import os


def pid_alive(pid: int) -> bool:
    """True if process `pid` exists, whoever owns it (a PermissionError means it does)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
