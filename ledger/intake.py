"""Commands from JSON Lines: the shape check at the door.

One JSON object per line: `{"type": "<IN event name>", <field>: <value>, ...}`.
Integers are JSON integers or strings of digits (never floats: a fixed-point
amount that went through a float is already wrong). Enums are names
(`"BUY"`, case-insensitive) or their integer codes. Optional fields may be
left out. Because `type` names the command, PlaceOrder's order type is given
as `order_type`. Nested records are objects, arrays of them arrays, bytes hex.

Any error raises `CommandInvalid` naming the line and the field; nothing is
half-parsed.
"""

from __future__ import annotations

import json
import types
import typing
from collections.abc import Iterable, Iterator
from enum import IntEnum
from typing import Any, NamedTuple

from ledger.core.shape import shape_problem
from ledger.errors import CodecError, CommandInvalid
from ledger.events import codec
from ledger.events.commands import BeginBlock
from ledger.events.enums import OrderType, SelfTrade, TimeInForce
from ledger.events.record import BY_NAME, Kind, field_types, is_record_type

#: JSON key -> record field, where a field name collides with the "type" key.
_ALIASES: dict[str, dict[str, str]] = {"PlaceOrder": {"order_type": "type"}}

#: Defaults for optional-in-JSON fields of commands.
_DEFAULTS: dict[str, dict[str, Any]] = {
    "PlaceOrder": {"price_st": None, "type": OrderType.LIMIT, "tif": TimeInForce.GTC,
                   "reduce_only": False, "trigger_st": None, "stp": SelfTrade.EXPIRE_MAKER},
    "BulkCancel": {"keep_types": (), "reason": "operator"},
    "TakeSnapshot": {"reason": ""},
}


class Line(NamedTuple):
    """One parsed input line: where it came from and the command it holds."""

    number: int
    command: Any


def parse_command(obj: Any, where: str) -> Any:
    """Turn one decoded JSON object into a typed IN command (raises CommandInvalid)."""
    if not isinstance(obj, dict):
        raise CommandInvalid(f"{where}: expected a JSON object, was {type(obj).__name__}")
    name = obj.get("type")
    if not isinstance(name, str):
        raise CommandInvalid(f"{where}: missing \"type\" naming the command")
    cls = BY_NAME.get(name)
    if cls is None or cls.KIND != Kind.IN:
        raise CommandInvalid(f"{where}: unknown command type {name!r}")
    aliases = _ALIASES.get(name, {})
    defaults = _DEFAULTS.get(name, {})
    fields = dict(field_types(cls))
    values: dict[str, Any] = {}
    for key, raw in obj.items():
        if key == "type":
            continue
        field = aliases.get(key, key)
        if field not in fields or (field in aliases.values() and key == field):
            raise CommandInvalid(f"{where}: {name} has no field {key!r}")
        values[field] = _convert(raw, fields[field], f"{where}: {name}.{key}")
    for field, tp in fields.items():
        if field in values:
            continue
        if field in defaults:
            values[field] = defaults[field]
        elif _optional(tp):
            values[field] = None
        else:
            shown = {v: k for k, v in aliases.items()}.get(field, field)
            raise CommandInvalid(f"{where}: {name}.{shown} is required")
    record = cls(**values)
    try:
        codec.check(record)
    except CodecError as exc:
        raise CommandInvalid(f"{where}: {exc}") from None
    # The command's own fields, as the door checks them (ledger.core.shape): a bad
    # line fails the whole file before anything is appended.
    problem = shape_problem(record)
    if problem is not None:
        raise CommandInvalid(f"{where}: {name}.{problem[0]}: {problem[1]}")
    return record


def _optional(tp: Any) -> bool:
    return typing.get_origin(tp) in (typing.Union, types.UnionType) and type(None) in \
        typing.get_args(tp)


