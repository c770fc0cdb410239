"""The pure exchange core: decide/evolve state machine, guards, invariants, state hash.

Public surface: `Engine` (ledger.core.engine), `admit` (the door), `genesis_commands`,
and the system account ids `FEES` and `LIQ_VAULT`.
"""

from ledger.core.admit import admit
from ledger.core.engine import BlockResult, Engine
from ledger.core.genesis import genesis_commands
from ledger.core.state import FEES, LIQ_VAULT, ExchangeState

__all__ = ["FEES", "LIQ_VAULT", "BlockResult", "Engine", "ExchangeState", "admit",
           "genesis_commands"]
