"""RTP/RTCP media for one call leg, driven by a shared 20 ms media clock.

Each clock tick sends exactly one 20 ms frame (prompt audio, a DTMF event packet or
silence) and takes exactly one 20 ms frame of far-end audio out of the jitter buffer
(silence when missing). Because both directions advance on the same tick, the two
recorded tracks are aligned by construction.

What is received is the negotiated far end's only: a packet from an IP other than the
SDP answer's is dropped, and the first well-formed packet from that IP latches the
stream to its source port (symmetric RTP: the far end may send from another port than
the one it receives on); from then on only that address is heard, until an SDP answer
or re-INVITE names a new far end. So a blind sender cannot inject audio or DTMF into a
call. Drops are counted (``rx_dropped``), RTCP the same way.

With SRTP negotiated (``set_remote(srtp=...)``, ``srtp.py``) every RTP and RTCP packet we send
is protected and every one received unprotected before anything else reads it; one that fails
authentication or the replay check is dropped and counted (``rx_unauthenticated``, metric
``canary_srtp_unauthenticated_total``), never played, and cannot latch the stream.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from typing import Callable

import structlog

from services.common import metrics
from services.common.media_store_spool import FrameRecorder, MemoryRecorder
from services.telephony.carrier import FRAME_BYTES, FRAME_MS

from . import g711
from .dtmf import GoertzelDetector, TelephoneEventReceiver, event_packets, tone
from .jitter import JitterBuffer
from .rtcp import ReceiverStats, build_report, parse_compound
from .pacer import Pacer, sockaddr
from .rtp import RtpError, RtpStreamState, parse_rtp
from .srtp import Error as SrtpError
from .srtp import SrtpContext, SrtpKeys

log = structlog.get_logger(__name__)

FRAME_S = FRAME_MS / 1000
SAMPLES_PER_FRAME = FRAME_BYTES // 2
SILENCE = bytes(FRAME_BYTES)


class MediaClock:
    """One absolute 20 ms schedule for every session of a carrier.

    Deadlines are ``t0 + k * 20 ms`` on the loop's monotonic clock, so sleeping late
    once does not push later frames back (no drift). If the loop stalls for more than
    ``max_lag`` the missed ticks are skipped and sessions told, so the RTP timestamps
    still follow wall time instead of bursting stale audio.
    """

    def __init__(self, max_lag: float = 0.2, *, lead_s: float = 0.0, priority: str = "normal") -> None:
        self.max_lag = max_lag
        # With a lead, a tick's packets are built that long before its deadline and sent at
        # the deadline by the pacer thread (pacer.py), so the loop's other work does not
        # make them late; 0: sent from the loop on the tick, as built.
        self.lead_s = lead_s
        self.pacer = Pacer(priority=priority, on_sent=metrics.MEDIA_TICK_LATENESS.labels("sip").observe) \
            if lead_s > 0 else None
        self._batch: list | None = None  # the tick's packets while a paced tick is being built
        self._sessions: list[MediaSession] = []
        self._task: asyncio.Task | None = None
        self.skipped = 0

    def paced(self) -> list | None:
        """The packet list of the tick being built, when the pacer sends it (else None: send now)."""
        return self._batch

    def add(self, session: MediaSession) -> None:
        if session not in self._sessions:
            self._sessions.append(session)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="sip-media-clock")

    def remove(self, session: MediaSession) -> None:
        if session in self._sessions:
            self._sessions.remove(session)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        k = 0
        lateness = metrics.MEDIA_TICK_LATENESS.labels("sip")
        pacer, lead = self.pacer, self.lead_s
        if pacer is not None:
            pacer.start()
        while self._sessions:
            k += 1
            deadline = t0 + k * FRAME_S
            delay = deadline - lead - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            behind = loop.time() - deadline  # negative: ahead of it (by up to the lead)
            if pacer is None:  # else the pacer times the sends themselves
                lateness.observe(max(0.0, behind))
            if behind > self.max_lag:
                missed = int(behind / FRAME_S)
                k += missed
                self.skipped += missed
                for s in list(self._sessions):
                    s.skip(missed)
            # Every call's frame is sent before any call's receive side is processed, so
            # the last call's send does not wait for everyone's playout and recording.
            sessions = list(self._sessions)
            self._batch = [] if pacer is not None else None
            self._each(sessions, "tick_send")
            if self._batch is not None:
                batch, self._batch = self._batch, None
                pacer.send_at(deadline, batch)
            self._each(sessions, "tick_receive")

    def _each(self, sessions: list[MediaSession], phase: str) -> None:
        for s in sessions:
            if s not in self._sessions:
                continue
            try:
                getattr(s, phase)()
            except Exception:  # noqa: BLE001 - one broken call must not stop the others
                log.exception("rtp.tick_failed", call_id=s.call_id)
                self.remove(s)

    async def close(self) -> None:
        self._sessions.clear()
        self._batch = None
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001
                pass
        if self.pacer is not None:
            await asyncio.to_thread(self.pacer.stop)


class _Socket(asyncio.DatagramProtocol):
    def __init__(self, handler: Callable[[bytes, tuple[str, int]], None]) -> None:
        self.handler = handler
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport) -> None:  # type: ignore[override]
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:  # type: ignore[override]
        self.handler(data, addr)

    def error_received(self, exc: Exception) -> None:  # type: ignore[override]
        pass  # ICMP unreachable before the far end opens its port: harmless


async def bind_rtp_pair(host: str, port_range: tuple[int, int] | None) -> tuple[_Socket, _Socket]:
    """Bind RTP on an even port and RTCP on the next one (RFC 3550 11)."""
    loop = asyncio.get_running_loop()
    lo, hi = port_range or (20000, 60000)
    last: OSError | None = None
    for _ in range(64):
        port = random.randrange(lo, hi - 1) & ~1
        rtp = _Socket(lambda d, a: None)
        try:
            await loop.create_datagram_endpoint(lambda: rtp, local_addr=(host, port))
        except OSError as exc:
            last = exc
            continue
        rtcp = _Socket(lambda d, a: None)
        try:
            await loop.create_datagram_endpoint(lambda: rtcp, local_addr=(host, port + 1))
        except OSError as exc:
            last = exc
            assert rtp.transport is not None
            rtp.transport.close()
            continue
        return rtp, rtcp
    raise OSError(f"no free RTP port pair: {last}")


class MediaSession:
    """RTP send/receive, DTMF, RTCP, recording and media-timeout for one call."""

    def __init__(
        self,
        call_id: str,
        clock: MediaClock,
        rtp: _Socket,
        rtcp: _Socket,
        *,
        on_dtmf: Callable[[str, int, str], None],
        on_media_timeout: Callable[[], None],
        media_timeout_s: float = 30.0,
        rtcp_interval_s: float = 5.0,
        jitter_depth: int = 3,
    ) -> None:
        self.call_id = call_id
        self.clock = clock
        self._rtp, self._rtcp = rtp, rtcp
        rtp.handler, rtcp.handler = self._on_rtp, self._on_rtcp
        self._on_dtmf, self._on_media_timeout = on_dtmf, on_media_timeout
        self.media_timeout_s = media_timeout_s
        self.rtcp_interval_s = rtcp_interval_s
        self.local_port: int = rtp.transport.get_extra_info("sockname")[1]  # type: ignore[union-attr]
        self.remote: tuple[str, int] | None = None
        self.remote_rtcp: tuple[str, int] | None = None
        # Where the far end's RTP / RTCP is accepted from, once its first packet came.
        self.latched: tuple[str, int] | None = None
        self.latched_rtcp: tuple[str, int] | None = None
        self.rx_dropped = 0
        self.rx_unauthenticated = 0  # SRTP/SRTCP packets that failed authentication or replay
        self.srtp: SrtpContext | None = None
        self.codec_pt = 0
        self._encode = g711.ulaw_encode
        self._decode = g711.ulaw_decode
        self.dtmf_pt: int | None = None
        self.out = RtpStreamState()
        self.cname = f"canary-{os.urandom(4).hex()}"
        self.stats = ReceiverStats()
        self.jitter = JitterBuffer(depth=jitter_depth)
        self._te = TelephoneEventReceiver()
        self._inband: GoertzelDetector | None = None
        self._seen_te = False
        self._rx_fifo = b""
        self._sending = False
        self._running = False
        self.closed = False
        # playback
        self._play_buf = b""
        self._play_off = 0
        self._play_fut: asyncio.Future[bool] | None = None
        # DTMF send queue: ("event", payload, first) or ("audio", pcm frame)
        self._dtmf_q: list[tuple] = []
        self._dtmf_done: asyncio.Future[None] | None = None
        self._event_ts = 0
        # audio out and recording
        self._audio_cb: Callable[[bytes], None] | None = None
        self._sent_cb: Callable[[bytes], None] | None = None  # what we sent, per tick (a stream's outbound track)
        self._feed: Callable[[], bytes | None] | None = None  # what we send when nothing plays (a dial's audio)
        self._rec: FrameRecorder | None = None
        # timers and counters
        self.last_rx = 0.0
        self._answered_at: float | None = None
        self._timed_out = False
        self._rtcp_task: asyncio.Task | None = None
        self.rx_garbage = 0
        self.ticks = 0
        self._last_ours = SILENCE  # our frame of the current tick, for the recording
        # The pacer's copy of the RTP socket and the far end as a C sockaddr (pacer.py).
        self._tx_fd: int | None = None
        self._tx: tuple[tuple[str, int], bytes] | None = None

    # --- negotiation -------------------------------------------------------------
    def set_remote(self, ip: str, port: int, codec_pt: int, codec_name: str, dtmf_pt: int | None, *,
                   srtp: SrtpKeys | None = None) -> None:
        """Apply the negotiated far end (from the SDP answer); ``srtp``: its keys (None: plain RTP)."""
        if srtp is None:
            self.srtp = None
        elif self.srtp is None or self.srtp.keys != srtp:
            self.srtp = SrtpContext(srtp)
        if self.remote != (ip, port):
            self.latched = self.latched_rtcp = None  # a new far end: latch again
        self.remote = (ip, port)
        self.remote_rtcp = (ip, port + 1)
        self.codec_pt = codec_pt
        self._encode, self._decode = g711.encoder(codec_name), g711.decoder(codec_name)
        self.dtmf_pt = dtmf_pt
        # Only run the (CPU-costly) in-band detector when RFC 4733 was not negotiated.
        self._inband = GoertzelDetector() if dtmf_pt is None else None

    def start(self, *, send: bool = True) -> None:
        """Begin ticking (receive and record); with ``send`` also transmit RTP."""
        self._sending = self._sending or send
        if send and self._answered_at is None:
            self._answered_at = time.monotonic()
            self.last_rx = max(self.last_rx, self._answered_at)
        if not self._running:
            self._running = True
            self.clock.add(self)
            self._rtcp_task = asyncio.get_running_loop().create_task(self._rtcp_loop())

    # --- the 20 ms tick ------------------------------------------------------------
    def tick(self) -> None:
        """Send one frame and play out one far-end frame."""
        self.tick_send()
        self.tick_receive()

    def tick_send(self) -> None:
        """First half of a tick: our frame goes out (MediaClock does this for every call first)."""
        self.ticks += 1
        ours = SILENCE
        if self._sending and self.remote is not None:
            ours = self._send_frame()
            self.out.advance(SAMPLES_PER_FRAME)
        self._last_ours = ours

    def tick_receive(self) -> None:
        """Second half: play out the far end's frame, detect DTMF, record, watch for silence."""
        ours = self._last_ours
        callee = self._playout()
        if self._inband is not None and not self._seen_te and callee is not SILENCE:
            for digit, dur in self._inband.feed(callee):
                self._on_dtmf(digit, dur, "inband")
        if self._audio_cb is not None:
            try:
                self._audio_cb(callee)
            except Exception:  # noqa: BLE001 - consumer bug must not stop media
                log.exception("rtp.audio_callback_failed", call_id=self.call_id)
        if self._sent_cb is not None:
            try:
                self._sent_cb(ours)
            except Exception:  # noqa: BLE001 - consumer bug must not stop media
                log.exception("rtp.audio_callback_failed", call_id=self.call_id)
        if self._rec is not None:
            self._rec.write(callee, ours)
        if (
            self._answered_at is not None
            and not self._timed_out
            and time.monotonic() - self.last_rx > self.media_timeout_s
        ):
            self._timed_out = True
            self._on_media_timeout()

    def skip(self, frames: int) -> None:
        """The clock stalled for ``frames`` ticks: keep timestamps and recordings in step."""
        self.out.advance(SAMPLES_PER_FRAME * frames)
        if self._rec is not None:
            gap = SILENCE * frames
            self._rec.write(gap, gap)

    def _send_frame(self) -> bytes:
        assert self._rtp.transport is not None and self.remote is not None
        if self._dtmf_q:
            item = self._dtmf_q.pop(0)
            if item[0] == "event":
                _, payload, first = item
                if first:
                    self._event_ts = self.out.timestamp
                pkt = self.out.next_packet(self.dtmf_pt or 101, payload, marker=first, ts=self._event_ts)
                self._put(self._protect(pkt))
                self._dtmf_finished()
                return SILENCE
            frame = item[1]
            self._dtmf_finished()
        elif self._play_fut is not None:
            frame = self._play_buf[self._play_off : self._play_off + FRAME_BYTES]
            self._play_off += FRAME_BYTES
            if len(frame) < FRAME_BYTES:
                frame += bytes(FRAME_BYTES - len(frame))
            if self._play_off >= len(self._play_buf):
                self._finish_play(True)
        elif self._feed is not None:
            frame = self._feed() or SILENCE
        else:
            frame = SILENCE
        self._put(self._protect(self.out.next_packet(self.codec_pt, self._encode(frame))))
        return frame

    def _put(self, pkt: bytes) -> None:
        """One RTP packet to the far end: into the paced tick's batch, or sent now."""
        batch = self.clock.paced()
        if batch is None:
            self._rtp.transport.sendto(pkt, self.remote)
            return
        if self._tx is None or self._tx[0] != self.remote:
            if self._tx_fd is None:
                self._tx_fd = os.dup(self._rtp.transport.get_extra_info("socket").fileno())
            self._tx = (self.remote, sockaddr(*self.remote[:2]))
        batch.append((self._tx_fd, pkt, self._tx[1]))

    def _protect(self, pkt: bytes) -> bytes:
        return pkt if self.srtp is None else self.srtp.protect(pkt)

    def _playout(self) -> bytes:
        # Far ends may packetize at 10/30 ms: a small PCM FIFO re-frames to 20 ms.
        while len(self._rx_fifo) < FRAME_BYTES:
            payload = self.jitter.pop()
            if payload is None:
                break
            self._rx_fifo += self._decode(payload)
        if not self._rx_fifo:
            return SILENCE
        frame, self._rx_fifo = self._rx_fifo[:FRAME_BYTES], self._rx_fifo[FRAME_BYTES:]
        if len(frame) < FRAME_BYTES:
            frame += bytes(FRAME_BYTES - len(frame))
        return frame

    # --- receive -------------------------------------------------------------------
    def _accept(self, addr: tuple[str, int], latched: tuple[str, int] | None) -> bool:
        """Whether a packet from ``addr`` may be the far end's (counts the ones that may not)."""
        remote = self.remote
        if remote is None or addr[0] != remote[0] or (latched is not None and addr[:2] != latched):
            self.rx_dropped += 1
            if self.rx_dropped <= 5 or self.rx_dropped % 1000 == 0:
                log.warning("rtp.foreign_source", call_id=self.call_id, peer=f"{addr[0]}:{addr[1]}",
                            expected=f"{remote[0]}" if remote else None, total=self.rx_dropped)
            return False
        return True

    def _unprotected(self, kind: str, data: bytes, addr) -> bytes | None:
        """``data`` as plain RTP or RTCP: as it came without SRTP, else unprotected; None when it
        fails authentication or the replay check (dropped and counted)."""
        if self.srtp is None:
            return data
        try:
            return self.srtp.unprotect(data) if kind == "rtp" else self.srtp.unprotect_rtcp(data)
        except SrtpError as exc:
            self.rx_unauthenticated += 1
            metrics.SRTP_UNAUTHENTICATED.labels(kind).inc()
            if self.rx_unauthenticated <= 5 or self.rx_unauthenticated % 1000 == 0:
                log.warning("srtp.unauthenticated", call_id=self.call_id, kind=kind, peer=f"{addr[0]}:{addr[1]}",
                            size=len(data), error=str(exc), total=self.rx_unauthenticated)
            return None

    def _on_rtp(self, data: bytes, addr: tuple[str, int]) -> None:
        if not self._accept(addr, self.latched):
            return
        opened = self._unprotected("rtp", data, addr)
        if opened is None:
            return
        data = opened
        try:
            pkt = parse_rtp(data)
        except RtpError as exc:
            self._garbage("rtp", addr, len(data), str(exc))
            return
        if self.latched is None:
            self.latched = (addr[0], addr[1])
            log.info("rtp.latched", call_id=self.call_id, peer=f"{addr[0]}:{addr[1]}")
        now = time.monotonic()
        if pkt.payload_type == self.dtmf_pt and self.dtmf_pt is not None:
            self.last_rx = now
            self._seen_te = True
            try:
                digits = self._te.feed(pkt.timestamp, pkt.payload)
            except ValueError as exc:
                self._garbage("rtp", addr, len(data), str(exc))
                return
            for digit, dur in digits:
                self._on_dtmf(digit, dur, "rfc4733")
            return
        if pkt.payload_type != self.codec_pt:
            return  # comfort noise or an unnegotiated payload type: ignore
        self.last_rx = now
        self.stats.update(pkt.ssrc, pkt.seq, pkt.timestamp, now)
        self.jitter.push(pkt.seq, pkt.payload)

    def _on_rtcp(self, data: bytes, addr: tuple[str, int]) -> None:
        if not self._accept(addr, self.latched_rtcp):
            return
        opened = self._unprotected("rtcp", data, addr)
        if opened is None:
            return
        data = opened
        try:
            packets = parse_compound(data)
        except (ValueError, IndexError) as exc:
            self._garbage("rtcp", addr, len(data), str(exc))
            return
        if self.latched_rtcp is None:
            self.latched_rtcp = (addr[0], addr[1])
        for p in packets:
            if p.ntp_mid is not None:
                self.stats.last_sr_ntp_mid = p.ntp_mid
                self.stats.last_sr_at = time.monotonic()

    def _garbage(self, kind: str, addr, size: int, why: str) -> None:
        self.rx_garbage += 1
        if self.rx_garbage <= 5 or self.rx_garbage % 1000 == 0:
            log.warning("rtp.malformed_datagram", call_id=self.call_id, kind=kind, peer=f"{addr[0]}:{addr[1]}",
                        size=size, error=why, total=self.rx_garbage)

    async def _rtcp_loop(self) -> None:
        # RFC 3550 randomizes the interval; [0.5, 1.0] x 5 s keeps "at least every 5 s".
        while self._running:
            await asyncio.sleep(self.rtcp_interval_s * random.uniform(0.5, 1.0))
            self.send_rtcp()

    def send_rtcp(self) -> None:
        """Send an SR (if we have sent RTP) or RR, with SDES CNAME."""
        if self.remote_rtcp is None or self._rtcp.transport is None or self._rtcp.transport.is_closing():
            return
        sent = self.out.packets > 0
        pkt = build_report(
            self.out.ssrc,
            self.cname,
            sent_packets=self.out.packets,
            sent_octets=self.out.octets,
            rtp_ts=self.out.timestamp if sent else None,
            stats=self.stats,
            now=time.monotonic(),
        )
        self._rtcp.transport.sendto(pkt if self.srtp is None else self.srtp.protect_rtcp(pkt), self.remote_rtcp)

    # --- public operations ---------------------------------------------------------
    async def play(self, pcm: bytes) -> bool:
        """Queue ``pcm`` for sending; True when fully sent, False if stopped."""
        self._finish_play(False)  # a new prompt replaces the one playing
        if not pcm:
            return True
        if self.closed:
            return False
        self._play_buf, self._play_off = pcm, 0
        fut = self._play_fut = asyncio.get_running_loop().create_future()
        return await fut

    def stop_playback(self) -> None:
        self._finish_play(False)

    def _finish_play(self, done: bool) -> None:
        fut, self._play_fut = self._play_fut, None
        self._play_buf, self._play_off = b"", 0
        if fut is not None and not fut.done():
            fut.set_result(done)

    async def send_dtmf(self, digits: str, duration_ms: int = 100, gap_ms: int = 60) -> None:
        """Send digits as RFC 4733 events if negotiated, else as in-band tones."""
        items: list[tuple] = []
        gap = [("audio", SILENCE)] * max(1, gap_ms // FRAME_MS)
        for d in digits:
            if self.dtmf_pt is not None:
                items += [("event", p, first) for p, first in event_packets(d, duration_ms)]
            else:
                pcm = tone(d, duration_ms)
                items += [("audio", pcm[i : i + FRAME_BYTES]) for i in range(0, len(pcm), FRAME_BYTES)]
            items += gap
        if not items or self.closed:
            return
        self._dtmf_q.extend(items)
        if self._dtmf_done is None or self._dtmf_done.done():
            self._dtmf_done = asyncio.get_running_loop().create_future()
        await self._dtmf_done

    def _dtmf_finished(self) -> None:
        if not self._dtmf_q and self._dtmf_done is not None and not self._dtmf_done.done():
            self._dtmf_done.set_result(None)

    def on_audio(self, callback: Callable[[bytes], None] | None) -> None:
        self._audio_cb = callback

    def on_sent_audio(self, callback: Callable[[bytes], None] | None) -> None:
        self._sent_cb = callback

    def set_feed(self, feed: Callable[[], bytes | None] | None) -> None:
        """Send from ``feed`` (one frame per tick, None = silence) whenever no prompt or digit is sent."""
        self._feed = feed

    def start_recording(self, recorder: FrameRecorder | None = None) -> None:
        """Hand both directions, frame by frame, to ``recorder`` (default: kept in memory)."""
        if self._rec is None:  # idempotent: a call recorded from answer stays one recording
            self._rec = recorder if recorder is not None else MemoryRecorder()

    def stop_recording(self) -> tuple[bytes, bytes]:
        """Stop; the audio kept in memory (empty when a recorder was given: it has the audio)."""
        rec, self._rec = self._rec, None
        return rec.audio() if isinstance(rec, MemoryRecorder) else (b"", b"")

    def close(self) -> None:
        """Stop media: pending play()/send_dtmf() return, sockets close."""
        if self.closed:
            return
        self.closed = True
        self._running = False
        self._sending = False
        self.clock.remove(self)
        self._finish_play(False)
        self._dtmf_q.clear()
        if self._dtmf_done is not None and not self._dtmf_done.done():
            self._dtmf_done.set_result(None)
        if self._rtcp_task is not None:
            self._rtcp_task.cancel()
        if self.remote_rtcp is not None and self.out.packets:
            self.send_rtcp()  # a final report before going away
        for s in (self._rtp, self._rtcp):
            if s.transport is not None:
                s.transport.close()
        if self._tx_fd is not None:
            fd, self._tx_fd = self._tx_fd, None
            if self.clock.pacer is not None:
                self.clock.pacer.retire(fd)
            else:
                os.close(fd)
