"""The msgpack codec of the log: compact arrays with type codes, strictly checked, via msgspec.

Stored form of one event (the key is its `seq`, u64 big-endian, so the value
does not repeat it)::

    [type_code, schema_version, height, cause_seq, field_1, ..., field_n]

`cause_seq` is the seq of the IN event an OUT event answers (0 for IN events).
Nested records are arrays, enums their integer values, `None` is nil. These
are the bytes schema 2 has always stored (tests/store/test_codec_fixtures.py
re-encodes recorded chains byte for byte).

msgspec does the work in C. Each type gets one msgspec decoder of its whole
stored array, a fixed-length tuple typed `(Literal[code], Literal[version],
int, int, <the record's field types>)`: one call checks arity, header and
every field (strictly: no bool for an int, no float for an int, enum values
in range, nested arrays of the right length) and builds typed values, and the
record is made from them. Encoding packs the same tuple with msgspec's
encoder and, on the writer's path, decodes the bytes back with that decoder,
so what is stored is proven to read back as the record it came from.

Where msgspec alone is laxer than this codec, the codec adds the rule: an enum
field takes only its own enum or a plain int in range (not another IntEnum
whose value happens to fit), a bytes field only `bytes` (not a bytearray), and
ints beyond msgpack's 64 bits and strings with lone surrogates are a
`CodecError`, never a bare OverflowError or UnicodeEncodeError. An int subclass
in an int field, or a str subclass in a str field, is stored as its plain value.

Anything unusual on the way in (an older schema version, a non-canonical but
valid encoding, or a bad field) takes the careful path, which upcasts old
versions through `UPCASTERS` and names the bad type and field in its
`CodecError`.
"""

from __future__ import annotations

import re
import types
import typing
from collections.abc import Callable
from enum import IntEnum
from typing import Any, Literal, NamedTuple

import msgspec

from ledger.errors import CodecError
from ledger.events import commands, outcomes  # noqa: F401  (registers the catalogue)
from ledger.events.envelope import Envelope as Envelope  # re-exported: the codec's envelope
from ledger.events.record import BY_CODE, describe, field_types, is_record_type, raise_bad

HEADER_LEN = 4


#: (type_code, old_version) -> function turning the old field list into the new one.
UPCASTERS: dict[tuple[int, int], Callable[[list[Any]], list[Any]]] = {}

_encode = msgspec.msgpack.Encoder().encode
_decode_any = msgspec.msgpack.Decoder().decode
_astuple = msgspec.structs.astuple
_DecodeFailure = (msgspec.ValidationError, msgspec.DecodeError)


# Offset of the type code in stored bytes, by the first byte (the array header):
# fixarray -> 1, array16 -> 3, array32 -> 5. Type codes are positive fixints (< 128).
# Anything else maps to offset 0, whose byte is no known type code. Folds read the
# code of proven bytes as `data[CODE_AT[data[0]]]` to skip events without decoding.
CODE_AT = [1 if b & 0xF0 == 0x90 else 3 if b == 0xDC else 5 if b == 0xDD else 0
           for b in range(256)]


class TypePlan(NamedTuple):
    """What the codec knows of one event type, computed once."""

    cls: type[Any]
    code: int
    version: int
    #: the decoder of the whole stored array (checks everything in one C call)
    decode: Callable[[bytes], tuple[Any, ...]]
    #: (position, enum class) of enum fields: own enum or a plain int only
    enums: tuple[tuple[int, type[IntEnum]], ...]
    #: (position, annotation) of fields needing the recursive strict check
    #: (bytes, tuples and nested records that hold enums or bytes)
    deep: tuple[tuple[int, Any], ...]
    #: positions of the fields holding indexed account and market ids
    accounts: tuple[int, ...]
    markets: tuple[int, ...]


def _needs_strict(tp: Any) -> bool:
    """Does a value of annotation `tp` need a check msgspec's round trip would not make?"""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return any(_needs_strict(a) for a in typing.get_args(tp) if a is not type(None))
    if origin is tuple:
        return _needs_strict(typing.get_args(tp)[0])
    if tp is bytes or (isinstance(tp, type) and issubclass(tp, IntEnum)):
        return True
    if is_record_type(tp):
        return any(_needs_strict(t) for _, t in field_types(tp))
    return False


