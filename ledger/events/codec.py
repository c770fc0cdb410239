"""The msgpack codec of the log: compact arrays with type codes, strictly checked.

Stored form of one event (the key is its `seq`, u64 big-endian, so the value
does not repeat it)::

    [type_code, schema_version, height, cause_seq, field_1, ..., field_n]

`cause_seq` is the seq of the IN event an OUT event answers (0 for IN events).
Nested records are arrays, enums their integer values, `None` is nil.

Decoding runs a validator generated once per type from the record's
annotations: straight-line code, no reflection per event. It rejects unknown
type codes, wrong arity and wrong field types with a `CodecError` naming the
type and field. Older schema versions are read through `UPCASTERS`.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Callable
from enum import IntEnum
from typing import Any, NamedTuple

import msgpack

from ledger.errors import CodecError
from ledger.events import commands, outcomes  # noqa: F401  (registers the catalogue)
from ledger.events.record import BY_CODE, describe, field_types, is_record_type, raise_bad

HEADER_LEN = 4


class Envelope(NamedTuple):
    """One logged event: its place in the chain and the typed record."""

    seq: int
    height: int
    cause: int
    event: Any

    @property
    def type_name(self) -> str:
        return type(self.event).__name__

    @property
    def kind(self) -> str:
        return str(type(self.event).KIND)


#: (type_code, old_version) -> function turning the old field list into the new one.
UPCASTERS: dict[tuple[int, int], Callable[[list[Any]], list[Any]]] = {}

_unpackb = msgpack.unpackb
_tnew = tuple.__new__
# One packer for the writer's thread: `Packer.pack` is about twice as fast as
# `packb`, which builds a packer per call. Only the single writer encodes.
_pack = msgpack.Packer(use_bin_type=True).pack


def encode(env: Envelope) -> bytes:
    """Encode one envelope to its stored bytes (raises CodecError on a bad record)."""
    ev = env.event
    cls = type(ev)
    code = getattr(cls, "TYPE_CODE", None)
    if code is None or BY_CODE.get(code) is not cls:
        raise CodecError(f"{cls.__name__} is not an event type of the catalogue")
    _CHECKERS[code](ev)
    if type(env.height) is not int or type(env.cause) is not int:
        raise CodecError(f"{cls.__name__}: envelope height and cause must be integers")
    return _pack_checked(cls, (code, cls.VERSION, env.height, env.cause, *ev))


def _pack_checked(cls: type[Any], arr: tuple[Any, ...]) -> bytes:
    """Pack; what msgpack cannot hold (ints past 64 bits, lone surrogates) is a CodecError."""
    try:
        data: bytes = _pack(arr)
    except (OverflowError, UnicodeEncodeError, ValueError) as exc:
        raise CodecError(f"{cls.__name__}: a value msgpack cannot encode ({exc})") from None
    return data


def encode_trusted(height: int, cause: int, ev: Any) -> bytes:
    """Encode a record built by the state machine itself (types already right)."""
    data: bytes = _pack((ev.TYPE_CODE, ev.VERSION, height, cause, *ev))
    return data


def decode(data: bytes, seq: int) -> Envelope:
    """Decode stored bytes (the event at `seq`) into an envelope, checking every field."""
    try:
        arr = _unpackb(data, use_list=False, raw=False, strict_map_key=True)
    except Exception as exc:  # msgpack raises several unrelated types
        raise CodecError(f"event at seq {seq}: not valid msgpack ({exc})") from None
    try:
        # Only an array whose type code and schema version are ints is an event
        # (a msgpack bin indexes like one; True and 1.0 hash like 1).
        if type(arr) is not tuple or type(arr[0]) is not int or type(arr[1]) is not int:
            raise TypeError
        fast = _FAST[arr[0]]
    except (KeyError, TypeError, IndexError):
        raise CodecError(f"event at seq {seq}: not an event array with a known type code "
                         f"(was {str(arr)[:40]})") from None
    return fast(arr, seq)


def _decode_checked(arr: Any, seq: int) -> Envelope:
    """The careful path: precise errors, upcasting of old schema versions."""
    if type(arr) is not tuple or len(arr) < HEADER_LEN:
        raise CodecError(f"event at seq {seq}: expected an event array")
    height = arr[2]
    cause = arr[3]
    if type(height) is not int or type(cause) is not int:
        raise CodecError(f"event at seq {seq}: height and cause must be integers")
    if arr[1] != _VERSIONS[arr[0]]:
        arr = _upcast(arr)
    return _tnew(Envelope, (seq, height, cause, _DECODERS[arr[0]](arr)))


def _upcast(arr: tuple[Any, ...]) -> tuple[Any, ...]:
    code, version = arr[0], arr[1]
    cls = BY_CODE[code]
    up = UPCASTERS.get((code, version))
    if up is None:
        raise CodecError(f"{cls.__name__}: unknown schema version {version!r}")
    return (code, cls.VERSION, arr[2], arr[3], *up(list(arr[HEADER_LEN:])))


def decode_event(data: bytes) -> tuple[int, int, Any]:
    """Decode stored bytes to (height, cause, record) without building an envelope."""
    env = decode(data, 0)
    return env.height, env.cause, env.event


# Offset of the type code in stored bytes, by the first byte (the array header):
# fixarray -> 1, array16 -> 3, array32 -> 5. Type codes are positive fixints (< 128).
# Anything else maps to offset 0, whose byte is no known type code. Folds read the
# code of proven bytes as `data[CODE_AT[data[0]]]` to skip events without decoding.
CODE_AT = [1 if b & 0xF0 == 0x90 else 3 if b == 0xDC else 5 if b == 0xDD else 0
            for b in range(256)]


# ---------------------------------------------------------------------------
# Generated validators. For each field a line of straight code is emitted; the
# generated function returns the typed record or raises through `raise_bad`.


def _gen_value_check(tp: Any, var: str, tname: str, fname: str, ns: dict[str, Any],
                     lines: list[str], indent: str, convert: bool) -> str:
    """Emit lines checking (and for decode, converting) `var`; return the result expr."""
    origin = typing.get_origin(tp)
    key = f"_t{len(ns)}"
    ns[key] = describe(tp)
    bad = f"_bad({tname!r}, {fname!r}, {key}, {var})"
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in typing.get_args(tp) if a is not type(None)][0]
        sub: list[str] = []
        res = _gen_value_check(inner, var, tname, fname, ns, sub, indent + "    ", convert)
        out = f"_o{len(ns)}"
        ns[out] = None
        lines.append(f"{indent}if {var} is None:")
        lines.append(f"{indent}    {out} = None")
        lines.append(f"{indent}else:")
        lines.extend(sub)
        lines.append(f"{indent}    {out} = {res}")
        return out
    if origin is tuple:
        inner = typing.get_args(tp)[0]
        fn = f"_el{len(ns)}"
        ns[fn] = _make_single(inner, tname, fname, convert)
        lines.append(f"{indent}if type({var}) is not tuple and type({var}) is not list: {bad}")
        return f"tuple([{fn}(_x) for _x in {var}])"
    if tp is bool:
        lines.append(f"{indent}if type({var}) is not bool: {bad}")
        return var
    if tp is int:
        lines.append(f"{indent}if type({var}) is not int: {bad}")
        return var
    if tp is str:
        lines.append(f"{indent}if type({var}) is not str: {bad}")
        return var
    if tp is bytes:
        lines.append(f"{indent}if type({var}) is not bytes: {bad}")
        return var
    if isinstance(tp, type) and issubclass(tp, IntEnum):
        table = f"_e{len(ns)}"
        ns[table] = {int(m): m for m in tp}
        m = f"_m{len(ns)}"
        ns[tp.__name__] = tp
        cond = f"type({var}) is int" if convert else (
            f"type({var}) is int or isinstance({var}, {tp.__name__})")
        lines.append(f"{indent}{m} = {table}.get({var}) if {cond} else None")
        lines.append(f"{indent}if {m} is None: {bad}")
        return m if convert else var
    if is_record_type(tp):
        fn = f"_rec{len(ns)}"
        ns[fn] = _make_record(tp, convert)
        lines.append(f"{indent}if type({var}) is not tuple and not isinstance({var}, tuple) "
                     f"and type({var}) is not list: {bad}")
        return f"{fn}({var})"
    raise TypeError(f"{tname}.{fname}: unsupported field type {tp!r}")


def _make_single(tp: Any, tname: str, fname: str, convert: bool) -> Callable[[Any], Any]:
    ns: dict[str, Any] = {"_bad": raise_bad}
    lines: list[str] = []
    res = _gen_value_check(tp, "v", tname, fname, ns, lines, "    ", convert)
    src = "def _f(v):\n" + "\n".join(lines) + f"\n    return {res}\n"
    exec(compile(src, f"<codec {tname}.{fname}>", "exec"), ns)
    return typing.cast(Callable[[Any], Any], ns["_f"])


def _make_record(cls: type[Any], convert: bool, offset: int = 0) -> Callable[[Any], Any]:
    """Generate a function checking a record (or an array at `offset`) field by field."""
    tname = cls.__name__
    fields = field_types(cls)
    ns: dict[str, Any] = {"_bad": raise_bad, "_cls": cls, "_new": tuple.__new__,
                          "CodecError": CodecError}
    lines = [f"    if len(a) != {offset + len(fields)}:",
             f"        raise CodecError('{tname}: expected {len(fields)} fields, was ' "
             f"+ str(len(a) - {offset}))"]
    results = []
    for i, (name, tp) in enumerate(fields):
        var = f"v{i}"
        lines.append(f"    {var} = a[{offset + i}]")
        results.append(_gen_value_check(tp, var, tname, name, ns, lines, "    ", convert))
    ret = f"_new(_cls, ({', '.join(results)}{',' if results else ''}))"
    src = "def _f(a):\n" + "\n".join(lines) + f"\n    return {ret}\n"
    exec(compile(src, f"<codec {tname}>", "exec"), ns)
    return typing.cast(Callable[[Any], Any], ns["_f"])


_DECODERS: dict[int, Callable[[Any], Any]] = {
    code: _make_record(cls, True, HEADER_LEN) for code, cls in BY_CODE.items()
}
_VERSIONS: dict[int, int] = {code: cls.VERSION for code, cls in BY_CODE.items()}
_CHECKERS: dict[int, Callable[[Any], Any]] = {
    code: _make_record(cls, False) for code, cls in BY_CODE.items()
}


def check(ev: Any) -> None:
    """Raise CodecError unless `ev` is a well-typed catalogue record."""
    code = getattr(type(ev), "TYPE_CODE", None)
    if code is None or BY_CODE.get(code) is not type(ev):
        raise CodecError(f"{type(ev).__name__} is not an event type of the catalogue")
    _CHECKERS[code](ev)


def index_keys(ev: Any) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The accounts and markets an event is indexed under, in field order, deduplicated."""
    cls = type(ev)
    accts = tuple(dict.fromkeys(getattr(ev, f) for f in cls.ACCOUNT_FIELDS))
    mkts = tuple(dict.fromkeys(getattr(ev, f) for f in cls.MARKET_FIELDS))
    return accts, mkts


