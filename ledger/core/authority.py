"""Who may write what: the privileged command types, and the signatures that authorise them.

A privileged command moves money or changes rules outside trading. It enters
the chain only through the operator paths (rollback, refunds, compensation,
modes, guards, loss mode, listings, halts, key registration), never through
`submit` or the Python intake, which refuse these types by name.

Signed, the way chains do it: a chain created with keys registers them in its
genesis block (`RegisterKey`: operator keys and the writer's key; genesis is
the root of trust). From then on every block holding a privileged command must
also hold exactly one `OperatorAuth`: an Ed25519 signature, by an active
operator key, over `signed_message` (the chain id, the height, the key id,
operator and reason, and the stored bytes of every privileged command of the
block in log order). The state machine itself checks it (`check_block`): live,
the sequencer refuses the block; on re-execution an unauthorised privileged
command does nothing but emit `CommandUnauthorized`, so a forged log fails
re-execution too. A chain created without keys (legacy) has no authority and
nothing is enforced; `verify` reports it as unsigned, never as signed.

Not privileged, and why: CreateAccount, PlaceOrder, CancelOrder (users);
Deposit, Withdraw (external facts from the custody bridge); UpdateOracle,
FundingTick (external facts from the price and funding feeds); TakeSnapshot
(records a hash, changes nothing). BeginBlock and EndBlock are written by the
sequencer itself (EndBlock is `UNSUBMITTABLE`; BeginBlock in an input only
marks a block and its time).
"""

from __future__ import annotations

from collections.abc import Sequence
from hashlib import blake2b
from typing import Any

import msgpack
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ledger.events import commands as c
from ledger.events.codec import encode_trusted
from ledger.events.enums import KeyRole

#: Every operator-only command type (decide once, here; everything else asks this set).
PRIVILEGED: frozenset[type[Any]] = frozenset({
    c.ApplyRollback,       # truncation's recovery: carries money across branches
    c.IssueRefund,         # refunds and compensation: moves money out of LIQ_VAULT
    c.SetGuards,           # switches the data-check guards
    c.SetMode,             # exchange / market modes and the recovery band
    c.SetLossMode,         # who absorbs a deficit
    c.ListMarket,          # market listing
    c.UpdateMarketParams,  # market parameters
    c.HaltMarket,
    c.ResumeMarket,
    c.FundingResume,       # resumes a market the funding guard stopped
    c.BulkCancel,          # cancels everyone's orders
    c.RegisterKey,         # who may sign all of the above
})

#: IN types no input may carry: the sequencer writes them (BeginBlock is allowed as
#: a block marker: it only gives the block its time).
UNSUBMITTABLE: frozenset[type[Any]] = frozenset({c.EndBlock, c.OperatorAuth})


def is_privileged(command: Any) -> bool:
    """True if `command` is of an operator-only type."""
    return type(command) in PRIVILEGED


#: Domain separation of what operator keys and the writer key sign.
AUTH_DOMAIN = b"perpledger/operator-auth/v1\x00"


def key_id(public_key: bytes) -> str:
    """A key's id: the first 8 bytes of blake2b of its 32-byte public key, as hex."""
    return blake2b(public_key, digest_size=8).hexdigest()


def covered_bytes(height: int, commands: Sequence[Any]) -> list[bytes]:
    """The stored bytes each privileged command has as an IN event at `height`."""
    return [encode_trusted(height, 0, cmd) for cmd in commands]


def signed_message(chain_id: str, height: int, key_id: str, operator: str, reason: str,
                   covered: Sequence[bytes]) -> bytes:
    """What an OperatorAuth's signature covers (see module docstring)."""
    body: bytes = msgpack.packb([chain_id, height, key_id, operator, reason, list(covered)],
                                use_bin_type=True)
    return AUTH_DOMAIN + body


def signature_ok(public_key: bytes, signature: bytes, message: bytes) -> bool:
    """True if `signature` is `public_key`'s Ed25519 signature of `message`."""
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True


def check_block(chain_id: str, keys: dict[str, tuple[int, str, bytes, bool]], height: int,
                commands: Sequence[Any]) -> str | None:
    """Why a block's privileged commands are not authorised, or None if they are.

    `commands`: the block's IN commands in log (processing) order; `keys` and
    `chain_id`: the authority as of the block's start. Genesis (height 0) and
    chains without an authority need no authorisation.
    """
    if height == 0 or not keys:  # no key registered: the chain has no authority
        return None
    priv = [cmd for cmd in commands if type(cmd) in PRIVILEGED]
    auths = [cmd for cmd in commands if type(cmd) is c.OperatorAuth]
    if not priv and not auths:
        return None
    names = ", ".join(sorted({type(cmd).__name__ for cmd in priv}))
    if not auths:
        return (f"{names} at height {height} carries no operator signature: operator commands "
                "enter only through the operator paths, signed with an operator key")
    if len(auths) > 1:
        return f"block {height} holds {len(auths)} OperatorAuth records; at most one"
    if not priv:
        return f"block {height} holds an OperatorAuth but no privileged command"
    auth = auths[0]
    entry = keys.get(auth.key_id)
    if entry is None:
        return f"OperatorAuth at height {height}: key {auth.key_id!r} is not registered"
    role, name, public_key, active = entry
    if role != KeyRole.OPERATOR:
        return f"OperatorAuth at height {height}: key {auth.key_id!r} is not an operator key"
    if not active:
        return f"OperatorAuth at height {height}: key {auth.key_id!r} ({name}) was revoked"
    msg = signed_message(chain_id, height, auth.key_id, auth.operator, auth.reason,
                         covered_bytes(height, priv))
    if not signature_ok(public_key, auth.signature, msg):
        return (f"OperatorAuth at height {height}: the signature of key {auth.key_id!r} does "
                f"not verify over {names}")
    return None
