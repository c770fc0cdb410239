"""`ledgerctl keys create | id | list | add | revoke`: the chain's operator and writer keys."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ledger.errors import CommandInvalid
from ledger.events import commands as c
from ledger.events.enums import KeyRole
from ledger.keys import create_key, load_public
from ledger.sequencer import Sequencer
from ledger.store.journal import JournalEntry
from ledger.verification import key_registrations
from tools import output
from tools.common import DataOpt, JsonOpt, KeyOpt, StoreOpt, data_dir, open_reader, open_store

keys_app = typer.Typer(help="Ed25519 keys: operators sign operator commands, the writer "
                            "signs every block.", no_args_is_help=True)

@keys_app.command("create")
def create(
    out: Annotated[Path, typer.Option("--out", help="Key file to create (never under a data "
                                                    "directory); its public key goes to OUT.pub.")],
    json_out: JsonOpt = False,
) -> None:
    """Create a new Ed25519 key file (mode 0600) and its .pub."""
    key = create_key(out)
    doc = {"path": str(key.path), "public": f"{key.path}.pub", "key_id": key.key_id}
    output.dump_json(doc) if json_out else output.kv("key created", list(doc.items()))


@keys_app.command("id")
def key_id(path: Annotated[Path, typer.Argument(help="A key file or its .pub.")],
           json_out: JsonOpt = False) -> None:
    """Print a key's id (compare it with what `verify` and `keys list` show)."""
    from ledger.core.authority import key_id as kid

    doc = {"path": str(path), "key_id": kid(load_public(path))}
    output.dump_json(doc) if json_out else output.kv("key", list(doc.items()))


@keys_app.command("list")
def list_keys(data: DataOpt = None, json_out: JsonOpt = False, store: StoreOpt = None
              ) -> None:
    """The keys registered on the chain (from its events; no private key needed)."""
    with open_reader(store, data) as chain:
        regs = key_registrations(chain)
    rows = [{"key_id": e.event.key_id, "role": e.event.role.name, "name": e.event.name,
             "active": e.event.active, "height": e.height} for e in regs.events]
    signed = regs.signed
    doc = {"signed": signed, "keys": rows}
    if json_out:
        output.dump_json(doc)
        return
    if not signed:
        output.console.print("UNSIGNED: a legacy chain created without keys")
    output.table("registered keys (oldest first)", ["key id", "role", "name", "active",
                                                     "height"],
                 [(r["key_id"], r["role"], r["name"], "yes" if r["active"] else "REVOKED",
                   r["height"]) for r in rows], right=["height"])


def _register(data: Path | None, public: bytes, role: KeyRole, name: str, active: bool,
              reason: str, operator: str, key: str | None, json_out: bool) -> None:
    from ledger.core.authority import key_id as kid

    with Sequencer.open(data_dir(data)) as seq:
        if not seq.engine.state.keys:
            raise CommandInvalid("this is a legacy chain created without keys; it cannot "
                                 "register any (create a new, signed ledger with `init`)")
        cmd = c.RegisterKey(seq.store.chain_id, kid(public), role, name, public, active)
        out = seq.submit([cmd], journal=JournalEntry("keys", operator, reason, {
            "key_id": cmd.key_id, "role": role.name, "name": name, "active": active}),
            operator_key=seq.operator_key(key))
    doc = {"key_id": cmd.key_id, "role": role.name, "name": name, "active": active,
           "height": out.header.height}
    output.dump_json(doc) if json_out else output.kv("key registered" if active else
                                                     "key revoked", list(doc.items()))


@keys_app.command("add")
def add(
    public: Annotated[Path, typer.Option("--pub", help="The new key's .pub (or key) file.")],
    name: Annotated[str, typer.Option("--name", help="Who the key belongs to.")],
    reason: Annotated[str, typer.Option("--reason", help="Why (journaled, signed).")],
    operator: Annotated[str, typer.Option("--operator", help="Who (journaled, signed).")],
    role: Annotated[str, typer.Option("--role", help="operator|writer")] = "operator",
    key: KeyOpt = None,
    data: DataOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Register another operator (or writer) key, signed by an active operator key."""
    roles = {"operator": KeyRole.OPERATOR, "writer": KeyRole.WRITER}
    if role.lower() not in roles:
        raise CommandInvalid(f"--role must be operator or writer, was {role!r}")
    _register(data, load_public(public), roles[role.lower()], name, True, reason, operator,
              key, json_out)


@keys_app.command("revoke")
def revoke(
    key_id_: Annotated[str, typer.Argument(metavar="KEY_ID", help="The key id to revoke.")],
    reason: Annotated[str, typer.Option("--reason", help="Why (journaled, signed).")],
    operator: Annotated[str, typer.Option("--operator", help="Who (journaled, signed).")],
    key: KeyOpt = None,
    data: DataOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Revoke a registered key: nothing it signs after this block is accepted."""
    with open_store(data) as store:
        found = [e.event for e in key_registrations(store).events if e.event.key_id == key_id_]
    if not found:
        raise CommandInvalid(f"no key {key_id_!r} is registered on this chain "
                             "(`ledgerctl keys list`)")
    last = found[-1]
    _register(data, last.public_key, last.role, last.name, False, reason, operator, key,
              json_out)


def register(app: typer.Typer) -> None:
    app.add_typer(keys_app, name="keys")