def to_jsonable(value: Any) -> Any:
    """Render a record or field value for JSON: names for enums, ints stay ints, hex bytes."""
    if isinstance(value, IntEnum):
        return value.name
    if isinstance(value, bytes):
        return value.hex()
    if is_record_type(type(value)):
        return {k: to_jsonable(v) for k, v in zip(value._fields, value, strict=True)}
    if isinstance(value, tuple | list):
        return [to_jsonable(v) for v in value]
    return value


def envelope_json(env: Envelope) -> dict[str, Any]:
    """The machine form of one event: seq, height, kind, type, cause and payload."""
    return {
        "seq": env.seq,
        "height": env.height,
        "kind": env.kind,
        "type": env.type_name,
        "cause": env.cause,
        "payload": to_jsonable(env.event),
    }


def _make_decoder(cls: type[Any], *, checked: bool) -> Callable[[Any, int], Envelope]:
    """Generate a straight-line decoder for one type.

    `checked`: every field's type is tested in one boolean chain (the path for
    bytes from anywhere). Unchecked: only arity and schema version, for bytes a
    block's events hash has proven to be those that passed the checks at append
    (`decode_verified`). Enums go through their tables either way. Anything
    unusual (a wrong type, an enum value out of range, an old schema version)
    falls through to `_decode_checked`, which names the bad field.
    """
    ns: dict[str, Any] = {"_tnew": tuple.__new__, "_Env": Envelope, "_cls": cls,
                          "_slow": _decode_checked, "CodecError": CodecError}
    fields = field_types(cls)
    conds = [f"len(a) == {HEADER_LEN + len(fields)}", f"a[1] == {cls.VERSION}"]
    if checked:
        conds += ["type(a[2]) is int", "type(a[3]) is int"]
    parts = []
    for i, (name, tp) in enumerate(fields):
        v = f"a[{HEADER_LEN + i}]"
        origin = typing.get_origin(tp)
        if isinstance(tp, type) and issubclass(tp, IntEnum):
            ns[f"_e{i}"] = {int(m): m for m in tp}
            conds.append(f"type({v}) is int")
            parts.append(f"_e{i}[{v}]")
        elif tp in (int, str, bool, bytes):
            conds.append(f"type({v}) is {tp.__name__}")
            parts.append(v)
        elif origin in (typing.Union, types.UnionType) and all(
                a in (int, str, bool, bytes, type(None)) for a in typing.get_args(tp)):
            inner = [a for a in typing.get_args(tp) if a is not type(None)][0]
            conds.append(f"({v} is None or type({v}) is {inner.__name__})")
            parts.append(v)
        else:
            ns[f"_n{i}"] = _make_single(tp, cls.__name__, name, True)
            parts.append(f"_n{i}({v})")
    if not checked:
        conds = conds[:2]
    rec = f"_tnew(_cls, ({', '.join(parts)}{',' if parts else ''}))"
    src = (
        "def _f(a, seq):\n"
        f"    if {' and '.join(conds)}:\n"
        "        try:\n"
        f"            return _tnew(_Env, (seq, a[2], a[3], {rec}))\n"
        "        except (KeyError, TypeError, CodecError):\n"
        "            pass\n"
        "    return _slow(a, seq)\n"
    )
    kind = "checked" if checked else "verified"
    exec(compile(src, f"<{kind} codec {cls.__name__}>", "exec"), ns)
    return typing.cast(Callable[[Any, int], Envelope], ns["_f"])


