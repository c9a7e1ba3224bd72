"""Hand-made frames, as a tenant with NET_RAW can write them, and a listener to see which arrive: the tests'
attacker. Run inside a container: `python -m boxnet.testing.frames send KIND ...` writes one frame on
eth0; `python -m boxnet.testing.frames listen HEX SECONDS` counts the frames on eth0 that contain HEX.

Only struct and socket: every field is written by hand, so that a test can lie in any of them.
"""

from __future__ import annotations

import argparse
import ipaddress
import select
import socket
import struct
import sys
import time

from boxnet.checksum import internet_checksum

ETH_P_ALL, ETH_P_IP, ETH_P_ARP, ETH_P_IPV6 = 0x0003, 0x0800, 0x0806, 0x86DD


def mac_bytes(mac: str) -> bytes:
    return bytes(int(part, 16) for part in mac.split(":"))


def ethernet(dst: str, src: str, ethertype: int, payload: bytes) -> bytes:
    return mac_bytes(dst) + mac_bytes(src) + struct.pack("!H", ethertype) + payload


def arp(operation: int, sender_mac: str, sender_ip: str, target_mac: str, target_ip: str) -> bytes:
    return struct.pack("!HHBBH", 1, ETH_P_IP, 6, 4, operation) + mac_bytes(sender_mac) + \
        ipaddress.IPv4Address(sender_ip).packed + mac_bytes(target_mac) + ipaddress.IPv4Address(target_ip).packed


def ipv4(src: str, dst: str, protocol: int, payload: bytes) -> bytes:
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 0x4242, 0, 64, protocol, 0,
                         ipaddress.IPv4Address(src).packed, ipaddress.IPv4Address(dst).packed)  # fmt: skip
    return header[:10] + struct.pack("!H", internet_checksum(header)) + header[12:] + payload


def udp4(src: str, dst: str, sport: int, dport: int, data: bytes) -> bytes:
    segment = struct.pack("!HHHH", sport, dport, 8 + len(data), 0) + data
    pseudo = ipaddress.IPv4Address(src).packed + ipaddress.IPv4Address(dst).packed + struct.pack("!BBH", 0, 17,
                                                                                                 len(segment))
    segment = segment[:6] + struct.pack("!H", internet_checksum(pseudo + segment) or 0xFFFF) + segment[8:]
    return ipv4(src, dst, 17, segment)


def tcp_syn4(src: str, dst: str, sport: int, dport: int) -> bytes:
    segment = struct.pack("!HHIIBBHHH", sport, dport, 0x1000, 0, 5 << 4, 0x02, 64240, 0, 0)
    pseudo = ipaddress.IPv4Address(src).packed + ipaddress.IPv4Address(dst).packed + struct.pack("!BBH", 0, 6,
                                                                                                 len(segment))
    segment = segment[:16] + struct.pack("!H", internet_checksum(pseudo + segment)) + segment[18:]
    return ipv4(src, dst, 6, segment)


def ipv6(src: str, dst: str, next_header: int, payload: bytes, hop_limit: int = 64) -> bytes:
    return struct.pack("!IHBB", 6 << 28, len(payload), next_header, hop_limit) + \
        ipaddress.IPv6Address(src).packed + ipaddress.IPv6Address(dst).packed + payload


def icmpv6(src: str, dst: str, kind: int, code: int, body: bytes) -> bytes:
    message = struct.pack("!BBH", kind, code, 0) + body
    pseudo = ipaddress.IPv6Address(src).packed + ipaddress.IPv6Address(dst).packed + \
        struct.pack("!I3xB", len(message), 58)
    message = message[:2] + struct.pack("!H", internet_checksum(pseudo + message)) + message[4:]
    return ipv6(src, dst, 58, message, hop_limit=255)


def udp6(src: str, dst: str, sport: int, dport: int, data: bytes) -> bytes:
    segment = struct.pack("!HHHH", sport, dport, 8 + len(data), 0) + data
    pseudo = ipaddress.IPv6Address(src).packed + ipaddress.IPv6Address(dst).packed + \
        struct.pack("!I3xB", len(segment), 17)
    segment = segment[:6] + struct.pack("!H", internet_checksum(pseudo + segment) or 0xFFFF) + segment[8:]
    return ipv6(src, dst, 17, segment)


def neighbour_advert(src: str, dst: str, target: str, lladdr: str) -> bytes:
    body = struct.pack("!I", 0x60000000) + ipaddress.IPv6Address(target).packed + b"\x02\x01" + mac_bytes(lladdr)
    return icmpv6(src, dst, 136, 0, body)


def router_advert(src: str, prefix: str) -> bytes:
    network = ipaddress.IPv6Network(prefix)
    information = struct.pack("!BBBBIII", 3, 4, network.prefixlen, 0xC0, 86400, 14400, 0) + \
        network.network_address.packed
    return icmpv6(src, "ff02::1", 134, 0, struct.pack("!BBHII", 64, 0, 1800, 0, 0) + information)


def send(frame: bytes, interface: str = "eth0") -> None:
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW) as sock:
        sock.bind((interface, 0))
        sock.send(frame.ljust(60, b"\0"))


def listen(pattern: bytes, seconds: float, interface: str = "eth0", ready: str = "") -> int:
    """How many frames arriving on the interface (every interface with "") contain pattern, within seconds."""
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL)) as sock:
        if interface:
            sock.bind((interface, 0))
        if ready:
            print(ready, flush=True)
        count, deadline = 0, time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            if select.select([sock], [], [], left)[0]:
                data, address = sock.recvfrom(65536)
                if address[2] != socket.PACKET_OUTGOING and pattern in data:
                    count += 1
        return count


def main() -> int:
    parser = argparse.ArgumentParser(prog="frames")
    commands = parser.add_subparsers(dest="command", required=True)
    listener = commands.add_parser("listen")
    listener.add_argument("pattern")
    listener.add_argument("seconds", type=float)
    listener.add_argument("--interface", default="eth0", help="empty: every interface")
    sender = commands.add_parser("send")
    sender.add_argument("hex", help="the whole frame, in hex")
    args = parser.parse_args()
    if args.command == "listen":
        print(listen(bytes.fromhex(args.pattern), args.seconds, args.interface, ready="listening"), flush=True)
    else:
        send(bytes.fromhex(args.hex))
    return 0


if __name__ == "__main__":
    sys.exit(main())
