"""DNS messages: queries parsed, answers built, hostile input refused. dnspython is not used: the expected
bytes are written out, and dig's parser checks the same answers in the integration tests."""

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from boxnet.dns import packet
from boxnet.dns.upstream import parse_upstream


def make_query(name: str, qtype: int = packet.TYPE_A, query_id: int = 0x1234, flags: int = packet.FLAG_RD,
               edns: int = 0) -> bytes:  # fmt: skip
    message = packet.HEADER.pack(query_id, flags, 1, 0, 0, 1 if edns else 0)
    message += packet.encode_name(packet.name_labels(name)) + struct.pack("!HH", qtype, packet.CLASS_IN)
    if edns:
        message += b"\x00" + struct.pack("!HHIH", packet.TYPE_OPT, edns, 0, 0)
    return message


def test_a_query_round_trip_keeps_case_and_id() -> None:
    query = packet.parse_query(make_query("Web.AppNet"))
    assert (query.id, query.name, query.qtype, query.edns_size) == (0x1234, "web.appnet", packet.TYPE_A, 0)
    answer = packet.response(query, packet.NOERROR, [packet.address_record("172.18.0.2")])
    query_id, flags, qd, an, ns, ar = packet.HEADER.unpack_from(answer)
    assert (query_id, qd, an, ns, ar) == (0x1234, 1, 1, 0, 0)
    assert flags & packet.FLAG_QR and flags & packet.FLAG_RD and flags & 0xF == packet.NOERROR
    assert b"\x03Web\x06AppNet\x00" in answer  # 0x20 randomisation survives
    assert answer.endswith(bytes([172, 18, 0, 2]))
    assert packet.summarize(answer) == packet.Summary(packet.NOERROR, False, ("172.18.0.2",))


def test_edns_payload_size_and_opt_record() -> None:
    query = packet.parse_query(make_query("x", edns=4096))
    assert query.edns_size == 4096 and query.udp_limit == packet.EDNS_PAYLOAD
    answer = packet.response(query, packet.NOERROR)
    assert packet.HEADER.unpack_from(answer)[5] == 1  # the OPT record answers the client's
    assert packet.parse_query(make_query("x")).udp_limit == 512


def test_answers_over_the_limit_are_truncated_with_tc() -> None:
    query = packet.parse_query(make_query("many"))
    records = [packet.address_record(f"10.0.0.{i}") for i in range(40)]
    whole = packet.response(query, packet.NOERROR, records)
    assert len(whole) > 512
    cut = packet.response(query, packet.NOERROR, records, limit=query.udp_limit)
    _, flags, qd, an, _, _ = packet.HEADER.unpack_from(cut)
    assert flags & packet.FLAG_TC and qd == 1 and an == 0 and len(cut) <= 512


def test_ptr_names_both_ways() -> None:
    assert packet.address_from_reverse("2.0.18.172.in-addr.arpa") == "172.18.0.2"
    assert packet.address_from_reverse(packet.reverse_name("fd00::2")) == "fd00::2"
    for bad in ("1.2.3.in-addr.arpa", "300.0.0.1.in-addr.arpa", "01.0.0.1.in-addr.arpa", "x.ip6.arpa", "a.b"):
        assert packet.address_from_reverse(bad) is None


@pytest.mark.parametrize(
    ("message", "readable_id"),
    [
        (b"", False),
        (b"\x12\x34\x01", False),  # shorter than a header
        (packet.HEADER.pack(7, 0, 0, 0, 0, 0), True),  # no question
        (packet.HEADER.pack(7, 0, 2, 0, 0, 0) + make_query("a")[12:] * 2, True),  # two questions
        (packet.HEADER.pack(7, 0, 1, 0, 0, 0) + b"\x05ab", True),  # label past the end
        (packet.HEADER.pack(7, 0, 1, 0, 0, 0) + b"\xc0\x0c\x00\x01\x00\x01", True),  # pointer to itself
        (packet.HEADER.pack(7, 0, 1, 0, 0, 0) + b"\x01a\xc0\x0c\x00\x01\x00\x01", True),  # a loop of two
        (packet.HEADER.pack(7, 0, 1, 0, 0, 0) + (b"\x3f" + b"a" * 63) * 5 + b"\x00\x00\x01\x00\x01", True),  # > 255
        (packet.HEADER.pack(7, 0, 1, 0, 0, 0) + b"\x40a\x00\x00\x01\x00\x01", True),  # reserved label type
        (packet.HEADER.pack(7, 0, 1, 0, 0, 1) + b"\x01a\x00\x00\x01\x00\x01\x00\x00\x29", True),  # cut OPT
        (packet.HEADER.pack(7, packet.FLAG_QR, 1, 0, 0, 0) + b"\x01a\x00\x00\x01\x00\x01", False),  # a response
    ],
)
def test_malformed_messages(message: bytes, readable_id: bool) -> None:
    with pytest.raises(packet.FormatError) as caught:
        packet.parse_query(message)
    assert (caught.value.query_id is not None) == readable_id
    error = packet.error_response(message, packet.FORMERR)
    if readable_id:
        assert error is not None and packet.HEADER.unpack_from(error)[1] & 0xF == packet.FORMERR
    if len(message) < 12 or message[2] & 0x80:
        assert error is None  # too short to answer, or an answer itself: dropped, never answered


@settings(max_examples=3000, deadline=None)
@given(st.binary(max_size=600))
def test_parser_fuzz_random_bytes(data: bytes) -> None:
    try:
        query = packet.parse_query(data)
    except packet.FormatError:
        return
    answer = packet.response(query, packet.NOERROR, limit=query.udp_limit)
    assert len(answer) <= query.udp_limit
    packet.summarize(answer)


@settings(max_examples=2000, deadline=None)
@given(st.integers(0, 0xFFFF), st.lists(st.binary(min_size=1, max_size=63), min_size=0, max_size=6),
       st.integers(0, 0xFFFF), st.binary(max_size=40), st.integers(12, 80), st.integers(0, 3))  # fmt: skip
def test_parser_fuzz_mutated_queries(query_id: int, labels: list[bytes], qtype: int, junk: bytes, cut: int,
                                     extra_records: int) -> None:  # fmt: skip
    message = packet.HEADER.pack(query_id, packet.FLAG_RD, 1, 0, 0, extra_records)
    message += packet.encode_name(labels) + struct.pack("!HH", qtype, 1) + junk
    for candidate in (message, message[:cut], message[:cut] + b"\xc0" + bytes([cut % 256])):
        try:
            query = packet.parse_query(candidate)
        except packet.FormatError as exc:
            assert exc.query_id in (None, query_id)
            continue
        assert query.id == query_id
        packet.summarize(packet.response(query, packet.NXDOMAIN))


def test_summarize_survives_garbage() -> None:
    assert packet.summarize(b"").rcode == packet.SERVFAIL
    assert packet.summarize(packet.HEADER.pack(1, 0x8183, 1, 5, 0, 0) + b"\x01a").rcode == packet.NXDOMAIN


def test_upstream_notation() -> None:
    assert parse_upstream("203.0.113.53") == ("203.0.113.53", 53)
    assert parse_upstream("2001:db8::1#5353") == ("2001:db8::1", 5353)
    for bad in ("dns.example", "1.2.3.4#0", "1.2.3.4#x", "1.2.3.4#70000"):
        with pytest.raises(ValueError):
            parse_upstream(bad)