_FAST: dict[int, Callable[[Any, int], Envelope]] = {
    code: _make_decoder(cls, checked=True) for code, cls in BY_CODE.items()
}


def _make_fast_check(cls: type[Any]) -> Callable[[Any], None]:
    """Generate the writer's check: one straight boolean chain, the careful path on doubt."""
    ns: dict[str, Any] = {"_slow": _CHECKERS[cls.TYPE_CODE]}
    conds = []
    fields = field_types(cls)
    for i, (_name, tp) in enumerate(fields):
        v = f"ev[{i}]"
        origin = typing.get_origin(tp)
        if isinstance(tp, type) and issubclass(tp, IntEnum):
            ns[f"_E{i}"] = tp
            ns[f"_e{i}"] = frozenset(int(m) for m in tp)
            conds.append(f"(type({v}) is _E{i} or (type({v}) is int and {v} in _e{i}))")
        elif tp in (int, str, bool, bytes):
            conds.append(f"type({v}) is {tp.__name__}")
        elif origin in (typing.Union, types.UnionType) and all(
                a in (int, str, bool, bytes, type(None)) for a in typing.get_args(tp)):
            inner = [a for a in typing.get_args(tp) if a is not type(None)][0]
            conds.append(f"({v} is None or type({v}) is {inner.__name__})")
        else:
            conds.append("False")  # nested values: always the careful path
    cond = " and ".join([f"len(ev) == {len(fields)}", *conds])
    src = f"def _f(ev):\n    if not ({cond}):\n        _slow(ev)\n"
    exec(compile(src, f"<fast check {cls.__name__}>", "exec"), ns)
    return typing.cast(Callable[[Any], None], ns["_f"])


