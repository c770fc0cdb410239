"""CLI polish: help without type noise, shell completion on, --json output kept clean."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NOISE = re.compile(r"<(bool|int|str|path|float)>")


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tools.cli", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "COLUMNS": "160", **(env or {})})


@pytest.mark.parametrize("command", [
    [], ["audit"], ["audit", "account"], ["audit", "export"], ["audit", "plot"],
    ["report", "incident"], ["serve"], ["verify"], ["rollback"], ["refunds", "plan"],
])
def test_help_shows_no_type_noise(command: list[str]) -> None:
    r = _cli(*command, "--help")
    assert r.returncode == 0, r.stderr
    assert not NOISE.search(r.stdout), NOISE.findall(r.stdout)
    assert "Usage:" in r.stdout


def test_help_names_what_a_value_is() -> None:
    out = _cli("audit", "account", "--help").stdout
    assert re.search(r"--at-height\s+HEIGHT", out)
    assert re.search(r"--data\s+DIR", out)


def test_shell_completion_is_on() -> None:
    out = _cli("--help").stdout
    assert "--install-completion" in out and "--show-completion" in out
    script = _cli("--show-completion", "bash")
    assert script.returncode == 0 and "_ledgerctl_completion" in script.stdout
    # the completion protocol answers with the command names
    r = _cli(env={"_LEDGERCTL_COMPLETE": "complete_bash", "COMP_WORDS": "ledgerctl aud",
                  "COMP_CWORD": "1"})
    assert "audit" in r.stdout.split()


def test_verify_json_is_one_clean_document_after_a_walk(tmp_path: Path) -> None:
    data = tmp_path / "l"
    assert _cli("init", "--data", str(data)).returncode == 0
    sim = _cli("simulate", "--data", str(data), "--blocks", "30", "--accounts", "20")
    assert sim.returncode == 0, sim.stderr
    r = _cli("verify", "--data", str(data), "--reexecute", "--json")
    assert r.returncode == 0, r.stderr
    assert len(r.stdout.strip().splitlines()) == 1  # no progress line mixed into the JSON
    doc = json.loads(r.stdout)
    assert doc["ok"] is True and doc["reexecute"]["ok"] is True
