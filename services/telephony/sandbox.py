"""The sandbox carrier: a phone network in a box, for testing voice apps offline.

A product feature, not a stub: every `sk_test_` call goes here. Media is real audio
(8 kHz, 20 ms frames) on a frame clock, in real time or accelerated by `speed`, so
recordings and transcription work on sandbox calls exactly as on real ones.

Magic numbers (documented in docs/sandbox.md):
  +15005550001 busy, +15005550002 no-answer, +15005550003 failed,
  +15005550004 answers then hangs up at once.
Any other number answers after a short ring, hears the whole script and stays on
the line until we hang up — unless a scripted callee is attached to the number: a
person (presses keys, says a line such as "Hello?") or a voicemail (its greeting, then
a beep if it has one, then it listens), for answering machine detection.
What a scripted callee says is rendered by `speak(request, text, voice)` (the gateway
asks the TTS service); the render starts when the call is placed, so the line is ready
when due (a voicemail answers once its greeting is).
Digits we send (`send_dtmf`) are in-band DTMF tones in our audio, as on a line without
RFC 4733: they are in the recording, and the callee decodes them with the same Goertzel
detector the SIP carrier uses and reports what it heard through `heard(request, digits)`.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

import structlog

from services.common import audio, metrics
from services.common.media_store_spool import FrameRecorder, MemoryRecorder
from services.lib.trunks import ANSWER_HANGUP, BUSY, FAILED, MAGIC_NUMBERS, NO_ANSWER
from services.telephony.carrier import (FRAME_BYTES, split_frames, Answered, CarrierEvent, DialRequest, DtmfReceived, Ended,
                                        Ringing, event_queue, offer)
from services.telephony.sip.dtmf import GoertzelDetector, tone

DTMF_GAP_S = 0.15
SILENCE = bytes(FRAME_BYTES)
BEEP_HZ, BEEP_MS, BEEP_GAP_MS = 1000, 500, 400  # a voicemail's beep, as most mailboxes sound
TONE_MS = 100  # each digit we send: 100 ms of tone, then 100 ms of silence (two detector
GAP_MS = 100  # blocks at least, so a repeated digit is heard twice)
Heard = Callable[[DialRequest, str], Awaitable[None]]

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class CalleeScript:
    """What a scripted sandbox callee does (all times in seconds, before acceleration)."""

    ring: float = 1.0  # ring this long, then answer
    answer: bool = True
    after: float = 0.0  # after answering, wait this long, then press/say
    press: str = ""
    say: str = ""
    say_voice: str = "en-US-Neural2-D"
    hangup_after: float | None = None  # seconds after answer
    voicemail: str = ""  # a voicemail's greeting, played from `after` on (then it listens)
    beep: bool = False  # ... followed by a beep (BEEP_HZ for BEEP_MS, BEEP_GAP_MS after the greeting)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "CalleeScript":
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


class SandboxSession:
    """One sandbox call leg. A frame clock moves our audio and the callee's in lockstep."""

    dtmf_method = "inband"
    far_end = "callee"  # who the scripted party is: the callee we dialled, or an inbound call's caller

    def __init__(self, req: DialRequest, script: CalleeScript | None, speed: float,
                 speak: Callable[[DialRequest, str, str], Awaitable[bytes]] | None, clock: "FrameClock",
                 heard: Heard | None = None):
        self.call_id = req.call_id
        self.req = req
        self.events: asyncio.Queue[CarrierEvent] = event_queue()  # bounded: offer() keeps the end
        self._script = script
        self._speed = max(speed, 0.01)
        self._speak = speak
        self._answered = asyncio.Event()
        self._ended = False
        self._play: deque[bytes] = deque()
        self._play_done: asyncio.Future | None = None
        self._callee_audio: deque[bytes] = deque()
        self._recording: FrameRecorder | None = None
        self._audio_cb: Callable[[bytes], None] | None = None
        self._sent_cb: Callable[[bytes], None] | None = None
        self._feed: Callable[[], bytes | None] | None = None  # what we send when nothing plays
        self._clock = clock
        self._heard_cb = heard
        self._tones: deque[bytes] = deque()  # DTMF we send, in place of our audio while it lasts
        self._detector: GoertzelDetector | None = None  # the callee's ear for them
        self._heard = ""
        self._tones_done: asyncio.Future | None = None
        self._tasks = [asyncio.create_task(self._behave())]

    async def _sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds / self._speed)

    def _emit(self, ev: CarrierEvent) -> None:
        if self._ended:
            return
        if isinstance(ev, Ended):
            self._ended = True
            self._finish_play(False)
            if self._tones_done is not None and not self._tones_done.done():
                self._tones_done.set_result(None)
        offer(self.events, ev, log)

    async def _behave(self) -> None:
        to, script = self.req.to, self._script
        await self._sleep(0.05)
        if to == FAILED:
            return self._emit(Ended("failed", "sandbox: network failure", 503))
        self._emit(Ringing())
        ring = script.ring if script else (1.0 if to != NO_ANSWER else float("inf"))
        answers = (script.answer if script else True) and to != NO_ANSWER
        if to == BUSY:
            await self._sleep(1.0)
            return self._emit(Ended("busy", "sandbox: busy", 486))
        if not answers or ring >= self.req.timeout_s:
            # The ring timeout is the caller's wall clock, never accelerated.
            await asyncio.sleep(self.req.timeout_s)
            return self._emit(Ended("no-answer", "ring timeout", 487, hangup_by="system"))
        # The callee's line is rendered while it rings (not on answer): at speed 4 a render of
        # a second costs four seconds of call time. A voicemail answers only once its greeting
        # is ready, as a real one has it recorded.
        line = self._render_line(script) if script else None
        await self._sleep(ring)
        if line is not None and script.voicemail:
            await asyncio.wait([line])
        if self._ended:
            return
        self._emit(Answered())
        self._answered.set()
        self._clock.add(self)
        if to == ANSWER_HANGUP:
            return self._emit(Ended("completed", "callee hung up", hangup_by="callee"))
        if script:
            self._tasks.append(asyncio.create_task(self._act(script, line)))

    def _render_line(self, s: CalleeScript) -> asyncio.Task | None:
        """Start rendering what the callee says (a script has a line or a greeting, not both)."""
        if not (s.say or s.voicemail) or self._speak is None:
            return None
        line = asyncio.create_task(self._speak(self.req, s.say or s.voicemail, s.say_voice))
        self._tasks.append(line)
        return line

    async def _act(self, s: CalleeScript, line: asyncio.Task | None) -> None:
        if s.hangup_after is not None:
            self._tasks.append(asyncio.create_task(self._hangup_later(s.hangup_after)))
        await self._sleep(s.after)
        for digit in s.press:
            if self._ended:
                return
            self._emit(DtmfReceived(digit, duration_ms=100, method="sandbox"))
            await self._sleep(DTMF_GAP_S)
        if line is not None:
            pcm = await line
            if s.voicemail and s.beep:
                pcm += audio.silence(BEEP_GAP_MS) + audio.tone(BEEP_HZ, BEEP_MS, amplitude=0.3)
            self._callee_audio.extend(split_frames(pcm))

    async def _hangup_later(self, seconds: float) -> None:
        await self._sleep(seconds)
        self._emit(Ended("completed", f"{self.far_end} hung up", hangup_by=self.far_end))

    def tick(self, frames: int) -> None:
        """Move `frames` frames of call time each way (called by the carrier's shared clock)."""
        for _ in range(frames):
            if self._ended:
                return
            if self._tones:  # a prompt playing waits while the tones go out
                ours = self._tones.popleft()
                self._hear(ours)
            else:
                if self._play:
                    ours = self._play.popleft()
                else:
                    ours = (self._feed() if self._feed is not None else None) or SILENCE
                if not self._play:
                    self._finish_play(True)
            theirs = self._callee_audio.popleft() if self._callee_audio else SILENCE
            if self._recording is not None:
                self._recording.write(theirs, ours)
            if self._audio_cb is not None:
                self._audio_cb(theirs)
            if self._sent_cb is not None:
                self._sent_cb(ours)

    def _hear(self, frame: bytes) -> None:
        for digit, _ in self._detector.feed(frame):
            self._heard += digit
        if not self._tones and self._tones_done is not None and not self._tones_done.done():
            self._tones_done.set_result(None)

    def _finish_play(self, completed: bool) -> None:
        if self._play_done is not None and not self._play_done.done():
            self._play_done.set_result(completed)

    # --- CallSession -------------------------------------------------------------------

    async def play(self, pcm: bytes) -> bool:
        if self._ended:
            return False
        self._finish_play(False)
        self._play = deque(split_frames(pcm))
        self._play_done = asyncio.get_running_loop().create_future()
        return await self._play_done

    def stop_playback(self) -> None:
        self._play = deque()
        self._finish_play(False)

    async def send_dtmf(self, digits: str) -> None:
        """In-band tones in our audio, in real call time; returns once they are out."""
        if self._ended or not self._answered.is_set():
            return
        gap = SILENCE * (GAP_MS // 20)
        self._tones.extend(split_frames(b"".join(tone(d, TONE_MS) + gap for d in digits)))
        if self._tones_done is None or self._tones_done.done():
            self._detector, self._heard = GoertzelDetector(), ""
            self._tones_done = asyncio.get_running_loop().create_future()
        done = self._tones_done
        await done
        if self._heard_cb is not None and self._heard and not self._tones:
            heard, self._heard = self._heard, ""
            await self._heard_cb(self.req, heard)

    def on_audio(self, callback: Callable[[bytes], None] | None) -> None:
        self._audio_cb = callback

    def on_sent_audio(self, callback: Callable[[bytes], None] | None) -> None:
        self._sent_cb = callback

    def set_feed(self, feed: Callable[[], bytes | None] | None) -> None:
        self._feed = feed

    def start_recording(self, recorder: FrameRecorder | None = None) -> None:
        if self._recording is None:  # idempotent: a call recorded from answer stays one recording
            self._recording = recorder if recorder is not None else MemoryRecorder()

    def stop_recording(self) -> tuple[bytes, bytes]:
        rec, self._recording = self._recording, None
        return rec.audio() if isinstance(rec, MemoryRecorder) else (b"", b"")

    async def hangup(self) -> None:
        answered = self._answered.is_set()
        self._emit(Ended("completed" if answered else "canceled",
                         "hung up by caller" if answered else "canceled before answer",
                         None if answered else 487, hangup_by="caller"))

    def close(self) -> None:
        self._clock.discard(self)
        if self._tones_done is not None and not self._tones_done.done():
            self._tones_done.set_result(None)
        for t in self._tasks:
            t.cancel()


class FrameClock:
    """One 20 ms clock for every answered sandbox call (one wake-up per tick, not per call).

    Accelerated calls move several frames per tick instead of ticking faster, so a test at
    10x speed costs no more wake-ups than a real-time call.
    """

    def __init__(self, speed: float):
        self.speed = max(speed, 0.01)
        self.sessions: set[SandboxSession] = set()
        self._task: asyncio.Task | None = None

    def add(self, s: SandboxSession) -> None:
        self.sessions.add(s)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run())

    def discard(self, s: SandboxSession) -> None:
        self.sessions.discard(s)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        next_at, owed = loop.time(), 0.0
        lateness = metrics.MEDIA_TICK_LATENESS.labels("sandbox")
        while self.sessions:
            lateness.observe(max(0.0, loop.time() - next_at))
            owed += self.speed
            frames, owed = int(owed), owed - int(owed)
            for s in list(self.sessions):
                if s._ended:
                    self.sessions.discard(s)
                else:
                    s.tick(frames)
            next_at += 0.02
            await asyncio.sleep(max(0.0, next_at - loop.time()))  # drift-free pacing


