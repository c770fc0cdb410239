"""Commands from JSON Lines: the door's shape rules, in one place.

Input: one JSON object per line, `{"type": "<command>", <field>: <value>, ...}`,
UTF-8, at most `MAX_LINE_BYTES` bytes a line (a longer line is refused as soon
as the limit is passed, without reading the rest of it). Blank lines and lines
starting with `#` are skipped.

Strict JSON: duplicate keys, `NaN`/`Infinity`, floats and nesting deeper than
`MAX_DEPTH` are refused. Integers are JSON integers or strings of ASCII digits
with at most one leading `-` (no other digits, no `+`, no spaces), and must fit
the range the codec stores for the field (`int_range`): signed fields
(`SIGNED_FIELDS`) are i64, every other integer u64; fixed-point amounts, sizes
and prices (`_qq`, `_bq`, `_st`) are at most `MAX_UNITS` = 2**53 - 1 in
magnitude, the largest integer every JSON consumer reads exactly. Ids
(accounts, markets, scopes) are 1..`MAX_ID_LEN` characters of `ID_CHARS`;
references (`ext_ref`, `ref`) 1..`MAX_REF_LEN` of `REF_CHARS`; free text
(`reason`, `operator`) at most `MAX_TEXT_LEN` printable characters. Enums are
their documented names (`"BUY"`, case-insensitive), never codes. Because
`type` names the command, PlaceOrder's order type is given as `order_type`.

Only the commands users and feeds send are accepted here (`SUBMITTABLE`);
operator commands (`ledger.core.authority.PRIVILEGED`) are refused by name: they
enter the chain only through the operator paths, signed.

Every refusal raises `CommandInvalid` naming the line and the field. A command's
own field rules (positive sizes, the order shape) are `ledger.core.shape`'s,
applied here; the rules that need the chain's state (an account exists, a
price is on the tick) are `ledger.core.admit`'s, and `tools.submit` runs those
in a dry run of the whole input before anything is written.
"""

from __future__ import annotations

import json
import re
import types
import typing
from collections.abc import Iterable, Iterator
from enum import IntEnum
from typing import IO, Any, NamedTuple

from ledger.core.authority import PRIVILEGED, UNSUBMITTABLE
from ledger.core.shape import shape_problem
from ledger.errors import CodecError, CommandInvalid
from ledger.events import codec
from ledger.events.commands import BeginBlock
from ledger.events.enums import OrderType, SelfTrade, TimeInForce
from ledger.events.record import BY_NAME, Kind, field_types, is_record_type

#: The longest input line accepted, in bytes (newline excluded).
MAX_LINE_BYTES = 64 * 1024
#: The deepest nesting of arrays and objects accepted in one line.
MAX_DEPTH = 16
#: Fixed-point amounts, sizes and prices: at most 2**53 - 1 in magnitude.
MAX_UNITS = 2**53 - 1
#: Digits an integer may have before it is even converted (2**64 has 20).
MAX_INT_DIGITS = 20
I64 = (-(2**63), 2**63 - 1)
U64 = (0, 2**64 - 1)
#: Integer fields that may be negative (stored as i64); every other one is u64.
SIGNED_FIELDS = frozenset({"ext_basis_ppm", "prev_index", "new_index", "funding_index",
                           "maker_fee_ppm", "qce", "atomic_resolution", "interest_ppm"})
#: Fields holding fixed-point units (suffix) and so capped at MAX_UNITS.
UNIT_SUFFIXES = ("_qq", "_bq", "_st")

#: Account, market and scope ids.
ID_FIELDS = frozenset({"acct", "mkt", "scope", "source"})
ID_CHARS = "A-Z a-z 0-9 _ . : -"
MAX_ID_LEN = 64
_ID_RE = re.compile(rf"[A-Za-z0-9_.:\-]{{1,{MAX_ID_LEN}}}")
#: External and internal references.
REF_FIELDS = frozenset({"ext_ref", "ref"})
REF_CHARS = "A-Z a-z 0-9 _ . : - / @ # + ="
MAX_REF_LEN = 128
_REF_RE = re.compile(rf"[A-Za-z0-9_.:\-/@#+=]{{1,{MAX_REF_LEN}}}")
#: Free text (reason, operator): printable, no control characters.
MAX_TEXT_LEN = 256

_INT_RE = re.compile(r"-?[0-9]+")

#: JSON key -> record field, where a field name collides with the "type" key.
_ALIASES: dict[str, dict[str, str]] = {"PlaceOrder": {"order_type": "type"}}

