"""Another node's tcpdumps relayed in frames (capture/relay.py), and what the underlay carries decoded
(VXLAN, WireGuard)."""

from __future__ import annotations

import json
import struct

import pytest

from boxnet.capture import decode, pcap, pcapng, relay
from boxnet.capture.relay import FrameReader, RelayedSource
from boxnet.capture.session import Capture


def _pcap_records(packets: list[tuple[int, bytes]]) -> bytes:
    """pcap records (nanosecond timestamps, little-endian) without the file header, as tcpdump goes on."""
    return b"".join(struct.pack("<IIII", t // 1_000_000_000, t % 1_000_000_000, len(d), len(d)) + d
                    for t, d in packets)  # fmt: skip


INFO = {"description": "eth0 in a task", "filter": "tcp", "linktype": pcapng.LINKTYPE_ETHERNET, "snaplen": 65535,
        "nanoseconds": True, "endian": "<"}  # fmt: skip


def test_frames_survive_any_split() -> None:
    stream = relay.frame(relay.INFO, 0, b"[]") + relay.frame(relay.DATA, 3, b"x" * 1000) + relay.frame(
        relay.STATS, 0, b"[[1, 0]]")
    for size in (1, 5, 7, 999, len(stream)):
        reader, found = FrameReader(), []
        for start in range(0, len(stream), size):
            found += reader.feed(stream[start : start + size])
        assert found == [(relay.INFO, 0, b"[]"), (relay.DATA, 3, b"x" * 1000), (relay.STATS, 0, b"[[1, 0]]")]
    with pytest.raises(ValueError, match="bad frame"):
        FrameReader().feed(b"\x09\x00\x01\x00\x00\x00x")


def test_relayed_sources_merge_with_each_other_on_one_timeline() -> None:
    """Two nodes' tcpdumps, delivered as the relay does: one pcapng, interfaces named as the nodes said, packets
    in time order, each interface's counters from its node's STATS frame."""
    sources, stopped = [], []
    for name, packets, stats in (("web.1.a", [(1_000, b"a1"), (5_000, b"a2")], [7, 1]),
                                 ("web.2.b", [(2_000, b"b1"), (4_000, b"b2")], [9, 0])):  # fmt: skip
        source = RelayedSource.from_info({**INFO, "name": name}, lambda n=name: stopped.append(n))
        records = _pcap_records(packets)
        source.deliver(records[:7])  # a record split between two chunks
        source.deliver(records[7:])
        source.end(stats)
        sources.append(source)
    capture = Capture([], "tcp", relayed=sources, reorder_seconds=0)
    capture.start()
    out = bytearray()
    capture.run(out.extend)
    for source in sources:
        source.close()
    reader = pcapng.Reader()
    packets = reader.feed(bytes(out))
    assert [i.name for i in reader.interfaces] == ["web.1.a", "web.2.b"]
    assert [(p.data, p.interface) for p in packets] == [(b"a1", 0), (b"b1", 1), (b"b2", 1), (b"a2", 0)]
    assert [(i.received, i.dropped, i.delivered) for i in reader.interfaces] == [(7, 1, 2), (9, 0, 2)]
    assert sorted(stopped) == ["web.1.a", "web.2.b"]


def test_pcap_records_are_cut_out_of_reads_split_anywhere() -> None:
    packets = [(i * 1_000, bytes([i]) * (i * 37 % 300)) for i in range(1, 40)]
    stream = _pcap_records(packets)
    for size in (1, 3, 16, 17, 100, 1000, len(stream)):
        buffer, found = bytearray(), []
        for start in range(0, len(stream), size):
            found += pcap.take(buffer, stream[start : start + size], "<", True)
        assert [(r.timestamp_ns, bytes(r.data)) for r in found] == packets and not buffer, size


def test_the_info_frame_says_what_the_manager_needs() -> None:
    source = RelayedSource.from_info({**INFO, "name": "h1:eth0", "filter": "udp port 4789"}, lambda: None)
    described = json.loads(FrameReader().feed(relay.describe([source], "tcp"))[0][2])
    assert described == [{**INFO, "name": "h1:eth0", "filter": "udp port 4789"}]
    source.close()


def _udp_frame(sport: int, dport: int, payload: bytes) -> bytes:
    udp = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0, 64, 17, 0, bytes([198, 18, 0, 2]),
                     bytes([198, 18, 0, 3]))
    return b"\x02" * 6 + b"\x04" * 6 + b"\x08\x00" + ip + udp