def _strict_ok(value: Any, tp: Any) -> bool:
    """The checks msgspec's round trip would not make (see the module docstring)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None:
            return True
        tp = [a for a in typing.get_args(tp) if a is not type(None)][0]
        origin = typing.get_origin(tp)
    if origin is tuple:
        inner = typing.get_args(tp)[0]
        return all(_strict_ok(v, inner) for v in value) if isinstance(value,
                                                                       tuple | list) else True
    if tp is bytes:
        return type(value) is bytes
    if isinstance(tp, type) and issubclass(tp, IntEnum):
        return type(value) is tp or type(value) is int
    if is_record_type(tp):
        if not is_record_type(type(value)):
            return True  # a plain array in a nested field: msgspec checks its items
        return all(_strict_ok(getattr(value, name), t) for name, t in field_types(tp))
    return True


def _literal(value: int) -> Any:
    return Literal[value]


def _plan(cls: type[Any]) -> TypePlan:
    fields = field_types(cls)
    names = [n for n, _ in fields]
    wire: Any = tuple.__class_getitem__((_literal(cls.TYPE_CODE), _literal(cls.VERSION), int,
                                         int, *[t for _, t in fields]))
    dec = msgspec.msgpack.Decoder(wire).decode
    enums = tuple((i, t) for i, (_, t) in enumerate(fields)
                  if isinstance(t, type) and issubclass(t, IntEnum))
    deep = tuple((i, t) for i, (_, t) in enumerate(fields)
                 if _needs_strict(t) and not (isinstance(t, type) and issubclass(t, IntEnum)))
    return TypePlan(cls, cls.TYPE_CODE, cls.VERSION, dec, enums, deep,
                    tuple(names.index(f) for f in cls.ACCOUNT_FIELDS),
                    tuple(names.index(f) for f in cls.MARKET_FIELDS))


#: type code -> plan, and the same by record class.
PLANS: dict[int, TypePlan] = {code: _plan(cls) for code, cls in sorted(BY_CODE.items())}
PLAN_OF: dict[type[Any], TypePlan] = {p.cls: p for p in PLANS.values()}
# By the byte at CODE_AT: the plan of a known code, else None (256 entries).
_PLAN_AT: list[TypePlan | None] = [PLANS.get(b) for b in range(256)]


# -- decoding --------------------------------------------------------------------------


def _plan_at(data: bytes) -> TypePlan | None:
    """The plan of the type code where canonical bytes hold it (None: look carefully)."""
    if not data:
        return None
    at = CODE_AT[data[0]]
    return _PLAN_AT[data[at]] if at < len(data) else None


def _typed(data: bytes) -> tuple[TypePlan, tuple[Any, ...]] | None:
    """The plan and checked stored array of canonical, current bytes (None: look carefully)."""
    plan = _plan_at(data)
    if plan is None:
        return None
    try:
        return plan, plan.decode(data)
    except _DecodeFailure:
        return None


def decode(data: bytes, seq: int) -> Envelope:
    """Decode stored bytes (the event at `seq`) into an envelope, checking every field.

    Raises CodecError naming the type and field of anything malformed.
    """
    hit = _typed(data)
    if hit is None:
        return _decode_careful(data, seq)
    plan, t = hit
    return Envelope(seq, t[2], t[3], plan.cls(*t[HEADER_LEN:]))


#: Bytes a block's events hash proves were written by the checked writer decode
#: the same way: msgspec checks every field at no extra cost.
decode_verified = decode


def decode_record(data: bytes) -> Any:
    """The typed record of stored bytes, without its envelope (the fold's decode)."""
    hit = _typed(data)
    if hit is None:
        return _decode_careful(data, 0).event
    plan, t = hit
    return plan.cls(*t[HEADER_LEN:])


def decode_event(data: bytes) -> tuple[int, int, Any]:
    """Decode stored bytes to (height, cause, record) without building an envelope."""
    env = decode(data, 0)
    return env.height, env.cause, env.event


def _decode_careful(data: bytes, seq: int) -> Envelope:
    """The careful path: precise errors, upcasting, non-canonical but valid encodings."""
    try:
        arr = _decode_any(data)
    except Exception as exc:  # msgspec raises DecodeError; be sure nothing else escapes
        raise CodecError(f"event at seq {seq}: not valid msgpack ({exc})") from None
    # Only an array whose type code and schema version are ints is an event
    # (True and 1.0 compare equal to 1; a bin payload is no array).
    if (type(arr) is not list or not arr or type(arr[0]) is not int or arr[0] not in PLANS
            or len(arr) < 2 or type(arr[1]) is not int):
        raise CodecError(f"event at seq {seq}: not an event array with a known type code "
                         f"(was {str(arr)[:40]})")
    if len(arr) < HEADER_LEN:
        raise CodecError(f"event at seq {seq}: expected an event array")
    code, version, height, cause = arr[:HEADER_LEN]
    if type(height) is not int or type(cause) is not int:
        raise CodecError(f"event at seq {seq}: height and cause must be integers")
    plan = PLANS[code]
    fields = arr[HEADER_LEN:]
    if version != plan.version:
        up = UPCASTERS.get((code, version))
        if up is None:
            raise CodecError(f"{plan.cls.__name__}: unknown schema version {version!r}")
        fields = up(list(fields))
    n = len(field_types(plan.cls))
    if len(fields) != n:
        raise CodecError(f"{plan.cls.__name__}: expected {n} fields, was {len(fields)}")
    # Re-pack the plain values in the current form and let the typed decoder
    # check them; a failure is named by its path.
    try:
        t = plan.decode(_encode([code, plan.version, height, cause, *fields]))
    except msgspec.ValidationError as exc:
        _raise_at_path(plan.cls, exc, [code, plan.version, height, cause, *fields])
    return Envelope(seq, height, cause, plan.cls(*t[HEADER_LEN:]))


_PATH = re.compile(r"\$((?:\[\d+\])+)`?\s*$")


def _raise_at_path(cls: type[Any], exc: msgspec.ValidationError,
                   arr: list[Any] | tuple[Any, ...]) -> typing.NoReturn:
    """Turn msgspec's error at `$[i][j]...` of the stored array into a named CodecError."""
    msg = str(exc)
    m = _PATH.search(msg)
    if m is None:
        raise CodecError(f"{cls.__name__}: {msg}") from None
    path = [int(x) for x in re.findall(r"\d+", m.group(1))]
    # The first index is in the stored array: the header, then the record's fields.
    first = path[0] - HEADER_LEN
    if first < 0:
        raise CodecError(f"{cls.__name__}: bad event header ({msg})") from None
    owner: type[Any] = cls
    name, tp = field_types(cls)[first]
    value: Any = arr[path[0]]
    i = 1
    while i < len(path):
        k = path[i]
        origin = typing.get_origin(tp)
        if origin in (typing.Union, types.UnionType):
            tp = [a for a in typing.get_args(tp) if a is not type(None)][0]
            continue
        if typing.get_origin(tp) is tuple:
            tp = typing.get_args(tp)[0]
            value = _item(value, k)
            name = f"{name}[{k}]"
        elif is_record_type(tp):
            sub = field_types(tp)
            if k >= len(sub):
                break
            owner = tp
            name, tp = sub[k]
            value = _item(value, k)
        else:
            break
        i += 1
    if "length" in msg and is_record_type(tp) and isinstance(value, list | tuple):
        n = len(field_types(tp))
        raise CodecError(f"{tp.__name__}: expected {n} fields, was {len(value)} "
                         f"(in {owner.__name__}.{name})") from None
    raise_bad(owner.__name__, name, describe(tp), value)


def _item(value: Any, k: int) -> Any:
    if isinstance(value, list | tuple) and k < len(value):
        return value[k]
    if is_record_type(type(value)):
        return _astuple(value)[k]
    return value


# -- encoding --------------------------------------------------------------------------


def _refuse_unknown(ev: Any) -> typing.NoReturn:
    raise CodecError(f"{type(ev).__name__} is not an event type of the catalogue")


def pack_event(plan: TypePlan, height: object, cause: object, values: tuple[Any, ...]) -> bytes:
    """Encode and check one event's stored bytes from its field values (the writer's path).

    `values` are the record's fields (`msgspec.structs.astuple`). The bytes are
    decoded back by the type's checking decoder, so they are proven to read
    back as a well-typed record; see the module docstring for the few rules the
    codec adds. Raises CodecError naming the type and field.
    """
    if type(height) is not int or type(cause) is not int:
        raise CodecError(f"{plan.cls.__name__}: envelope height and cause must be integers")
    arr = (plan.code, plan.version, height, cause) + values
    try:
        data: bytes = _encode(arr)
    except (OverflowError, UnicodeEncodeError, ValueError) as exc:
        raise CodecError(f"{plan.cls.__name__}: a value msgpack cannot encode ({exc})") from None
    except TypeError:
        _raise_unencodable(plan, values)
    try:
        plan.decode(data)
    except msgspec.ValidationError as exc:
        _raise_at_path(plan.cls, exc, arr)
    for pos, enum in plan.enums:
        v = values[pos]
        if type(v) is not enum and type(v) is not int:
            raise_bad(plan.cls.__name__, field_types(plan.cls)[pos][0], describe(enum), v)
    for pos, tp in plan.deep:
        if not _strict_ok(values[pos], tp):
            raise_bad(plan.cls.__name__, field_types(plan.cls)[pos][0], describe(tp),
                      values[pos])
    return data


def _raise_unencodable(plan: TypePlan, values: tuple[Any, ...]) -> typing.NoReturn:
    """Name the field holding a value msgspec has no encoding for (a set, an object)."""
    for (name, tp), v in zip(field_types(plan.cls), values, strict=True):
        try:
            _encode(v)
        except (TypeError, OverflowError, UnicodeEncodeError, ValueError):
            raise_bad(plan.cls.__name__, name, describe(tp), v)
    raise CodecError(f"{plan.cls.__name__}: a value msgpack cannot encode")


def check_and_encode(env: Envelope) -> tuple[int, bytes]:
    """Check an envelope's record against the catalogue and encode it: (type code, bytes)."""
    ev = env.event
    plan = PLAN_OF.get(type(ev))
    if plan is None:
        _refuse_unknown(ev)
    # The envelope's fields are checked by pack_event, not trusted to be the ints they
    # are declared as (read untyped: the compiled codec would refuse a str with a
    # bare TypeError).
    return plan.code, pack_event(plan, getattr(env, "height"), getattr(env, "cause"),  # noqa: B009
                                 _astuple(ev))


def encode(env: Envelope) -> bytes:
    """Encode one envelope to its stored bytes (raises CodecError on a bad record)."""
    return check_and_encode(env)[1]


def check(ev: Any) -> None:
    """Raise CodecError unless `ev` is a well-typed catalogue record."""
    plan = PLAN_OF.get(type(ev))
    if plan is None:
        _refuse_unknown(ev)
    pack_event(plan, 0, 0, _astuple(ev))


def encode_trusted(height: int, cause: int, ev: Any) -> bytes:
    """Encode a record built by the state machine itself (types already right)."""
    data: bytes = _encode((ev.TYPE_CODE, ev.VERSION, height, cause) + _astuple(ev))
    return data


# -- index keys and JSON ---------------------------------------------------------------


def index_keys(ev: Any) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The accounts and markets an event is indexed under, in field order, deduplicated."""
    cls = type(ev)
    accts = tuple(dict.fromkeys(getattr(ev, f) for f in cls.ACCOUNT_FIELDS))
    mkts = tuple(dict.fromkeys(getattr(ev, f) for f in cls.MARKET_FIELDS))
    return accts, mkts


def index_positions(code: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Field positions of the accounts and markets an event type is indexed under."""
    plan = PLANS[code]
    return plan.accounts, plan.markets


def to_jsonable(value: Any) -> Any:
    """Render a record or field value for JSON: names for enums, ints stay ints, hex bytes."""
    if isinstance(value, IntEnum):
        return value.name
    if isinstance(value, bytes):
        return value.hex()
    if is_record_type(type(value)):
        return {k: to_jsonable(getattr(value, k)) for k in value.__struct_fields__}
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
