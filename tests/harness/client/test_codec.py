"""Codec round trips and rejections, written against PROTOCOL.md section 1."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from harness.model.changesets import Change, ChangeSet, ChangeSetBuilder, HlcClock, Migration
from harness.model.codec import (
    HLC,
    MAX_SAFE_INTEGER,
    CodecError,
    decode_b64,
    decode_site_id,
    decode_value,
    encode_site_id,
    encode_value,
    hlc_key,
    is_json_safe,
    parse_transaction_id,
)

site_ids = st.binary(min_size=16, max_size=16)
hlcs = st.builds(
    HLC,
    wall_time=st.integers(0, 2**64 - 1),
    counter=st.integers(0, 2**16 - 1),
    site_id=site_ids,
    op_seq=st.integers(0, 2**32 - 1),
)
sql_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False),
    st.text(),
    st.binary(),
)


@given(site_ids)
def test_site_id_round_trips_as_22_url_safe_characters(raw: bytes) -> None:
    text = encode_site_id(raw)
    assert len(text) == 22 and "=" not in text and "+" not in text and "/" not in text
    assert decode_site_id(text) == raw


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "A" * 21,
        "A" * 23,
        "A" * 22 + "==",
        "AAAAAAAAAAAAAAAAAAAA+/",  # standard alphabet
        "AAAAAAAAAAAAAAAAAAAAA!",
        "AAAAAAAAAAAAAAAAAAAAAB",  # non-zero trailing bits: not a canonical 16-byte encoding
        None,
        123,
    ],
)
def test_site_id_rejects_anything_else(bad: object) -> None:
    with pytest.raises(CodecError):
        decode_site_id(bad)


@given(hlcs)
def test_hlc_round_trips_through_30_bytes_of_standard_base64(hlc: HLC) -> None:
    text = hlc.encode()
    raw = base64.b64decode(text)
    assert len(raw) == 30 and len(text) == 40
    assert HLC.decode(text) == hlc
    assert hlc_key(text) == raw


@given(hlcs, hlcs)
def test_hlc_order_is_the_byte_order(a: HLC, b: HLC) -> None:
    assert (a < b) == (a.to_bytes() < b.to_bytes())
    assert (a == b) == (a.to_bytes() == b.to_bytes())


def test_hlc_layout_is_big_endian_fields() -> None:
    site = bytes(range(16))
    raw = HLC(0x0102030405060708, 0x090A, site, 0x0B0C0D0E).to_bytes()
    assert raw == bytes.fromhex("0102030405060708") + bytes.fromhex("090a") + site + bytes.fromhex("0b0c0d0e")


@pytest.mark.parametrize(
    "bad",
    [
        base64.b64encode(b"\x00" * 29).decode(),
        base64.b64encode(b"\x00" * 31).decode(),
        base64.urlsafe_b64encode(b"\xff" * 30).decode(),  # url alphabet
        base64.b64encode(b"\x00" * 30).decode() + "==",  # stray padding
        "not base64 at all!",
        "",
    ],
)
def test_hlc_rejects_wrong_length_or_alphabet(bad: str) -> None:
    with pytest.raises(CodecError):
        HLC.decode(bad)


def test_hlc_fields_out_of_range_are_rejected() -> None:
    with pytest.raises(CodecError):
        HLC(2**64, 0, bytes(16))
    with pytest.raises(CodecError):
        HLC(0, 2**16, bytes(16))
    with pytest.raises(CodecError):
        HLC(0, 0, bytes(15))
    with pytest.raises(CodecError):
        HLC(0, 0, bytes(16), 2**32)


@given(sql_values)
def test_sql_values_round_trip(value: object) -> None:
    wire = encode_value(value)  # type: ignore[arg-type]
    assert is_json_safe(wire)
    assert decode_value(wire) == value


def test_sql_value_encodings_follow_the_protocol() -> None:
    assert encode_value(b"\x00\xff") == {"__bin": "AP8="}
    assert encode_value(MAX_SAFE_INTEGER) == MAX_SAFE_INTEGER
    assert encode_value(MAX_SAFE_INTEGER + 1) == {"__bigint": str(MAX_SAFE_INTEGER + 1)}
    assert encode_value(-MAX_SAFE_INTEGER - 1) == {"__bigint": str(-MAX_SAFE_INTEGER - 1)}


@pytest.mark.parametrize(
    "bad",
    [
        MAX_SAFE_INTEGER + 1,  # an unsafe integer as a bare number
        {"__bin": "not base64!"},
        {"__bigint": "12x"},
        {"__bigint": 12},
        {"other": 1},
        {"__bin": "AA==", "__bigint": "1"},
        [1, 2],
    ],
)
def test_sql_value_decoding_rejects_malformed_forms(bad: object) -> None:
    with pytest.raises(CodecError):
        decode_value(bad)


def test_is_json_safe_spots_raw_bytes_and_unsafe_integers() -> None:
    assert is_json_safe({"a": [1, "x", None, {"__bin": "AA=="}]})
    assert not is_json_safe({"a": b"raw"})
    assert not is_json_safe({"a": [2**60]})


@given(hlcs)
def test_transaction_id_round_trips(hlc: HLC) -> None:
    wall, counter, site = parse_transaction_id(hlc.transaction_id())
    assert (wall, counter, site) == (hlc.wall_time, hlc.counter, hlc.site_id)


@pytest.mark.parametrize("bad", ["1:2", "a:2:" + "A" * 22, "1:2:short", "1:2:" + "A" * 22 + ":x", 5])
def test_transaction_id_rejects_malformed(bad: object) -> None:
    with pytest.raises(CodecError):
        parse_transaction_id(bad)


def test_decode_b64_is_strict() -> None:
    assert decode_b64("AAE=") == b"\x00\x01"
    for bad in ("AAE", "AA E=", "-_8=", "AAF="):
        with pytest.raises(CodecError):
            decode_b64(bad)


def _clock(site: bytes, start: int = 1_700_000_000_000) -> HlcClock:
    now = [start]
    return HlcClock(site, lambda: now[0])


@given(st.lists(st.tuples(st.text(min_size=1, max_size=5), sql_values), min_size=1, max_size=8), site_ids)
def test_change_set_builder_output_parses_back_identically(
    cells: list[tuple[str, object]], site: bytes
) -> None:
    builder = ChangeSetBuilder(_clock(site))
    for i, (column, value) in enumerate(cells):
        builder.set("t", [i, f"k{i}"], column, value)  # type: ignore[arg-type]
    builder.delete("t", [999])
    change_set = builder.build()
    wire = change_set.to_wire()
    assert is_json_safe(wire)
    assert wire["transactionId"] == change_set.hlc.transaction_id()
    assert ChangeSet.from_wire(wire) == change_set
    op_seqs = [c.hlc.op_seq for c in change_set.changes]
    assert op_seqs == list(range(len(cells) + 1))


def test_clock_issues_strictly_increasing_hlcs_within_one_millisecond() -> None:
    clock = _clock(bytes(16))
    issued = [clock.tick() for _ in range(50)]
    assert issued == sorted(issued) and len(set(issued)) == 50


def test_change_set_parser_rejects_protocol_violations() -> None:
    builder = ChangeSetBuilder(_clock(b"\x01" * 16)).set("t", [1], "c", 1)
    wire = builder.build().to_wire()
    broken = dict(wire, transactionId="1:2:" + encode_site_id(b"\x01" * 16))
    with pytest.raises(CodecError):
        ChangeSet.from_wire(broken)
    change = dict(wire["changes"][0], priorValue=1)  # priorValue without priorHlc
    with pytest.raises(CodecError):
        Change.from_wire(change)
    with pytest.raises(CodecError):
        Change.from_wire(dict(wire["changes"][0], type="update"))
    with pytest.raises(CodecError):
        Change.from_wire(dict(wire["changes"][0], priorRow={"a": 1}))  # priorRow only on deletes
    with pytest.raises(CodecError):
        ChangeSet.from_wire(dict(wire, siteId="short"))


def test_migration_round_trips() -> None:
    migration = Migration(
        "create", "main", "t", "CREATE TABLE t (id)", HLC(5, 1, bytes(16), 2), 3, from_table="old"
    )
    assert Migration.from_wire(migration.to_wire()) == migration
