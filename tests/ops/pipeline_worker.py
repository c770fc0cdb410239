"""Subprocess of the pipelined-writer tests: simulate blocks, print each acknowledgement.

    python tests/ops/pipeline_worker.py run PATH BLOCKS [FSIZE_EXTRA]

Appends BLOCKS simulated blocks through `Sequencer.submit_many` (block N+1 is
decided while block N commits) and prints `A height hash` as each block is
acknowledged, flushed, so a parent that SIGKILLs the worker knows exactly which
blocks were acknowledged. With FSIZE_EXTRA, the process may not grow any file
more than FSIZE_EXTRA bytes past data.mdb's size at start (RLIMIT_FSIZE, SIGXFSZ
ignored): LMDB's commit then fails for real with EFBIG, as on a full disk. The
worker prints `F height durable_height` for the CommitFailed, `R message` for
the refusal of the next block, `E height state_hash` of the rebuilt engine, and
exits 0.
"""

from __future__ import annotations

import os
import resource
import signal
import sys
from pathlib import Path

import structlog

from ledger.errors import CommitFailed, LedgerError
from ledger.events.commands import BeginBlock
from ledger.sequencer import Sequencer
from tools.simulate import make_workload, run

WORKLOAD = {"seed": 11, "accounts": 80, "inject": []}


def main() -> None:
    # Logs to stderr: stdout carries only the protocol lines.
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))
    mode, path, blocks = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
    assert mode == "run"
    if len(sys.argv) > 4:
        limit = (path / "data.mdb").stat().st_size + int(sys.argv[4])
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    with Sequencer.open(path) as seq:
        head = seq.store.head
        wl = make_workload(start_time=head.time - head.height, **WORKLOAD)  # type: ignore[arg-type]
        print("READY", flush=True)
        try:
            run(seq, wl, blocks, on_block=lambda out: print(
                f"A {out.header.height} {out.header.hash.hex()}", flush=True))
        except CommitFailed as exc:
            print(f"F {exc.height} {exc.durable_height}", flush=True)
            try:
                seq.submit([BeginBlock(seq.store.head.time)])
            except LedgerError as refused:
                print(f"R {refused}", flush=True)
            print(f"E {seq.engine.seq} {seq.engine.state_hash().hex()}", flush=True)
    print("DONE", flush=True)
    os._exit(0)


if __name__ == "__main__":
    main()
