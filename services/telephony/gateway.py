"""The telephony gateway: carries out dial/play/gather/record/hangup instructions.

Consumes voice.call.events (its own group), drives a carrier session per call and
reports every outcome back as an event. A dial is recorded in Postgres before it is
placed (so a redelivered dial.requested never dials twice) with a lease the gateway
renews; calls whose gateway died are ended as failed by any other gateway's reaper.

It runs no speech engine. A speech gather streams the callee's audio on
voice.media.audio (purpose "gather", see streaming.py) and completes on the
`speech.recognized` the transcription service answers with; a sandbox callee's lines
are rendered by the TTS service (`sandbox.speech.requested` -> `.rendered`). Both
answers come back on voice.call.events, keyed by the call, so to this gateway.

A flow's dial step places a second call (dial.requested with `parent_call_id`) on this
gateway, where its parent must be: the parent hears ringback while it rings, and once it
answers each leg's audio is sent to the other (services/telephony/bridge.py). A parent held
by another gateway fails the second call at once ("not on this telephony gateway").

A call's media stream (the `stream` option, opened at answer, or a flow's
`stream.requested`) is a WebSocket to the app in Twilio Media Streams' protocol
(services/telephony/streams/): the callee's frames go to it, its audio is played into
the call, and it reports stream.started / stream.stopped / stream.failed.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timezone
from typing import Any

import orjson

from events import Envelope, derive_id, new_envelope, topics, trace
from events.envelope import utc_now
from services.common import db, metrics, tracing
from services.common.config import settings
from services.common.consumer import (Batch, Consumer, KafkaDeadLetters, KafkaTracking, Processor, Source,
                                      retry_transient)
from services.common.kafka import make_producer, publish_many
from services.common.logging import configure
from services.common.service import serve
from services.telephony.amd import Detection, MachineDetector
from services.telephony.bridge import Relay, hold_music, ringback
from services.telephony.carrier import (
    Answered,
    CallSession,
    Carrier,
    DialRequest,
    DtmfReceived,
    Ended,
    Ringing,
    TransferProgress,
)
from services.telephony.gather import Collector
from services.telephony.priority import raise_priority
from services.lib.speech import Endpointer
from services.telephony.streaming import AudioStreamer
from services.telephony.streams.client import MediaStream
from services.telephony.streams.protocol import stream_sid

log = configure("telephony")
STALE_DIAL_S = 60
SPEECH_RECOGNITION_S = 20  # time allowed for the recognition result after an utterance ends
SANDBOX_RENDER_S = 30  # a scripted callee's line not rendered by then is not said
INSTRUCTIONS = {"dial.requested", "play.requested", "gather.requested", "record.requested", "hangup.requested",
                "transfer.requested",
                "stream.requested", "interrupt.requested", "dtmf.send.requested", "record.control.requested",
                "hold.requested"}
# Dropped when an interrupt.requested (an update that replaced the call's script) came after them.
INTERRUPTIBLE = {"play.requested", "gather.requested"}
# Carried out in order on a lane of their own: they never wait behind the prompt playing
# (a recording paused mid-prompt pauses there; digits go out while the prompt waits).
CONTROLS = {"record.requested", "record.control.requested", "dtmf.send.requested", "hold.requested"}
DIGIT_PAUSE_S = 0.5  # `w` in send_digits
ANSWERS = {"speech.recognized", "sandbox.speech.rendered", "sandbox.speech.failed"}  # to this gateway's requests


class LiveCall:
    """One call on this gateway: its session, instruction queue and gather state."""

    def __init__(self, gw: "Gateway", dial: Envelope, session: CallSession):
        self.gw, self.dial, self.session = gw, dial, session
        self.inbox: asyncio.Queue[tuple[int, Envelope]] = asyncio.Queue(maxsize=100)
        self.controls: asyncio.Queue[Envelope] = asyncio.Queue(maxsize=100)  # CONTROLS, in log order
        self.generation = 0  # interrupts so far: an instruction queued before the last one is stale
        self.current_generation = 0  # that of the instruction being carried out
        self.seq = 0
        self.answered = False
        self.ended = False
        self.barge_in = False
        self.playing = False
        self.hanging_up = False  # a hangup is on its way through the inbox: play nothing more
        self.held = False  # on hold (UpdateCall hold): music, and a connected bridge paused
        self.early_digits = ""  # keys pressed before the next gather started (type-ahead)
        self.collector: Collector | None = None
        self.endpointer: Endpointer | None = None  # speech activity: holds the gather timer while the caller speaks
        self.streamer: AudioStreamer | None = None  # the callee's audio on voice.media.audio (transcribe / gather)
        self.gather_cause: Envelope | None = None
        self.recording: Envelope | None = None  # what started the recording (dial.requested or record.requested)
        self.record_options: dict[str, Any] = {}
        self.recorder: Any = None  # PausableRecorder(SpoolRecorder): the recording on disk while the call runs
        self.media_stream: MediaStream | None = None  # the app's WebSocket (one at a time)
        self.stream_feed: Any = None  # a bidirectional stream's audio: the feed when no bridge or hold music has it
        self.detector: MachineDetector | None = None  # answering machine detection, from answer to its result
        self.end_reason: str | None = None  # what the hangup asked the call's end to report (time_limit)
        self.transfer: Envelope | None = None  # the transfer.requested in progress (its outcome not reported yet)
        self.transfer_lock = asyncio.Lock()  # transfer.started is published before the transfer's progress
        # A dial step's two calls: the parent knows its leg (the second call), the leg its parent;
        # `peer` and `relay` are set while they are connected (relay: the other leg's frames for us).
        self.parent: LiveCall | None = None
        self.leg: LiveCall | None = None
        self.peer: LiveCall | None = None
        self.relay: Relay | None = None
        self.tasks = [asyncio.create_task(self._pump()), asyncio.create_task(self._work()),
                      asyncio.create_task(self._control_work())]
        session.on_audio(self._on_audio)
        if hasattr(session, "on_sent_audio"):  # what we play, for a stream's outbound track
            session.on_sent_audio(self._on_sent_audio)

    def _event(self, type: str, data: dict[str, Any], cause: Envelope | None = None) -> Envelope:
        self.seq += 1
        return (cause or self.dial).caused(type, data, step=f"{type}#{self.seq}")

    async def _emit(self, *evs: Envelope) -> None:
        """Publish, riding out a Kafka outage: the call's media goes on meanwhile and its carrier
        events wait in the session's bounded queue; the same ids are re-sent (consumers dedupe)."""
        await retry_transient(lambda: publish_many(self.gw.producer, topics.events(), list(evs)),
                              what="telephony: publish", log=log, stopping=self.gw.stopping)

    async def _pump(self) -> None:
        """Carrier events -> Kafka events, in order."""
        while True:
            ev = await self.session.events.get()
            if isinstance(ev, Ringing):
                await self._emit(self._event("call.ringing", {"early_media": ev.early_media}))
            elif isinstance(ev, Answered):
                self.answered = True
                self._on_answered()
                # Who answered is not known at answer: machine detection (if asked) reports it.
                await self._emit(self._event("call.answered", {"answered_by": None}))
            elif isinstance(ev, DtmfReceived):
                await self._on_digit(ev)
            elif isinstance(ev, TransferProgress):
                await self._on_transfer_progress(ev)
            elif isinstance(ev, Ended):
                await self._on_ended(ev)
                return

    async def _transfer(self, env: Envelope) -> None:
        """A transfer step: hand the call over (SIP: REFER). `transfer.started`, then its progress
        and outcome come on the session's events (`_on_transfer_progress`); a transfer that cannot
        start (the carrier has none, the call is not answered, another one runs) fails at once."""
        to, ids = env.data["to"], {"step": env.data["step"], "tag": env.data["tag"]}
        transfer = getattr(self.session, "transfer", None)
        why = None
        if transfer is None:
            why = "this carrier cannot transfer calls"
        elif self.transfer is not None:
            why = "a transfer is already in progress"
        elif self.leg is not None:
            why = "the call is connected to a dial step's second party"
        async with self.transfer_lock:
            if why is None:
                self.transfer = env
                if not await transfer(to):
                    self.transfer, why = None, "the call cannot be transferred now (not answered, or a bad target)"
            if why is not None:
                log.warning("transfer not started", call_id=self.dial.call_id, to=to, reason=why)
                await self._emit(self._event("transfer.failed", {"to": to, "code": None, "reason": why, **ids}, env))
                return
            refer_to = getattr(self.session, "refer_to", None)
            log.info("transfer started", call_id=self.dial.call_id, to=to, refer_to=refer_to)
            await self._emit(self._event("transfer.started", {"to": to, "refer_to": refer_to, **ids}, env))

    async def _on_transfer_progress(self, ev: TransferProgress) -> None:
        async with self.transfer_lock:
            await self._report_transfer(ev)

    async def _report_transfer(self, ev: TransferProgress) -> None:
        cause = self.transfer
        if cause is None:
            return
        to, ids = cause.data["to"], {"step": cause.data["step"], "tag": cause.data["tag"]}
        if not ev.final:
            await self._emit(self._event("transfer.progressed", {"code": ev.code, "reason": ev.reason, **ids}, cause))
            return
        self.transfer = None
        kind = "transfer.completed" if ev.succeeded else "transfer.failed"
        log.info(kind, call_id=self.dial.call_id, to=to, code=ev.code, reason=ev.reason)
        await self._emit(self._event(kind, {"to": to, "code": ev.code, "reason": ev.reason, **ids}, cause))

    async def _on_digit(self, ev: DtmfReceived) -> None:
        if self.media_stream is not None:
            self.media_stream.on_dtmf(ev.digit)
        await self._emit(self._event("dtmf.received", {"digit": ev.digit, "method": ev.method}))
        if self.collector is not None:
            c = self.collector
            if c.press(ev.digit, asyncio.get_running_loop().time()):
                self.early_digits = c.leftover  # a key past num_digits opens the next gather
                await self._finish_gather()
            return
        # Type-ahead: keys pressed before the gather starts (during or even before the
        # prompt) belong to the next gather, as callers who know the menu expect.
        self.early_digits = (self.early_digits + ev.digit)[-64:]
        if self.playing and self.barge_in:
            self.session.stop_playback()

    def _on_answered(self) -> None:
        """Time zero of the call: stream offsets count from here, and a recorded call records from here."""
        if self.parent is not None:
            self._connect(self.parent)
        self._stream()
        if md := self.dial.data.get("machine_detection"):
            self.detector = MachineDetector(mode=md.get("mode", "enable"), timeout_ms=int(md.get("timeout", 30)) * 1000)
        if rec := self.dial.data.get("record"):
            self._record(self.dial, rec)
        if opts := self.dial.data.get("stream"):
            self.tasks.append(asyncio.create_task(self._open_media_stream(self.dial, opts)))

    def ring_leg(self, leg: "LiveCall") -> None:
        """A dial step placed `leg` for this call: ringback until it answers (or ends). The leg's
        frames are collected for this call from now on, so none between the carrier's answer and
        `_connect` (a turn of the event pump later) is lost."""
        self.leg, leg.parent = leg, self
        self.relay, leg.peer = Relay(), self
        if hasattr(self.session, "set_feed"):
            self.session.set_feed(ringback())

    def _connect(self, parent: "LiveCall") -> None:
        """This leg answered: from now each side hears the other."""
        if parent.ended or not (hasattr(parent.session, "set_feed") and hasattr(self.session, "set_feed")):
            return
        self.relay = Relay()
        parent.peer = self
        parent.session.set_feed(parent.relay.pull)
        self.session.set_feed(self.relay.pull)
        if parent.held:
            parent.hold(True)  # put on hold while the second party rang: it stays on hold
        if rec := self.dial.data.get("parent_record"):
            parent._record(parent.dial, rec)  # from this instant: the dial step's record
        log.info("dial connected", call_id=parent.dial.call_id, leg=self.dial.call_id)

    def hold(self, on: bool) -> bool:
        """Put this call on hold (it hears music; its bridge, if connected, carries nothing either
        way) or take it off (the bridge again, from now: what was said meanwhile is not replayed).
        True when a connected second party was paused or resumed."""
        self.held = on
        peer = self.peer
        bridged = peer is not None and self.relay is not None and peer.relay is not None
        if not hasattr(self.session, "set_feed"):
            return bridged
        if on:
            self.session.set_feed(hold_music())
            if bridged and hasattr(peer.session, "set_feed"):
                peer.session.set_feed(None)  # the other side waits in silence
        elif bridged:
            for call in (self, peer):
                call.relay.frames.clear()
                call.session.set_feed(call.relay.pull)
        else:
            self.session.set_feed(self.stream_feed)
        return bridged

    def _disconnect(self) -> None:
        """This call's end ends its dial: its parent stops hearing it (and goes on with its flow), its
        leg (still ringing or connected) is hung up."""
        parent, leg = self.parent, self.leg
        if self.relay is not None:  # frames this leg was sent from the other, and shed (it fell behind)
            log.info("dial disconnected", call_id=self.dial.call_id, relayed=self.relay.relayed,
                     dropped=self.relay.dropped)
        if parent is not None and parent.leg is self:
            parent.leg = parent.peer = parent.relay = None
            if hasattr(parent.session, "set_feed"):
                parent.session.set_feed(hold_music() if parent.held else parent.stream_feed)
        if leg is not None and not leg.ended:
            leg.peer = leg.relay = None
            self.tasks.append(asyncio.get_running_loop().create_task(leg.session.hangup()))
        self.parent = self.leg = self.peer = self.relay = None

    async def _open_media_stream(self, cause: Envelope, options: dict, step: str | None = None) -> None:
        """Open the app's media stream (a second one replaces the first, as a new stream step would)."""
        if self.media_stream is not None:
            await self.media_stream.close("replaced by a new stream")

        async def report(type: str, data: dict) -> None:
            await self._emit(self._event(type, data, cause))

        self.media_stream = MediaStream(sid=stream_sid(cause.id), call_id=self.dial.call_id,
                                        account_id=self.dial.account_id, options=options, session=self.session,
                                        report=report, step=step, set_feed=self._set_stream_feed)
        self.media_stream.start()

    def _set_stream_feed(self, feed: Any) -> None:
        """A bidirectional stream's audio becomes the call's feed, unless a second party (ringing or
        connected) or hold music has it now: then it takes over when they end."""
        self.stream_feed = feed
        if self.leg is None and self.peer is None and not self.held and hasattr(self.session, "set_feed"):
            self.session.set_feed(feed)

    def _record(self, cause: Envelope, options: dict) -> None:
        if self.recording is None:  # recorded from answer already: one recording, the first cause
            from services.common.media_store import get_media_store, spool_dir
            from services.common.media_store_spool import SpoolRecorder

            from services.common.media_store_spool import PausableRecorder

            self.recording = cause
            self.record_options = options
            self.recorder = PausableRecorder(SpoolRecorder(spool_dir(get_media_store()), name=self.dial.call_id))
        self.session.start_recording(self.recorder)
        if options.get("transcribe"):
            self._stream().start_transcribe(options.get("language"))

    def _stream(self) -> AudioStreamer:
        if self.streamer is None:
            ctx = trace.handled(self.dial)
            self.streamer = AudioStreamer(self.gw.producer, self.dial.call_id, self.dial.account_id,
                                          traceparent=ctx.header, tracestate=ctx.state)
        return self.streamer

    async def _finish_gather(self, speech: dict | None = None) -> None:
        c, cause = self.collector, self.gather_cause
        self.collector = None
        self.endpointer = None
        if self.streamer is not None:
            self.streamer.close_gather()
        if c is None or cause is None:
            return
        step = cause.data.get("step")
        if speech is not None:
            ev = self._event("gather.completed", {"digits": c.digits, "finished_on_key": None, "speech": speech,
                                                  "step": step}, cause)
        elif c.outcome() == "completed":
            ev = self._event("gather.completed", {"digits": c.digits, "finished_on_key": c.finished_on_key,
                                                  "step": step}, cause)
        else:
            ev = self._event("gather.timeout", {"digits": c.digits, "step": step}, cause)
        await self._emit(ev)

    async def _gather_timer(self) -> None:
        loop = asyncio.get_running_loop()
        while self.collector is not None and not self.ended:
            delay = self.collector.deadline() - loop.time()
            if delay <= 0:
                await self._finish_gather()
                return
            await asyncio.sleep(min(delay, 0.05))

    def _on_audio(self, frame: bytes) -> None:
        """Every 20 ms frame of the callee's audio (called by the carrier, synchronously)."""
        if self.peer is not None and self.peer.relay is not None and not (self.held or self.peer.held):
            self.peer.relay.push(frame)  # a dial's other leg hears it (not while either is on hold)
        if self.streamer is not None:
            self.streamer.add(frame)
        if self.media_stream is not None:
            self.media_stream.on_inbound(frame)
        if self.detector is not None and (found := self.detector.feed(frame)) is not None:
            self._detected(self.detector.mode, found)
        if self.endpointer is not None and self.collector is not None:
            self._on_speech_frame(self.endpointer, frame)

    def _detected(self, mode: str, found: Detection) -> None:
        """Machine detection decided: `machine_detection.completed` (the orchestrator starts a waiting prompt on it)."""
        self.detector = None
        log.info("machine detection", call_id=self.dial.call_id, answered_by=found.answered_by,
                 decision_ms=found.decision_ms)
        ev = self._event("machine_detection.completed", {"answered_by": found.answered_by, "mode": mode,
                                                         "decision_ms": found.decision_ms, "beep_ms": found.beep_ms})
        self.tasks.append(asyncio.get_running_loop().create_task(self._emit(ev)))

    def _on_sent_audio(self, frame: bytes) -> None:
        """Every 20 ms frame we send the callee (prompts, the app's audio, silence)."""
        if self.media_stream is not None:
            self.media_stream.on_outbound(frame)

    def _on_speech_frame(self, ep: Endpointer, frame: bytes) -> None:
        # Recognition is the transcription service's (it endpoints the same frames); this
        # only tells when the caller speaks, for the gather timer and the stream.
        r = ep.feed(frame)
        if r == "started":
            # Speaking counts as input: no first-input timeout while an utterance lasts.
            self.collector.extend(asyncio.get_running_loop().time() + ep.max_ms / 1000 + SPEECH_RECOGNITION_S)
        elif r == "ended":
            self.endpointer = None
            if self.streamer is not None:
                self.streamer.flush()  # the utterance's last frames go now, not with the next full chunk

    async def on_recognized(self, env: Envelope) -> None:
        """`speech.recognized` for this call: completes the open speech gather it answers."""
        d = env.data
        if self.collector is None or self.gather_cause is None or d.get("gather_id") != self.gather_cause.id:
            return  # DTMF or the timer ended that gather meanwhile, or a redelivered result
        speech = {"text": d.get("text", ""), "confidence": d.get("confidence", 0.0)}
        if d.get("error"):
            speech["error"] = d["error"]
        if d.get("matched_hint") is not None:
            speech["matched_hint"] = d["matched_hint"]
        await self._finish_gather(speech=speech)

    async def _on_ended(self, ev: Ended) -> None:
        self.ended = True
        self._disconnect()
        self.endpointer = None
        if self.streamer is not None:
            self.streamer.close()
        if self.media_stream is not None:  # the app gets `stop`; stream.stopped precedes the call's end
            await self.media_stream.close("call ended")
        out = []
        if self.collector is not None and self.gather_cause is not None:
            c, self.collector = self.collector, None
            out.append(self._event("gather.timeout" if c.outcome() == "timeout" else "gather.completed",
                                   {"digits": c.digits, "finished_on_key": c.finished_on_key}, self.gather_cause))
        if self.recording is not None:
            out.append(await self._captured())
        # Our hangup may say why the call ended (its time limit); the carrier's reason otherwise.
        reason = self.end_reason if self.end_reason and ev.hangup_by == "caller" else ev.reason
        out.append(self._event(f"call.{ev.status}", {"reason": reason, "sip_code": ev.sip_code,
                                                     "hangup_by": ev.hangup_by}))
        await self._emit(*out)
        await self.gw.ended(self)

    async def _captured(self, cause: Envelope | None = None) -> Envelope:
        from services.common import audio
        from services.common.media_store import get_media_store

        from services.common.media_store import put_file

        cause = cause or self.recording
        # Both directions were spooled to the media store's spool area while the call ran
        # (services/common/media_store_spool.py): finish the two WAVs and move them into the
        # store, never holding the call's audio in memory.
        self.session.stop_recording()
        spans = self.recorder.paused_spans()
        store = get_media_store()
        try:
            callee, ours = await self.recorder.finish()
            callee_ref, our_ref = await asyncio.gather(audio.run_blocking(put_file, store, callee.path, "wav"),
                                                       audio.run_blocking(put_file, store, ours.path, "wav"))
        except Exception as exc:  # the call's end still goes out; the recording's loss is on the timeline
            log.error("recording not stored", call_id=self.dial.call_id, error=f"{type(exc).__name__}: {exc}")
            return self._event("recording.failed", {"reason": f"recording not stored: {type(exc).__name__}: {exc}"},
                               cause)
        opts = self.record_options
        data = {"callee_ref": callee_ref, "agent_ref": our_ref, "channels": opts.get("channels", "mono"),
                "duration_ms": callee.duration_ms, "transcribe": bool(opts.get("transcribe"))}
        if opts.get("language"):
            data["language"] = opts["language"]
        if spans:
            data["paused_spans"] = spans
        return self._event("recording.captured", data, cause)

    async def _work(self) -> None:
        """Instructions for this call, one at a time, in log order."""
        while True:
            generation, env = await self.inbox.get()
            if generation < self.generation and env.type in INTERRUPTIBLE:
                continue  # the script it belonged to was replaced by an update
            self.current_generation = generation
            try:
                await self._instruction(env)
            except Exception as exc:
                log.error("instruction failed", call_id=env.call_id, type=env.type, error=str(exc))

    async def _control_work(self) -> None:
        while True:
            env = await self.controls.get()
            try:
                await self._instruction(env)
            except Exception as exc:
                log.error("instruction failed", call_id=env.call_id, type=env.type, error=str(exc))

    async def _instruction(self, env: Envelope) -> None:
        t = env.type
        if t == "hangup.requested":
            self.end_reason = env.data.get("end_reason")
            await self.session.hangup()
        elif self.ended:
            return
        elif t == "record.requested":
            self._record(env, env.data)
        elif t == "stream.requested":
            await self._open_media_stream(env, env.data, step=env.data.get("step"))
        elif t == "record.control.requested":
            await self._record_control(env)
        elif t == "dtmf.send.requested":
            await self._send_digits(env)
        elif t == "hold.requested":
            on = bool(env.data["hold"])
            if on != self.held:
                bridged = self.hold(on)
                await self._emit(self._event("call.held" if on else "call.unheld", {"bridged": bridged}, env))
        elif t == "transfer.requested":
            await self._transfer(env)
        elif t == "play.requested":
            pcm = await self.gw.load_audio(env.data["audio_ref"])
            if self.hanging_up or self.current_generation < self.generation:
                done = False  # a hangup or an interrupt came while the audio loaded: it is not started
            else:
                self.barge_in, self.playing = bool(env.data.get("barge_in", True)), True
                done = await self.session.play(pcm)
                self.playing = False
            await self._emit(self._event("prompt.finished", {"interrupted": not done, "step": env.data.get("step")},
                                         env))
        elif t == "gather.requested":
            d = env.data
            c = Collector(num_digits=d.get("num_digits"), finish_on_key=d.get("finish_on_key") or "",
                          timeout=float(d.get("timeout") or 5), inter_digit_timeout=d.get("inter_digit_timeout"))
            now = asyncio.get_running_loop().time()
            c.start(now)
            self.collector, self.gather_cause = c, env
            early, self.early_digits = self.early_digits, ""
            for i, digit in enumerate(early):
                if c.press(digit, now):
                    self.early_digits = c.leftover + early[i + 1:]  # keys beyond this gather wait for the next one
                    await self._finish_gather()
                    return
            if "speech" in (d.get("type") or ""):
                self.endpointer = Endpointer()
                # The transcription service recognises the utterance from the stream.
                self._stream().open_gather(env.id, step=d.get("step"), hints=d.get("hints"),
                                           language=d.get("language"))
            self.tasks.append(asyncio.create_task(self._gather_timer()))

    def interrupt(self) -> None:
        """An update replaced the call's script: stop what plays and end the open gather now,
        silently (nobody waits for its outcome), and drop the play and gather instructions
        already queued (`generation`); type-ahead belonged to the old menu."""
        self.generation += 1
        self.session.stop_playback()
        self.collector, self.gather_cause, self.endpointer, self.early_digits = None, None, None, ""
        if self.streamer is not None:
            self.streamer.close_gather()

    async def _send_digits(self, env: Envelope) -> None:
        digits = env.data["digits"]
        for i, run in enumerate(digits.split("w")):
            if i:
                await asyncio.sleep(DIGIT_PAUSE_S)
            if run and not self.ended:
                await self.session.send_dtmf(run)
        method = getattr(self.session, "dtmf_method", "rfc4733")
        await self._emit(self._event("dtmf.sent", {"digits": digits, "method": method}, env))

    async def _record_control(self, env: Envelope) -> None:
        """Pause (silence in the file, a span in its metadata), resume, or stop (stored now)."""
        action = env.data.get("action")
        if self.recording is None or self.recorder is None:
            return  # not recorded, or stopped already
        if action == "pause" and not self.recorder.paused:
            await self._emit(self._event("recording.paused", {"offset_ms": self.recorder.pause()}, env))
        elif action == "resume" and self.recorder.paused:
            await self._emit(self._event("recording.resumed", {"offset_ms": self.recorder.resume()}, env))
        elif action == "stop":
            cause, self.recording = self.recording, None  # the call's end stores nothing more
            await self._emit(await self._captured(cause))

    def close(self) -> None:
        for t in self.tasks:
            t.cancel()
        if self.media_stream is not None and self.media_stream.task is not None:
            self.media_stream.task.cancel()
        if self.recorder is not None and not self.recorder.closed:  # gone mid-call: drop its spool files
            asyncio.get_running_loop().create_task(self.recorder.discard())
        close = getattr(self.session, "close", None)
        if close:
            close()


