"""`ledgerctl bench engine`: the simulated mix through decide, evolve, hashing and append.

The command stream is generated first (the simulator against a scratch
engine), so the timed run measures the ledger only: a fresh engine runs every
block (decide + evolve), the state hash is folded in, and the block is
appended durably. The raw LMDB append of the same envelopes is measured in
the same run as the ceiling. Stage shares are wall-time fractions.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ledger.core.engine import Engine
from ledger.core.genesis import genesis_commands
from ledger.events.commands import BeginBlock
from ledger.gcpause import gc_paused
from ledger.markets import DEMO_MARKETS
from ledger.store.chain import ChainStore
from tools.raw_ceiling import raw_append
from tools.simulate import SIM_GENESIS_TIME, make_workload


def generate(commands: int, *, accounts: int, block_commands: int, seed: int = 3,
             say: Callable[[str], None] | None = None) -> list[list[Any]]:
    """Blocks of IN commands (genesis first) from the simulator, about `commands` in all."""
    wl = make_workload(seed=seed, accounts=accounts, inject=[], commands_per_block=block_commands)
    engine = Engine()
    blocks: list[list[Any]] = [genesis_commands(DEMO_MARKETS, time=SIM_GENESIS_TIME,
                                                guards_enabled=True)]
    engine.run_block(0, blocks[0])
    setup = [BeginBlock(wl.block_time(1)), *wl.setup_commands()]
    engine.run_block(1, setup)
    blocks.append(setup)
    total = 0
    height = 2
    while total < commands:
        cmds = wl.next_block(height, engine)
        engine.run_block(height, cmds)
        blocks.append(cmds)
        total += len(cmds)
        height += 1
        if say is not None and height % 50 == 0:
            say(f"generated {total:,} commands")
    return blocks


def run(commands: int = 200_000, *, accounts: int = 10_000, block_commands: int = 1_000,
        say: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Measure commands/s and events/s through the engine and the store."""
    blocks = generate(commands, accounts=accounts, block_commands=block_commands, say=say)
    tmp = Path(tempfile.mkdtemp(prefix="perpledger-bench-engine-"))
    try:
        store = ChainStore.create(tmp / "ledger", chain_id="bench")
        engine = Engine()
        t_engine = t_hash = t_append = 0.0
        n_cmds = n_events = 0
        all_envs = []
        # Warm-up blocks (genesis, setup) are not timed.
        for height, cmds in enumerate(blocks):
            # The sequencer's shape: one GC pause across engine, encoding and append.
            with gc_paused():
                t0 = time.perf_counter()
                decided = engine.execute_block(height, cmds)
                t1 = time.perf_counter()
                state_hash = engine.block_hash()
                t2 = time.perf_counter()
                store.append_block(decided.envelopes, height=height, time=cmds[0].time,
                                   state_hash=state_hash)
                t3 = time.perf_counter()
            if height >= 2:
                t_engine += t1 - t0
                t_hash += t2 - t1
                t_append += t3 - t2
                n_cmds += len(cmds) + 1  # the EndBlock the engine adds
                n_events += len(decided.envelopes)
                all_envs.append(decided.envelopes)
        store.close()
        if say is not None:
            say("raw LMDB append of the same events")
        raw_s = raw_append(tmp / "raw", all_envs)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    total = t_engine + t_hash + t_append
    decide_evolve = t_engine
    hashing = t_hash
    return {
        "commands": n_cmds,
        "events": n_events,
        "accounts": accounts,
        "commands_per_block": block_commands,
        "commands_per_s": round(n_cmds / total),
        "events_per_s": round(n_events / total),
        "raw_events_per_s": round(n_events / raw_s),
        "ratio_events_to_raw": round((n_events / total) / (n_events / raw_s), 3),
        "stage_share": {
            "decide_evolve": round(decide_evolve / total, 3),
            "state_hash": round(hashing / total, 3),
            "encode_index_append": round(t_append / total, 3),
        },
        "seconds": {"decide_evolve": round(decide_evolve, 3), "state_hash": round(hashing, 3),
                    "append": round(t_append, 3)},
    }
