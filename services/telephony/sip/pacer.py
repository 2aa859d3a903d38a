"""The thread that puts a tick's RTP packets on the wire at the tick's deadline.

The media clock (``media.py``) builds each tick's packets on the event loop a few
milliseconds ahead of the tick (``CANARY_MEDIA_LEAD_MS``) and hands them here as one batch
with its deadline; this thread sleeps until the deadline and sends them. So a frame leaves
on time even when the loop is busy with something else at that moment (a Kafka batch, a
burst of INVITEs, a database answer): asyncio does not preempt, and a gateway's other work
comes in callbacks of several milliseconds, so a clock that sends from the loop is late by
as much. Measured in ``bench/RESULTS.md`` (inbound SIP pacing).

Only bytes and file descriptors cross the thread boundary, never a session: the batch is a
list of ``(fd, packet, sockaddr)`` built by the loop, and each fd is the pacer's own copy
(``os.dup``) of a session's RTP socket, closed by this thread only (``retire``), after every
batch queued before it was sent, so a descriptor number is never reused under a send.

The send is libc's ``sendto`` called through ``ctypes.PyDLL``, which keeps the GIL for the
call: ``socket.sendto`` releases it around every packet, and a busy loop thread would then
take it back each time and make a tick's 200 sends wait 200 switch intervals. A whole batch
is well under a millisecond of holding it (the sockets are non-blocking). Hand-written
because the standard library has no call that sends without releasing the GIL.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import queue
import socket
import struct
import sys
import threading
import time
from typing import Callable

import structlog

log = structlog.get_logger(__name__)

_libc = ctypes.PyDLL(ctypes.util.find_library("c") or None, use_errno=True)
_sendto = _libc.sendto
_sendto.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
_sendto.restype = ctypes.c_ssize_t

# How long the loop thread may keep the GIL once this thread is waiting for it (CPython's
# default is 5 ms, a quarter of a frame).
SWITCH_INTERVAL_S = 0.0005


def sockaddr(ip: str, port: int) -> bytes:
    """The C ``struct sockaddr_in`` / ``sockaddr_in6`` of ``(ip, port)`` (Linux layout)."""
    if ":" in ip:
        return struct.pack("=H", socket.AF_INET6) + struct.pack("!HI", port, 0) + socket.inet_pton(
            socket.AF_INET6, ip) + struct.pack("=I", 0)
    return struct.pack("=H", socket.AF_INET) + struct.pack("!H", port) + socket.inet_pton(socket.AF_INET, ip) \
        + bytes(8)


Packet = tuple[int, bytes, bytes]  # (fd, datagram, sockaddr)


class Pacer:
    """A daemon thread sending batches of datagrams at their deadlines (``time.monotonic``)."""

    def __init__(self, *, priority: str = "normal", on_sent: Callable[[float], None] | None = None,
                 depth: int = 4) -> None:
        self.priority = priority
        self.on_sent = on_sent  # called with each batch's lateness in seconds (a metric)
        self._q: queue.Queue = queue.Queue(maxsize=depth)
        self._thread: threading.Thread | None = None
        self.sent = 0
        self.errors = 0  # datagrams the kernel refused (a full send buffer, a gone address)
        self.dropped = 0  # datagrams of batches that found the queue full (the thread was stuck)

    def start(self) -> None:
        if self._thread is None:
            if sys.getswitchinterval() > SWITCH_INTERVAL_S:
                sys.setswitchinterval(SWITCH_INTERVAL_S)
            self._thread = threading.Thread(target=self._run, name="rtp-pacer", daemon=True)
            self._thread.start()

    def send_at(self, deadline: float, batch: list[Packet]) -> None:
        """Send ``batch`` at ``deadline``, or at once if that has passed. Never blocks."""
        try:
            self._q.put_nowait((deadline, batch))
        except queue.Full:
            self.dropped += len(batch)
            if self.dropped == len(batch) or self.dropped % 1000 < len(batch):
                log.warning("rtp.pacer_behind", dropped=self.dropped)

    def retire(self, fd: int) -> None:
        """Close ``fd`` (a pacer's copy) once every batch queued before this call was sent."""
        if self._thread is None or not self._thread.is_alive():
            os.close(fd)
            return
        self._q.put(("close", fd))  # blocks only while the queue is full: a few ticks at most

    def stop(self, timeout: float = 2.0) -> None:
        if self._thread is not None and self._thread.is_alive():
            self._q.put(None)
            self._thread.join(timeout)
        self._thread = None

    def _run(self) -> None:
        from services.telephony.priority import raise_priority

        raise_priority(self.priority)
        get, monotonic, sleep, send, errno = self._q.get, time.monotonic, time.sleep, _sendto, ctypes.get_errno
        while True:
            item = get()
            if item is None:
                return
            when, batch = item
            if when == "close":
                os.close(batch)
                continue
            delay = when - monotonic()
            if delay > 0:
                sleep(delay)
            late = max(0.0, monotonic() - when)  # when the batch's first packet leaves
            for fd, pkt, addr in batch:
                if send(fd, pkt, len(pkt), 0, addr, len(addr)) < 0:
                    self.errors += 1
                    if self.errors <= 5 or self.errors % 1000 == 0:
                        log.warning("rtp.send_failed", errno=errno(), total=self.errors)
            self.sent += len(batch)
            if self.on_sent is not None:
                self.on_sent(late)
