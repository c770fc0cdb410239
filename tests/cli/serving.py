"""`ledgerctl serve` as a real process on 127.0.0.1 and a free port, for the API tests."""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[2]


@contextmanager
def serving(*where: str) -> Iterator[dict[str, Any]]:
    """A real `ledgerctl serve` process on 127.0.0.1 and a free port for `where` (--data DIR
    or --store URL), with an HTTP client; stopped after."""
    proc = subprocess.Popen([sys.executable, "-m", "tools.cli", "serve", *where,
                             "--port", "0", "--json"], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env={**os.environ, "COLUMNS": "120"})
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 60)
        assert ready, "serve did not print its address within 60 s"
        line = proc.stdout.readline()
        assert line, proc.stderr.read() if proc.stderr else ""
        info = json.loads(line)
        assert info["host"] == "127.0.0.1" and info["port"] > 0
        with httpx.Client(base_url=info["url"], timeout=30) as client:
            yield {"url": info["url"], "client": client}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
