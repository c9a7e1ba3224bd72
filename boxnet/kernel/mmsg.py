"""recvmmsg/sendmmsg through ctypes: many UDP datagrams per system call, answered in place.

Python's socket module reads one datagram per call and turns every sender's address into a tuple of str and
int, then back again to answer. Here a batch lands in one buffer, the sender addresses stay raw sockaddrs, and
each answer is written over its own question in the same slot, so the reply reuses the address as it came.
"""

from __future__ import annotations

import ctypes
import errno
import os
import socket
import struct

MSG_DONTWAIT = 0x40
SLOT = 4096  # one datagram: larger than any answer boxnet gives over UDP (at most 1232 bytes with EDNS)
SOCKADDR = 28  # room for a sockaddr_in6


class _IoVec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


class _MsgHdr(ctypes.Structure):
    _fields_ = [("name", ctypes.c_void_p), ("namelen", ctypes.c_uint32), ("iov", ctypes.c_void_p),
                ("iovlen", ctypes.c_size_t), ("control", ctypes.c_void_p), ("controllen", ctypes.c_size_t),
                ("flags", ctypes.c_int)]  # fmt: skip


class _MMsgHdr(ctypes.Structure):
    _fields_ = [("hdr", _MsgHdr), ("len", ctypes.c_uint)]


_MMSG_SIZE = ctypes.sizeof(_MMsgHdr)
_LEN_OFFSET = _MMsgHdr.len.offset
_NAMELEN_OFFSET = _MsgHdr.namelen.offset
_IOV_SIZE = ctypes.sizeof(_IoVec)
_IOV_LEN_OFFSET = _IoVec.len.offset
_NAMELEN = struct.Struct("=I")


def _functions() -> tuple:
    lib = ctypes.CDLL(None, use_errno=True)
    recv = lib.recvmmsg
    recv.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int, ctypes.c_void_p]
    recv.restype = ctypes.c_int
    send = lib.sendmmsg
    send.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int]
    send.restype = ctypes.c_int
    return recv, send


class Batch:
    """Buffers for up to `size` datagrams: receive a batch, read each, write answers in place, send them.

    One Batch serves every socket of a single-threaded loop: it is emptied by `send` before the next `receive`.
    """

    def __init__(self, size: int = 64) -> None:
        self.size = size
        self._recvmmsg, self._sendmmsg = _functions()
        self.buffer = ctypes.create_string_buffer(size * SLOT)
        self.view = memoryview(self.buffer).cast("B")
        self._names = ctypes.create_string_buffer(size * SOCKADDR)
        base = ctypes.addressof(self.buffer)
        names = ctypes.addressof(self._names)
        self._recv_iov = (_IoVec * size)(*[_IoVec(base + i * SLOT, SLOT) for i in range(size)])
        self._send_iov = (_IoVec * size)(*[_IoVec(base + i * SLOT, 0) for i in range(size)])
        self._recv_msgs = (_MMsgHdr * size)()
        self._send_msgs = (_MMsgHdr * size)()
        for i in range(size):
            for msgs, iov in ((self._recv_msgs, self._recv_iov), (self._send_msgs, self._send_iov)):
                hdr = msgs[i].hdr
                hdr.name = names + i * SOCKADDR
                hdr.namelen = SOCKADDR
                hdr.iov = ctypes.addressof(iov[i])
                hdr.iovlen = 1
        self._recv_ptr = ctypes.addressof(self._recv_msgs)
        self._send_ptr = ctypes.addressof(self._send_msgs)
        self._recv_view = memoryview(self._recv_msgs).cast("B")
        self._send_iov_view = memoryview(self._send_iov).cast("B")
        self._names_view = memoryview(self._names).cast("B")
        gap = _MMSG_SIZE - _LEN_OFFSET - 4
        self._lengths = [struct.Struct("=" + f"{_LEN_OFFSET}xI{gap}x" * n) for n in range(size + 1)]
        self._answered = bytearray(size)

    def receive(self, fd: int) -> list[int]:
        """Reads what is waiting (without blocking) and returns each datagram's length, slot by slot."""
        count = self._recvmmsg(fd, self._recv_ptr, self.size, MSG_DONTWAIT, None)
        if count < 0:
            err = ctypes.get_errno()
            if err in (errno.EAGAIN, errno.EINTR):
                return []
            raise OSError(err, os.strerror(err))
        lengths = list(self._lengths[count].unpack_from(self._recv_view))
        # The kernel shortened each address length to the sender's; give the next batch the full room back.
        # (Each field is written alone: a struct with pad bytes would zero the pointers around it.)
        for slot in range(count):
            _NAMELEN.pack_into(self._recv_view, slot * _MMSG_SIZE + _NAMELEN_OFFSET, SOCKADDR)
        return lengths

    def datagram(self, slot: int, length: int) -> bytes:
        start = slot * SLOT
        return bytes(self.view[start : start + length])

    def sender(self, slot: int) -> tuple[str, int]:
        """The sender's address, as the socket module gives it (IPv4 or IPv6)."""
        start = slot * SOCKADDR
        raw = bytes(self._names_view[start : start + SOCKADDR])
        family, port = struct.unpack_from("=H", raw)[0], struct.unpack_from("!H", raw, 2)[0]
        if family == socket.AF_INET:
            return socket.inet_ntop(socket.AF_INET, raw[4:8]), port
        return socket.inet_ntop(socket.AF_INET6, raw[8:24]), port

    def answer(self, slot: int, message: bytes) -> None:
        """Queues message as the answer to the datagram in slot, written over it."""
        start = slot * SLOT
        self.view[start : start + len(message)] = message
        struct.pack_into("=Q", self._send_iov_view, slot * _IOV_SIZE + _IOV_LEN_OFFSET, len(message))
        self._answered[slot] = 1

    def answer_keeping_id(self, slot: int, tail: bytes) -> None:
        """Queues an answer whose first two bytes are the question's own (a DNS message id): only the rest
        is written."""
        start = slot * SLOT + 2
        self.view[start : start + len(tail)] = tail
        struct.pack_into("=Q", self._send_iov_view, slot * _IOV_SIZE + _IOV_LEN_OFFSET, len(tail) + 2)
        self._answered[slot] = 1

    def send(self, fd: int) -> int:
        """Sends the queued answers, one system call per run of answered slots. The send side mirrors the
        receive side slot for slot (same buffer, same sender address), so nothing is copied to answer; its
        address length stays at the largest sockaddr, which both address families accept.
        A full socket buffer on the client's side loses answers, as it would over any UDP path."""
        sent = 0
        slot = 0
        answered = self._answered
        size = self.size
        while slot < size:
            if not answered[slot]:
                slot += 1
                continue
            end = slot
            while end < size and answered[end]:
                end += 1
            count = self._sendmmsg(fd, self._send_ptr + slot * _MMSG_SIZE, end - slot, MSG_DONTWAIT)
            sent += max(count, 0)
            slot = end
        answered[:] = bytes(size)
        return sent
