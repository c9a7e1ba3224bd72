"""pcapng: the blocks boxnet writes (one section, an interface per capture point, packets, statistics) and a
reader for them. Little-endian throughout; timestamps in nanoseconds (if_tsresol 9).

Format: https://www.ietf.org/archive/id/draft-ietf-opsawg-pcapng-02.html
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field

SHB, IDB, EPB, ISB = 0x0A0D0D0A, 0x00000001, 0x00000006, 0x00000005
BYTE_ORDER_MAGIC = 0x1A2B3C4D
OPT_END, OPT_COMMENT = 0, 1
IF_NAME, IF_DESCRIPTION, IF_TSRESOL, IF_FILTER = 2, 3, 9, 11
ISB_STARTTIME, ISB_ENDTIME, ISB_IFRECV, ISB_IFDROP, ISB_USRDELIV = 2, 3, 4, 5, 8
SHB_USERAPPL = 4
LINKTYPE_ETHERNET, LINKTYPE_LINUX_SLL, LINKTYPE_LINUX_SLL2 = 1, 113, 276


def _pad(data: bytes) -> bytes:
    return data + b"\x00" * (-len(data) % 4)


def _option(code: int, value: bytes) -> bytes:
    return struct.pack("<HH", code, len(value)) + _pad(value)


def _options(pairs: list[tuple[int, bytes]]) -> bytes:
    if not pairs:
        return b""
    return b"".join(_option(code, value) for code, value in pairs) + struct.pack("<HH", OPT_END, 0)


def _block(kind: int, body: bytes) -> bytes:
    length = 12 + len(body)
    return struct.pack("<II", kind, length) + body + struct.pack("<I", length)


def section_header(application: str = "boxnet") -> bytes:
    body = struct.pack("<IHHq", BYTE_ORDER_MAGIC, 1, 0, -1) + _options([(SHB_USERAPPL, application.encode())])
    return _block(SHB, body)


def interface_description(linktype: int, snaplen: int, name: str, description: str = "",
                          bpf_filter: str = "") -> bytes:  # fmt: skip
    options = [(IF_NAME, name.encode()), (IF_TSRESOL, b"\x09")]
    if description:
        options.append((IF_DESCRIPTION, description.encode()))
    if bpf_filter:
        options.append((IF_FILTER, b"\x00" + bpf_filter.encode()))
    return _block(IDB, struct.pack("<HHI", linktype, 0, snaplen) + _options(options))


def enhanced_packet_parts(interface: int, timestamp_ns: int, data: bytes | memoryview,
                          original_length: int) -> tuple[bytes, bytes | memoryview, bytes]:  # fmt: skip
    """An enhanced packet block in three pieces (its head, the packet, its tail), to be joined with others:
    the packet is copied once, into the joined write."""
    padding = -len(data) % 4
    length = 12 + 20 + len(data) + padding
    head = struct.pack("<IIIIIII", EPB, length, interface, timestamp_ns >> 32, timestamp_ns & 0xFFFFFFFF, len(data),
                       original_length)  # fmt: skip
    return head, data, b"\x00" * padding + struct.pack("<I", length)


def enhanced_packet(interface: int, timestamp_ns: int, data: bytes | memoryview, original_length: int) -> bytes:
    header = struct.pack("<IIIII", interface, timestamp_ns >> 32, timestamp_ns & 0xFFFFFFFF, len(data),
                         original_length)  # fmt: skip
    padding = -len(data) % 4
    length = 12 + 20 + len(data) + padding
    return b"".join((struct.pack("<II", EPB, length), header, data, b"\x00" * padding, struct.pack("<I", length)))


def interface_statistics(interface: int, timestamp_ns: int, received: int | None, dropped: int | None,
                         delivered: int, started_ns: int) -> bytes:  # fmt: skip
    options = [(ISB_STARTTIME, struct.pack("<II", started_ns >> 32, started_ns & 0xFFFFFFFF)),
               (ISB_ENDTIME, struct.pack("<II", timestamp_ns >> 32, timestamp_ns & 0xFFFFFFFF)),
               (ISB_USRDELIV, struct.pack("<Q", delivered))]  # fmt: skip
    if received is not None:
        options.append((ISB_IFRECV, struct.pack("<Q", received)))
    if dropped is not None:
        options.append((ISB_IFDROP, struct.pack("<Q", dropped)))
    body = struct.pack("<III", interface, timestamp_ns >> 32, timestamp_ns & 0xFFFFFFFF) + _options(options)
    return _block(ISB, body)


# ---- reading ---------------------------------------------------------------------------------------------
@dataclass
class Interface:
    linktype: int
    name: str = ""
    description: str = ""
    received: int | None = None
    dropped: int | None = None
    delivered: int | None = None
    block: bytes = b""  # the whole interface description block, as it came


@dataclass
class Packet:
    interface: int
    timestamp_ns: int
    data: bytes
    original_length: int


@dataclass
class Reader:
    """Parses a pcapng byte stream fed in arbitrary pieces (boxnet's own output)."""

    interfaces: list[Interface] = field(default_factory=list)
    buffer: bytearray = field(default_factory=bytearray)
    packets: int = 0
    skip: int = 0  # bytes of a packet block still to pass over, when only counting

    def feed(self, data: bytes, keep_packets: bool = True) -> list[Packet]:
        """The packets completed by data. With keep_packets False they are only counted, and their bytes are
        never copied: a capture written to a file at full speed needs to know no more."""
        if not keep_packets:
            self._count(data)
            return []
        self.buffer += data
        buffer, size, offset = self.buffer, len(self.buffer), 0
        found: list[Packet] = []
        while offset + 12 <= size:
            kind, length = struct.unpack_from("<II", buffer, offset)
            if length < 12 or length % 4:
                raise ValueError(f"bad pcapng block length {length}")
            if offset + length > size:
                break
            if kind == EPB:
                self.packets += 1
                if keep_packets:
                    interface, high, low, captured, original = struct.unpack_from("<IIIII", buffer, offset + 8)
                    data = bytes(buffer[offset + 28 : offset + 28 + captured])
                    found.append(Packet(interface, (high << 32) | low, data, original))
            else:
                self.block(kind, bytes(buffer[offset + 8 : offset + length - 4]))
            offset += length
        del buffer[:offset]
        return found

    def _count(self, data: bytes) -> None:
        position, size = 0, len(data)
        buffer = self.buffer
        while position < size:
            if self.skip:
                taken = min(self.skip, size - position)
                self.skip -= taken
                position += taken
                continue
            if len(buffer) < 8:
                taken = min(8 - len(buffer), size - position)
                buffer += data[position : position + taken]
                position += taken
                if len(buffer) < 8:
                    return
            kind, length = struct.unpack_from("<II", buffer)
            if length < 12 or length % 4:
                raise ValueError(f"bad pcapng block length {length}")
            if kind == EPB:
                self.packets += 1
                self.skip = length - len(buffer)
                buffer.clear()
                continue
            taken = min(length - len(buffer), size - position)
            buffer += data[position : position + taken]
            position += taken
            if len(buffer) == length:
                self.block(kind, bytes(buffer[8 : length - 4]))
                buffer.clear()

    def block(self, kind: int, body: bytes) -> None:
        if kind == IDB:
            linktype, _, _ = struct.unpack_from("<HHI", body)
            options = dict(_read_options(body[8:]))
            self.interfaces.append(Interface(linktype, options.get(IF_NAME, b"").decode(errors="replace"),
                                             options.get(IF_DESCRIPTION, b"").decode(errors="replace"),
                                             block=_block(IDB, body)))  # fmt: skip
        elif kind == ISB:
            (interface,) = struct.unpack_from("<I", body)
            options = dict(_read_options(body[12:]))
            if interface < len(self.interfaces):
                found = self.interfaces[interface]
                for code, attribute in ((ISB_IFRECV, "received"), (ISB_IFDROP, "dropped"),
                                        (ISB_USRDELIV, "delivered")):  # fmt: skip
                    if code in options:
                        setattr(found, attribute, struct.unpack("<Q", options[code])[0])


def _read_options(data: bytes) -> Iterator[tuple[int, bytes]]:
    offset = 0
    while offset + 4 <= len(data):
        code, length = struct.unpack_from("<HH", data, offset)
        if code == OPT_END:
            return
        yield code, data[offset + 4 : offset + 4 + length]
        offset += 4 + length + (-length % 4)


def rename_interface(block: bytes, name: str, description: str) -> bytes:
    """An interface block as another tool wrote it, with if_name and if_description replaced and every other
    option (the timestamp resolution above all: its packets depend on it) kept."""
    kind, length = struct.unpack_from("<II", block)
    if kind != IDB:
        raise ValueError("not an interface description block")
    linktype, reserved, snaplen = struct.unpack_from("<HHI", block, 8)
    kept = [(code, value) for code, value in _read_options(block[16 : length - 4])
            if code not in (IF_NAME, IF_DESCRIPTION)]  # fmt: skip
    options = [(IF_NAME, name.encode()), (IF_DESCRIPTION, description.encode()), *kept]
    return _block(IDB, struct.pack("<HHI", linktype, reserved, snaplen) + _options(options))


def scan_file(path: str) -> Reader:
    """A Reader's view of a pcapng file (interfaces, counters, number of packets), read block header by block
    header: the packets themselves are skipped, not read."""
    reader = Reader()
    with open(path, "rb") as handle:
        fd, offset, size = handle.fileno(), 0, os.fstat(handle.fileno()).st_size
        while offset + 12 <= size:
            kind, length = struct.unpack("<II", os.pread(fd, 8, offset))
            if length < 12 or length % 4 or offset + length > size:
                break  # a torn last block: what came before it stands
            if kind == EPB:
                reader.packets += 1
            else:
                reader.block(kind, os.pread(fd, length - 12, offset + 8))
            offset += length
    return reader
