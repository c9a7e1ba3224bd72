"""The hand-assembled BPF: instruction encoding, labels, and the layout the connect-time redirect shares
with its maps. The programs themselves run in tests/integration/test_ports.py, against the kernel's verifier."""

from __future__ import annotations

import struct

import pytest

from boxnet.firewall import socket_redirect as layout
from boxnet.kernel import bpf_insn as asm
from boxnet.kernel.bpf_insn import FP, R0, R1, R2, R6, Label


def decode(code: bytes) -> list[tuple[int, int, int, int, int]]:
    """(opcode, dst, src, offset, immediate) per instruction slot."""
    return [(op, regs & 0xF, regs >> 4, off, imm) for op, regs, off, imm in struct.iter_unpack("<BBhi", code)]


def test_instructions_encode_as_the_kernel_documents() -> None:
    # Reference bytes from `llvm-mc -triple bpfel -show-encoding` (LLVM 14) for the same instructions; the
    # store of an immediate, which that syntax lacks, from the kernel's instruction-set document.
    assert asm.assemble([asm.mov(R6, R1)]) == bytes.fromhex("bf16000000000000")
    assert asm.assemble([asm.mov_imm(R0, 1)]) == bytes.fromhex("b700000001000000")
    assert asm.assemble([asm.exit_()]) == bytes.fromhex("9500000000000000")
    assert asm.assemble([asm.load(R2, R6, 36)]) == bytes.fromhex("6162240000000000")
    assert asm.assemble([asm.load(R2, R6, 64, size=8)]) == bytes.fromhex("7962400000000000")
    assert asm.assemble([asm.store(FP, -8, R0, size=8)]) == bytes.fromhex("7b0af8ff00000000")
    assert asm.assemble([asm.store_imm(FP, -8, 0)]) == bytes.fromhex("620af8ff00000000")
    assert asm.assemble([asm.alu("add", R2, -8)]) == bytes.fromhex("07020000f8ffffff")
    assert asm.assemble([asm.call(asm.MAP_LOOKUP_ELEM)]) == bytes.fromhex("8500000001000000")
    assert asm.assemble([asm.load_map_fd(R1, 7)]) == bytes.fromhex("1811000007000000" + "00" * 8)
    assert asm.assemble([asm.load_imm64(R2, 0x1_0000_0002)]) == bytes.fromhex("1802000002000000" "0000000001000000")


def test_jumps_count_slots_after_themselves() -> None:
    code = asm.assemble([
        asm.jump_if(R0, "==", 0, "out"),
        asm.load_imm64(R2, 5),  # two slots
        Label("out"),
        asm.jump_if_reg(R0, "!=", R2, "out"),
        asm.goto("top"),
        Label("top"),
        asm.exit_(),
    ])  # fmt: skip
    slots = decode(code)
    assert slots[0][0] == 0x15 and slots[0][3] == 2
    assert slots[3][0] == 0x5D and slots[3][1:3] == (R0, R2) and slots[3][3] == -1
    assert slots[4][0] == 0x05 and slots[4][3] == 0


def test_label_mistakes_are_caught_before_the_kernel_sees_them() -> None:
    with pytest.raises(ValueError, match="undefined label 'nowhere'"):
        asm.assemble([asm.goto("nowhere")])
    with pytest.raises(ValueError, match="defined twice"):
        asm.assemble([Label("a"), Label("a")])


def test_map_entries_are_in_network_order_as_bpf_sock_addr_holds_them() -> None:
    assert layout.endpoint_bytes("172.17.0.2", 80) == bytes([172, 17, 0, 2, 0, 80, 0, 0])
    assert layout.port_key(None, 8080) == bytes([0, 0, 0, 0, 0x1F, 0x90, 0, 0])
    assert layout.port_key("127.0.0.1", 8081) == bytes([127, 0, 0, 1, 0x1F, 0x91, 0, 0])
    assert layout.decode_endpoint(layout.endpoint_bytes("10.1.2.3", 65535)) == ("10.1.2.3", 65535)
    assert layout.local_key("198.51.100.2") == bytes([198, 51, 100, 2])


@pytest.mark.parametrize(("program", "maps"), [
    (layout.connect4(0xDEAD_BEEF_0000_0042, 3, 4, 5), {3, 4, 5}),
    (layout.getpeername4(5), {5}),
])  # fmt: skip
def test_programs_are_well_formed(program: bytes, maps: set[int]) -> None:
    slots = decode(program)
    assert len(program) % 8 == 0 and slots[-1][0] == 0x95  # ends in exit
    assert slots[-2] == (0xB7, R0, 0, 0, layout.ALLOW)  # whatever happens, the connection is allowed
    for index, (op, _, _, off, _) in enumerate(slots):
        if op & 0x07 == 0x05 and op not in (0x85, 0x95):  # a jump lands inside the program
            assert 0 <= index + 1 + off < len(slots)
    map_fds = {imm for op, _, src, _, imm in slots if op == 0x18 and src == asm.PSEUDO_MAP_FD}
    assert map_fds == maps


def test_connect4_carries_the_namespace_cookie_whole() -> None:
    slots = decode(layout.connect4(0xDEAD_BEEF_0000_0042, 3, 4, 5))
    index = next(i for i, slot in enumerate(slots) if slot[0] == 0x18 and slot[2] == 0)
    low, high = slots[index][4] & 0xFFFFFFFF, slots[index + 1][4] & 0xFFFFFFFF
    assert high << 32 | low == 0xDEAD_BEEF_0000_0042


def test_the_address_watch_can_turn_the_redirect_off_itself() -> None:
    """A local address that cannot be removed turns the redirect off from the watch thread; close() must
    then not try to join that very thread (which would raise, leaving the programs attached)."""
    import os
    import threading

    from boxnet.engine.connect_redirect import ConnectRedirect

    redirect = ConnectRedirect()
    stop_read, stop_write = os.pipe2(os.O_CLOEXEC)
    reasons: list[str] = []

    def watch() -> None:
        redirect._watch = (threading.current_thread(), stop_write)
        redirect._turn_off("a local address could not be forgotten")
        reasons.append(redirect.reason)

    thread = threading.Thread(target=watch)
    thread.start()
    thread.join()
    assert reasons == ["host connections to published ports go through NAT: a local address could not be forgotten"]
    assert os.read(stop_read, 1) == b"x" and not redirect.enabled
    os.close(stop_read)
