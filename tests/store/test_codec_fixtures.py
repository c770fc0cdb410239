"""Recorded bytes stay readable and are written again byte for byte.

The fixtures in tests/fixtures were written by the schema-2 code of commit
ed5f814 (tests/fixtures/make_fixtures.py says how). A codec change that writes
other bytes for the same events, or reads them differently, fails here: the
stored bytes of existing chains may only change with a schema version bump and
a migration.
"""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import msgpack
import pytest

from ledger.core.engine import Engine
from ledger.core.refold import apply_block_bytes
from ledger.events.codec import check_and_encode, decode, decode_verified, encode, envelope_json
from ledger.store.blocks import decode_header, events_hash, header_hash

FIXTURES = Path(__file__).parent.parent / "fixtures"


def _load(name: str) -> Any:
    return msgpack.unpackb(gzip.decompress((FIXTURES / name).read_bytes()), raw=False)


RECORDS: list[list[Any]] = _load("codec_v2_records.msgpack.gz")
CHAIN: dict[str, list[list[Any]]] = _load("chain_v2.msgpack.gz")


#: Types added after the fixtures were recorded (issue 11's authority): a chain of
#: ed5f814 holds none; tests/ops/test_authority.py writes and verifies them.
ADDED_SINCE = {"RegisterKey", "OperatorAuth", "KeyRegistered", "CommandUnauthorized"}


def test_the_fixtures_cover_every_type_the_chain_can_hold() -> None:
    from ledger.events.record import BY_NAME

    in_records = {doc["type"] for _, doc in RECORDS}
    assert in_records == set(BY_NAME) - ADDED_SINCE
    in_chains = {decode(d, 1).type_name for blocks in CHAIN.values() for _, ds in blocks
                 for d in ds}
    # BlockCommitted is never emitted: the block header carries the state hash.
    assert in_chains == set(BY_NAME) - {"BlockCommitted"} - ADDED_SINCE


@pytest.mark.parametrize("type_name", sorted({doc["type"] for _, doc in RECORDS}))
def test_recorded_event_bytes_decode_to_the_recorded_event_and_encode_back(
        type_name: str) -> None:
    for data, doc in RECORDS:
        if doc["type"] != type_name:
            continue
        env = decode(data, doc["seq"])
        assert envelope_json(env) == doc
        assert decode_verified(data, doc["seq"]) == env
        assert encode(env) == data
        assert check_and_encode(env)[1] == data


@pytest.mark.parametrize("chain", sorted(CHAIN))
def test_recorded_blocks_reencode_byte_for_byte_and_their_hashes_hold(chain: str) -> None:
    for hb, datas in CHAIN[chain]:
        hdr = decode_header(hb)
        assert header_hash(*hdr[:7]) == hdr.hash
        assert hdr.count == len(datas)
        assert events_hash(datas) == hdr.events_hash
        for k, data in enumerate(datas):
            env = decode(data, hdr.first_seq + k)
            assert env.height == hdr.height
            assert encode(env) == data, f"height {hdr.height} seq {env.seq} {env.type_name}"


def test_folding_the_recorded_chain_from_genesis_reproduces_every_state_hash() -> None:
    engine = Engine()
    typed = Engine()
    prev = None
    for hb, datas in CHAIN["random_chain"]:
        hdr = decode_header(hb)
        if prev is not None:
            assert hdr.prev_hash == prev
        prev = hdr.hash
        assert apply_block_bytes(engine, hdr.height, hdr.first_seq, datas) == hdr.state_hash
        envs = [decode(d, hdr.first_seq + k) for k, d in enumerate(datas)]
        assert typed.apply_block(hdr.height, envs) == hdr.state_hash
    assert engine.full_state_hash() == typed.full_state_hash() == hdr.state_hash
