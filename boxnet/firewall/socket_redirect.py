"""Published ports for the host's own clients, at connect(): two cgroup programs and the layout of their maps.

A TCP connect() from the daemon's network namespace to a published port (127.0.0.1:8080, or any local
address for a port published on every address) is pointed at the container (172.17.0.2:80) before the
connection exists, so its packets go straight over the bridge: no DNAT, no masquerade, no per-packet
rewrite, the throughput of connecting to the container directly. getpeername() still answers with the
address the client dialled. The nft DNAT rules stay as they are and serve everything else: other
namespaces, the outside, UDP, and the host itself whenever these programs are not attached.

Maps (addresses and ports in network byte order, as the kernel hands them to the program):
  ports    {addr u32, port u16, 0 u16} -> {addr u32, port u16, 0 u16}   addr 0: published on every address
  locals   {addr u32} -> {1 u32}                                         the namespace's own addresses
  origins  LRU {socket cookie u64} -> {addr, port, container addr, port} what a redirected socket dialled
"""

from __future__ import annotations

import ipaddress
import struct

from boxnet.kernel import bpf_insn as asm
from boxnet.kernel.bpf_insn import FP, R0, R1, R2, R3, R4, R6, R7, R8, Insn, Label

IPPROTO_TCP = 6
# struct bpf_sock_addr and struct bpf_sock (include/uapi/linux/bpf.h)
_USER_IP4, _USER_PORT, _PROTOCOL, _SK = 4, 24, 36, 64
_SK_SRC_IP4 = 24
ALLOW = 1

PORTS_MAX, LOCALS_MAX, ORIGINS_MAX = 65536, 4096, 65536
ORIGIN_SIZE = 16


def endpoint_bytes(address: str, port: int) -> bytes:
    """A map key or value: IPv4 address and port as the program reads them from struct bpf_sock_addr."""
    return ipaddress.IPv4Address(address).packed + struct.pack("!H", port) + b"\0\0"


def port_key(host_ip: str | None, host_port: int) -> bytes:
    return endpoint_bytes(host_ip or "0.0.0.0", host_port)


def local_key(address: str) -> bytes:
    return ipaddress.IPv4Address(address).packed


LOCAL_VALUE = struct.pack("<I", 1)


def decode_endpoint(raw: bytes) -> tuple[str, int]:
    return str(ipaddress.IPv4Address(raw[:4])), struct.unpack("!H", raw[4:6])[0]


def _map_lookup(map_fd: int, key_offset: int) -> list[Insn]:
    """r0 = the value for the key at fp+key_offset in the map, or 0."""
    return [*asm.load_map_fd(R1, map_fd), asm.mov(R2, FP), asm.alu("add", R2, key_offset),
            asm.call(asm.MAP_LOOKUP_ELEM)]  # fmt: skip


def connect4(netns_cookie: int, ports_fd: int, locals_fd: int, origins_fd: int) -> bytes:
    """The connect4 program. Every TCP connect() of every process on the machine runs it, so it leaves at
    once when the socket is not in the daemon's namespace."""
    key = -8  # the 8-byte lookup key on the stack: {addr, port}
    origin = -32  # the origins value: {dialled addr, dialled port, container addr, container port}
    cookie = -16
    program: list[Insn | Label | list[Insn]] = [
        asm.mov(R6, R1),
        asm.load(R2, R6, _PROTOCOL),
        asm.jump_if(R2, "!=", IPPROTO_TCP, "allow"),
        asm.call(asm.GET_NETNS_COOKIE),
        asm.load_imm64(R2, netns_cookie),
        asm.jump_if_reg(R0, "!=", R2, "allow"),
        # A socket bound to a loopback address cannot reach the container: leave it to DNAT and masquerade.
        asm.load(R2, R6, _SK, size=8),
        asm.load(R2, R2, _SK_SRC_IP4),
        asm.alu("and", R2, 0xFF),
        asm.jump_if(R2, "==", 127, "allow"),
        asm.load(R7, R6, _USER_IP4),
        asm.load(R8, R6, _USER_PORT),
        asm.store(FP, key, R7),
        asm.store(FP, key + 4, R8),
        # Only a connection to one of the namespace's own addresses is published (nft: fib daddr type local).
        asm.mov(R2, R7),
        asm.alu("and", R2, 0xFF),
        asm.jump_if(R2, "==", 127, "local"),
        _map_lookup(locals_fd, key),
        asm.jump_if(R0, "==", 0, "allow"),
        Label("local"),
        _map_lookup(ports_fd, key),  # published on this address
        asm.jump_if(R0, "!=", 0, "found"),
        asm.store_imm(FP, key, 0),
        _map_lookup(ports_fd, key),  # published on every address
        asm.jump_if(R0, "==", 0, "allow"),
        Label("found"),
        asm.load(R1, R0, 0),
        asm.load(R2, R0, 4),
        asm.store(R6, _USER_IP4, R1),
        asm.store(R6, _USER_PORT, R2),
        # Remember what was dialled, and where it went instead, for getpeername().
        asm.store(FP, origin, R7),
        asm.store(FP, origin + 4, R8),
        asm.store(FP, origin + 8, R1),
        asm.store(FP, origin + 12, R2),
        asm.mov(R1, R6),
        asm.call(asm.GET_SOCKET_COOKIE),
        asm.store(FP, cookie, R0, size=8),
        asm.load_map_fd(R1, origins_fd),
        asm.mov(R2, FP),
        asm.alu("add", R2, cookie),
        asm.mov(R3, FP),
        asm.alu("add", R3, origin),
        asm.mov_imm(R4, 0),
        asm.call(asm.MAP_UPDATE_ELEM),
        Label("allow"),
        asm.mov_imm(R0, ALLOW),
        asm.exit_(),
    ]
    return asm.assemble(program)


def getpeername4(origins_fd: int) -> bytes:
    """The getpeername4 program: a redirected socket's peer is what its client dialled, as long as the
    socket is still connected where the redirect sent it (an entry may outlive its socket's connection)."""
    return asm.assemble([
        asm.mov(R6, R1),
        asm.call(asm.GET_SOCKET_COOKIE),
        asm.store(FP, -8, R0, size=8),
        _map_lookup(origins_fd, -8),
        asm.jump_if(R0, "==", 0, "allow"),
        asm.load(R1, R0, 8),
        asm.load(R2, R6, _USER_IP4),
        asm.jump_if_reg(R1, "!=", R2, "allow"),
        asm.load(R1, R0, 12),
        asm.load(R2, R6, _USER_PORT),
        asm.jump_if_reg(R1, "!=", R2, "allow"),
        asm.load(R1, R0, 0),
        asm.store(R6, _USER_IP4, R1),
        asm.load(R1, R0, 4),
        asm.store(R6, _USER_PORT, R1),
        Label("allow"),
        asm.mov_imm(R0, ALLOW),
        asm.exit_(),
    ])  # fmt: skip
