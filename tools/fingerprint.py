"""Fingerprints of what the ledger writes: prove a refactor changed no byte and no hash.

`python -m tools.fingerprint [--out FILE] [--quick]` runs fixed, seeded scenarios
and prints one JSON object of hashes:

- `ledgerctl simulate` at three seeds (guards on, guards off with a zeroed
  index, no shocks), each followed by `ledgerctl verify --reexecute` and
  `ledgerctl rebuild --from genesis`: head hash, state hash, event count,
  whether verify and rebuild agree;
- `ledgerctl demo incident --json` with guards off and on, the wall-clock
  `seconds` removed: the whole summary's sha256 and its hashes;
- the engine benchmark's command stream (`tools.bench_engine.generate`)
  through a fresh engine: sha256 over every event's stored bytes and every
  block's state hash;
- the append benchmark's event mix (`tools.bench_append.make_blocks`)
  through `ChainStore.append_block`: the head hash.

Ledgers are signed (issue 11): every run signs with the same two keys, made
here from fixed seeds (`fixed_keys`), so the genesis key registrations, and with
them every hash, repeat. Two runs of the same code print the same object;
`--compare FILE` diffs a run against a recorded one (exit 1 on any
difference). Each CLI step is a real `ledgerctl` process, as an operator would
run it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

SIMULATIONS: list[tuple[str, list[str]]] = [
    ("sim_seed1_guards_on", ["--blocks", "150", "--accounts", "200", "--seed", "1",
                             "--check-invariants"]),
    ("sim_seed2_guards_off_zeroed", ["--blocks", "150", "--accounts", "300", "--seed", "2",
                                     "--guards", "off", "--inject-zero-funding",
                                     "60:PAXG-PERP", "--snapshot-every", "20"]),
    ("sim_seed3_no_shocks", ["--blocks", "100", "--accounts", "100", "--seed", "3",
                             "--no-shocks"]),
]


def _ledgerctl(*args: str, cwd: Path | None = None) -> dict[str, Any]:
    """Run `ledgerctl ARGS --json` in a fresh process; its JSON document."""
    cmd = [sys.executable, "-m", "tools.cli", *args, "--json"]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd,
                          env={**os.environ, "PYTHONHASHSEED": "0"})
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} exited {proc.returncode}: {proc.stderr[-2000:]}")
    doc: dict[str, Any] = json.loads(proc.stdout)
    return doc


def _sha(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


def simulations(tmp: Path, quick: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, args in SIMULATIONS[:1] if quick else SIMULATIONS:
        data = tmp / name
        sim = _ledgerctl("simulate", "--data", str(data), *args)
        ver = _ledgerctl("verify", "--data", str(data), "--reexecute")
        reb = _ledgerctl("rebuild", "--data", str(data), "--from", "genesis")
        out[name] = {
            "head_height": sim["head_height"], "head_hash": sim["head_hash"],
            "state_hash": sim["state_hash"], "events": sim["events"],
            "counts_sha256": _sha(sim["counts"]),
            "verify_ok": bool(ver.get("ok")),
            "reexecute_ok": bool(ver.get("reexecute", {}).get("ok")),
            "rebuild_state_hash": reb.get("state_hash") or reb.get("exchange", {}).get(
                "state_hash"),
            "rebuild_match": reb.get("match"),
        }
    return out


def _strip_seconds(doc: Any) -> Any:
    """The document without wall-clock seconds and the (temporary) data directory."""
    if isinstance(doc, dict):
        return {k: _strip_seconds(v) for k, v in doc.items() if k not in ("seconds", "data")}
    if isinstance(doc, list):
        return [_strip_seconds(v) for v in doc]
    return doc


def demos(tmp: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for guards in ("off", "on"):
        data = tmp / f"demo-{guards}"
        doc = _strip_seconds(_ledgerctl("demo", "incident", "--data", str(data),
                                        "--guards", guards))
        info = _ledgerctl("info", "--data", str(data))
        out[f"demo_guards_{guards}"] = {
            "summary_sha256": _sha(doc),
            "head_hash": info["head_hash"],
            "head_height": info["head_height"],
            "events": info["events"],
            "archived_events": info["archived_events"],
            **{k: v for k, v in doc.items() if k.endswith("state_hash")},
        }
    return out


def engine_stream(commands: int) -> dict[str, Any]:
    """The bench engine's command stream through a fresh engine: bytes and hashes."""
    from ledger.core.engine import Engine
    from ledger.events.codec import encode
    from tools.bench_engine import generate

    blocks = generate(commands, accounts=10_000, block_commands=1_000)
    engine = Engine()
    h = hashlib.sha256()
    events = 0
    for height, cmds in enumerate(blocks):
        res = engine.run_block(height, cmds)
        for env in res.envelopes:
            data = encode(env)
            h.update(len(data).to_bytes(4, "big"))
            h.update(data)
        h.update(res.state_hash)
        events += len(res.envelopes)
    return {"commands": sum(len(b) + 1 for b in blocks), "events": events,
            "bytes_and_hashes_sha256": h.hexdigest(),
            "state_hash": engine.state_hash().hex(),
            "full_state_hash": engine.full_state_hash().hex()}


