"""TTS benchmark: real-time factor, time to first audio and cached renders, per engine.

Figures (all measured in this run, on this machine):

- RTF = render time / duration of the audio rendered, through the engine interface the
  TTS worker uses (text -> 8 kHz telephone PCM, resampling included); median over a
  phrase set. Target: Piper <= 0.1.
- Time to first audio (TTFA) of a three-sentence prompt, two ways: *streaming* = when the
  engine hands over its first audio (Piper yields per sentence; espeak-ng's stdout gets
  its first samples), i.e. what a streaming player could start on; *render* = the whole
  prompt rendered, which is what a call waits for today (``tts.rendered`` is one file).
- Cached render = ``Renderer.render_sync`` of a request rendered before (hash the inputs,
  resolve the alias, read the WAV back to report its duration). Target <= 5 ms.

Baselines (same run): for the engines, espeak-ng (the classic formant synthesiser,
which is what a phone system would otherwise use) -> "Piper = N x espeak"; for the
cache, a bare read of the same stored WAV (``store.get`` + WAV parse) -> what the cache
adds on top of the read it cannot avoid. The raw cost of writing the same number of
samples as a WAV (numpy + wave) is printed too, as the floor of any render.

Run: ``python -m bench.tts`` (about 20-30 s; ``--repeat N`` for more samples).
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import subprocess
import tempfile
import time
import wave

PHRASES = [
    "Hello! This is a call from Canary.",
    "Your verification code is four two seven nine.",
    "Please press one to confirm your appointment, or two to reschedule.",
    "We could not process your payment because the card has expired. Please update it online.",
    "Thank you for calling, have a wonderful day.",
]
PROMPT = ("Thank you for calling Canary support. Your call is important to us. "
          "Please stay on the line and the next available agent will answer.")


def _ms(s: float) -> str:
    return f"{s * 1000:.3f} ms" if s < 0.01 else f"{s * 1000:.1f} ms"


def _rtf(engine, voice, phrases, repeat):
    from services.common import audio

    rtfs, total_audio = [], 0.0
    for _ in range(repeat):
        for p in phrases:
            t = time.perf_counter()
            pcm = engine.synthesize(p, voice)
            dt = time.perf_counter() - t
            secs = audio.duration_ms(pcm) / 1000
            rtfs.append(dt / secs)
            total_audio += secs
    return statistics.median(rtfs), min(rtfs), total_audio


def _piper_first_audio(engine, text: str) -> float:
    """Time until Piper's generator yields its first sentence of audio."""
    pv = engine._load()
    t = time.perf_counter()
    for _chunk in pv.synthesize(text):
        return time.perf_counter() - t
    return float("nan")


def _espeak_first_audio(engine, voice, text: str) -> float:
    """Time until espeak-ng's stdout carries the first audio samples (past the WAV header)."""
    cmd = [engine.binary, "-v", voice.engine_voice, "-b", "1", "--stdout"]
    t = time.perf_counter()
    p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    p.stdin.write(text.encode())
    p.stdin.close()
    got = 0
    while got <= 44:  # header, then the first samples
        chunk = p.stdout.read1(4096)
        if not chunk:
            break
        got += len(chunk)
    first = time.perf_counter() - t
    p.stdout.read()
    p.wait()
    return first


def _raw_write(n_samples: int) -> float:
    import numpy as np

    t = time.perf_counter()
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(np.zeros(n_samples, dtype="<i2").tobytes())
    return time.perf_counter() - t


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=2, help="passes over the phrase set per engine")
    ap.add_argument("--cached", type=int, default=200, help="cached renders to time")
    args = ap.parse_args(argv)

    from services.common import audio
    from services.common.media_store import LocalMediaStore
    from services.lib.voices.catalog import get_voice
    from services.tts.engines import EspeakEngine, PiperEngine
    from services.tts.render import Renderer

    piper, espeak = PiperEngine(), EspeakEngine()
    pv, ev = get_voice("en-US-Neural2-D"), get_voice("en-US-Standard-B")
    t = time.perf_counter()
    piper.synthesize("Warm up.", pv)
    piper_load = time.perf_counter() - t
    espeak.synthesize("Warm up.", ev)

    out: dict[str, float] = {}
    print(f"tts: {len(PHRASES)} phrases x {args.repeat}, 8 kHz output; Piper model load + first render "
          f"{piper_load:.2f} s (once per process, not counted below); load average {os.getloadavg()[0]:.2f} "
          f"on {os.cpu_count()} CPUs")
    for name, eng, voice in (("piper", piper, pv), ("espeak-ng", espeak, ev)):
        med, best, secs = _rtf(eng, voice, PHRASES, args.repeat)
        first = (_piper_first_audio(eng, PROMPT) if name == "piper" else _espeak_first_audio(eng, voice, PROMPT))
        t = time.perf_counter()
        pcm = eng.synthesize(PROMPT, voice)
        whole = time.perf_counter() - t
        out[f"{name}_rtf"], out[f"{name}_ttfa_stream"], out[f"{name}_ttfa_render"] = med, first, whole
        print(f"  {name:9s} RTF median {med:.3f} (best {best:.3f}) over {secs:.0f} s of audio | first audio: "
              f"streaming {_ms(first).strip()}, whole {audio.duration_ms(pcm) / 1000:.1f} s prompt rendered "
              f"{_ms(whole).strip()}")
    ratio = out["piper_rtf"] / out["espeak-ng_rtf"]
    ok = lambda v, lim: "OK" if v <= lim else "MISSED"  # noqa: E731
    print(f"  Piper RTF {out['piper_rtf']:.3f}   target <= 0.1  {ok(out['piper_rtf'], 0.1)}   "
          f"= {ratio:.2f}x espeak-ng (baseline)")

    with tempfile.TemporaryDirectory() as tmp:
        store = LocalMediaStore(tmp)
        r = Renderer(store=store, engines={"piper": piper, "espeak": espeak})
        req = {"text": PHRASES[0], "voice": "en-US-Neural2-D"}
        t = time.perf_counter()
        first = r.render_sync(req)
        miss = time.perf_counter() - t
        hits, reads = [], []
        for _ in range(args.cached):
            t = time.perf_counter()
            res = r.render_sync(req)
            hits.append(time.perf_counter() - t)
            assert res.cache_hit and res.audio_ref == first.audio_ref
            t = time.perf_counter()
            audio.read_wav(store.get(first.audio_ref))
            reads.append(time.perf_counter() - t)
        hit, read = statistics.median(hits), statistics.median(reads)
        n = audio.duration_ms(audio.read_wav(store.get(first.audio_ref))[0]) * 8
        raw = statistics.median(_raw_write(n) for _ in range(50))
    out.update(cached_ms=hit * 1000, cached_p99_ms=sorted(hits)[int(len(hits) * 0.99) - 1] * 1000,
               read_ms=read * 1000, miss_ms=miss * 1000, raw_write_ms=raw * 1000)
    print(f"  cached render median {_ms(hit).strip()} (p99 {out['cached_p99_ms']:.3f} ms)   target <= 5 ms  "
          f"{ok(out['cached_ms'], 5)}   = {hit / read:.1f}x a bare read of the WAV ({_ms(read).strip()}, baseline)")
    print(f"  uncached render (Piper) {_ms(miss).strip()}; raw WAV write of the same {n} samples "
          f"{_ms(raw).strip()} (floor)")
    return out


if __name__ == "__main__":
    main()
