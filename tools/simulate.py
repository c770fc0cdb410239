"""Drive a `Workload` through the sequencer: the body of `ledgerctl simulate` and the demo."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ledger.errors import CommandInvalid
from ledger.events import outcomes as o
from ledger.events.commands import BeginBlock
from ledger.markets import DEMO_MARKETS, Listing
from ledger.sequencer import BlockOutcome, Sequencer
from ledger.store.chain import ledger_exists
from tools.workload import Workload

#: Genesis block time of simulated ledgers (2026-01-19 00:00:00 UTC, the incident's day).
SIM_GENESIS_TIME = 1_768_780_800


@dataclass
class SimStats:
    """What a simulation appended, counted from the OUT events."""

    blocks: int = 0
    commands: int = 0
    events: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    first_height: int = 0
    last_height: int = 0

    def add(self, out: BlockOutcome) -> None:
        self.blocks += 1
        self.events += len(out.envelopes)
        for env in out.envelopes:
            name = type(env.event).__name__
            if env.event.KIND == "IN":
                self.commands += 1
            self.counts[name] = self.counts.get(name, 0) + 1
        self.last_height = out.header.height


def parse_injections(specs: list[str]) -> list[tuple[int, str | None]]:
    """Parse `HEIGHT[:MARKET]` strings (the --inject-zero-funding flag)."""
    out: list[tuple[int, str | None]] = []
    for spec in specs:
        h, _, mkt = spec.partition(":")
        if not h.isdigit():
            raise CommandInvalid(f"--inject-zero-funding expects HEIGHT[:MARKET], was {spec!r}")
        out.append((int(h), mkt or None))
    return out


def open_or_create(path: Path, *, guards: bool, listings: tuple[Listing, ...] = DEMO_MARKETS,
                   snapshot_every: int | None = None, check_invariants: bool = False,
                   chain_id: str = "perpledger-sim") -> Sequencer:
    """Open the ledger at `path`, creating it with the demo markets if absent."""
    if ledger_exists(path):
        seq = Sequencer.open(path, check_invariants=check_invariants)
        if snapshot_every is not None and seq.store.config.get("snapshot_every") != \
                snapshot_every:
            seq.store.set_config("snapshot_every", snapshot_every)
        return seq
    cfg: dict[str, Any] = {}
    if snapshot_every is not None:
        cfg["snapshot_every"] = snapshot_every
    return Sequencer.create(path, chain_id=chain_id, listings=listings, guards=guards,
                            genesis_time=SIM_GENESIS_TIME, config=cfg,
                            check_invariants=check_invariants)


def make_workload(*, seed: int, accounts: int, inject: list[tuple[int, str | None]],
                  listings: tuple[Listing, ...] = DEMO_MARKETS, shocks: bool = True,
                  start_time: int = SIM_GENESIS_TIME, **kw: Any) -> Workload:
    """A workload whose block h has time start_time + h (start_time: the genesis time)."""
    return Workload(seed=seed, accounts=accounts, listings=listings, start_time=start_time,
                    inject_zero_funding=inject, shocks=shocks, **kw)


def run(seq: Sequencer, workload: Workload, blocks: int, *,
        on_block: Callable[[BlockOutcome], None] | None = None) -> SimStats:
    """Append `blocks` simulated blocks after the head (the setup block first if needed)."""
    stats = SimStats(first_height=seq.next_height)

    def commands() -> Iterator[list[Any]]:
        # Generated from the engine as decided so far: the pipelined writer decides
        # block h+1 while block h commits.
        for _ in range(blocks):
            height = seq.next_height
            engine = seq.engine
            missing = {p.acct for p in workload.personas if not engine.has_account(p.acct)}
            if missing:
                yield [BeginBlock(workload.block_time(height)), *_setup_for(workload, missing)]
            else:
                yield workload.next_block(height, engine)

    for out in seq.submit_many(commands()):
        stats.add(out)
        if on_block is not None:
            on_block(out)
    return stats


def _setup_for(workload: Workload, missing: set[str]) -> list[Any]:
    """Setup commands for the simulated users that do not exist yet.

    A fresh ledger gets the whole setup (the vault's deposit included); a ledger
    continued with more --accounts than before gets only its new users.
    """
    fresh = len(missing) == len(workload.personas)
    out = []
    for cmd in workload.setup_commands():
        acct = getattr(cmd, "acct", None)
        if acct in missing or (fresh and acct not in {p.acct for p in workload.personas}):
            out.append(cmd)
    return out


LIQUIDATION_TYPES = (o.Liquidated.__name__, o.Deleveraged.__name__)