#: Defaults for optional-in-JSON fields of commands.
_DEFAULTS: dict[str, dict[str, Any]] = {
    "PlaceOrder": {"price_st": None, "type": OrderType.LIMIT, "tif": TimeInForce.GTC,
                   "reduce_only": False, "trigger_st": None, "stp": SelfTrade.EXPIRE_MAKER},
    "TakeSnapshot": {"reason": ""},
}


def submittable() -> list[str]:
    """Names of the command types the door accepts (users, feeds, the bank bridge)."""
    return sorted(name for name, cls in BY_NAME.items()
                  if cls.KIND == Kind.IN and cls not in PRIVILEGED and cls not in UNSUBMITTABLE)


class Line(NamedTuple):
    """One parsed input line: where it came from and the command it holds."""

    number: int
    command: Any


def _refuse(where: str, field: str | None, msg: str) -> CommandInvalid:
    return CommandInvalid(f"{where}, field {field}: {msg}" if field else f"{where}: {msg}")


def int_range(name: str, field: str) -> tuple[int, int]:
    """The inclusive range the door accepts for integer `field` of type `name`."""
    lo, hi = I64 if field in SIGNED_FIELDS else U64
    if field.endswith(UNIT_SUFFIXES):
        lo, hi = max(lo, -MAX_UNITS), min(hi, MAX_UNITS)
    return lo, hi


def parse_command(obj: Any, where: str) -> Any:
    """Turn one decoded JSON object into a typed IN command (raises CommandInvalid)."""
    if not isinstance(obj, dict):
        raise _refuse(where, None, f"expected a JSON object, was {_jtype(obj)}")
    name = obj.get("type")
    if not isinstance(name, str):
        raise _refuse(where, "type", "missing or not a string naming the command")
    cls = BY_NAME.get(name)
    if cls is None or cls.KIND != Kind.IN:
        raise _refuse(where, "type", f"unknown command type {_show(name)} (one of "
                      f"{', '.join(submittable())})")
    if cls in PRIVILEGED:
        raise _refuse(where, "type", f"{name} is an operator command: it enters the chain "
                      "only through the operator paths (ledgerctl rollback, refunds, mode, "
                      "guards, keys), signed with an operator key, never through submit")
    if cls in UNSUBMITTABLE:
        raise _refuse(where, "type", f"{name} is written by the ledger itself, not submitted")
    aliases = _ALIASES.get(name, {})
    defaults = _DEFAULTS.get(name, {})
    fields = dict(field_types(cls))
    values: dict[str, Any] = {}
    for key, raw in obj.items():
        if key == "type":
            continue
        field = aliases.get(key, key)
        if field not in fields or (field in aliases.values() and key == field):
            raise _refuse(where, _show_key(key), f"{name} has no such field (fields: "
                          f"{', '.join(_json_names(cls, aliases))})")
        values[field] = _convert(raw, fields[field], name, key, field, where)
    for field, tp in fields.items():
        if field in values:
            continue
        if field in defaults:
            values[field] = defaults[field]
        elif _optional(tp):
            values[field] = None
        else:
            shown = {v: k for k, v in aliases.items()}.get(field, field)
            raise _refuse(where, shown, f"{name}.{shown} is required")
    record = cls(**values)
    try:
        codec.check(record)
    except CodecError as exc:  # the rules above should make this unreachable
        raise _refuse(where, None, str(exc)) from None
    # The command's own fields, as the door checks them (ledger.core.shape, the one
    # place for them): a bad line fails the whole input before anything is appended.
    problem = shape_problem(record)
    if problem is not None:
        field = {v: k for k, v in aliases.items()}.get(problem[0], problem[0])
        raise _refuse(where, field, f"{name}.{field}: {problem[1]}")
    return record


def _json_names(cls: type[Any], aliases: dict[str, str]) -> list[str]:
    back = {v: k for k, v in aliases.items()}
    return [back.get(f, f) for f, _ in field_types(cls)]


def _optional(tp: Any) -> bool:
    return typing.get_origin(tp) in (typing.Union, types.UnionType) and type(None) in \
        typing.get_args(tp)


def _jtype(raw: Any) -> str:
    if raw is None:
        return "null"
    return {bool: "a boolean", int: "an integer", _LongInt: "an integer", str: "a string",
            list: "an array", dict: "an object"}.get(type(raw), type(raw).__name__)


