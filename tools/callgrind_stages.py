"""Instructions per command and per event, stage by stage, counted by callgrind.

    python -m tools.callgrind_stages [--commands 20000] [--events 50000] [--json]

Wall-clock figures on a shared machine drift 2-3x; instruction counts do not:
the same code on the same inputs executes the same instructions whatever else
the machine runs. This tool prepares its inputs outside valgrind (the bench
engine's command stream, a simulated chain, the append bench's event mix),
then runs the measured work under `valgrind --tool=callgrind`, which dumps the
instruction count at each stage boundary (a client request made through a
ten-line C helper compiled on the fly with `cc`). Stages:

- engine (the `bench engine` stream, warm-up blocks excluded): `decide_evolve`
  (decide, evolve, emit), `state_hash` (the block-end hash fold), `append`
  (the durable block append: checks, encoding, indexes, events hash, LMDB
  commit), split into `append_prepare` and `append_write_commit`;
- rebuild (a simulated chain): `raw_scan_decode` (cursor walk + decode, the
  ceiling of tools/raw_ceiling.py), `scan_verified` (the store's block reads
  with the events hash checked), `decode_typed` (every event to a typed envelope) and `fold` (the
  exchange-state fold with the state hash per block, what `rebuild` runs);
- append (the `bench append` mix): `append` per event and the `raw_append`
  ceiling (encode + `putmulti`, one durable transaction per block).

Counts include the Python interpreter's own work; per-command figures divide
by the commands of the measured blocks (EndBlock included), per-event ones by
their events. `PERPLEDGER_PURE=1` in the environment (or `--pure`) measures the
pure-Python build where a compiled one is installed.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

_HELPER_C = """
#include <valgrind/callgrind.h>
void cg_zero(void) { CALLGRIND_ZERO_STATS; }
void cg_dump(const char *label) { CALLGRIND_DUMP_STATS_AT(label); }
"""


class Meter:
    """Stage boundaries: `mark(label)` dumps the instructions since the previous mark."""

    def __init__(self, lib_path: str | None) -> None:
        self._dump: Callable[[bytes], None] | None = None
        if lib_path:
            import ctypes

            lib = ctypes.CDLL(lib_path)
            lib.cg_dump.argtypes = [ctypes.c_char_p]
            lib.cg_zero()
            self._dump = lib.cg_dump

    def mark(self, label: str) -> None:
        if self._dump is not None:
            self._dump(label.encode())


# -- the measured work (runs inside valgrind) ---------------------------------------------


def _engine_stage(meter: Meter, tmp: Path) -> dict[str, int]:
    from ledger.core.engine import Engine
    from ledger.gcpause import gc_paused
    from ledger.store.chain import ChainStore

    blocks: list[list[Any]] = pickle.loads((tmp / "stream.pickle").read_bytes())
    store = ChainStore.create(tmp / "engine-ledger", chain_id="callgrind")
    engine = Engine()
    split = _hash_split(engine, meter)
    n_cmds = n_events = 0
    meter.mark("setup")
    for height, cmds in enumerate(blocks):
        warm = height < 2
        with gc_paused():
            envs, state_hash = split(height, cmds, warm)
            if not warm:
                n_cmds += len(cmds) + 1  # the EndBlock the engine appends
                n_events += len(envs)
            _append(store, envs, height, cmds[0].time, state_hash, meter, warm)
    store.close()
    meter.mark("teardown")
    return {"commands": n_cmds, "events": n_events}


def _hash_split(engine: Any, meter: Meter) -> Callable[[int, list[Any], bool],
                                                       tuple[list[Any], bytes]]:
    """Run one block with a mark between decide/evolve and the state hash fold."""
    if hasattr(engine, "execute_block"):
        def run(height: int, cmds: list[Any], warm: bool) -> tuple[list[Any], bytes]:
            res = engine.execute_block(height, cmds)
            meter.mark("warmup" if warm else "decide_evolve")
            state_hash = engine.block_hash()
            meter.mark("warmup" if warm else "state_hash")
            return res.envelopes, state_hash
        return run

    # The engine before its execute/hash seam: mark around the hasher's fold.
    inner = engine.hasher
    flag = [False]

    class Probe:
        def current(self, st: Any) -> bytes:
            meter.mark("warmup" if flag[0] else "decide_evolve")
            r: bytes = inner.current(st)
            meter.mark("warmup" if flag[0] else "state_hash")
            return r

        def __getattr__(self, name: str) -> Any:
            return getattr(inner, name)

    engine.hasher = Probe()
    engine.state.hasher = engine.hasher

    def run_old(height: int, cmds: list[Any], warm: bool) -> tuple[list[Any], bytes]:
        flag[0] = warm
        res = engine.run_block(height, cmds)
        return res.envelopes, res.state_hash
    return run_old


def _append(store: Any, envs: list[Any], height: int, time: int, state_hash: bytes,
            meter: Meter, warm: bool) -> None:
    from ledger.store import chain

    if hasattr(store, "prepare") and hasattr(store, "commit_prepared"):
        block = store.prepare(envs, height=height, time=time, state_hash=state_hash)
        meter.mark("warmup" if warm else "append_prepare")
        store.commit_prepared(block)
    else:
        block = chain.prepare_block(store.head, envs, height=height, time=time,
                                    state_hash=state_hash)
        meter.mark("warmup" if warm else "append_prepare")
        store._shared.run_write(lambda txn: block.write(txn, store.dbs))
        store._head_cache = block.new_head
    meter.mark("warmup" if warm else "append_write_commit")


def _rebuild_stage(meter: Meter, tmp: Path) -> dict[str, int]:
    from ledger.core.engine import Engine
    from ledger.core.refold import apply_block_bytes
    from ledger.events.codec import decode_verified
    from ledger.gcpause import gc_paused
    from ledger.store.chain import ChainStore
    from tools.raw_ceiling import raw_scan_decode

    path = tmp / "rebuild-chain"
    meter.mark("setup")
    with ChainStore.open(path) as store:
        _, n = raw_scan_decode(store.shared_env.env, store.dbs.events)
        meter.mark("raw_scan_decode")
        blocks = list(store.iter_block_bytes())
        meter.mark("scan_verified")
        with gc_paused():
            for hdr, datas in blocks:
                first = hdr.first_seq
                for k, d in enumerate(datas):
                    decode_verified(d, first + k)
        meter.mark("decode_typed")
        engine = Engine()
        for hdr, datas in blocks:
            if apply_block_bytes(engine, hdr.height, hdr.first_seq, datas) != hdr.state_hash:
                raise SystemExit(f"fold: state hash differs at height {hdr.height}")
        meter.mark("fold")
    return {"events": n, "blocks": len(blocks)}


def _append_mix_stage(meter: Meter, tmp: Path, events: int) -> dict[str, int]:
    from tools.bench_append import ledger_append, make_blocks
    from tools.raw_ceiling import raw_append

    blocks = make_blocks(events)
    meter.mark("setup")
    raw_append(tmp / "raw", blocks)
    meter.mark("raw_append")
    ledger_append(tmp / "mix-ledger", blocks)
    meter.mark("append")
    return {"events": events}


# -- orchestration (outside valgrind) -----------------------------------------------------


def _prepare(tmp: Path, commands: int, rebuild_events: int) -> None:
    from tools.bench_engine import generate
    from tools.bench_projections import build_chain

    blocks = generate(commands, accounts=10_000, block_commands=1_000)
    (tmp / "stream.pickle").write_bytes(pickle.dumps(blocks, protocol=pickle.HIGHEST_PROTOCOL))
    build_chain(tmp / "rebuild-chain", rebuild_events)
    src = tmp / "cgmeter.c"
    src.write_text(_HELPER_C)
    subprocess.run(["cc", "-O1", "-shared", "-fPIC", "-o", str(tmp / "libcgmeter.so"),
                    str(src)], check=True)


def _run_valgrind(tmp: Path, stage: str, events: int, pure: bool) -> tuple[dict[str, int],
                                                                          dict[str, int]]:
    out_dir = tmp / f"cg-{stage}"
    out_dir.mkdir()
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    if pure:
        env["PERPLEDGER_PURE"] = "1"
    cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out_dir}/cg.out",
           "--dump-line=no", "--dump-instr=no", sys.executable, "-m",
           "tools.callgrind_stages", "--inner", stage, "--tmp", str(tmp),
           "--events", str(events)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env,
                          cwd=Path(__file__).resolve().parent.parent)
    if proc.returncode != 0:
        raise SystemExit(f"valgrind run of {stage} failed:\n{proc.stderr[-3000:]}")
    counts: dict[str, int] = {}
    for f in out_dir.iterdir():
        text = f.read_text(errors="replace")
        m = re.search(r"^desc: Trigger: Client Request: (\S+)", text, re.M)
        t = re.search(r"^(?:totals|summary): (\d+)", text, re.M)
        if m and t:
            counts[m.group(1)] = counts.get(m.group(1), 0) + int(t.group(1))
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    return counts, info


def _compiled_count(pure: bool) -> int:
    """How many compiled core modules a process started like the measured ones imports."""
    env = {**os.environ, "PERPLEDGER_PURE": "1"} if pure else dict(os.environ)
    code = ("import importlib.util as u, ledger.core.engine;"
            "c = u.find_spec('ledger.compiled');"
            "print(len(__import__('ledger.compiled').compiled.loaded()) if c else 0)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          cwd=Path(__file__).resolve().parent.parent)
    return int(proc.stdout.strip() or 0)


def measure(commands: int = 20_000, events: int = 50_000, rebuild_events: int = 50_000,
            pure: bool = False, say: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run every stage under callgrind; instructions per command and per event."""
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed (Debian: apt-get install valgrind)")
    say = say or (lambda _m: None)
    tmp = Path(tempfile.mkdtemp(prefix="perpledger-callgrind-"))
    try:
        say("preparing inputs (outside valgrind)")
        _prepare(tmp, commands, rebuild_events)
        out: dict[str, Any] = {"pure": pure or os.environ.get("PERPLEDGER_PURE") == "1"}
        out["compiled_modules"] = _compiled_count(pure)
        say("engine stream under callgrind")
        c, info = _run_valgrind(tmp, "engine", events, pure)
        n_c, n_e = info["commands"], info["events"]
        append = c.get("append_prepare", 0) + c.get("append_write_commit", 0)
        total = c.get("decide_evolve", 0) + c.get("state_hash", 0) + append
        out["engine"] = {
            "commands": n_c, "events": n_e,
            "per_command": {"decide_evolve": c.get("decide_evolve", 0) // n_c,
                            "state_hash": c.get("state_hash", 0) // n_c,
                            "append": append // n_c, "total": total // n_c},
            "per_event": {"append": append // n_e,
                          "append_prepare": c.get("append_prepare", 0) // n_e,
                          "append_write_commit": c.get("append_write_commit", 0) // n_e},
        }
        say("rebuild under callgrind")
        c, info = _run_valgrind(tmp, "rebuild", events, pure)
        n = info["events"]
        out["rebuild"] = {"events": n, "blocks": info["blocks"],
                          "per_event": {k: c.get(k, 0) // n for k in (
                              "raw_scan_decode", "scan_verified", "decode_typed", "fold")}}
        out["rebuild"]["fold_over_raw"] = round(
            c.get("raw_scan_decode", 0) / max(1, c.get("fold", 0) + c.get("scan_verified", 0)),
            3)
        say("append mix under callgrind")
        c, info = _run_valgrind(tmp, "append", events, pure)
        n = info["events"]
        out["append"] = {"events": n, "per_event": {
            "append": c.get("append", 0) // n, "raw_append": c.get("raw_append", 0) // n}}
        out["append"]["ratio_to_raw"] = round(c.get("raw_append", 0) / max(1, c.get("append", 0)),
                                              3)
        return out
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--commands", type=int, default=20_000)
    ap.add_argument("--events", type=int, default=50_000)
    ap.add_argument("--pure", action="store_true", help="measure the pure-Python build")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--inner", help=argparse.SUPPRESS)
    ap.add_argument("--tmp", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.inner:
        meter = Meter(str(args.tmp / "libcgmeter.so"))
        if args.inner == "engine":
            info = _engine_stage(meter, args.tmp)
        elif args.inner == "rebuild":
            info = _rebuild_stage(meter, args.tmp)
        else:
            info = _append_mix_stage(meter, args.tmp, args.events)
        print(json.dumps(info))
        return 0
    say = (lambda m: None) if args.json else (lambda m: print(m, file=sys.stderr))
    doc = measure(args.commands, args.events, args.events, pure=args.pure, say=say)
    print(json.dumps(doc, indent=None if args.json else 2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
