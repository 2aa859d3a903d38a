"""The RTP pacer thread: a batch leaves at its deadline, not before; a retired descriptor is
closed only after the batches queued before it; a full queue drops (and counts) rather than
blocking the loop; and a media clock with a lead puts its ticks' packets through it."""

import asyncio
import os
import socket
import struct
import time

import pytest

from services.telephony.sip.media import MediaClock, MediaSession, bind_rtp_pair
from services.telephony.sip.pacer import Pacer, sockaddr
from services.telephony.sip.rtp import parse_rtp


def _pair():
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("127.0.0.1", 0))
    rx.settimeout(2)
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tx.setblocking(False)
    return rx, tx


def test_sockaddr_layouts():
    v4 = sockaddr("127.0.0.1", 5004)
    assert len(v4) == 16
    assert struct.unpack("=H", v4[:2])[0] == socket.AF_INET
    assert struct.unpack("!H", v4[2:4])[0] == 5004 and v4[4:8] == bytes([127, 0, 0, 1])
    v6 = sockaddr("::1", 5006)
    assert len(v6) == 28
    assert struct.unpack("=H", v6[:2])[0] == socket.AF_INET6
    assert struct.unpack("!H", v6[2:4])[0] == 5006 and v6[8:24] == socket.inet_pton(socket.AF_INET6, "::1")


def test_a_batch_leaves_at_its_deadline_in_order():
    rx, tx = _pair()
    pacer = Pacer()
    pacer.start()
    try:
        addr = sockaddr(*rx.getsockname())
        deadline = time.monotonic() + 0.1
        pacer.send_at(deadline, [(tx.fileno(), b"one", addr), (tx.fileno(), b"two", addr)])
        first = rx.recv(100)
        got_at = time.monotonic()
        assert (first, rx.recv(100)) == (b"one", b"two")
        assert got_at >= deadline  # never early
        past = time.monotonic() - 1.0  # a deadline already gone: sent at once
        pacer.send_at(past, [(tx.fileno(), b"late", addr)])
        assert rx.recv(100) == b"late"
        assert pacer.sent == 3 and pacer.errors == 0
    finally:
        pacer.stop()
        rx.close()
        tx.close()


def test_a_retired_descriptor_closes_after_the_batches_before_it():
    rx, tx = _pair()
    fd = os.dup(tx.fileno())
    pacer = Pacer()
    pacer.start()
    try:
        pacer.send_at(time.monotonic() + 0.05, [(fd, b"last words", sockaddr(*rx.getsockname()))])
        pacer.retire(fd)
        assert rx.recv(100) == b"last words"
        pacer.stop()
        with pytest.raises(OSError):
            os.fstat(fd)  # closed by the pacer
    finally:
        pacer.stop()
        rx.close()
        tx.close()


def test_a_send_the_kernel_refuses_is_counted_not_raised():
    rx, tx = _pair()
    pacer = Pacer()
    pacer.start()
    try:
        pacer.send_at(0.0, [(tx.fileno(), b"x", b"\x00" * 16)])  # AF_UNSPEC: refused
        pacer.send_at(0.0, [(tx.fileno(), b"after", sockaddr(*rx.getsockname()))])
        assert rx.recv(100) == b"after"
        assert pacer.errors == 1
    finally:
        pacer.stop()
        rx.close()
        tx.close()


def test_a_full_queue_drops_and_counts_without_blocking():
    pacer = Pacer(depth=1)  # never started: nothing drains the queue
    pacer.send_at(0.0, [(0, b"a", b"")])
    t = time.monotonic()
    pacer.send_at(0.0, [(0, b"b", b""), (0, b"c", b"")])
    assert time.monotonic() - t < 0.1
    assert pacer.dropped == 2


async def test_a_clock_with_a_lead_sends_every_tick_through_the_pacer():
    clock = MediaClock(lead_s=0.008)
    rtp, rtcp = await bind_rtp_pair("127.0.0.1", None)
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    sink.setblocking(False)
    s = MediaSession("t", clock, rtp, rtcp, on_dtmf=lambda *a: None, on_media_timeout=lambda: None)
    s.set_remote("127.0.0.1", sink.getsockname()[1], 0, "PCMU", 101)
    try:
        s.start(send=True)
        await asyncio.sleep(0.5)
        seqs = []
        while True:
            try:
                seqs.append(parse_rtp(sink.recv(2048)).seq)
            except BlockingIOError:
                break
        assert len(seqs) >= 15  # ~25 ticks in 0.5 s
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
        assert clock.pacer is not None and clock.pacer.sent >= len(seqs)
        fd = s._tx_fd
        assert fd is not None
    finally:
        s.close()
        await clock.close()
        sink.close()
    with pytest.raises(OSError):
        os.fstat(fd)  # the pacer's copy of the socket went with the call