def _convert(raw: Any, tp: Any, where: str) -> Any:
    if raw is None:
        if _optional(tp):
            return None
        raise CommandInvalid(f"{where} may not be null")
    if _optional(tp):
        tp = [a for a in typing.get_args(tp) if a is not type(None)][0]
    origin = typing.get_origin(tp)
    if origin is tuple:
        if not isinstance(raw, list):
            raise CommandInvalid(f"{where}: expected an array, was {type(raw).__name__}")
        inner = typing.get_args(tp)[0]
        return tuple(_convert(x, inner, f"{where}[{i}]") for i, x in enumerate(raw))
    if isinstance(tp, type) and issubclass(tp, IntEnum):
        return _enum(raw, tp, where)
    if is_record_type(tp):
        if not isinstance(raw, dict):
            raise CommandInvalid(f"{where}: expected an object, was {type(raw).__name__}")
        sub = dict(field_types(tp))
        unknown = sorted(set(raw) - set(sub))
        if unknown:
            raise CommandInvalid(f"{where}: unknown field {unknown[0]!r}")
        missing = [k for k in sub if k not in raw]
        if missing:
            raise CommandInvalid(f"{where}.{missing[0]} is required")
        return tp(**{k: _convert(raw[k], sub[k], f"{where}.{k}") for k in sub})
    if tp is bool:
        if type(raw) is not bool:
            raise CommandInvalid(f"{where}: expected true or false, was {raw!r}")
        return raw
    if tp is int:
        if type(raw) is int:
            return raw
        if isinstance(raw, str) and raw.lstrip("-").isdigit():
            return int(raw)
        raise CommandInvalid(f"{where}: expected an integer in fixed-point units, was {raw!r}")
    if tp is str:
        if not isinstance(raw, str):
            raise CommandInvalid(f"{where}: expected a string, was {raw!r}")
        return raw
    if tp is bytes:
        try:
            return bytes.fromhex(raw)
        except (TypeError, ValueError):
            raise CommandInvalid(f"{where}: expected hex bytes, was {raw!r}") from None
    raise CommandInvalid(f"{where}: unsupported field type")


def _enum(raw: Any, tp: type[IntEnum], where: str) -> IntEnum:
    if isinstance(raw, str):
        try:
            return tp[raw.upper()]
        except KeyError:
            pass
    elif type(raw) is int:
        try:
            return tp(raw)
        except ValueError:
            pass
    names = ", ".join(m.name for m in tp)
    raise CommandInvalid(f"{where}: unknown {tp.__name__} {raw!r} (one of {names})")


def parse_lines(lines: Iterable[str], source: str = "<input>") -> Iterator[Line]:
    """Parse JSON Lines (blank lines and `#` comments skipped), naming the line on error."""
    for number, text in enumerate(lines, 1):
        stripped = text.strip()
        if not stripped or stripped.startswith("#"):
            continue
        where = f"{source} line {number}"
        try:
            obj = json.loads(stripped, parse_float=_no_float)
        except _FloatFound as exc:
            raise CommandInvalid(f"{where}: {exc} is a float; amounts, sizes and prices are "
                                 "integers in fixed-point units") from None
        except json.JSONDecodeError as exc:
            raise CommandInvalid(f"{where}: not valid JSON ({exc.msg} at column "
                                 f"{exc.colno})") from None
        yield Line(number, parse_command(obj, where))


class _FloatFound(ValueError):
    pass


def _no_float(text: str) -> Any:
    raise _FloatFound(text)


def split_blocks(lines: list[Line], *, block_size: int | None) -> list[list[Line]]:
    """Group commands into blocks: at each BeginBlock marker, or every `block_size` commands."""
    blocks: list[list[Line]] = []
    current: list[Line] = []
    count = 0
    for line in lines:
        starts = isinstance(line.command, BeginBlock)
        full = block_size is not None and count >= block_size
        if current and (starts or full):
            blocks.append(current)
            current = []
            count = 0
        current.append(line)
        if not starts:
            count += 1
    if current:
        blocks.append(current)
    return blocks
