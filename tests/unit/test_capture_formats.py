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
    counter = pcapng.Reader()  # counting only, fed in pieces that cut blocks anywhere
    for i in range(0, len(data), 5):
        assert counter.feed(data[i : i + 5], keep_packets=False) == []
    assert counter.packets == 1 and counter.interfaces[0].dropped == 3 and counter.interfaces[0].name == "es01"
    original = pcapng.interface_description(1, 65535, "eth0", "x", "port 1")
    renamed = pcapng.rename_interface(original, "web", "eth0 of web")
    again = pcapng.Reader()
    again.feed(pcapng.section_header() + renamed)
    assert (again.interfaces[0].name, again.interfaces[0].description) == ("web", "eth0 of web")


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


def test_nft_listing_parsed_into_rules_with_counters() -> None:
    from boxnet.diag.topology import parse_rules

    listing = """table inet boxnet { # handle 7
\tset bridges { # handle 2
\t\ttype ifname
\t}
\tchain net-abc { # handle 20
\t\tct state established,related accept comment "x" # handle 21
\t\tcounter packets 4 bytes 336 drop comment "x isolation" # handle 23
\t}
}
"""
    rules = parse_rules(listing, "inet boxnet")
    assert [(r["Chain"], r["Rule"], r["Packets"], r["Bytes"]) for r in rules] == [
        ("net-abc", 'ct state established,related accept comment "x"', None, None),
        ("net-abc", 'counter drop comment "x isolation"', 4, 336),
    ]


def test_topology_renders_text_and_dot() -> None:
    from boxnet.cli.topology import render_dot, render_text

    data = {
        "Host": {"Uplinks": [{"Name": "uplink0", "Ifindex": 2, "Addresses": ["198.51.100.2/24"]}]},
        "Networks": [{"Name": "appnet", "Driver": "bridge", "Bridge": "br-1", "BridgeIfindex": 5, "Internal": False,
                      "Icc": True, "Subnets": ["172.18.0.0/16"], "Containers": ["web"]}],
        "Containers": [{"Name": "web", "Pid": 42, "Netns": "/proc/42/ns/net", "NetnsName": "web",
                        "NetworkMode": "appnet", "Ports": [{"HostIp": "0.0.0.0", "HostPort": 8080,
                                                            "ContainerPort": 80, "Protocol": "tcp"}],
                        "Interfaces": [{"Name": "eth0", "Ifindex": 2, "Mac": "02:42:ac:12:00:02",
                                        "Addresses": ["172.18.0.2/16"], "Network": "appnet", "HostVeth": "veth1",
                                        "HostVethIfindex": 9, "Bridge": "br-1"}],
                        "Rules": [{"Table": "inet boxnet", "Chain": "net-1", "Rule": "counter drop",
                                   "Packets": 3, "Bytes": 252}]}],
    }  # fmt: skip
    text = render_text(data)
    assert "eth0 (ifindex 2)  02:42:ac:12:00:02  172.18.0.2/16  <-> veth1 (ifindex 9) on br-1" in text
    assert "[3 pkts 252 bytes] counter drop" in text and "0.0.0.0:8080->80/tcp" in text
    dot = render_dot(data)
    assert '"container:web" -> "bridge:br-1"' in dot and '"port:0.0.0.0:8080/tcp" -> "container:web"' in dot


def test_trace_targets_and_monitor_output() -> None:
    import pytest

    from boxnet.diag.trace import parse_target, parse_trace
    from boxnet.errors import InvalidArgument

    assert parse_target("web:80") == ("web", 80, "tcp")
    assert parse_target("10.0.0.2:53/udp") == ("10.0.0.2", 53, "udp")
    assert parse_target("web") == ("web", 0, "icmp")
    assert parse_target("[fd00::2]:80") == ("fd00::2", 80, "tcp")
    for bad in ("web:0", "web:x", "web:80/sctp", ":80"):
        with pytest.raises(InvalidArgument):
            parse_target(bad)
    lines = [
        "trace id 1 inet boxnet_trace pre rule tcp sport 40000 meta nftrace set 1 (verdict continue)",
        "trace id 1 inet boxnet prerouting policy accept",
        "trace id 2 inet boxnet forward rule oifname vmap @fwd_out (verdict jump net-a)",
        'trace id 2 inet boxnet net-a rule counter packets 3 bytes 180 drop comment "x isolation" (verdict drop)',
        "trace id 3 inet boxnet prerouting policy accept",  # the retransmission: not part of the first path
        "trace id 4 inet boxnet forward rule oifname vmap @fwd_out (verdict jump net-a)",
    ]
    path, verdict, dropper = parse_trace(lines)
    assert verdict == "drop" and len(path) == 3
    assert dropper == 'inet boxnet net-a: counter drop comment "x isolation"'
    assert parse_trace(lines[:2])[1] == "accept"
