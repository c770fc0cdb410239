"""A full disk, for real: a small tmpfs mounted in the test and filled to the last byte.

The writer gets a clear error naming the directory and the free space (no
traceback); every block acknowledged before stays intact and verifies;
readers keep working (no SIGBUS, the failure class LMDB's mapped lock file
has on a full tmpfs); once space is freed the ledger carries on.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli.test_cli_basic import ledgerctl


def _fill(directory: Path) -> Path:
    """Write a file until the file system refuses another byte."""
    filler = directory / "filler"
    chunk = b"\0" * (256 * 1024)
    with filler.open("wb", buffering=0) as f:
        for size in (len(chunk), 4096, 1):
            while True:
                try:
                    f.write(chunk[:size])
                except OSError:
                    break
    assert shutil.disk_usage(directory).free == 0
    return filler


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("needs root to mount a small tmpfs")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(mnt)],
                       capture_output=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount tmpfs here: {r.stderr.decode().strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=True)


def _head(data: Path) -> dict[str, object]:
    r = ledgerctl("info", "--data", str(data), "--json")
    assert r.returncode == 0, r.stderr
    doc: dict[str, object] = json.loads(r.stdout)
    return doc


def test_a_full_disk_is_a_clear_error_and_the_ledger_carries_on(tmpfs: Path) -> None:
    data = tmpfs / "ledger"
    assert ledgerctl("init", "--data", str(data), "--snapshot-every", "10",
                     "--map-size", "4M").returncode == 0
    r = ledgerctl("simulate", "--data", str(data), "--blocks", "15", "--accounts", "40",
                  "--seed", "1")
    assert r.returncode == 0, r.stderr
    acked = _head(data)
    filler = _fill(tmpfs)

    # The writer: a clear one-line error naming the directory and the free space.
    r = ledgerctl("simulate", "--blocks", "30", "--accounts", "40", "--seed", "2",
                  "--data", str(data))
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    err = " ".join(r.stderr.split())
    assert "no space left" in err and str(data) in err and "0 bytes free" in err, err
    # A snapshot may still fit in pages LMDB frees and reuses; if not, the same error.
    r = ledgerctl("snapshot", "--data", str(data))
    assert r.returncode in (0, 1) and "Traceback" not in r.stderr
    if r.returncode:
        assert "no space left" in r.stderr
    # Nothing acknowledged is lost; readers work on the full disk, none dies of SIGBUS.
    assert _head(data)["head_hash"] == acked["head_hash"]
    assert ledgerctl("verify", "--data", str(data)).returncode == 0
    for args in (("verify",), ("audit", "state"), ("audit", "account", "u00001"),
                 ("events", "--type", "Filled", "--limit", "3"), ("blocks",)):
        r = ledgerctl(*args, "--data", str(data))
        assert r.returncode == 0, (args, r.returncode, r.stderr)
        assert "Traceback" not in r.stderr

    # Space freed: the same ledger carries on and verifies, replay included.
    filler.unlink()
    r = ledgerctl("simulate", "--data", str(data), "--blocks", "30", "--accounts", "40",
                  "--seed", "2")
    assert r.returncode == 0, r.stderr
    after = _head(data)
    assert after["head_height"] == int(acked["head_height"]) + 30  # type: ignore[call-overload]
    r = ledgerctl("verify", "--reexecute", "--data", str(data), "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["ok"], r.stdout
