"""Typed event records and the registry that gives each a stable type code.

A record is a `typing.NamedTuple` decorated with `@event(code, kind)`. Its field
annotations are the schema: the codec derives a generated, straight-line
validator per type from them, so decoding checks arity and every field's type
at close to the cost of `msgpack.unpackb` itself.

Supported field types: `int`, `str`, `bool`, `bytes`, an `IntEnum`, another
record type (nested, encoded as an array), `X | None`, and `tuple[X, ...]`.
"""

from __future__ import annotations

import types
import typing
from enum import IntEnum
from typing import Any, ClassVar, Protocol, TypeVar, cast

from ledger.errors import CodecError


class Kind:
    IN = "IN"
    OUT = "OUT"


class EventRecord(Protocol):
    """What every registered record class provides (NamedTuple plus metadata)."""

    TYPE_CODE: ClassVar[int]
    VERSION: ClassVar[int]
    KIND: ClassVar[str]
    ACCOUNT_FIELDS: ClassVar[tuple[str, ...]]
    MARKET_FIELDS: ClassVar[tuple[str, ...]]
    _fields: ClassVar[tuple[str, ...]]

    def _asdict(self) -> dict[str, Any]: ...


R = TypeVar("R")

#: type code -> record class, for both IN (1..63) and OUT (64..127) events.
BY_CODE: dict[int, type[Any]] = {}
#: type name -> record class.
BY_NAME: dict[str, type[Any]] = {}
#: nested (non-event) record classes, by name.
NESTED: dict[str, type[Any]] = {}


def event(code: int, *, accounts: tuple[str, ...] = (), markets: tuple[str, ...] = (),
          version: int = 1) -> typing.Callable[[type[R]], type[R]]:
    """Register a NamedTuple as an event type with a stable code.

    `accounts` and `markets` name the fields the store indexes the event under.
    Codes below 64 are IN events (commands and external facts), 64 and above OUT.
    """

    def wrap(cls: type[R]) -> type[R]:
        if code in BY_CODE:
            raise ValueError(f"type code {code} used twice ({BY_CODE[code].__name__})")
        if not 1 <= code <= 127:
            raise ValueError(f"type code {code} out of range 1..127")
        c = cast(Any, cls)
        c.TYPE_CODE = code
        c.VERSION = version
        c.KIND = Kind.IN if code < 64 else Kind.OUT
        for f in (*accounts, *markets):
            if f not in c._fields:
                raise ValueError(f"{cls.__name__} has no field {f!r} to index")
        c.ACCOUNT_FIELDS = accounts
        c.MARKET_FIELDS = markets
        BY_CODE[code] = cls
        BY_NAME[cls.__name__] = cls
        return cls

    return wrap


def type_code(cls: type[Any]) -> int:
    """The type code `@event` gave a record class.

    `@event` sets it at runtime, so type checkers cannot see `cls.TYPE_CODE` on a
    class named statically (`outcomes.RolledBack`); this reads it for them.
    """
    code: int = cls.TYPE_CODE
    return code


def nested(cls: type[R]) -> type[R]:
    """Register a NamedTuple used as a nested field value (encoded as an array)."""
    NESTED[cls.__name__] = cls
    return cls


def is_record_type(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, tuple) and hasattr(tp, "_fields")


def field_types(cls: type[Any]) -> list[tuple[str, Any]]:
    """The (name, annotation) pairs of a record class, annotations resolved."""
    import ledger.events.commands as commands
    import ledger.events.enums as enums
    import ledger.events.outcomes as outcomes
    import ledger.events.payloads as payloads

    ns: dict[str, Any] = {}
    for mod in (enums, payloads, commands, outcomes):
        ns.update(vars(mod))
    hints = typing.get_type_hints(cls, globalns=ns)
    return [(name, hints[name]) for name in cls._fields]


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

