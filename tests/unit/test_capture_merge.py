"""Merging nodes' pcapng streams (capture/merge.py) and decoding what the underlay carries (VXLAN, WireGuard)."""

from __future__ import annotations

import os
import struct
import threading

import pytest

from boxnet.capture import decode, pcapng
from boxnet.capture.merge import Input, Merge
from boxnet.errors import InvalidArgument


def _stream(names: list[str], packets: list[tuple[int, int, bytes]], received: int) -> tuple[bytes, bytes]:
    """(header, rest) of a node's stream: its interfaces, then packets (interface, timestamp, data) and
    statistics."""
    header = pcapng.section_header() + b"".join(
        pcapng.interface_description(pcapng.LINKTYPE_ETHERNET, 65535, name) for name in names)
    body = b"".join(pcapng.enhanced_packet(i, t, d, len(d)) for i, t, d in packets)
    stats = b"".join(pcapng.interface_statistics(i, 10, received, 1, 0, 0) for i in range(len(names)))
    return header, body + stats


def _pipe_with(data: bytes) -> int:
    read_fd, write_fd = os.pipe()

    def feed() -> None:
        os.write(write_fd, data)
        os.close(write_fd)

    threading.Thread(target=feed, daemon=True).start()
    return read_fd


def test_streams_merge_into_one_section_on_one_timeline() -> None:
    first = _stream(["web.1.a", "h1:eth0"], [(0, 1_000, b"a1"), (1, 3_000, b"u1"), (0, 5_000, b"a2")], 7)
    second = _stream(["web.2.b"], [(0, 2_000, b"b1"), (0, 4_000, b"b2")], 9)
    stopped: list[str] = []
    inputs = [Input("h1", _pipe_with(b"".join(first)), 2, lambda: stopped.append("h1")),
              Input("h2", _pipe_with(b"".join(second)), 1, lambda: stopped.append("h2"))]
    merge = Merge(inputs)
    merge.start(seconds=5)
    out = bytearray()
    merge.run(out.extend)
    reader = pcapng.Reader()
    packets = reader.feed(bytes(out))
    assert [i.name for i in reader.interfaces] == ["web.1.a", "h1:eth0", "web.2.b"]
    assert [(p.data, p.interface) for p in packets] == [(b"a1", 0), (b"b1", 2), (b"u1", 1), (b"b2", 2), (b"a2", 0)]
    assert [(i.received, i.dropped, i.delivered) for i in reader.interfaces] == [(7, 1, 2), (7, 1, 1), (9, 1, 2)]
    assert sorted(stopped) == ["h1", "h2"]


def test_a_count_ends_the_merge_and_stops_every_stream() -> None:
    first = _stream(["a"], [(0, t, b"x") for t in range(1, 6)], 5)
    second = _stream(["b"], [(0, t + 10, b"y") for t in range(1, 6)], 5)
    stopped: list[str] = []
    merge = Merge([Input("h1", _pipe_with(b"".join(first)), 1, lambda: stopped.append("h1")),
                   Input("h2", _pipe_with(b"".join(second)), 1, lambda: stopped.append("h2"))], count=3)
    merge.start(seconds=5)
    out = bytearray()
    merge.run(out.extend)
    reader = pcapng.Reader()
    assert [p.data for p in reader.feed(bytes(out))] == [b"x", b"x", b"x"]
    assert sorted(stopped) == ["h1", "h2"]


def test_a_stream_that_ends_before_its_interfaces_is_named() -> None:
    header, _ = _stream(["a", "b"], [], 0)
    merge = Merge([Input("h3", _pipe_with(header[: len(header) - 40]), 2, lambda: None)])
    with pytest.raises(InvalidArgument, match="h3"):
        merge.start(seconds=5)


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
