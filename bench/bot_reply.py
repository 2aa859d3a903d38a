"""Voice-bot turn time: the callee stops speaking -> the example bot's first audio in the call.

No Kafka: real sandbox sessions on the 20 ms frame clock (speed 1), the gateway's
``MediaStream``, and ``examples/ivr_bot.py`` run as its README says (a second process on
``websockets``, the project's own endpointer, faster-whisper and Piper). The bot greets; once
the greeting has played the scripted callee says a request; the bot hears the end of it,
transcribes it, renders its answer and streams it back into the call.

Measured on the call's own frame clock: from the last frame of the callee's speech (louder
than the endpointer's threshold) to the first audible frame of the bot's answer the call
sends. The baseline, same run, same process kind: what the bot cannot avoid doing, timed
directly on the same audio: the bot's endpointer's (Silero VAD) end-of-speech hangover (silence it must hear
before it calls the utterance complete), the transcription of the utterance and the
rendering of the answer, plus the quiet lead-in of the rendered answer. The ratio says what
the stream (gateway, WebSocket, JSON, playout queue) and the bot's plumbing add to that.

Run: ``python -m bench.bot_reply [--turns 3]`` (about a minute). Exit 1 when behind the
target; never crashes.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
from functools import lru_cache

from bench._report import run_reporting

TARGET_RATIO = 1.5  # the stream's plumbing may add at most half again the bot's own work
REQUEST = "I would like to book a table for tonight."
CALLEE_VOICE = "en-US-Neural2-D"


def _loud(frame: bytes) -> bool:
    from services.common.audio import rms_dbfs

    return rms_dbfs(frame) > _threshold()


@lru_cache(maxsize=1)
def _threshold() -> float:
    from services.lib.speech import Endpointer

    return Endpointer().threshold_db


def baseline(request_pcm: bytes) -> dict[str, float]:
    """The bot's unavoidable work on this utterance, timed in this process (seconds)."""
    from examples import voice_brain as brain
    from services.telephony.carrier import split_frames

    ep = brain.utterances()
    frames = split_frames(request_pcm) + [bytes(320)] * 100
    last_loud = max(i for i, f in enumerate(frames) if _loud(f))
    ended = next(i for i, f in enumerate(frames) if ep.feed(f) == "ended")
    t0 = time.perf_counter()
    heard = brain.transcribe(ep.audio())
    t1 = time.perf_counter()
    reply = brain.speak(brain.answer(heard))
    t2 = time.perf_counter()
    lead = next(i for i, f in enumerate(split_frames(reply)) if _loud(f))
    return {"hangover": (ended - last_loud) * 0.02, "stt": t1 - t0, "tts": t2 - t1, "lead": lead * 0.02,
            "heard": heard}


async def one_turn(url: str, greeting_s: float, request_pcm: bytes, n: int) -> dict[str, float] | None:
    """One call: greeting, the callee's request, the bot's answer. The turn time in seconds."""
    from services.telephony.carrier import DialRequest
    from services.telephony.sandbox import SandboxCarrier
    from services.telephony.streams.client import MediaStream

    async def lookup(number, account):
        return {"ring": 0.2, "after": greeting_s + 2.0, "say": REQUEST, "say_voice": CALLEE_VOICE}

    async def speak(req, text, voice):
        return request_pcm

    carrier = SandboxCarrier(speed=1.0, callee_lookup=lookup, speak=speak)
    session = await carrier.dial(DialRequest(call_id=f"call_turn{n}", to="+15551230000", from_="+15559876543",
                                             account_id="acct_bench"))
    while type(await session.events.get()).__name__ != "Answered":
        pass
    heard: list[tuple[float, bool]] = []
    sent: list[tuple[float, bool]] = []
    reports: list[tuple[str, dict]] = []

    async def report(type: str, data: dict) -> None:
        reports.append((type, data))

    stream = MediaStream(sid=f"MZturn{n}", call_id=f"call_turn{n}", account_id="acct_bench",
                         options={"url": url, "bidirectional": True}, session=session, report=report)

    def inbound(frame: bytes) -> None:
        heard.append((time.perf_counter(), _loud(frame)))
        stream.on_inbound(frame)

    session.on_audio(inbound)
    session.on_sent_audio(lambda f: sent.append((time.perf_counter(), _loud(f))))
    stream.start()
    deadline = time.perf_counter() + greeting_s + 20
    try:
        while time.perf_counter() < deadline and not any(t == "stream.stopped" for t, _ in reports):
            await asyncio.sleep(0.1)
    finally:
        await stream.close("call ended")
        await session.hangup()
        session.close()
    spoke = [t for t, loud in heard if loud]
    if not spoke:
        return None
    end_of_speech = spoke[-1]
    answer = [t for t, loud in sent if loud and t > end_of_speech]
    if not answer:
        return None
    return {"turn": answer[0] - end_of_speech}


