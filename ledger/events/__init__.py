"""The event catalogue (IN commands, OUT outcomes) and its msgpack codec."""

from ledger.events import commands, outcomes, payloads
from ledger.events.codec import Envelope, check, decode, encode, envelope_json, index_keys
from ledger.events.record import BY_CODE, BY_NAME, Kind

__all__ = [
    "BY_CODE",
    "BY_NAME",
    "Envelope",
    "Kind",
    "check",
    "commands",
    "decode",
    "encode",
    "envelope_json",
    "index_keys",
    "outcomes",
    "payloads",
]