class Gateway:
    def __init__(self, carriers: dict[str, Carrier] | None = None):
        self.id = f"gw-{uuid.uuid4().hex[:8]}"
        self.scope = topics.prefix()  # the calls of this deployment (tests run several)
        self.group = topics.scoped("telephony")
        self.lease_s = settings().telephony.lease_s
        self.calls: dict[str, LiveCall] = {}
        self.stopping = asyncio.Event()
        self.bg: list[asyncio.Task] = []  # the lease loop, and calls being ended after a rebalance
        self._carriers = carriers
        self._audio_cache: dict[str, bytes] = {}
        self._renders: dict[str, asyncio.Future[Envelope]] = {}  # sandbox.speech.requested id -> its answer
        # Incoming SIP calls waiting for their answer instruction (the orchestrator's inbound
        # dial.requested), by call id, with the call.received that announced each.
        self.incoming: dict[str, tuple[Any, Envelope]] = {}
        self.directory = None  # the cached routing of incoming INVITEs (CANARY_SIP_INBOUND)
        self._incoming_tasks: set[asyncio.Task] = set()

    async def start(self) -> None:
        # The trunk secret unseals the trunk passwords: refuse to run on the development one
        # (or an unfit one) outside development, before taking any call.
        from services.common.signing import check_service_secrets

        check_service_secrets(only=("CANARY_TRUNK_SECRET",))
        wanted = settings().telephony.media_priority
        got = raise_priority(wanted)
        if got != wanted:
            log.warning("media clock runs at a lower CPU priority than configured", wanted=wanted, got=got)
        async def jsonb(conn):
            await conn.set_type_codec("jsonb", encoder=lambda v: orjson.dumps(v).decode(), decoder=orjson.loads,
                                      schema="pg_catalog")
        # A pool, not a connection: dials of one batch run concurrently.
        self.conn = await db.create_pool(min_size=2, max_size=8, init=jsonb)
        self.carriers = self._carriers or {"sandbox": self._sandbox(), "sip": self._sip()}
        self.producer = make_producer(linger_ms=1)
        await self.producer.start()
        if self.directory is not None:  # incoming calls: the SIP socket listens from the start
            await self.carriers["sip"].start()
        # Kafka's group offsets are the positions: what an instruction does is idempotent by
        # itself (dials are claimed in Postgres, the rest needs a live call on this gateway).
        self.processor = Processor("telephony", [Source(topics.events(), types=INSTRUCTIONS | ANSWERS)], self.handle,
                                   KafkaTracking(), KafkaDeadLetters(self.producer), log=log, stopping=self.stopping,
                                   on_assigned=self._assigned)
        self.consumer = Consumer(self.processor, group_id=self.group, batch_max=500)
        await self.consumer.start()
        self.bg.append(asyncio.create_task(self._lease_loop()))
        self.bg.append(asyncio.create_task(self._reap_loop()))
        metrics.gauge("canary_live_calls", "Calls this gateway carries now", lambda: len(self.calls))
        log.info("gateway started", gateway_id=self.id, carriers=list(self.carriers))

    def _sip(self) -> Carrier:
        """SIP/RTP to each account's trunk; binds its SIP socket on the first SIP call."""
        from services.telephony.sip import SipCarrier

        from services.telephony.sip.policy import STRICT

        t = settings().telephony
        inbound: dict[str, Any] = {}
        if t.sip_inbound:
            from services.telephony.inbound import DirectoryCache

            self.directory = DirectoryCache(self.conn, refresh_s=t.sip_inbound_refresh_s)
            inbound = {"router": self.directory.route, "on_incoming": self._incoming,
                       "mint_call_id": self.mint_inbound_id}
        # Each trunk's own policy (stored with it), strict when it has none.
        return SipCarrier(local_ip=t.sip_bind, sip_port=t.sip_port, rtp_port_range=t.rtp_ports,
                          media_timeout_s=t.sip_media_timeout_s, trunk_policy=lambda trunk: trunk.policy or STRICT,
                          tls_ca_file=t.sip_tls_ca or None, tls_cert_file=t.sip_tls_cert or None,
                          tls_key_file=t.sip_tls_key or None, media_lead_s=t.media_lead_ms / 1000,
                          media_priority=t.media_priority, **inbound)

    def mint_inbound_id(self) -> str:
        """An incoming call's id, on a partition of the events topic this gateway consumes.

        The orchestrator's answer instruction (dial.requested) is keyed by the call id, so it
        comes to the gateway that owns the id's partition: naming the call for one of ours makes
        that the gateway holding the INVITE, however many gateways share the SIP load. (Should
        the group rebalance between the INVITE and the answer, the call fails as before: "not
        held by this gateway".)"""
        from services.common.accounts import new_id
        from services.common.kafka import key_on, known_partition_count

        owned: set[int] = set()
        partitions = 0
        consumer = getattr(getattr(self, "consumer", None), "consumer", None)
        if consumer is not None:
            topic = topics.events()
            try:
                owned = {tp.partition for tp in consumer.assignment() if tp.topic == topic}
            except Exception:  # noqa: BLE001 - stopped or between assignments: any id
                owned = set()
            partitions = known_partition_count(consumer, topic)
        return key_on(lambda: new_id("call"), owned, partitions)

    def _incoming(self, session: Any, route: Any, sip: dict) -> None:
        """An INVITE the SIP carrier took: announce it (call.received) and hold it until its answer instruction."""
        from services.lib.inbound import received_data

        req = session.request
        env = new_envelope("call.received", req.call_id, req.account_id,
                           received_data(route, req.from_, "sip", sip=sip), id=derive_id(sip["call_id"], "received"))
        self.incoming[req.call_id] = (session, env)
        loop = asyncio.get_running_loop()
        for coro in (self._announce(env), self._expire_incoming(req.call_id)):
            task = loop.create_task(coro)
            self._incoming_tasks.add(task)
            task.add_done_callback(self._incoming_tasks.discard)

    async def _announce(self, env: Envelope) -> None:
        await retry_transient(lambda: publish_many(self.producer, topics.events(), [env]),
                              what="telephony: publish", log=log, stopping=self.stopping)

    async def _expire_incoming(self, call_id: str) -> None:
        """An incoming call nobody told this gateway to answer (the orchestrator away, or the caller
        gone meanwhile) is ended, and reported with the status it ended with."""
        from services.lib.inbound import RING_TIMEOUT_S

        await asyncio.sleep(RING_TIMEOUT_S)
        held = self.incoming.pop(call_id, None)
        if held is None:
            return
        session, received = held
        if session.ended is None:
            await session.hangup()
        ended = session.ended
        await self._announce(received.caused(f"call.{ended.status}", {
            "reason": ended.reason or "not answered in time", "sip_code": ended.sip_code,
            "hangup_by": ended.hangup_by}, step="expired"))

    def _sandbox(self) -> Carrier:
        from services.telephony.sandbox import SandboxCarrier

        return SandboxCarrier(speed=settings().sandbox_speed, callee_lookup=self._callee_script, speak=self._speak,
                              heard=self._heard)

    async def _heard(self, req: DialRequest, digits: str) -> None:
        """What a sandbox callee decoded from the tones we sent it: on the timeline, for tests and apps."""
        call = self.calls.get(req.call_id)
        if call is not None:
            await call._emit(call._event("sandbox.dtmf.heard", {"digits": digits}))

    async def _callee_script(self, number: str, account_id: str) -> dict | None:
        row = await self.conn.fetchrow(
            "SELECT script FROM sandbox_callees WHERE number = $1 AND account_id IN ($2, '')"
            " ORDER BY account_id DESC LIMIT 1", number, account_id)
        return row["script"] if row else None

    async def _speak(self, req: DialRequest, text: str, voice: str) -> bytes:
        """A scripted callee's line as 8 kHz PCM, rendered by the TTS service (b"" if it cannot be)."""
        data = {"text": text, "voice": voice}
        call = self.calls.get(req.call_id)
        if call is not None:
            env = call._event("sandbox.speech.requested", data)
        else:  # not possible today (calls are registered before they answer), but harmless
            env = new_envelope("sandbox.speech.requested", req.call_id, req.account_id, data,
                               id=derive_id(f"{req.call_id}/callee", text))
        fut = self._renders[env.id] = asyncio.get_running_loop().create_future()
        try:
            await publish_many(self.producer, topics.events(), [env])
            answer = await asyncio.wait_for(fut, SANDBOX_RENDER_S)
        except Exception as exc:
            log.warning("sandbox callee line not rendered", call_id=req.call_id, error=str(exc) or type(exc).__name__)
            return b""
        finally:
            self._renders.pop(env.id, None)
        if answer.type != "sandbox.speech.rendered":
            log.warning("sandbox callee line not rendered", call_id=req.call_id, reason=answer.data.get("reason"))
            return b""
        return await self.load_audio(answer.data["audio_ref"])

    async def load_audio(self, ref: str) -> bytes:
        """8 kHz PCM of a stored prompt. Refs are content hashes, so caching is always safe."""
        from services.common import audio
        from services.common.media_store import get_media_store

        pcm = self._audio_cache.get(ref)
        if pcm is None:
            data = await audio.run_blocking(get_media_store().get, ref)
            pcm = await audio.run_blocking(audio.wav_to_pcm8k, data)
            if len(self._audio_cache) >= 256:  # bounded: drop the oldest entry
                self._audio_cache.pop(next(iter(self._audio_cache)))
            self._audio_cache[ref] = pcm
        return pcm

    async def stop(self) -> None:
        for t in [*self.bg, *self._incoming_tasks]:
            t.cancel()
        for call in list(self.calls.values()):
            call.close()
        await self.consumer.stop()
        await self.producer.stop()
        await self.conn.close()

    async def run_once(self, timeout_ms: int = 200) -> int:
        return await self.consumer.run_once(timeout_ms)

    async def handle(self, batch: Batch) -> None:
        """The block's handler: the instructions and answers of one batch, valid ones only."""
        envs = [r.env for r in batch.records]
        # Dials of a batch go out concurrently (each waits on Postgres and the carrier);
        # a call's later instructions always follow its dial in the log, so running the
        # dials first keeps every call's own order. A dial that fails fails the batch before
        # anything else is dispatched: the block retries it, or splits it to dead-letter the
        # record, and a dial already placed is recognised by its claim.
        dials = await asyncio.gather(*(self._dial(e) for e in envs if e.type == "dial.requested"),
                                     return_exceptions=True)
        for res in dials:
            if isinstance(res, BaseException):
                raise res
        for env in envs:
            if env.type != "dial.requested":
                await self.dispatch(env)

    async def dispatch(self, env: Envelope) -> None:
        if env.type == "dial.requested":
            await self._dial(env)
            return
        if env.type in ANSWERS:
            await self._answer(env)
            return
        call = self.calls.get(env.call_id)
        if call is None:
            log.info("instruction for a call not on this gateway", call_id=env.call_id, type=env.type)
            return
        if env.type == "hangup.requested":
            # A hangup never waits behind the prompt playing: stop it now, or keep it from
            # starting if its audio is still loading (the play instruction then reports
            # prompt.finished interrupted), and hang up next.
            call.hanging_up = True
            call.session.stop_playback()
        if env.type == "interrupt.requested":
            call.interrupt()  # now, not behind the prompt it stops
            return
        if env.type in CONTROLS:
            await call.controls.put(env)
            return
        await call.inbox.put((call.generation, env))

    async def _answer(self, env: Envelope) -> None:
        """A service's answer to something this gateway asked (not an instruction: no inbox)."""
        if env.type == "speech.recognized":
            call = self.calls.get(env.call_id)
            if call is not None:
                await call.on_recognized(env)
            return
        fut = self._renders.get(env.causation_id or "")
        if fut is not None and not fut.done():
            fut.set_result(env)

    async def _dial(self, env: Envelope) -> None:
        # The call's tasks start inside: their log lines carry its trace too.
        with tracing.handling(env, "gateway dial", **{"canary.carrier": env.data.get("carrier", "sandbox")}):
            await self._place(env)

    async def _place(self, env: Envelope) -> None:
        # A dial instruction found late (a new consumer group reading old history) is not
        # placed: the caller gave up long ago and the orchestrator has ended the call.
        age = (datetime.now(timezone.utc) - datetime.fromisoformat(env.occurred_at)).total_seconds()
        if age > STALE_DIAL_S:
            log.warning("stale dial instruction skipped", call_id=env.call_id, age_s=round(age))
            return
        claimed = await self.conn.fetchval(
            "INSERT INTO telephony_calls (call_id, account_id, scope, dial_event, gateway_id, lease_until)"
            " VALUES ($1, $2, $3, $4, $5, now() + make_interval(secs => $6)) ON CONFLICT (call_id) DO NOTHING"
            " RETURNING true", env.call_id, env.account_id, self.scope, env.id, self.id, self.lease_s)
        if not claimed:
            log.info("dial already placed; ignoring redelivery", call_id=env.call_id)
            return
        carrier = self.carriers.get(env.data.get("carrier", "sandbox"))
        if carrier is None:
            await publish_many(self.producer, topics.events(), [env.caused("call.failed", {
                "reason": f"carrier {env.data.get('carrier')!r} is not configured", "hangup_by": "system"})])
            await self.conn.execute("UPDATE telephony_calls SET ended = true WHERE call_id = $1", env.call_id)
            return
        req = DialRequest(call_id=env.call_id, to=env.data["to"], from_=env.data["from"],
                          timeout_s=float(env.data.get("timeout", 30)), account_id=env.account_id)
        if env.data.get("direction") == "inbound":
            await self._answer_incoming(env, carrier, req)
            return
        parent = None
        if parent_id := env.data.get("parent_call_id"):
            # A dial step's second call: connected to its parent here, so the parent must be here.
            parent = self.calls.get(parent_id)
            why = None
            if parent is None:
                why = (f"the calling party ({parent_id}) is not on this telephony gateway: the two calls of a"
                       " dial step must be carried by one gateway")
            elif parent.ended or parent.hanging_up:
                why = f"the calling party ({parent_id}) hung up"
            elif parent.leg is not None:
                why = f"the calling party ({parent_id}) is already dialling {parent.leg.dial.call_id}"
            if why is not None:
                log.warning("dial leg not placed", call_id=env.call_id, parent_call_id=parent_id, reason=why)
                await publish_many(self.producer, topics.events(), [env.caused("call.failed", {
                    "reason": why, "hangup_by": "system"})])
                await self.conn.execute("UPDATE telephony_calls SET ended = true WHERE call_id = $1", env.call_id)
                return
        try:
            if env.data.get("carrier") == "sip":
                from services.telephony.trunks import prepare_dial

                req = await prepare_dial(self.conn, req)  # the account's trunk + caller-ID rules
            session = await carrier.dial(req)
        except Exception as exc:
            log.warning("dial failed", call_id=env.call_id, error=str(exc))
            await publish_many(self.producer, topics.events(), [env.caused("call.failed", {
                "reason": str(exc) or type(exc).__name__, "hangup_by": "system"})])
            await self.conn.execute("UPDATE telephony_calls SET ended = true WHERE call_id = $1", env.call_id)
            return
        call = self.calls[env.call_id] = LiveCall(self, env, session)
        log.info("call dialed", call_id=env.call_id, carrier=env.data.get("carrier", "sandbox"))
        if parent is not None:
            if parent.ended:  # hung up while the leg was being placed
                await session.hangup()
            else:
                parent.ring_leg(call)

    async def _answer_incoming(self, env: Envelope, carrier: Carrier, req: DialRequest) -> None:
        """An inbound dial.requested: answer the SIP call held here, or let the sandbox caller call in."""
        if env.data.get("carrier") == "sip":
            held = self.incoming.pop(env.call_id, None)
            if held is None:
                await publish_many(self.producer, topics.events(), [env.caused("call.failed", {
                    "reason": "the incoming call is not held by this gateway", "hangup_by": "system"})])
                await self.conn.execute("UPDATE telephony_calls SET ended = true WHERE call_id = $1", env.call_id)
                return
            session = held[0]
            self.calls[env.call_id] = LiveCall(self, env, session)
            await session.answer()  # a call the caller canceled meanwhile reports its end instead
            return
        session = await carrier.call_in(req, env.data.get("caller") or {})  # type: ignore[attr-defined]
        self.calls[env.call_id] = LiveCall(self, env, session)

    async def ended(self, call: LiveCall) -> None:
        self.calls.pop(call.dial.call_id, None)
        try:
            # Retried through a Postgres outage (until then the lease says the call still runs).
            await retry_transient(lambda: self.conn.execute("UPDATE telephony_calls SET ended = true"
                                                            " WHERE call_id = $1", call.dial.call_id),
                                  what="telephony: call ended", log=log, stopping=self.stopping)
        finally:
            # Only now: closing cancels the call's tasks, the event pump awaiting this among them.
            # Closed first, the row stayed live, and a later gateway's reaper failed the ended call.
            asyncio.get_running_loop().call_soon(call.close)

    async def _lease_loop(self) -> None:
        while True:
            try:
                # Through the pool, which reconnects after Postgres restarts (a lone connection
                # would stay closed, the leases would lapse and the live calls be reaped).
                await self.conn.execute(
                    "UPDATE telephony_calls SET lease_until = now() + make_interval(secs => $2)"
                    " WHERE gateway_id = $1 AND NOT ended", self.id, self.lease_s)
                await self._release_reaped()
            except Exception as exc:
                log.error("lease loop error", error=str(exc))
            await asyncio.sleep(self.lease_s / 3)

    async def _reap_loop(self) -> None:
        # Apart from the renewals: reaping publishes to Kafka, which waits out a broker's
        # failover (seconds), and renewals stuck behind it let this gateway's own leases lapse.
        while True:
            try:
                await self.reap()
            except Exception as exc:
                log.error("reap loop error", error=str(exc))
            await asyncio.sleep(self.lease_s / 3)

    async def reap(self) -> int:
        """End calls whose gateway stopped renewing its lease: failed, with the reason."""
        n = await self._end_lost("lease_until < now()")
        if n:
            log.warning("reaped calls of a lost gateway", count=n)
        return n

    async def _end_lost(self, where: str, *args: Any) -> int:
        """``call.failed`` "telephony gateway lost the call" for the claimed calls ``where`` says,
        marked ended. The event's id is derived from the call's dial, so whichever gateway ends
        it (the holder itself, or another one reaping it) publishes the same event, once."""
        async with self.conn.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                "SELECT call_id, account_id, dial_event FROM telephony_calls WHERE scope = $1 AND NOT ended"
                f" AND {where} FOR UPDATE SKIP LOCKED", self.scope, *args)
            if not rows:
                return 0
            evs = [Envelope(type="call.failed", call_id=r["call_id"], account_id=r["account_id"],
                            id=derive_id(str(r["dial_event"]), "gateway-lost"), occurred_at=utc_now(),
                            causation_id=str(r["dial_event"]),
                            data={"reason": "telephony gateway lost the call", "hangup_by": "system"})
                   for r in rows]
            await publish_many(self.producer, topics.events(), evs)
            await conn.executemany("UPDATE telephony_calls SET ended = true WHERE call_id = $1",
                                   [(r["call_id"],) for r in rows])
        return len(rows)

    def _assigned(self, assigned: set) -> None:
        """A rebalance gave this gateway a new set of partitions. Instructions for the live calls
        whose partition went to another gateway now go there, where the call is not: left up,
        such a call would wait for them forever. So they end here, at once, as a lost gateway's
        calls are reaped (the far end is hung up)."""
        from services.common.kafka import known_partition_count, partition_of

        topic = topics.events()
        mine = {tp.partition for tp in assigned if tp.topic == topic}
        n = known_partition_count(getattr(self.consumer, "consumer", None), topic)
        if n <= 0:
            return
        moved = [c for cid, c in self.calls.items() if partition_of(cid.encode(), n) not in mine]
        if moved:
            task = asyncio.get_running_loop().create_task(self._drop_moved(moved))
            self.bg.append(task)
            task.add_done_callback(self.bg.remove)  # kept only while it runs (stop() cancels it)

    async def _drop_moved(self, moved: list[LiveCall]) -> None:
        ids = [c.dial.call_id for c in moved]
        self._detach(moved)
        try:
            n = await self._end_lost("call_id = ANY($2::text[])", ids)
        except Exception as exc:  # noqa: BLE001 - the lease lapses and another gateway reaps them
            log.error("ending calls whose partition moved failed", error=str(exc), count=len(ids))
            n = 0
        await self._hang_up(moved)
        log.warning("calls ended: their partition moved to another gateway", count=len(ids), reported=n)

    async def _release_reaped(self) -> None:
        """Hang up, without a word, the live calls here that a reaper has ended (their row is
        ended while they are still ours: `ended()` takes a call out of `calls` before marking
        it). That happens when a renewal came too late, e.g. on a starved machine: the reaper
        has published the call's `call.failed`, so the call must not go on and end twice."""
        if not self.calls:
            return
        rows = await self.conn.fetch("SELECT call_id FROM telephony_calls WHERE gateway_id = $1 AND ended"
                                     " AND call_id = ANY($2::text[])", self.id, list(self.calls))
        lost = [c for c in (self.calls.get(r["call_id"]) for r in rows) if c is not None]
        if lost:
            self._detach(lost)
            await self._hang_up(lost)
            log.warning("calls released: reaped while live here (the lease was renewed too late)",
                        count=len(lost))

    def _detach(self, calls: list[LiveCall]) -> None:
        """These calls' carrier events are no longer ours to report."""
        for call in calls:
            self.calls.pop(call.dial.call_id, None)
            for t in call.tasks:
                t.cancel()

    async def _hang_up(self, calls: list[LiveCall]) -> None:
        for call in calls:
            try:
                await asyncio.wait_for(call.session.hangup(), 2.0)
            except Exception:  # noqa: BLE001 - the far end is gone already: nothing to release
                pass
            call.close()

    async def run(self) -> None:
        await self.consumer.run()


async def main() -> None:
    await serve(Gateway(), log, "gateway")


if __name__ == "__main__":
    from services.common.signing import InsecureSecretError

    try:
        asyncio.run(main())
    except InsecureSecretError as exc:  # a clear refusal, not a traceback
        import sys

        print(f"telephony gateway refused to start: {exc}", file=sys.stderr)
        sys.exit(2)
