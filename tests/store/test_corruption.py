"""Corruption is exit 3: damaged LMDB pages, snapshot bytes and read-model stores.

Real damage: bytes flipped in the data file itself (LMDB then reports
MDB_CORRUPTED, or reading kills the process, which `verify` survives by
walking in a child process), and values overwritten in place (a snapshot, a
read-model entry), as a disk error would leave them.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import lmdb
import pytest

from ledger.store.layout import u64
from tests.cli.test_cli_basic import ROOT, ledgerctl


@pytest.fixture(scope="module")
def ledger(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("corrupt") / "data"
    assert ledgerctl("init", "--data", str(path), "--snapshot-every", "5").returncode == 0
    r = ledgerctl("simulate", "--data", str(path), "--blocks", "20", "--accounts", "30",
                  "--seed", "2")
    assert r.returncode == 0, r.stderr
    assert ledgerctl("audit", "state", "--data", str(path)).returncode == 0
    return path


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _verify(data: Path) -> tuple[int, dict[str, object], str]:
    r = subprocess.run([sys.executable, "-m", "tools.cli", "verify", "--data", str(data),
                        "--json"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert "Traceback" not in r.stderr, r.stderr
    doc = json.loads(r.stdout.splitlines()[-1]) if r.stdout.strip() else {}
    return r.returncode, doc, r.stderr


# Page, offset within the page: each flips a page header field or a node of a data
# page in a ledger built the same way every time (sizes and layout are deterministic).
FLIPS = [(2, 10), (2, 12), (2, 2000), (14, 10), (30, 12), (42, 10), (50, 2000), (62, 12)]


def test_flipped_bytes_in_the_data_file_are_exit_3_never_a_traceback(ledger: Path,
                                                                     tmp_path: Path) -> None:
    pages = (ledger / "data.mdb").stat().st_size // 4096
    codes = []
    lmdb_named = 0
    for i, (page, offset) in enumerate(FLIPS):
        page = min(page, pages - 1)
        copy = _copy(ledger, tmp_path / f"c{i}")
        with (copy / "data.mdb").open("r+b") as f:
            f.seek(page * 4096 + offset)
            b = f.read(1)
            f.seek(page * 4096 + offset)
            f.write(bytes([b[0] ^ 0xFF]))
        code, doc, err = _verify(copy)
        assert code in (0, 3), (page, offset, code, err)
        codes.append(code)
        if code == 3:
            assert doc["ok"] is False and doc["reason"]
            if "sub-database" in str(doc["reason"]):
                lmdb_named += 1
                assert doc["height"] is not None or "blocks" in str(doc["reason"])
        shutil.rmtree(copy)
    assert codes.count(3) >= 4  # most of these flips damage something verify must see
    assert lmdb_named >= 1  # and at least one is LMDB's own MDB_CORRUPTED, named by sub-db


def _put(data: Path, db: bytes, key: bytes, value: bytes, *, sub: str = "") -> None:
    env = lmdb.open(str(data / sub) if sub else str(data), max_dbs=64, map_size=1 << 30)
    try:
        handle = env.open_db(db, create=False)
        with env.begin(write=True) as txn:
            txn.put(key, value, db=handle)
    finally:
        env.close()


def test_a_flipped_snapshot_byte_fails_verify_at_its_height(ledger: Path,
                                                            tmp_path: Path) -> None:
    copy = _copy(ledger, tmp_path / "snap")
    env = lmdb.open(str(copy), max_dbs=64, map_size=1 << 30)
    snap = env.open_db(b"snap_data", create=False)
    with env.begin(write=True) as txn:
        data = bytearray(txn.get(u64(10), db=snap))
        at = data.index(b"BTC-PERP") + 6
        data[at] ^= 0x04  # BTC-PERP -> BTC-PEVP: a market id no listing has
        txn.put(u64(10), bytes(data), db=snap)
    env.close()
    code, doc, _ = _verify(copy)
    assert code == 3 and doc["height"] == 10
    assert "snapshot at height 10" in str(doc["reason"])
    # For people: one row per finding, none of them a Python dict.
    human = ledgerctl("verify", "--data", str(copy))
    assert human.returncode == 3 and "VERIFICATION FAILED" in human.stdout
    for row in ("first bad height", "snapshot problem", "snapshots", "signatures"):
        assert row in human.stdout, human.stdout
    assert "{" not in human.stdout and "[" not in human.stdout, human.stdout
    # A query restoring that snapshot says the same instead of a KeyError traceback.
    r = ledgerctl("audit", "state", "--at-height", "12", "--data", str(copy))
    assert r.returncode == 3 and "Traceback" not in r.stderr and "height 10" in r.stderr


def test_a_damaged_read_model_store_names_the_command_that_rebuilds_it(
        ledger: Path, tmp_path: Path) -> None:
    copy = _copy(ledger, tmp_path / "rm")
    env = lmdb.open(str(copy / "readmodels"), max_dbs=64, map_size=1 << 30)
    stmt = env.open_db(b"stmt", create=False)
    with env.begin(write=True) as txn:
        cur = txn.cursor(stmt)
        keys = [k for k, _ in cur]
        for k in keys:
            txn.put(k, b"\xa3\xff\xfe\xfd", db=stmt)  # a msgpack str of invalid UTF-8
    env.close()
    r = ledgerctl("audit", "account", "u00001", "--data", str(copy), "--no-catch-up")
    assert r.returncode == 3 and "Traceback" not in r.stderr
    err = " ".join(r.stderr.split())
    assert "read models" in err and "ledgerctl rebuild --from genesis" in err

    _put(copy, b"rm_meta", b"ckpt:audit@0", b"\x81\xa6height\xcd\xff\xff", sub="readmodels")
    code, doc, _ = _verify(copy)
    assert code == 3 and "rebuild" in str(doc["reason"])
    # The command it names rebuilds them, and the ledger verifies again.
    shutil.rmtree(copy / "readmodels")
    assert ledgerctl("rebuild", "--from", "genesis", "--data", str(copy)).returncode == 0
    assert _verify(copy)[0] == 0
    r = ledgerctl("audit", "account", "u00001", "--data", str(copy))
    assert r.returncode == 0, r.stderr
