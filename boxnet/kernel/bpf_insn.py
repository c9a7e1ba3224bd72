"""eBPF instructions, encoded by hand: the few boxnet's programs need, so that loading one needs no compiler.

Each function returns one instruction (8 bytes) or, for a 64-bit immediate, two. Jumps take a label and
`assemble` resolves them to offsets. The encoding is the kernel's (Documentation/bpf/standardization).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

R0, R1, R2, R3, R4, R5, R6, R7, R8, R9, R10 = range(11)
FP = R10

_LDX_MEM, _STX_MEM, _ST_MEM = 0x61, 0x63, 0x62  # with BPF_W; sizes are or'ed over the low size bits
_SIZES = {4: 0x00, 2: 0x08, 1: 0x10, 8: 0x18}
_ALU64_K, _ALU64_X = 0x07, 0x0F
_ALU_OPS = {"add": 0x00, "sub": 0x10, "and": 0x50, "or": 0x40, "lsh": 0x60, "rsh": 0x70, "mov": 0xB0}
_JMP_K, _JMP_X = 0x05, 0x0D
_JMP_OPS = {"==": 0x10, ">": 0x20, ">=": 0x30, "!=": 0x50, "<": 0xA0, "<=": 0xB0}
_CALL, _EXIT, _JA = 0x85, 0x95, 0x05
PSEUDO_MAP_FD = 1

# Helper function numbers (include/uapi/linux/bpf.h, ___BPF_FUNC_MAPPER).
MAP_LOOKUP_ELEM = 1
MAP_UPDATE_ELEM = 2
GET_SOCKET_COOKIE = 46
GET_NETNS_COOKIE = 122


@dataclass(frozen=True)
class Insn:
    code: int
    dst: int = 0
    src: int = 0
    off: int = 0
    imm: int = 0
    target: str | None = None  # a label, for jumps

    def encode(self, off: int | None = None) -> bytes:
        return struct.pack("<BBhi", self.code, (self.src << 4) | self.dst, self.off if off is None else off,
                           self.imm)  # fmt: skip


@dataclass(frozen=True)
class Label:
    name: str


def load(dst: int, src: int, off: int, size: int = 4) -> Insn:
    """dst = *(size *)(src + off)"""
    return Insn(_LDX_MEM | _SIZES[size], dst, src, off)


def store(dst: int, off: int, src: int, size: int = 4) -> Insn:
    """*(size *)(dst + off) = src"""
    return Insn(_STX_MEM | _SIZES[size], dst, src, off)


def store_imm(dst: int, off: int, imm: int, size: int = 4) -> Insn:
    """*(size *)(dst + off) = imm"""
    return Insn(_ST_MEM | _SIZES[size], dst, 0, off, imm)


def alu(op: str, dst: int, imm: int) -> Insn:
    """dst <op>= imm, on 64 bits"""
    return Insn(_ALU64_K | _ALU_OPS[op], dst, 0, 0, imm)


def alu_reg(op: str, dst: int, src: int) -> Insn:
    """dst <op>= src, on 64 bits"""
    return Insn(_ALU64_X | _ALU_OPS[op], dst, src)


def mov(dst: int, src: int) -> Insn:
    return alu_reg("mov", dst, src)


def mov_imm(dst: int, imm: int) -> Insn:
    return alu("mov", dst, imm)


def jump_if(dst: int, op: str, imm: int, target: str) -> Insn:
    """if dst <op> imm goto target"""
    return Insn(_JMP_K | _JMP_OPS[op], dst, 0, 0, imm, target)


def jump_if_reg(dst: int, op: str, src: int, target: str) -> Insn:
    """if dst <op> src goto target"""
    return Insn(_JMP_X | _JMP_OPS[op], dst, src, 0, 0, target)


def goto(target: str) -> Insn:
    return Insn(_JA, target=target)


def call(helper: int) -> Insn:
    return Insn(_CALL, imm=helper)


def exit_() -> Insn:
    return Insn(_EXIT)


def load_imm64(dst: int, value: int) -> list[Insn]:
    """dst = value (two instruction slots)."""
    value &= (1 << 64) - 1
    return [Insn(0x18, dst, 0, 0, _signed32(value & 0xFFFFFFFF)), Insn(0, imm=_signed32(value >> 32))]


def load_map_fd(dst: int, map_fd: int) -> list[Insn]:
    """dst = the map behind map_fd (the loader turns the fd into a map pointer)."""
    return [Insn(0x18, dst, PSEUDO_MAP_FD, 0, map_fd), Insn(0)]


def _signed32(value: int) -> int:
    return value - (1 << 32) if value & 0x80000000 else value


def assemble(program: list[Insn | Label | list[Insn]]) -> bytes:
    """Flattens, resolves labels into jump offsets (counted in instruction slots after the jump), encodes."""
    flat: list[Insn] = []
    labels: dict[str, int] = {}
    for item in program:
        if isinstance(item, Label):
            if item.name in labels:
                raise ValueError(f"label {item.name!r} defined twice")
            labels[item.name] = len(flat)
        elif isinstance(item, list):
            flat += item
        else:
            flat.append(item)
    code = bytearray()
    for index, insn in enumerate(flat):
        if insn.target is None:
            code += insn.encode()
        elif insn.target not in labels:
            raise ValueError(f"jump to undefined label {insn.target!r}")
        else:
            code += insn.encode(off=labels[insn.target] - index - 1)
    return bytes(code)
