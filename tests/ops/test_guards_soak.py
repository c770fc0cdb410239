"""Guards never fire on the simulator's normal workload, over thousands of blocks."""

from __future__ import annotations

from ledger.core.engine import Engine
from ledger.core.genesis import genesis_commands
from ledger.events import outcomes as o
from ledger.events.commands import BeginBlock
from ledger.events.enums import Mode
from ledger.markets import DEMO_MARKETS
from tools.simulate import SIM_GENESIS_TIME, make_workload

BLOCKS = 2_000
FALSE_ALARMS = (o.FundingTickRejected, o.MarketHalted, o.OracleUpdateRejected)


def test_no_false_halts_over_two_thousand_blocks() -> None:
    wl = make_workload(seed=2026, accounts=40, inject=[], commands_per_block=25)
    engine = Engine()
    engine.run_block(0, genesis_commands(DEMO_MARKETS, time=SIM_GENESIS_TIME,
                                         guards_enabled=True))
    engine.run_block(1, [BeginBlock(wl.block_time(1)), *wl.setup_commands()])
    alarms = []
    liquidations = 0
    for height in range(2, BLOCKS + 2):
        result = engine.run_block(height, wl.next_block(height, engine))
        for env in result.envelopes:
            ev = env.event
            if isinstance(ev, FALSE_ALARMS) or (isinstance(ev, o.ModeChanged)
                                                and ev.mode != Mode.OK):
                alarms.append((height, ev))
            elif isinstance(env.event, o.Liquidated):
                liquidations += 1
        if height % 250 == 0:
            engine.check_invariants(height)
    assert alarms == []
    assert all(engine.effective_mode(m) == Mode.OK for m in engine.markets())
    # Shocks are on: genuine liquidations happen without tripping a guard.
    assert liquidations > 0
