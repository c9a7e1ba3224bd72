"""pcapng out and back, one-line decoding, container names in filters."""

import struct

from boxnet.capture import decode, pcapng
from boxnet.capture.filters import substitute_names


def ethernet_ipv4_tcp(payload: bytes = b"hello") -> bytes:
    tcp = struct.pack("!HHIIHHHH", 51234, 9300, 7, 0, (5 << 12) | 0x02, 64240, 0, 0) + payload
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 1, 0, 64, 6, 0, bytes([172, 18, 0, 3]),
                     bytes([172, 18, 0, 2]))  # fmt: skip
    return b"\x02\x42" + b"\x00" * 4 + b"\x02\x42" + b"\x11" * 4 + b"\x08\x00" + ip + tcp


def test_pcapng_round_trip_with_statistics() -> None:
    frame = ethernet_ipv4_tcp()
    data = (pcapng.section_header() + pcapng.interface_description(1, 65535, "es01", "eth0 of es01", "port 9300")
            + pcapng.enhanced_packet(0, 1_700_000_000_123_456_789, frame, len(frame))
            + pcapng.interface_statistics(0, 1_700_000_001 * 10**9, 12, 3, 1, 1_700_000_000 * 10**9))  # fmt: skip
    reader = pcapng.Reader()
    packets = []
    for i in range(0, len(data), 7):  # fed in odd pieces, as a socket delivers them
        packets += list(reader.feed(data[i : i + 7]))
    assert len(packets) == 1 and packets[0].data == frame and packets[0].timestamp_ns == 1_700_000_000_123_456_789
    interface = reader.interfaces[0]
    assert (interface.name, interface.description, interface.linktype) == ("es01", "eth0 of es01", 1)
    assert (interface.received, interface.dropped, interface.delivered) == (12, 3, 1)


def test_decoded_line_names_the_flow() -> None:
    decoded = decode.decode(pcapng.LINKTYPE_ETHERNET, ethernet_ipv4_tcp(b"GET / HTTP/1.1"))
    assert decoded is not None and decoded.protocol == "TCP" and decoded.payload == b"GET / HTTP/1.1"
    assert (decoded.source, decoded.destination, decoded.destination_port) == ("172.18.0.3", "172.18.0.2", 9300)
    text = decode.line(1, 0.5, "es02", decoded, 80)
    assert "172.18.0.3 → 172.18.0.2 TCP 80 51234 → 9300 [SYN]" in text and "es02" in text
    assert decode.decode(pcapng.LINKTYPE_ETHERNET, ethernet_ipv4_tcp()[:30]).info == "truncated or malformed"
    assert decode.decode(pcapng.LINKTYPE_ETHERNET, b"\x00" * 5) is None


def test_container_names_become_addresses_in_filters() -> None:
    names = {"es02": ["172.18.0.3"], "multi": ["10.0.0.2", "fd00::2"], "host": ["10.9.9.9"]}
    assert substitute_names("host es02 and port 9300", names) == "host 172.18.0.3 and port 9300"
    assert substitute_names("src multi", names) == "src (10.0.0.2 or fd00::2)"
    assert substitute_names("host host", names) == "host host"  # keywords stay keywords
    assert substitute_names("(tcp and es02x)", names) == "(tcp and es02x)"