_FAST_CHECK: dict[type[Any], tuple[int, int, Callable[[Any], None]]] = {
    cls: (code, cls.VERSION, _make_fast_check(cls)) for code, cls in BY_CODE.items()
}
_INDEX_POS: dict[int, tuple[tuple[int, ...], tuple[int, ...]]] = {
    code: (tuple(cls._fields.index(f) for f in cls.ACCOUNT_FIELDS),
           tuple(cls._fields.index(f) for f in cls.MARKET_FIELDS))
    for code, cls in BY_CODE.items()
}


def check_and_encode(env: Envelope) -> tuple[int, bytes]:
    """Check an envelope's record against the catalogue and encode it: (type code, bytes)."""
    ev = env.event
    entry = _FAST_CHECK.get(type(ev))
    if entry is None:
        raise CodecError(f"{type(ev).__name__} is not an event type of the catalogue")
    code, version, fast_check = entry
    fast_check(ev)
    if type(env.height) is not int or type(env.cause) is not int:
        raise CodecError(f"{type(ev).__name__}: envelope height and cause must be integers")
    return code, _pack_checked(type(ev), (code, version, env.height, env.cause, *ev))


def index_positions(code: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Field positions of the accounts and markets an event type is indexed under."""
    return _INDEX_POS[code]


_TRUSTED: dict[int, Callable[[Any, int], Envelope]] = {
    code: _make_decoder(cls, checked=False) for code, cls in BY_CODE.items()
}


def decode_verified(data: bytes, seq: int) -> Envelope:
    """Decode bytes already proven by their block's events hash (see `_make_decoder`)."""
    arr = _unpackb(data, use_list=False, raw=False)
    try:
        fn = _TRUSTED[arr[0]]
    except (KeyError, TypeError, IndexError):
        return decode(data, seq)
    return fn(arr, seq)


#: What the block writer needs per record class: (code, version, check, account
#: positions, market positions).
WriterPlan = tuple[int, int, Callable[[Any], None], tuple[int, ...], tuple[int, ...]]


def writer_plan(cls: type[Any]) -> WriterPlan | None:
    """(code, version, check, account positions, market positions) for a record class."""
    entry = _FAST_CHECK.get(cls)
    if entry is None:
        return None
    code, version, check_fn = entry
    accts, mkts = _INDEX_POS[code]
    return code, version, check_fn, accts, mkts
