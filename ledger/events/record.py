"""Typed event records (msgspec Structs) and the registry that gives each a stable type code.

An event record is a frozen, array-like msgspec Struct derived from `Record`
and decorated with `@event(code, accounts=..., markets=...)`::

    @event(75, accounts=("maker", "taker"), markets=("mkt",))
    class Filled(Record):
        mkt: str
        ...

The decorator registers the code (IN below 64, OUT from 64) and returns the
record class tagged with it, so a record encoded on its own by msgspec is
`[code, field_1, ..., field_n]`, the stored form (codec.py) without its
envelope. Its annotations are the schema: the codec hands them to msgspec,
which checks every field in C on the way in and out. Nested payload records
(`@nested`) are untagged Structs, encoded as arrays.

Records are immutable and hold only ints, strs, bools, bytes, enums, None and
tuples of records, so they can never be part of a reference cycle: they are
not tracked by the cyclic garbage collector (`gc=False`).

Supported field types: `int`, `str`, `bool`, `bytes`, an `IntEnum`, another
record type (nested, encoded as an array), `X | None`, and `tuple[X, ...]`.
Read a record's fields by attribute; `field_names(cls)` lists them in stored
order and `replace(rec, **changes)` makes a changed copy.
"""

from __future__ import annotations

import types
import typing
from enum import IntEnum
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import msgspec

from ledger.errors import CodecError


class Kind:
    IN = "IN"
    OUT = "OUT"


if TYPE_CHECKING:
    # mypy reads `frozen=True` on a base as "every subclass must say frozen=True
    # too"; at run time msgspec inherits it. So mypy sees an unfrozen base.
    _Base = msgspec.Struct
else:
    class _Base(msgspec.Struct, frozen=True):
        pass


class Record(_Base, array_like=True, gc=False, forbid_unknown_fields=True):
    """Base of every event record and nested payload record (frozen at run time).

    The class attributes are set by `@event` on event records (nested records
    have none of them).
    """

    #: stable type code (1..63 IN, 64..127 OUT); also the msgspec tag
    TYPE_CODE: ClassVar[int]
    #: schema version of the stored fields (older versions are upcast on read)
    VERSION: ClassVar[int]
    #: Kind.IN or Kind.OUT
    KIND: ClassVar[str]
    #: fields holding account ids the store indexes the event under
    ACCOUNT_FIELDS: ClassVar[tuple[str, ...]]
    #: fields holding market ids the store indexes the event under
    MARKET_FIELDS: ClassVar[tuple[str, ...]]


R = TypeVar("R")
S = TypeVar("S", bound=msgspec.Struct)

#: type code -> record class, for both IN (1..63) and OUT (64..127) events.
BY_CODE: dict[int, type[Any]] = {}
#: type name -> record class.
BY_NAME: dict[str, type[Any]] = {}
#: nested (non-event) record classes, by name.
NESTED: dict[str, type[Any]] = {}


def event(code: int, *, accounts: tuple[str, ...] = (), markets: tuple[str, ...] = (),
          version: int = 1) -> typing.Callable[[type[R]], type[R]]:
    """Register a `Record` subclass as an event type with a stable code.

    `accounts` and `markets` name the fields the store indexes the event under.
    Codes below 64 are IN events (commands and external facts), 64 and above OUT.
    Returns the class tagged with `code` (a subclass adding only the tag).
    """

    def wrap(cls: type[R]) -> type[R]:
        if not (isinstance(cls, type) and issubclass(cls, Record)):
            raise TypeError(f"{getattr(cls, '__name__', cls)!r}: an event record is a "
                            "`class Name(Record)` with annotated fields")
        if code in BY_CODE:
            raise ValueError(f"type code {code} used twice ({BY_CODE[code].__name__})")
        if not 1 <= code <= 127:
            raise ValueError(f"type code {code} out of range 1..127")
        for f in (*accounts, *markets):
            if f not in cls.__struct_fields__:
                raise ValueError(f"{cls.__name__} has no field {f!r} to index")
        # The same fields, tagged with the code: msgspec's tag of an array-like
        # Struct is its first element, as the type code is in the stored form
        # (`tag_field` only names the tag in map encodings, which records never use).
        meta: Any = type(cls)
        tagged: Any = meta(cls.__name__, (cls,), {
            "__module__": cls.__module__, "__qualname__": cls.__qualname__,
            "__doc__": cls.__doc__}, tag=code, tag_field="type_code")
        tagged.TYPE_CODE = code
        tagged.VERSION = version
        tagged.KIND = Kind.IN if code < 64 else Kind.OUT
        tagged.ACCOUNT_FIELDS = accounts
        tagged.MARKET_FIELDS = markets
        BY_CODE[code] = tagged
        BY_NAME[cls.__name__] = tagged
        result: type[R] = tagged
        return result

    return wrap


def type_code(cls: type[Any]) -> int:
    """The type code `@event` gave a record class."""
    code: int = cls.TYPE_CODE
    return code


def nested(cls: type[R]) -> type[R]:
    """Register a `Record` subclass used as a nested field value (encoded as an array)."""
    if not (isinstance(cls, type) and issubclass(cls, Record)):
        raise TypeError(f"{cls!r}: a nested record is a `class Name(Record)`")
    NESTED[cls.__name__] = cls
    return cls


def is_record_type(tp: Any) -> bool:
    """Is `tp` a record class (an event or a nested payload record)?"""
    return isinstance(tp, type) and issubclass(tp, Record)


def field_names(cls: type[Any]) -> tuple[str, ...]:
    """The field names of a record class, in stored order."""
    names: tuple[str, ...] = cls.__struct_fields__
    return names


def replace(rec: S, **changes: Any) -> S:
    """A copy of a record (or an Envelope) with some fields changed."""
    return msgspec.structs.replace(rec, **changes)


def field_types(cls: type[Any]) -> list[tuple[str, Any]]:
    """The (name, annotation) pairs of a record class, annotations resolved."""
    return [(f.name, f.type) for f in msgspec.structs.fields(cls)]


def describe(tp: Any) -> str:
    """A short human name of a field type, for error messages."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in typing.get_args(tp) if a is not type(None)]
        return f"{describe(inner[0])} or null"
    if origin is tuple:
        return f"array of {describe(typing.get_args(tp)[0])}"
    if isinstance(tp, type) and issubclass(tp, IntEnum):
        return f"{tp.__name__} code"
    if is_record_type(tp):
        return f"{tp.__name__} array"
    return getattr(tp, "__name__", str(tp))


def raise_bad(type_name: str, field: str, expected: str, value: Any) -> typing.NoReturn:
    shown = repr(value)
    if len(shown) > 60:
        shown = shown[:57] + "..."
    raise CodecError(
        f"{type_name}.{field}: expected {expected}, was {type(value).__name__} {shown}"
    )