class SandboxCarrier:
    """The embedded default carrier for every sk_test_ key."""

    name = "sandbox"

    def __init__(self, speed: float = 1.0,
                 callee_lookup: Callable[[str, str], Awaitable[dict | None]] | None = None,
                 speak: Callable[[DialRequest, str, str], Awaitable[bytes]] | None = None,
                 heard: Heard | None = None):
        self.speed = speed
        self.clock = FrameClock(speed)
        self._lookup = callee_lookup
        self._speak = speak
        self._heard = heard

    async def dial(self, request: DialRequest) -> SandboxSession:
        script = None
        if self._lookup is not None and request.to not in MAGIC_NUMBERS:
            raw = await self._lookup(request.to, request.account_id)
            script = CalleeScript.from_dict(raw) if raw else None
        return SandboxSession(request, script, self.speed, self._speak, self.clock, self._heard)

    async def call_in(self, request: DialRequest, caller: dict[str, Any]) -> SandboxSession:
        """An inbound sandbox call (POST /v1/voice/sandbox/calls-in): the scripted ``caller`` has
        dialled ``request.to``; the call rings briefly, is answered, and the caller acts its script."""
        session = SandboxSession(request, CalleeScript.from_dict({"ring": 0.2, **caller}), self.speed, self._speak,
                                 self.clock, self._heard)
        session.far_end = "caller"
        return session

    async def close(self) -> None:
        pass