def append_mix(tmp: Path, events: int) -> dict[str, Any]:
    from ledger.store.chain import ChainStore
    from tools.bench_append import ledger_append, make_blocks

    path = tmp / "append-mix"
    ledger_append(path, make_blocks(events))
    with ChainStore.open(path) as store:
        head = store.head
        return {"events": head.seq, "head_hash": head.hash.hex()}


def fixed_keys(directory: Path) -> dict[str, str]:
    """Writer and operator key files from fixed seeds, as the key environment variables
    name them: a fingerprint must not depend on freshly generated keys. Never use
    such keys for a real ledger: anyone can derive them."""
    from ledger.keys import OPERATOR_KEY_ENV, WRITER_KEY_ENV, create_key

    env = {}
    for var, label in ((WRITER_KEY_ENV, "writer"), (OPERATOR_KEY_ENV, "operator")):
        seed = hashlib.sha256(b"perpledger fingerprint " + label.encode()).digest()
        env[var] = str(create_key(directory / f"{label}.key", seed=seed).path)
    return env


def run(quick: bool = False) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="perpledger-fingerprint-"))
    saved = dict(os.environ)
    os.environ.update(fixed_keys(tmp / "keys"))
    try:
        doc: dict[str, Any] = {}
        doc.update(simulations(tmp, quick))
        if not quick:
            doc.update(demos(tmp))
        doc["engine_stream"] = engine_stream(5_000 if quick else 20_000)
        doc["append_mix"] = append_mix(tmp, 20_000 if quick else 100_000)
        return doc
    finally:
        os.environ.clear()
        os.environ.update(saved)
        shutil.rmtree(tmp, ignore_errors=True)


def _diff(a: Any, b: Any, path: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b)):
            out += _diff(a.get(k), b.get(k), f"{path}.{k}" if path else k)
        return out
    return [] if a == b else [f"{path}: {a!r} != {b!r}"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, help="also write the JSON here")
    ap.add_argument("--compare", type=Path, help="a recorded JSON to compare against")
    ap.add_argument("--quick", action="store_true", help="one simulation, smaller streams")
    args = ap.parse_args(argv)
    doc = run(quick=args.quick)
    text = json.dumps(doc, indent=2, sort_keys=True)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    if args.compare:
        ref = json.loads(args.compare.read_text())
        if args.quick:
            ref = {k: v for k, v in ref.items() if k in doc}
            ref.pop("engine_stream", None)
            ref.pop("append_mix", None)
            doc = {k: v for k, v in doc.items() if k in ref}
        diffs = _diff(ref, doc)
        for d in diffs:
            print("DIFF", d, file=sys.stderr)
        print(f"{len(diffs)} difference(s) against {args.compare}", file=sys.stderr)
        return 1 if diffs else 0
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
