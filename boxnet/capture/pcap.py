"""pcap records as tcpdump writes them, cut out of what each read brings without copying the packets: a
record is a view of the bytes read (which it keeps alive until it is written out). Only a record that
straddles two reads is put together in a buffer, once.

At capture rates the copies are the cost (a 64 KB GSO packet copied five times is most of what boxnet spends
on it; measured with perf in the service-capture benchmark), so each packet is copied once on its way from
the read to the write: when its pcapng block is joined with the others of the same write.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

HEADER_SIZE = 16
MAX_RECORD = 1 << 20  # more than any snaplen boxnet asks for: a longer record is a corrupt stream


class Record(NamedTuple):
    timestamp_ns: int
    data: memoryview | bytes
    original_length: int


def take(buffer: bytearray, chunk: bytes, endian: str, nanoseconds: bool) -> list[Record]:
    """The whole records in buffer + chunk; what is left of an incomplete one stays in buffer."""
    header = struct.Struct(endian + "IIII")
    scale = 1 if nanoseconds else 1000
    found: list[Record] = []
    view = memoryview(chunk)
    start = 0
    while buffer:
        # Complete the record the buffer has begun (its header first, then its data), from the chunk's head.
        while start < len(chunk):
            need = HEADER_SIZE if len(buffer) < HEADER_SIZE else HEADER_SIZE + _length(header, buffer, 0)
            if len(buffer) >= need:
                break
            taken = min(need - len(buffer), len(chunk) - start)
            buffer += view[start : start + taken]
            start += taken
        whole = bytes(buffer)
        consumed = _records(memoryview(whole), header, scale, found)
        del buffer[:consumed]
        if buffer and start >= len(chunk):
            return found  # still incomplete: the next read completes it
        if not consumed:  # cannot happen with a consistent stream; never loop forever on a broken one
            buffer += view[start:]
            return found
    consumed = _records(view[start:], header, scale, found)
    buffer += view[start + consumed :]
    return found


def _records(view: memoryview, header: struct.Struct, scale: int, found: list[Record]) -> int:
    """Appends the whole records at the start of view; returns the bytes they take."""
    offset, size = 0, len(view)
    while offset + HEADER_SIZE <= size:
        seconds, fraction, _, original = header.unpack_from(view, offset)
        end = offset + HEADER_SIZE + _length(header, view, offset)
        if end > size:
            break
        found.append(Record(seconds * 1_000_000_000 + fraction * scale, view[offset + HEADER_SIZE : end], original))
        offset = end
    return offset


def _length(header: struct.Struct, data: bytes | bytearray | memoryview, offset: int) -> int:
    captured = header.unpack_from(data, offset)[2]
    if captured > MAX_RECORD:
        raise ValueError(f"corrupt pcap record: {captured} bytes captured")
    return captured
