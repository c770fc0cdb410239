"""Property: over random branches, harm by cause sums to delta and the vault pays exactly.

Each example builds a real ledger: random trading, oracle moves and funding ticks
(some zeroed, some prices absurd, guards on or off), a snapshot, a random
branch above it; then compensation is planned on the chain as it stands, the
branch is rolled back through the recovery service, and its refunds are
planned and issued. Every line of both plans must split its delta into
integer causes that sum to it exactly with flows at 0, and the vault's value
must drop by exactly what was issued.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger.core.state import LIQ_VAULT, SYSTEM_ACCOUNTS
from ledger.events import commands as c
from ledger.markets import DEMO_MARKETS
from ledger.sequencer import Sequencer
from projections import recovery
from projections.compensation import plan_compensation
from projections.refunds import plan_refunds
from projections.remedy import RemedyPlan
from tests.stubs import random_commands
from tests.stubs import submit as operator_submit

USD = 10**6
T0 = 1_768_780_800
MKTS = ("BTC-PERP", "ETH-PERP")


def _lines_add_up(plan: RemedyPlan) -> None:
    for ln in plan.accounts:
        assert ln.acct not in SYSTEM_ACCOUNTS
        assert sum(ln.harm_by_cause.values()) == ln.delta_qq, ln
        assert ln.harm_by_cause["flows"] == 0, ln
        assert ln.harm_qq == max(0, ln.delta_qq)


def _bad_inputs(rng: random.Random, seq: Sequencer) -> list[object]:
    """A zeroed funding tick or an absurd price, as a broken feed would publish them."""
    st_ = seq.engine.state
    mkt = rng.choice(MKTS)
    m = st_.markets[mkt]
    if rng.random() < 0.5:
        return [c.FundingTick(mkt, st_.time, m.index, m.last_funding_time, 0)]
    return [c.UpdateOracle(mkt, m.oracle * rng.choice([3, 5]) // 2, 0)]


@pytest.mark.parametrize("guards", [False, True], ids=["guards-off", "guards-on"])
@given(seed=st.integers(0, 2**32 - 1))
@settings(max_examples=5, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
def test_harm_by_cause_sums_to_delta_and_the_vault_pays_exactly(
        tmp_path_factory: pytest.TempPathFactory, guards: bool, seed: int) -> None:
    rng = random.Random(seed)
    path: Path = tmp_path_factory.mktemp("prop") / "ledger"
    accts = [f"p{i:02d}" for i in range(14)]
    time = T0
    with Sequencer.create(path, chain_id="prop", listings=DEMO_MARKETS, guards=guards,
                          genesis_time=T0, config={"snapshot_every": 0}) as seq:
        def block(cmds: list[object]) -> None:
            nonlocal time
            time += rng.choice([1, 20, 60])
            operator_submit(seq, [c.BeginBlock(time), *cmds])

        block([*(c.CreateAccount(a) for a in accts),
               *(c.Deposit(a, rng.randint(2_000, 60_000) * USD, f"d-{a}") for a in accts),
               c.Deposit(LIQ_VAULT, 5_000_000 * USD, "vault")])
        for _ in range(6):
            block(random_commands(rng, seq.engine, accts, 25, mkts=MKTS, invalid=False))
        seq.snapshot()
        target = seq.store.head.height
        for _ in range(rng.randint(3, 7)):
            cmds = random_commands(rng, seq.engine, accts, 25, mkts=MKTS, invalid=True)
            if rng.random() < 0.4:
                cmds += _bad_inputs(rng, seq)
            block(cmds)
        comp = plan_compensation(seq.store, target + 1)
        _lines_add_up(comp)
        plan = recovery.plan_rollback(seq.store, target, force=True)
        branch = recovery.execute_recovery(seq, plan, reason="property", operator="tests").branch
        refunds = plan_refunds(seq.store, branch)
        _lines_add_up(refunds)
        assert [x.to_json() for x in refunds.cf.corrections] == [
            x.to_json() for x in comp.cf.corrections]
        payout = recovery.issue_refunds(seq, branch, reason="property", operator="tests")
        assert payout.rejected == []
        assert payout.total_qq == refunds.total_qq
        assert payout.vault_before_qq - payout.vault_after_qq == payout.total_qq
        again = recovery.issue_refunds(seq, branch, reason="property", operator="tests")
        assert again.total_qq == 0
