"""The door's corpus: malformed and refused inputs to `ledgerctl submit`.

Each case is refused with a non-zero exit, a message naming the line (and the
field, where one is at fault), no traceback, and the store byte-identical
(`store_image` compares every sub-database, the head and LMDB's last txn id).
All cases run through the real `ledgerctl` entry point in this process (fast);
one per class also runs as a real subprocess.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ledger.store.chain import ChainStore
from tests.store.crash_worker import image_diff, store_image

ROOT = Path(__file__).resolve().parents[2]
B = '{"type": "BeginBlock", "time": 2000000000}'
DEP = '{"type": "Deposit", "acct": "alice", "amount_qq": 5, "ext_ref": "x"}'
ORDER = ('{"type": "PlaceOrder", "acct": "alice", "mkt": "BTC-PERP", "side": "BUY", '
         '"qty_bq": 100000000, "price_st": 5000000000')


def order(**extra: object) -> str:
    return ORDER + "".join(f', "{k}": {json.dumps(v)}' for k, v in extra.items()) + "}"


def lines(*rows: str) -> bytes:
    return ("\n".join(rows) + "\n").encode()


# (id, input bytes, expected substrings of the error: the line and the field)
CASES: list[tuple[str, bytes, list[str]]] = [
    # -- operator-only types, refused by name --------------------------------------------
    *[(f"privileged-{t}", lines(B, json.dumps({"type": t})), ["line 2", "type", t,
                                                             "operator command"])
      for t in ("ApplyRollback", "IssueRefund", "SetGuards", "SetMode", "SetLossMode",
                "ListMarket", "UpdateMarketParams", "HaltMarket", "ResumeMarket",
                "FundingResume", "BulkCancel")],
    ("privileged-refund-with-fields", lines(
        B, '{"type": "IssueRefund", "acct": "alice", "amount_qq": 1000000000000000, '
           '"source": "LIQ_VAULT", "ref": "rollback-branch-1"}'), ["line 2", "IssueRefund"]),
    ("endblock", lines(B, '{"type": "EndBlock"}'), ["line 2", "type", "EndBlock"]),
    # -- refused at the door by the chain's state (dry run; nothing written) -------------
    ("unknown-account", lines(B, '{"type": "Deposit", "acct": "nobody", "amount_qq": 5, '
                                 '"ext_ref": "x"}'), ["line 2", "acct", "nobody"]),
    ("unknown-market", lines(B, order().replace('"BTC-PERP"', '"NOPE-PERP"')),
     ["line 2", "mkt", "not listed"]),
    ("off-tick", lines(B, order(price_st=5000000001).replace(
        '"price_st": 5000000000, ', "")), ["line 2", "price_st", "tick"]),
    ("zero-amount", lines(B, DEP.replace('"amount_qq": 5', '"amount_qq": 0')),
     ["line 2", "amount_qq", "positive"]),
    ("zero-qty", lines(B, order().replace('"qty_bq": 100000000', '"qty_bq": 0')),
     ["line 2", "qty_bq"]),
    ("market-with-price", lines(B, order(order_type="MARKET", tif="IOC")),
     ["line 2", "price_st", "MARKET"]),
    ("limit-without-price", lines(B, order().replace(', "price_st": 5000000000', "")),
     ["line 2", "price_st"]),
    ("trigger-on-limit", lines(B, order(trigger_st=5000000000)), ["line 2", "trigger_st"]),
    ("cancel-id-zero", lines(B, '{"type": "CancelOrder", "acct": "alice", "order_id": 0}'),
     ["line 2", "order_id"]),
    ("create-existing", lines(B, '{"type": "CreateAccount", "acct": "alice"}'),
     ["line 2", "acct", "already exists"]),
    ("every-command-refused", lines(
        B, '{"type": "Deposit", "acct": "ghost", "amount_qq": 5, "ext_ref": "x"}',
        '{"type": "CancelOrder", "acct": "ghost", "order_id": 3}'), ["line 2", "acct"]),
    ("refused-in-second-block", lines(B, DEP, '{"type": "BeginBlock", "time": 2000000001}',
                                      '{"type": "Withdraw", "acct": "ghost", "amount_qq": 5, '
                                      '"ext_ref": "y"}'), ["line 4", "acct"]),
    ("time-backwards", lines(B, DEP, '{"type": "BeginBlock", "time": 1}', DEP),
     ["line 3", "BeginBlock.time"]),
    # -- integers beyond what the codec stores ---------------------------------------------
    ("u64-overflow", lines(B, DEP.replace('"amount_qq": 5', f'"amount_qq": {2**64}')),
     ["line 2", "amount_qq", "range"]),
    ("two-to-the-63", lines(B, DEP.replace('"amount_qq": 5', f'"amount_qq": {2**63}')),
     ["line 2", "amount_qq", "range"]),
    ("above-max-units", lines(B, DEP.replace('"amount_qq": 5', f'"amount_qq": {2**53}')),
     ["line 2", "amount_qq"]),
    ("beyond-u64-in-block-2", lines(B, DEP, '{"type": "BeginBlock", "time": 2000000001}',
                                    DEP.replace('"amount_qq": 5', f'"amount_qq": {2**70}')),
     ["line 4", "amount_qq"]),
    ("i64-underflow", lines(B, '{"type": "UpdateOracle", "mkt": "BTC-PERP", "oracle_st": 5, '
                               f'"ext_basis_ppm": {-2**63 - 1}}}'), ["line 2", "ext_basis_ppm"]),
    ("negative-order-id", lines(B, '{"type": "CancelOrder", "acct": "alice", "order_id": -1}'),
     ["line 2", "order_id"]),
    ("time-beyond-u64", lines(f'{{"type": "BeginBlock", "time": {2**64}}}'),
     ["line 1", "time"]),
    ("5000-digit-integer", lines(B, DEP.replace('"amount_qq": 5', '"amount_qq": ' + "9" * 5000)),
     ["line 2", "digits"]),
    ("5000-digit-string", lines(B, DEP.replace('"amount_qq": 5', '"amount_qq": "'
                                               + "9" * 5000 + '"')), ["line 2", "amount_qq"]),
    ("negative-amount-string", lines(B, DEP.replace('"amount_qq": 5', '"amount_qq": "-5"')),
     ["line 2", "amount_qq"]),
    # -- numbers that are not ASCII integers -----------------------------------------------
    ("double-minus", lines(B, DEP.replace('"amount_qq": 5', '"amount_qq": "--5"')),
     ["line 2", "amount_qq"]),
    ("superscript-two", lines(B, DEP.replace('"amount_qq": 5', '"amount_qq": "\u00b2"')),
     ["line 2", "amount_qq"]),
    ("arabic-indic-digits", lines(B, DEP.replace('"amount_qq": 5',
                                                 '"amount_qq": "\u0665\u0660"')),
     ["line 2", "amount_qq"]),
    ("fullwidth-digits", lines(B, DEP.replace('"amount_qq": 5', '"amount_qq": "\uff15"')),
     ["line 2", "amount_qq"]),
    ("plus-sign", lines(B, DEP.replace('"amount_qq": 5', '"amount_qq": "+5"')),
     ["line 2", "amount_qq"]),
    ("spaces-in-number", lines(B, DEP.replace('"amount_qq": 5', '"amount_qq": " 5"')),
     ["line 2", "amount_qq"]),
    ("float", lines(B, DEP.replace('"amount_qq": 5', '"amount_qq": 5.0')),
     ["line 2", "float"]),
    ("exponent", lines(B, DEP.replace('"amount_qq": 5', '"amount_qq": 5e3')),
     ["line 2", "float"]),
    ("nan", lines(B, DEP.replace('"amount_qq": 5', '"amount_qq": NaN')), ["line 2", "NaN"]),
    ("infinity", lines(B, DEP.replace('"amount_qq": 5', '"amount_qq": -Infinity')),
     ["line 2", "Infinity"]),
    ("bool-for-int", lines(B, DEP.replace('"amount_qq": 5', '"amount_qq": true')),
     ["line 2", "amount_qq"]),
    ("string-for-bool", lines(B, order(reduce_only="yes")), ["line 2", "reduce_only"]),
    ("null-for-required", lines(B, DEP.replace('"amount_qq": 5', '"amount_qq": null')),
     ["line 2", "amount_qq"]),
    # -- ids, references and text ------------------------------------------------------------
    ("lone-surrogate-id", lines(B, DEP.replace('"alice"', '"al\\ud800ice"')),
     ["line 2", "acct"]),
    ("nul-in-id", lines(B, DEP.replace('"alice"', '"al\\u0000ice"')), ["line 2", "acct"]),
    ("newline-in-id", lines(B, DEP.replace('"alice"', '"al\\nice"')), ["line 2", "acct"]),
    ("space-in-id", lines(B, '{"type": "CreateAccount", "acct": "bob smith"}'),
     ["line 2", "acct"]),
    ("empty-id", lines(B, '{"type": "CreateAccount", "acct": ""}'), ["line 2", "acct"]),
    ("id-too-long", lines(B, '{"type": "CreateAccount", "acct": "' + "a" * 65 + '"}'),
     ["line 2", "acct"]),
    ("unicode-id", lines(B, '{"type": "CreateAccount", "acct": "\u0430lice"}'),
     ["line 2", "acct"]),
    ("ref-with-space", lines(B, DEP.replace('"ext_ref": "x"', '"ext_ref": "bank 1"')),
     ["line 2", "ext_ref"]),
    ("ref-too-long", lines(B, DEP.replace('"ext_ref": "x"', '"ext_ref": "' + "r" * 129 + '"')),
     ["line 2", "ext_ref"]),
    ("control-char-in-reason", lines(B, '{"type": "TakeSnapshot", "reason": "a\\u0007b"}'),
     ["line 2", "reason"]),
    ("reason-too-long", lines(B, '{"type": "TakeSnapshot", "reason": "' + "r" * 300 + '"}'),
     ["line 2", "reason"]),
    # -- enums ----------------------------------------------------------------------------------
    ("unknown-side", lines(B, order().replace('"BUY"', '"BUYY"')), ["line 2", "side", "BUY"]),
    ("enum-as-code", lines(B, order().replace('"BUY"', "1")), ["line 2", "side"]),
    ("unknown-tif", lines(B, order(tif="FOK")), ["line 2", "tif"]),
    ("unknown-order-type", lines(B, order(order_type="ICEBERG")), ["line 2", "order_type"]),
    ("non-ascii-enum", lines(B, order().replace('"BUY"', '"B\u00dcY"')), ["line 2", "side"]),
    # -- JSON structure --------------------------------------------------------------------------
    ("duplicate-type-key", lines(B, '{"type": "Withdraw", "acct": "alice", "amount_qq": 5, '
                                    '"ext_ref": "x", "type": "Deposit"}'),
     ["line 2", "type", "duplicate"]),
    ("duplicate-amount-key", lines(B, DEP.replace('"ext_ref"', '"amount_qq": 6, "ext_ref"')),
     ["line 2", "amount_qq", "duplicate"]),
    ("nested-100000", lines(B, "[" * 100_000 + "]" * 100_000), ["line 2", "longer than"]),
    ("nested-30000", lines(B, "[" * 30_000 + "]" * 30_000), ["line 2", "nested"]),
    ("nested-objects", lines(B, '{"a": ' * 20 + "1" + "}" * 20), ["line 2", "nested"]),
    ("nested-in-field", lines(B, DEP.replace('"x"', '[[[[[[[[[[[[[[[[[[["x"]]]]]]]]]]]]]]]]]]]')),
     ["line 2", "nested"]),
    ("unknown-type", lines(B, '{"type": "MintMoney", "acct": "alice"}'), ["line 2", "type"]),
    ("type-not-string", lines(B, '{"type": 3}'), ["line 2", "type"]),
    ("missing-type", lines(B, '{"acct": "alice"}'), ["line 2", "type"]),
    ("unknown-field", lines(B, DEP.replace('"ext_ref"', '"memo": "hi", "ext_ref"')),
     ["line 2", "memo"]),
    ("missing-field", lines(B, '{"type": "Deposit", "acct": "alice", "amount_qq": 5}'),
     ["line 2", "ext_ref", "required"]),
    ("not-an-object", lines(B, "[1, 2, 3]"), ["line 2", "object"]),
    ("truncated-json", lines(B, DEP[:-3]), ["line 2", "JSON"]),
    ("trailing-garbage", lines(B, DEP + " x"), ["line 2", "JSON"]),
    ("two-objects-one-line", lines(B, DEP + DEP), ["line 2", "JSON"]),
    ("utf8-bom", "\ufeff".encode() + lines(B), ["line 1", "JSON"]),
    # -- bytes that are not text ------------------------------------------------------------------
    ("invalid-utf8", lines(B) + b'{"type": "Deposit", "acct": "al\xffice"}\n', ["line 2",
                                                                               "UTF-8"]),
    ("encoded-surrogate-utf8", lines(B) + b'{"type": "CreateAccount", "acct": "\xed\xa0\x80"}\n',
     ["line 2", "UTF-8"]),
    ("overlong-utf8", lines(B) + b'{"type": "CreateAccount", "acct": "\xc0\xaf"}\n',
     ["line 2", "UTF-8"]),
    ("line-too-long", lines(B) + b'{"type": "TakeSnapshot", "reason": "' + b"r" * 70_000
     + b'"}\n', ["line 2", "longer than"]),
    ("empty-input", b"\n# only a comment\n\n", ["no commands"]),
]


@pytest.fixture(scope="module")
def ledger(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.cli.test_cli_basic import ledgerctl

    path = tmp_path_factory.mktemp("door") / "data"
    assert ledgerctl("init", "--data", str(path)).returncode == 0
    setup = lines('{"type": "BeginBlock", "time": 1000}',
                  '{"type": "CreateAccount", "acct": "alice"}',
                  '{"type": "Deposit", "acct": "alice", "amount_qq": 100000000000, '
                  '"ext_ref": "bank-1"}')
    r = ledgerctl("submit", "-", "--data", str(path), stdin=setup.decode())
    assert r.returncode == 0, r.stderr
    return path


def _image(path: Path) -> object:
    with ChainStore.open(path) as store:
        return store_image(store)


def _run_in_process(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    from tools import cli

    old = sys.argv
    sys.argv = ["ledgerctl", *args]
    try:
        cli.main()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    finally:
        sys.argv = old
    return code, capsys.readouterr().err


def test_the_corpus_covers_every_class_with_60_inputs_or_more() -> None:
    assert len(CASES) >= 60
    assert len({c[0] for c in CASES}) == len(CASES)


@pytest.mark.parametrize("name,data,needles", CASES, ids=[c[0] for c in CASES])
def test_malformed_input_is_refused_whole_and_named(ledger: Path, tmp_path: Path, name: str,
                                                    data: bytes, needles: list[str],
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "input.jsonl"
    src.write_bytes(data)
    before = _image(ledger)
    code, err = _run_in_process(["submit", str(src), "--data", str(ledger)], capsys)
    assert code != 0, err
    assert "Traceback" not in err
    flat = " ".join(err.split())
    for needle in needles:
        assert needle in flat, (needle, err)
    assert image_diff(before, _image(ledger)) == []


# One subprocess per class: the real process boundary (stdin, exit code, stderr).
SAMPLE = ["privileged-ApplyRollback", "unknown-account", "beyond-u64-in-block-2",
          "5000-digit-integer", "double-minus", "lone-surrogate-id", "duplicate-type-key",
          "nested-30000", "invalid-utf8", "line-too-long", "every-command-refused"]


@pytest.mark.parametrize("name", SAMPLE)
def test_malformed_input_through_a_real_process(ledger: Path, name: str) -> None:
    data, needles = next((d, n) for c, d, n in CASES if c == name)
    before = _image(ledger)
    r = subprocess.run([sys.executable, "-m", "tools.cli", "submit", "-", "--data", str(ledger)],
                       cwd=ROOT, input=data, capture_output=True, timeout=120)
    err = r.stderr.decode()
    assert r.returncode in (1, 2), err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in " ".join(err.split()), (needle, err)
    assert image_diff(before, _image(ledger)) == []


def test_a_50_mb_line_is_refused_early_without_parsing_it(ledger: Path, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]
                                                          ) -> None:
    src = tmp_path / "huge.jsonl"
    with src.open("wb") as f:
        f.write(lines(B))
        f.write(b'{"type": "TakeSnapshot", "reason": "')
        f.write(b"r" * (50 * 1024 * 1024))
        f.write(b'"}\n')
    before = _image(ledger)
    code, err = _run_in_process(["submit", str(src), "--data", str(ledger)], capsys)
    assert code == 2 and "line 2" in err and "longer than" in err
    assert image_diff(before, _image(ledger)) == []


def test_a_valid_input_still_goes_in(ledger: Path, tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "ok.jsonl"
    src.write_bytes(lines('{"type": "BeginBlock", "time": 3000000000}',
                          '{"type": "CreateAccount", "acct": "carol.1:x-y_z"}',
                          '{"type": "Deposit", "acct": "carol.1:x-y_z", '
                          '"amount_qq": "9007199254740991", "ext_ref": "bank/42#a+b=c@d"}',
                          order(tif="post_only").replace('"BUY"', '"sell"')))
    with ChainStore.open(ledger) as store:
        height = store.head.height
    code, err = _run_in_process(["submit", str(src), "--data", str(ledger)], capsys)
    assert code == 0, err
    with ChainStore.open(ledger) as store:
        assert store.head.height == height + 1
