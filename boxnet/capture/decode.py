"""One line per packet, as tshark prints without options: enough to follow a conversation in a terminal.
Ethernet and Linux cooked (SLL, SLL2) framing; ARP, IPv4, IPv6; TCP, UDP, ICMP, ICMPv6; DNS names on port 53;
VXLAN on 4789 (the frame inside decoded, its VNI and the outer addresses said) and WireGuard on 51820."""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

from boxnet.capture import pcapng

VXLAN_PORT, WIREGUARD_PORT = 4789, 51820
MAX_VXLAN_DEPTH = 2  # an overlay inside an overlay is decoded; deeper nesting is shown as UDP
WIREGUARD_MESSAGES = {1: "Handshake Initiation", 2: "Handshake Response", 3: "Cookie Reply", 4: "Transport Data"}
TCP_FLAGS = ((0x02, "SYN"), (0x10, "ACK"), (0x01, "FIN"), (0x04, "RST"), (0x08, "PSH"), (0x20, "URG"))


@dataclass(frozen=True)
class Decoded:
    source: str
    destination: str
    protocol: str
    info: str
    payload: bytes = b""
    source_port: int = 0
    destination_port: int = 0


def link_payload(linktype: int, frame: bytes) -> tuple[int, bytes] | None:
    """(ethertype, network-layer bytes) of a frame."""
    if linktype == pcapng.LINKTYPE_ETHERNET and len(frame) >= 14:
        ethertype, offset = struct.unpack_from("!H", frame, 12)[0], 14
        if ethertype == 0x8100 and len(frame) >= 18:
            ethertype, offset = struct.unpack_from("!H", frame, 16)[0], 18
        return ethertype, frame[offset:]
    if linktype == pcapng.LINKTYPE_LINUX_SLL and len(frame) >= 16:
        return struct.unpack_from("!H", frame, 14)[0], frame[16:]
    if linktype == pcapng.LINKTYPE_LINUX_SLL2 and len(frame) >= 20:
        return struct.unpack_from("!H", frame, 0)[0], frame[20:]
    return None


def decode(linktype: int, frame: bytes, depth: int = 0) -> Decoded | None:
    """depth: how many VXLAN headers are around this frame (a frame crafted to nest them is cut short)."""
    link = link_payload(linktype, frame)
    if link is None:
        return None
    ethertype, data = link
    try:
        if ethertype == 0x0806:
            return _arp(data)
        if ethertype == 0x0800:
            return _ipv4(data, depth)
        if ethertype == 0x86DD:
            return _ipv6(data, depth)
    except (struct.error, ValueError, IndexError):
        return Decoded("?", "?", "?", "truncated or malformed")
    return Decoded("?", "?", f"0x{ethertype:04x}", f"ethertype 0x{ethertype:04x}")


def _arp(data: bytes) -> Decoded:
    operation = struct.unpack_from("!H", data, 6)[0]
    sender, target = str(ipaddress.IPv4Address(data[14:18])), str(ipaddress.IPv4Address(data[24:28]))
    info = f"Who has {target}? Tell {sender}" if operation == 1 else f"{sender} is at {data[8:14].hex(':')}"
    return Decoded(sender, target, "ARP", info)


def _ipv4(data: bytes, depth: int = 0) -> Decoded:
    header_length = (data[0] & 0x0F) * 4
    total = struct.unpack_from("!H", data, 2)[0]
    protocol = data[9]
    source, destination = str(ipaddress.IPv4Address(data[12:16])), str(ipaddress.IPv4Address(data[16:20]))
    return _transport(protocol, data[header_length:total or None], source, destination, 1, depth)


def _ipv6(data: bytes, depth: int = 0) -> Decoded:
    payload_length, next_header = struct.unpack_from("!HB", data, 4)
    source, destination = str(ipaddress.IPv6Address(data[8:24])), str(ipaddress.IPv6Address(data[24:40]))
    return _transport(next_header, data[40 : 40 + payload_length], source, destination, 58, depth)