def _show(value: Any) -> str:
    """A short, safe rendering of a refused value (no control characters, bounded)."""
    text = ascii(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _show_key(key: str) -> str:
    return key if _ID_RE.fullmatch(key) else _show(key)


def _convert(raw: Any, tp: Any, name: str, key: str, field: str, where: str) -> Any:
    label = f"{name}.{key}"
    if raw is None:
        if _optional(tp):
            return None
        raise _refuse(where, key, f"{label} may not be null")
    if _optional(tp):
        tp = [a for a in typing.get_args(tp) if a is not type(None)][0]
    origin = typing.get_origin(tp)
    if origin is tuple:
        if not isinstance(raw, list):
            raise _refuse(where, key, f"{label}: expected an array, was {_jtype(raw)}")
        inner = typing.get_args(tp)[0]
        return tuple(_convert(x, inner, name, f"{key}[{i}]", field, where)
                     for i, x in enumerate(raw))
    if isinstance(tp, type) and issubclass(tp, IntEnum):
        return _enum(raw, tp, label, key, where)
    if is_record_type(tp):
        if not isinstance(raw, dict):
            raise _refuse(where, key, f"{label}: expected an object, was {_jtype(raw)}")
        sub = dict(field_types(tp))
        unknown = sorted(set(raw) - set(sub))
        if unknown:
            raise _refuse(where, f"{key}.{_show_key(unknown[0])}", "no such field")
        missing = [k for k in sub if k not in raw]
        if missing:
            raise _refuse(where, f"{key}.{missing[0]}", "is required")
        return tp(**{k: _convert(raw[k], sub[k], name, f"{key}.{k}", k, where) for k in sub})
    if tp is bool:
        if type(raw) is not bool:
            raise _refuse(where, key, f"{label}: expected true or false, was {_jtype(raw)}")
        return raw
    if tp is int:
        return _integer(raw, name, label, key, field, where)
    if tp is str:
        if not isinstance(raw, str):
            raise _refuse(where, key, f"{label}: expected a string, was {_jtype(raw)}")
        _check_text(raw, label, key, field, where)
        return raw
    if tp is bytes:
        if not isinstance(raw, str) or not re.fullmatch(r"(?:[0-9a-fA-F]{2}){0,64}", raw):
            raise _refuse(where, key, f"{label}: expected hex bytes, was {_show(raw)}")
        return bytes.fromhex(raw)
    raise _refuse(where, key, f"{label}: unsupported field type")


def _integer(raw: Any, name: str, label: str, key: str, field: str, where: str) -> int:
    if type(raw) is int:
        value = raw
    elif type(raw) is _LongInt:
        raise _refuse(where, key, f"{label}: an integer of {raw.digits} digits is outside the "
                      f"range this field holds {int_range(name, field)}")
    elif isinstance(raw, str) and len(raw) <= MAX_INT_DIGITS + 1 and _INT_RE.fullmatch(raw):
        value = int(raw)
    elif isinstance(raw, str):
        raise _refuse(where, key, f"{label}: expected an integer in fixed-point units (ASCII "
                      f"digits, at most one leading '-'), was {_show(raw)}")
    else:
        raise _refuse(where, key, f"{label}: expected an integer in fixed-point units, was "
                      f"{_jtype(raw)}")
    lo, hi = int_range(name, field)
    if not lo <= value <= hi:
        raise _refuse(where, key, f"{label}: {_show_int(value)} is outside the range this "
                      f"field holds ({lo} to {hi})")
    return value


def _show_int(value: int) -> str:
    text = str(value)
    return text if len(text) <= 24 else f"{text[:10]}...({len(text)} digits)"


def _check_text(raw: str, label: str, key: str, field: str, where: str) -> None:
    if field in ID_FIELDS:
        if not _ID_RE.fullmatch(raw):
            raise _refuse(where, key, f"{label}: an id is 1 to {MAX_ID_LEN} characters of "
                          f"{ID_CHARS}, was {_show(raw)}")
    elif field in REF_FIELDS:
        if not _REF_RE.fullmatch(raw):
            raise _refuse(where, key, f"{label}: a reference is 1 to {MAX_REF_LEN} characters "
                          f"of {REF_CHARS}, was {_show(raw)}")
    else:
        if len(raw) > MAX_TEXT_LEN:
            raise _refuse(where, key, f"{label}: text longer than {MAX_TEXT_LEN} characters")
        if not raw.isprintable() or any(0xD800 <= ord(ch) <= 0xDFFF for ch in raw):
            raise _refuse(where, key, f"{label}: text must be printable (no control "
                          f"characters or lone surrogates), was {_show(raw)}")


def _enum(raw: Any, tp: type[IntEnum], label: str, key: str, where: str) -> IntEnum:
    if isinstance(raw, str) and raw.isascii():
        member = tp.__members__.get(raw.upper())
        if member is not None:
            return member
    names = ", ".join(tp.__members__)
    raise _refuse(where, key, f"{label}: unknown {tp.__name__} {_show(raw)} (one of {names})")


# -- strict JSON ----------------------------------------------------------------------


class _Refused(Exception):
    """Raised from inside json.loads hooks; carries the field and message."""

    def __init__(self, field: str | None, msg: str) -> None:
        super().__init__(msg)
        self.field = field
        self.msg = msg


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _Refused(_show_key(key), f"duplicate key {_show(key)} (each key once)")
        out[key] = value
    return out


class _LongInt(NamedTuple):
    """A JSON integer with too many digits to fit any field (never converted)."""

    digits: int


def _parse_int(text: str) -> Any:
    # Python's json reads only ASCII digits here; the length bound keeps int() cheap
    # and lets the field that holds it be named in the refusal.
    digits = len(text.lstrip("-"))
    return _LongInt(digits) if digits > MAX_INT_DIGITS else int(text)


def _parse_float(text: str) -> Any:
    raise _Refused(None, f"{_show(text)} is a float; amounts, sizes and prices are integers "
                   "in fixed-point units")


def _parse_constant(text: str) -> Any:
    raise _Refused(None, f"{text} is not a number JSON allows")


def _depth(text: str) -> int:
    """The deepest nesting of arrays/objects in `text`, outside strings."""
    if text.count("[") + text.count("{") <= MAX_DEPTH:
        return 0
    depth = deepest = 0
    in_str = escaped = False
    for ch in text:
        if in_str:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_str = False
        elif ch == '"':
            in_str = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


def parse_json(text: str, where: str) -> Any:
    """Decode one line of strict JSON (see module docstring)."""
    deepest = _depth(text)
    if deepest > MAX_DEPTH:
        raise _refuse(where, None, f"JSON nested {deepest} deep; at most {MAX_DEPTH} levels")
    try:
        return json.loads(text, object_pairs_hook=_pairs, parse_int=_parse_int,
                          parse_float=_parse_float, parse_constant=_parse_constant)
    except _Refused as exc:
        raise _refuse(where, exc.field, exc.msg) from None
    except json.JSONDecodeError as exc:
        raise _refuse(where, None, f"not valid JSON ({exc.msg} at column {exc.colno})") \
            from None
    except RecursionError:  # unreachable after the depth check; kept as a backstop
        raise _refuse(where, None, "JSON nested too deep") from None


def parse_lines(lines: Iterable[str], source: str = "<input>") -> Iterator[Line]:
    """Parse JSON Lines given as text (blank lines and `#` comments skipped)."""
    for number, text in enumerate(lines, 1):
        if len(text.encode("utf-8", "surrogatepass")) > MAX_LINE_BYTES:
            raise _refuse(f"{source} line {number}", None,
                          f"longer than {MAX_LINE_BYTES} bytes, the most a line may hold")
        stripped = text.strip()
        if not stripped or stripped.startswith("#"):
            continue
        where = f"{source} line {number}"
        yield Line(number, parse_command(parse_json(stripped, where), where))


def read_lines(stream: IO[bytes], source: str) -> Iterator[str]:
    """Yield the decoded lines of a byte stream, refusing an over-long or non-UTF-8 line.

    A line longer than `MAX_LINE_BYTES` is refused as soon as that many bytes were
    read: the rest of it is never read into memory or a parser.
    """
    number = 0
    while True:
        raw = stream.readline(MAX_LINE_BYTES + 2)
        if not raw:
            return
        number += 1
        body = raw[:-1] if raw.endswith(b"\n") else raw
        if body.endswith(b"\r"):
            body = body[:-1]
        if len(body) > MAX_LINE_BYTES:
            raise _refuse(f"{source} line {number}", None,
                          f"longer than {MAX_LINE_BYTES} bytes, the most a line may hold "
                          "(refused without reading the rest)")
        try:
            yield body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise _refuse(f"{source} line {number}", None,
                          f"not valid UTF-8 (byte {exc.start + 1} of the line)") from None


def parse_stream(stream: IO[bytes], source: str) -> list[Line]:
    """Read and parse a whole JSON Lines byte stream; the first bad line raises."""
    return list(parse_lines(read_lines(stream, source), source))


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
