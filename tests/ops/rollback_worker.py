"""Subprocess for the rollback crash test: import everything, wait for "go", roll back."""

from __future__ import annotations

import sys

from ledger.sequencer import Sequencer
from projections.recovery import execute_recovery, plan_rollback


def main() -> None:
    path, target = sys.argv[1], int(sys.argv[2])
    print("ready", flush=True)
    if sys.stdin.readline().strip() != "go":
        return
    with Sequencer.open(path) as seq:
        plan = plan_rollback(seq.store, target)
        execute_recovery(seq, plan, reason="crash test", operator="test")
    print("done", flush=True)


if __name__ == "__main__":
    main()
