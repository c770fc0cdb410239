"""`ledgerctl bench engine`: the simulated mix through the writer, as the sequencer runs it.

The command stream is generated first (the simulator against a scratch
engine), so the timed run measures the ledger only: `Sequencer.submit_many`
over every block, i.e. the door (admit), decide + evolve, the state hash, the
block preparation (checks, encoding, index chunks, events hash) and the
durable commit, block N committing in the background while block N+1 is
decided (ledger/store/pipeline.py). The raw LMDB append of the same envelopes
is measured in the same run as the ceiling. Stage seconds are those of the
writer's thread, plus the commit thread's and the writer's wait for it.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ledger import compiled
from ledger.core.engine import Engine
from ledger.core.genesis import genesis_commands
from ledger.events.codec import Envelope
from ledger.events.commands import BeginBlock
from ledger.markets import DEMO_MARKETS
from ledger.sequencer import Sequencer
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
    """Measure commands/s and events/s through the writer: the sequencer, pipelined."""
    blocks = generate(commands, accounts=accounts, block_commands=block_commands, say=say)
    tmp = Path(tempfile.mkdtemp(prefix="perpledger-bench-engine-"))
    try:
        seq = Sequencer.create(tmp / "ledger", chain_id="bench", listings=DEMO_MARKETS,
                               guards=True, genesis_time=SIM_GENESIS_TIME,
                               config={"snapshot_every": 0})
        try:
            seq.submit(blocks[1])  # the setup block (accounts and deposits): not timed
            before = seq.stage_seconds
            envs: list[list[Envelope]] = []
            refused = 0
            if say is not None:
                say(f"{len(blocks) - 2} blocks through the pipelined writer")
            t = time.perf_counter()
            for out in seq.submit_many(blocks[2:]):
                envs.append(out.envelopes)
                refused += len(out.refused)
            wall = time.perf_counter() - t
            after = seq.stage_seconds
        finally:
            seq.close()
        n_events = sum(len(e) for e in envs)
        n_cmds = sum(1 for e in envs for x in e if x.cause == 0)
        if say is not None:
            say("raw LMDB append of the same events")
        raw_s = raw_append(tmp / "raw", envs)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    stages = {k: after[k] - before[k] for k in after}
    return {
        "build": compiled.status()["build"],
        "commands": n_cmds,
        "events": n_events,
        "refused_at_the_door": refused,
        "accounts": accounts,
        "commands_per_block": block_commands,
        "commands_per_s": round(n_cmds / wall),
        "events_per_s": round(n_events / wall),
        "raw_events_per_s": round(n_events / raw_s),
        "ratio_events_to_raw": round(raw_s / wall, 3),
        # The writer's thread: admit + decide + evolve, the state hash, block preparation
        # (checks, encoding, index chunks, events hash); the commit runs on the pipeline's
        # thread meanwhile, and `wait` is the writer's thread blocked on it.
        "seconds": {"wall": round(wall, 3), **{k: round(v, 3) for k, v in stages.items()}},
        "stage_share_of_wall": {k: round(v / wall, 3) for k, v in stages.items()},
    }