def _transport(protocol: int, data: bytes, source: str, destination: str, icmp: int, depth: int = 0) -> Decoded:
    if protocol == 6:
        sport, dport, seq, ack, offset_flags, window = struct.unpack_from("!HHIIHH", data)
        flags = ", ".join(name for bit, name in TCP_FLAGS if offset_flags & bit)
        payload = data[(offset_flags >> 12) * 4 :]
        info = f"{sport} → {dport} [{flags}] Seq={seq} Ack={ack} Win={window} Len={len(payload)}"
        return Decoded(source, destination, "TCP", info, payload, sport, dport)
    if protocol == 17:
        sport, dport, length = struct.unpack_from("!HHH", data)
        payload = data[8:length] if length >= 8 else data[8:]
        info = f"{sport} → {dport} Len={len(payload)}"
        if dport == VXLAN_PORT and len(payload) >= 8 + 14 and payload[0] & 0x08 and depth < MAX_VXLAN_DEPTH:
            return _vxlan(payload, source, destination, depth + 1)
        if WIREGUARD_PORT in (sport, dport) and payload[:1] and payload[0] in WIREGUARD_MESSAGES \
                and payload[1:4] == b"\x00\x00\x00":  # fmt: skip
            kind = WIREGUARD_MESSAGES[payload[0]]
            return Decoded(source, destination, "WireGuard", f"{kind}, {len(payload)} bytes (encrypted)", payload,
                           sport, dport)  # fmt: skip
        if 53 in (sport, dport):
            return Decoded(source, destination, "DNS", _dns(payload) or info, payload, sport, dport)
        return Decoded(source, destination, "UDP", info, payload, sport, dport)
    if protocol == icmp:
        kind, code = data[0], data[1]
        names = {0: "Echo (ping) reply", 8: "Echo (ping) request", 3: "Destination unreachable",
                 128: "Echo (ping) request", 129: "Echo (ping) reply", 135: "Neighbor Solicitation",
                 136: "Neighbor Advertisement", 1: "Destination unreachable"}  # fmt: skip
        label = "ICMPv6" if icmp == 58 else "ICMP"
        return Decoded(source, destination, label, f"{names.get(kind, f'type {kind}')} (code {code})", data[8:])
    return Decoded(source, destination, f"IP proto {protocol}", f"{len(data)} bytes")


def _vxlan(payload: bytes, source: str, destination: str, depth: int) -> Decoded:
    """The frame a VXLAN packet carries, decoded, said to be inside VXLAN (its VNI, between which nodes)."""
    vni = int.from_bytes(payload[4:7], "big")
    inner = decode(pcapng.LINKTYPE_ETHERNET, payload[8:], depth)
    outer = f"VXLAN VNI {vni} {source} → {destination}"
    if inner is None:
        return Decoded(source, destination, "VXLAN", outer, payload[8:])
    return Decoded(inner.source, inner.destination, inner.protocol, f"{inner.info} [{outer}]", inner.payload,
                   inner.source_port, inner.destination_port)


def _dns(payload: bytes) -> str:
    from boxnet.dns import packet

    if len(payload) < 12:
        return ""
    try:
        labels, offset = packet.read_name(payload, 12)
        (qtype,) = struct.unpack_from("!H", payload, offset)
    except (packet.FormatError, struct.error):
        return ""
    name = b".".join(labels).decode(errors="replace") or "."
    kind = packet.TYPE_NAMES.get(qtype, f"TYPE{qtype}")
    query_id, flags = struct.unpack_from("!HH", payload)
    if flags & packet.FLAG_QR:
        summary = packet.summarize(payload)
        rcode = packet.RCODE_NAMES.get(summary.rcode, "")
        return f"Standard query response 0x{query_id:04x} {kind} {name} {rcode} {' '.join(summary.answers)}".rstrip()
    return f"Standard query 0x{query_id:04x} {kind} {name}"


def line(number: int, seconds: float, interface: str, decoded: Decoded | None, length: int) -> str:
    if decoded is None:
        return f"{number:6d} {seconds:10.6f} {interface:<16} (undecoded frame, {length} bytes)"
    return (f"{number:6d} {seconds:10.6f} {interface:<16} {decoded.source} → {decoded.destination} "
            f"{decoded.protocol} {length} {decoded.info}")  # fmt: skip
