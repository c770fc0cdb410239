"""Every reader command works on a read-only copy of a ledger.

Three real conditions: a read-only bind mount (root only: root ignores file
permissions, so a chmod alone proves nothing for it), a chmod'ed copy read by
an unprivileged user (`setpriv`), and a read-only mount of a copy without read
models (queries then build them in a temporary directory). The read models of
a read-only copy cannot catch up: they answer as of their checkpoint and say
how far behind the head that is.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.cli.test_cli_basic import ROOT, ledgerctl

READERS: list[tuple[str, ...]] = [
    ("info",), ("blocks", "--from", "0", "--to", "3"), ("events", "--height", "2"),
    ("events", "--type", "Filled", "--limit", "5"), ("snapshots",), ("branches",),
    ("journal",), ("verify",), ("verify", "--reexecute"),
    ("audit", "account", "u00003"), ("audit", "fills", "--limit", "5"),
    ("audit", "funding", "--market", "BTC-PERP"), ("audit", "liquidations"),
    ("audit", "events", "--type", "Deposited", "--limit", "3"), ("audit", "state"),
    ("audit", "state", "--at-height", "4"), ("audit", "status"),
]
IS_ROOT = os.geteuid() == 0
#: The other conditions run a cross-section (the suite stays fast): the chain, the
#: verifier, a read model query and a time-travel query.
SAMPLE = [("info",), ("events", "--height", "2"), ("verify",), ("audit", "account", "u00003"),
          ("audit", "state", "--at-height", "4"), ("audit", "status")]


@pytest.fixture(scope="module")
def ledger(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ro") / "data"
    assert ledgerctl("init", "--data", str(path), "--snapshot-every", "4").returncode == 0
    r = ledgerctl("simulate", "--data", str(path), "--blocks", "8", "--accounts", "12",
                  "--seed", "3")
    assert r.returncode == 0, r.stderr
    assert ledgerctl("audit", "state", "--data", str(path)).returncode == 0  # read models
    r = ledgerctl("simulate", "--data", str(path), "--blocks", "3", "--accounts", "12",
                  "--seed", "4")
    assert r.returncode == 0, r.stderr
    return path


@contextmanager
def readonly_mount(src: Path, dst: Path) -> Iterator[Path]:
    dst.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "--bind", str(src), str(dst)], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,ro,bind", str(dst)], check=True)
        yield dst
    finally:
        subprocess.run(["umount", str(dst)], check=True)


def _can_mount(tmp: Path) -> bool:
    if not IS_ROOT or shutil.which("mount") is None:
        return False
    a, b = tmp / "probe-a", tmp / "probe-b"
    a.mkdir()
    try:
        with readonly_mount(a, b):
            return True
    except (subprocess.CalledProcessError, OSError):
        return False


def run_as(user: int | None, *args: str, module: str = "tools.cli",
           code: str | None = None) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, *(["-c", code] if code else ["-m", module]), *args]
    env = {**os.environ, "HOME": "/tmp"}
    if user is not None:
        cmd = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", *cmd]
        # Another user's HOME hides root's user site: hand the child this process's
        # import path, so it finds the same installed packages.
        env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=180, env=env)


def _all_readers_work(data: Path, user: int | None = None,
                      readers: list[tuple[str, ...]] = READERS) -> dict[str, str]:
    errs = {}
    for args in readers:
        r = run_as(user, *args, "--data", str(data), "--json")
        assert "Traceback" not in r.stderr, (args, r.stderr)
        if r.returncode != 0:
            errs[" ".join(args)] = r.stderr
    return errs


def test_readers_on_a_read_only_bind_mount(ledger: Path, tmp_path: Path) -> None:
    if not _can_mount(tmp_path):
        pytest.skip("needs root and mount(8) for a real read-only mount")
    copy = tmp_path / "copy"
    shutil.copytree(ledger, copy)
    with readonly_mount(copy, tmp_path / "ro") as ro:
        probe = subprocess.run(["touch", str(ro / "x")], capture_output=True)
        assert probe.returncode != 0  # the mount really is read-only, also for root
        assert _all_readers_work(ro) == {}
        r = ledgerctl("audit", "account", "u00003", "--data", str(ro))
        assert "behind the head" in r.stderr
        doc = json.loads(ledgerctl("info", "--data", str(ro), "--json").stdout)
        assert doc["head_height"] == 11
        # A writer is refused clearly, not with a traceback.
        w = ledgerctl("snapshot", "--data", str(ro))
        assert w.returncode == 1 and "Traceback" not in w.stderr
        assert "read-only" in w.stderr


def test_readers_on_a_chmod_copy_as_an_unprivileged_user(ledger: Path, tmp_path: Path) -> None:
    if not IS_ROOT or shutil.which("setpriv") is None:
        pytest.skip("needs root to drop to an unprivileged user with setpriv")
    import tempfile

    # pytest's own temporary directories are private to root: the unprivileged
    # reader needs a path it may traverse.
    outer = Path(tempfile.mkdtemp(prefix="perpledger-ro-"))
    outer.chmod(0o755)
    copy = outer / "copy"
    shutil.copytree(ledger, copy)
    for p in [copy, *copy.rglob("*")]:
        p.chmod(0o555 if p.is_dir() else 0o444)
    try:
        imports = run_as(65534, code="import typer, lmdb, msgspec, ledger, tools.cli")
        if imports.returncode != 0:
            # The installation itself is private to root (a umask of 077, say): no
            # unprivileged process could run ledgerctl here, read-only or not.
            pytest.skip("the installed packages are not readable by an unprivileged user: "
                        + imports.stderr.strip().splitlines()[-1])
        probe = run_as(65534, "snapshot", "--data", str(copy))
        assert probe.returncode == 1 and "read-only" in probe.stderr  # it cannot write
        assert _all_readers_work(copy, user=65534, readers=SAMPLE) == {}
    finally:
        for p in [copy, *copy.rglob("*")]:
            p.chmod(0o755 if p.is_dir() else 0o644)
        shutil.rmtree(outer)


def test_readers_on_a_read_only_copy_without_read_models(ledger: Path, tmp_path: Path) -> None:
    if not _can_mount(tmp_path):
        pytest.skip("needs root and mount(8) for a real read-only mount")
    copy = tmp_path / "copy"
    shutil.copytree(ledger, copy, ignore=shutil.ignore_patterns("readmodels"))
    with readonly_mount(copy, tmp_path / "ro") as ro:
        assert _all_readers_work(ro, readers=SAMPLE) == {}
        r = ledgerctl("audit", "liquidations", "--data", str(ro), "--json")
        w = ledgerctl("audit", "liquidations", "--data", str(ledger), "--json")
        assert json.loads(r.stdout) == json.loads(w.stdout)
