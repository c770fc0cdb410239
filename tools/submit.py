"""`ledgerctl submit`: JSON Lines commands into blocks, through the sequencer."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from ledger.errors import CommandInvalid
from ledger.events.codec import envelope_json
from ledger.events.commands import BeginBlock
from ledger.intake import parse_lines, split_blocks
from ledger.sequencer import Sequencer
from ledger.store.blocks import follows_in_time
from tools import output


def run_submit(path: Path, source: str, *, block_size: int | None, json_out: bool,
               check_invariants: bool) -> int:
    """Parse the whole input first (a malformed line appends nothing), then append blocks.

    Returns the exit code: 0, or 1 if any command was refused at the door.
    """
    if block_size is not None and block_size < 1:
        raise CommandInvalid(f"--block-size must be 1 or more, was {block_size}")
    if source == "-":
        text = sys.stdin.read().splitlines()
        name = "<stdin>"
    else:
        try:
            text = Path(source).read_text().splitlines()
        except FileNotFoundError:
            raise CommandInvalid(f"input file {source} does not exist") from None
        name = source
    lines = list(parse_lines(text, name))
    if not lines:
        raise CommandInvalid(f"{name}: no commands")
    blocks = split_blocks(lines, block_size=block_size)
    appended: list[dict[str, Any]] = []
    rejections: list[dict[str, Any]] = []
    refused: list[dict[str, Any]] = []
    with Sequencer.open(path, check_invariants=check_invariants) as seq:
        # Block times never go backwards: check the whole file before appending.
        last = seq.store.head.time
        for ln in lines:
            if isinstance(ln.command, BeginBlock):
                if not follows_in_time(ln.command.time, last):
                    raise CommandInvalid(f"{name} line {ln.number}: BeginBlock.time "
                                         f"{ln.command.time} is before the block time "
                                         f"{last} it would follow")
                last = ln.command.time
        outcomes = seq.submit_many([ln.command for ln in block] for block in blocks)
        for block, out in zip(blocks, outcomes, strict=False):
            appended.append({"height": out.header.height, "events": out.header.count,
                             "hash": out.header.hash.hex()})
            for env in out.rejections:
                rejections.append(envelope_json(env))
            offset = 0 if type(block[0].command).__name__ == "BeginBlock" else 1
            for index, err in out.refused:
                line = block[index - offset].number if 0 <= index - offset < len(block) else None
                refused.append({"line": line, "error": str(err)})
    doc = {"blocks": appended, "rejections": rejections, "refused": refused}
    if json_out:
        output.dump_json(doc)
    else:
        output.table("blocks appended", ["height", "events", "hash"],
                     [(b["height"], b["events"], output.short(b["hash"])) for b in appended],
                     right=["height", "events"])
        if rejections:
            output.table("rejected by the rules (recorded in the log)",
                         ["seq", "type", "payload"],
                         [(r["seq"], r["type"], r["payload"]) for r in rejections],
                         right=["seq"])
        for r in refused:
            output.err_console.print(f"refused at the door, line {r['line']}: {r['error']}")
    return 1 if refused else 0
