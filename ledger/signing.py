"""Signing what operators and the writer write: the authorisation of a block.

`authorise(state, height, commands, key, operator, reason)` returns the block's
commands with an `OperatorAuth` inserted after its BeginBlock: the operator
key's signature over every privileged command of the block, in log order
(ledger.core.authority has the rule and the message; this module holds the
private-key side, which the pure core never sees).

Keys at creation (`genesis_authority`): the writer key and the operator keys a
new ledger registers in its genesis block.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ledger.core.authority import PRIVILEGED, covered_bytes, signed_message
from ledger.core.engine import processing_order
from ledger.core.state import ExchangeState
from ledger.errors import CommandInvalid
from ledger.events import commands as c
from ledger.events.enums import KeyRole
from ledger.keys import (
    OPERATOR_KEY_ENV,
    WRITER_KEY_ENV,
    Key,
    KeyError_,
    create_key,
    load_key,
)


def authorise(state: ExchangeState, chain_id: str, height: int, commands: Sequence[Any],
              key: Key | None, *, operator: str, reason: str) -> list[Any]:
    """The block's commands (BeginBlock first) with its OperatorAuth, when one is needed.

    Needed when the chain has an authority and the block holds a privileged
    command; then `key` must be an active operator key of the chain.
    """
    cmds = list(commands)
    priv_types = [type(cmd) for cmd in cmds if type(cmd) in PRIVILEGED]
    if not priv_types or not state.keys or height == 0:
        return cmds
    names = ", ".join(sorted({t.__name__ for t in priv_types}))
    if key is None:
        raise CommandInvalid(f"{names} is an operator command on a signed chain: it needs the "
                             "operator key (--key PATH or $PERPLEDGER_OPERATOR_KEY)")
    entry = state.keys.get(key.key_id)
    if entry is None or entry[0] != KeyRole.OPERATOR or not entry[3]:
        raise CommandInvalid(f"key {key.key_id} ({key.path}) is not an active operator key "
                             f"of this chain (`ledgerctl keys list` shows them)")
    if not operator.strip() or not reason.strip():
        raise CommandInvalid("an operator command needs an operator name and a reason")
    probe = [*cmds, c.OperatorAuth(key.key_id, operator, reason, b"")]
    if not isinstance(probe[0], c.BeginBlock):
        raise CommandInvalid("an authorised block must open with BeginBlock")
    if not isinstance(probe[-2], c.EndBlock):
        probe = [*probe[:-1], c.EndBlock(), probe[-1]]
    ordered = [probe[i] for i in processing_order([type(x) for x in probe])]
    covered = covered_bytes(height, [x for x in ordered if type(x) in PRIVILEGED])
    sig = key.sign(signed_message(chain_id, height, key.key_id, operator, reason, covered))
    return [cmds[0], c.OperatorAuth(key.key_id, operator, reason, sig), *cmds[1:]]


def genesis_authority(chain_id: str, writer: Key,
                      operators: Sequence[tuple[str, bytes]]) -> list[c.RegisterKey]:
    """RegisterKey records for a new chain: its writer key and its operator keys."""
    from ledger.core.authority import key_id

    out = [c.RegisterKey(chain_id, writer.key_id, KeyRole.WRITER, "writer", writer.public_key,
                         True)]
    for name, public in operators:
        out.append(c.RegisterKey(chain_id, key_id(public), KeyRole.OPERATOR, name, public, True))
    return out


def keys_for_new_ledger(path: str | os.PathLike[str], *, writer_key: str | None,
                        operator_key: str | None, operator: str = "operator"
                        ) -> tuple[Key, list[tuple[str, bytes]], dict[str, str]]:
    """The writer key and operator keys of a ledger being created at `path`.

    Each key: the path given, else its environment variable, else a new key in
    `<data>.keys/` beside (never inside) the data directory; a given path that
    does not exist yet is created. Returns (writer, [(operator name, public key)],
    config entries recording where the keys are).
    """
    data = Path(path)
    default_dir = data.parent / f"{data.name}.keys"
    keys: dict[str, Key] = {}
    for role, given, env, default in (
            ("writer", writer_key, WRITER_KEY_ENV, default_dir / "writer.key"),
            ("operator", operator_key, OPERATOR_KEY_ENV, default_dir / "operator.key")):
        chosen = Path(given or os.environ.get(env) or default)
        try:
            keys[role] = load_key(chosen, data_dir=data)
        except KeyError_:
            if chosen.exists():
                raise
            keys[role] = create_key(chosen, data_dir=data)
    cfg = {"writer_key_path": str(keys["writer"].path.resolve()),
           "operator_key_path": str(keys["operator"].path.resolve())}
    return keys["writer"], [(operator, keys["operator"].public_key)], cfg