async def main_async(args) -> int:
    os.environ.setdefault("CANARY_ENV", "development")
    os.environ.setdefault("CANARY_ALLOW_PRIVATE_URLS", "1")
    from examples import voice_brain as brain

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    port = args.port
    bot = subprocess.Popen([sys.executable, os.path.join(root, "examples", "ivr_bot.py"), "--port", str(port)],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        line = await asyncio.wait_for(asyncio.to_thread(bot.stdout.readline), 60)
        if "listening" not in line:
            print(f"BEHIND: the bot did not start: {line.strip()!r}")
            return 1
        url = f"ws://127.0.0.1:{port}/"
        greeting_s = len(brain.speak(brain.GREETING)) / 16000
        request_pcm = brain.speak(REQUEST, CALLEE_VOICE)
        base = baseline(request_pcm)  # also loads both models here before anything is timed
        base = baseline(request_pcm)
        floor = base["hangover"] + base["stt"] + base["tts"] + base["lead"]
        print(f"baseline, the bot's own work on this utterance (heard {base['heard']!r}): end-of-speech hangover"
              f" {base['hangover'] * 1000:.0f} ms + transcription {base['stt'] * 1000:.0f} ms + rendering"
              f" {base['tts'] * 1000:.0f} ms + the answer's quiet lead-in {base['lead'] * 1000:.0f} ms ="
              f" {floor * 1000:.0f} ms")
        await one_turn(url, greeting_s, request_pcm, 0)  # warm-up: the bot process loads its models
        turns: list[float] = []
        for n in range(1, args.turns + 1):
            r = await one_turn(url, greeting_s, request_pcm, n)
            if r is None:
                print(f"turn {n}: the bot did not answer")
                continue
            turns.append(r["turn"])
            print(f"turn {n}: end of the callee's speech -> the bot's first audio in the call:"
                  f" {r['turn'] * 1000:.0f} ms ({r['turn'] / floor:.2f}x baseline)")
        if len(turns) < args.turns:
            print(f"BEHIND: {args.turns - len(turns)} of {args.turns} turns got no answer")
            return 1
        med = statistics.median(turns)
        ratio = med / floor
        print(f"turn time over {len(turns)} turns: p50 {med * 1000:.0f} ms, max {max(turns) * 1000:.0f} ms;"
              f" {ratio:.2f}x the baseline (target <= {TARGET_RATIO:g}x); added by the stream and the bot's"
              f" plumbing: {(med - floor) * 1000:+.0f} ms")
        if ratio > TARGET_RATIO:
            print(f"BEHIND: turn time {ratio:.2f}x the baseline, target {TARGET_RATIO:g}x:"
                  f" {(ratio - TARGET_RATIO) * floor * 1000:.0f} ms behind")
            return 1
        return 0
    finally:
        bot.terminate()
        try:
            bot.wait(10)
        except subprocess.TimeoutExpired:
            bot.kill()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--turns", type=int, default=3)
    ap.add_argument("--port", type=int, default=8767)
    args = ap.parse_args()
    run_reporting(main_async(args))


if __name__ == "__main__":
    main()
