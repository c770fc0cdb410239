"""`ledgerctl submit`: JSON Lines commands into blocks, through the sequencer.

All or nothing: the whole input is read and shape-checked (`ledger.intake`),
then run on a scratch copy of the state (`Sequencer.dry_run`) so the door's
state rules (unknown account or market, off tick, ...) and the store's
encoding meet every command before anything is written. Any refusal refuses
the whole input, naming each refused line: the head stays byte-identical.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import IO, Any

from ledger.errors import CommandInvalid
from ledger.events.codec import envelope_json
from ledger.events.commands import BeginBlock
from ledger.intake import Line, parse_stream, split_blocks
from ledger.sequencer import Sequencer
from ledger.store.blocks import follows_in_time
from tools import output


def _read(source: str) -> tuple[list[Line], str]:
    if source == "-":
        return parse_stream(sys.stdin.buffer, "<stdin>"), "<stdin>"
    path = Path(source)
    try:
        stream: IO[bytes] = path.open("rb")
    except FileNotFoundError:
        raise CommandInvalid(f"input file {source} does not exist") from None
    except IsADirectoryError:
        raise CommandInvalid(f"input {source} is a directory, not a file") from None
    except PermissionError:
        raise CommandInvalid(f"input file {source} cannot be read (permission denied)") \
            from None
    with stream:
        return parse_stream(stream, source), source


def run_submit(path: Path, source: str, *, block_size: int | None, json_out: bool,
               check_invariants: bool) -> int:
    """Check the whole input, then append its blocks; returns the exit code.

    Raises `CommandInvalid` (exit 2) for a malformed input. Returns 1, having
    written nothing, if the door refuses any command; 0 when every block was
    appended.
    """
    if block_size is not None and block_size < 1:
        raise CommandInvalid(f"--block-size must be 1 or more, was {block_size}")
    lines, name = _read(source)
    if not lines:
        raise CommandInvalid(f"{name}: no commands")
    blocks = split_blocks(lines, block_size=block_size)
    appended: list[dict[str, Any]] = []
    rejections: list[dict[str, Any]] = []
    refused: list[dict[str, Any]] = []
    with Sequencer.open(path, check_invariants=check_invariants) as seq:
        # Block times never go backwards: a malformed input (exit 2), named by line.
        last = seq.store.head.time
        for ln in lines:
            if isinstance(ln.command, BeginBlock):
                if not follows_in_time(ln.command.time, last):
                    raise CommandInvalid(f"{name} line {ln.number}, field time: BeginBlock.time "
                                         f"{ln.command.time} is before the block time {last} "
                                         "it would follow")
                last = ln.command.time
        for b, index, message in seq.dry_run([[ln.command for ln in blk] for blk in blocks]):
            block = blocks[b]
            line = block[index].number if 0 <= index < len(block) else block[0].number
            refused.append({"line": line, "error": f"{name} line {line}: {message}"})
        if not refused:
            # The dry run passed every block: append them, committing each in the
            # background while the next is decided (Sequencer.submit_many).
            outcomes = seq.submit_many([ln.command for ln in block] for block in blocks)
            for out in outcomes:
                appended.append({"height": out.header.height, "events": out.header.count,
                                 "hash": out.header.hash.hex()})
                rejections.extend(envelope_json(env) for env in out.rejections)
    doc = {"blocks": appended, "rejections": rejections, "refused": refused}
    if json_out:
        output.dump_json(doc)
    elif appended:
        output.table("blocks appended", ["height", "events", "hash"],
                     [(b["height"], b["events"], output.short(b["hash"])) for b in appended],
                     right=["height", "events"])
        if rejections:
            output.table("rejected by the rules (recorded in the log)",
                         ["seq", "type", "payload"],
                         [(r["seq"], r["type"], r["payload"]) for r in rejections],
                         right=["seq"])
    for r in refused:
        output.err_console.print(f"refused at the door: {r['error']}", highlight=False,
                                 soft_wrap=True)
    if refused:
        output.err_console.print(f"nothing written: {len(refused)} command(s) refused; "
                                 "fix them and submit the whole input again",
                                 highlight=False, soft_wrap=True)
    return 1 if refused else 0