def test_vxlan_is_decoded_to_the_frame_inside() -> None:
    inner_tcp = struct.pack("!HHIIHHHH", 40000, 80, 7, 0, 0x5018, 500, 0, 0) + b"GET / HTTP/1.1\r\n"
    inner_ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(inner_tcp), 1, 0, 64, 6, 0, bytes([10, 0, 1, 3]),
                           bytes([10, 0, 1, 4])) + inner_tcp
    inner = b"\x02" * 6 + b"\x06" * 6 + b"\x08\x00" + inner_ip
    frame = _udp_frame(51000, 4789, b"\x08\x00\x00\x00" + (4097).to_bytes(3, "big") + b"\x00" + inner)
    decoded = decode.decode(pcapng.LINKTYPE_ETHERNET, frame)
    assert decoded is not None
    assert (decoded.source, decoded.destination, decoded.protocol) == ("10.0.1.3", "10.0.1.4", "TCP")
    assert decoded.payload == b"GET / HTTP/1.1\r\n"
    assert "[VXLAN VNI 4097 198.18.0.2 → 198.18.0.3]" in decoded.info


def test_wireguard_is_named_and_its_payload_stays_opaque() -> None:
    frame = _udp_frame(51820, 51820, b"\x04\x00\x00\x00" + b"\x99" * 40)
    decoded = decode.decode(pcapng.LINKTYPE_ETHERNET, frame)
    assert decoded is not None and decoded.protocol == "WireGuard"
    assert decoded.info.startswith("Transport Data")
    # Not WireGuard's framing on its port (reserved bytes set): plain UDP.
    other = decode.decode(pcapng.LINKTYPE_ETHERNET, _udp_frame(51820, 51820, b"\x04\x01\x00\x00"))
    assert other is not None and other.protocol == "UDP"


def test_filters_and_snaplens_that_would_be_options_or_absurd_are_refused() -> None:
    from boxnet.capture.filters import check_filter, check_snaplen
    from boxnet.errors import InvalidArgument

    assert check_filter("tcp port 80 and host 10.0.1.3") == "tcp port 80 and host 10.0.1.3"
    for bad in ("-w/etc/cron.d/x", " -r /etc/shadow", "tcp\nport 80"):
        with pytest.raises(InvalidArgument, match="invalid capture filter"):
            check_filter(bad)
    for bad in (0, -1, 262145):
        with pytest.raises(InvalidArgument, match="invalid snaplen"):
            check_snaplen(bad)


def test_nested_vxlan_is_decoded_twice_then_shown_as_udp() -> None:
    payload = b"GET /"
    frame = _udp_frame(40000, 80, payload)
    for _ in range(50):  # a crafted frame, VXLAN in VXLAN 50 times: no recursion error
        frame = _udp_frame(51000, 4789, b"\x08\x00\x00\x00" + (7).to_bytes(3, "big") + b"\x00" + frame)
    decoded = decode.decode(pcapng.LINKTYPE_ETHERNET, frame)
    assert decoded is not None and decoded.protocol == "UDP" and decoded.info.count("VXLAN VNI 7") == 2


def test_a_corrupt_record_length_is_an_error_not_a_growing_buffer() -> None:
    with pytest.raises(ValueError, match="corrupt pcap record"):
        pcap.take(bytearray(), struct.pack("<IIII", 1, 0, 1 << 30, 1 << 30) + b"x" * 32, "<", True)
