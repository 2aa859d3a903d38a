"""Speech-to-text benchmark: real-time factor and word error rate of the transcriber.

The phrase set is generated: our own Piper voice reads each phrase, the audio goes
through a G.711 mu-law leg (what a phone call does to it), and faster-whisper
transcribes it. Figures:

- RTF = transcription time / audio duration (lower is better; target <= 0.15). Whisper
  always encodes a 30 s window, so a short clip pays for 30 s: RTF is reported for the
  post-call case (one call-length recording: every phrase in a row with pauses, what
  ``transcription.completed`` does) and, separately, per phrase (what a live utterance
  costs; higher by construction);
- WER = word edits (substitutions + insertions + deletions) / reference words, over the
  whole set, after normalising case, punctuation and number words;
- the baseline, measured in the same run on the same call audio, is the model's floor:
  a greedy decode (beam 1) with no VAD pass and no timestamps. ``x baseline`` is what
  our settings (beam 5 + Silero VAD, chosen for accuracy and against hallucinated text
  on silence) cost on top; both move together on a slower or busier machine.

Run: ``python -m bench.stt`` (about 30 s on 2 cores; ``--phrases N`` for fewer).
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import time

PHRASES = [
    "Please call the front desk about your package delivery tomorrow morning.",
    "Your appointment with doctor Miller is confirmed for Tuesday afternoon.",
    "Press one for sales or stay on the line to speak with an agent.",
    "We could not process your payment because the card has expired.",
    "Thank you for calling, have a wonderful day.",
    "The meeting has been moved to the large conference room on the second floor.",
    "Your order has shipped and should arrive within three business days.",
    "Please hold while we transfer your call to the billing department.",
    "The weather today is sunny with a light breeze from the west.",
    "If you would like to leave a message, please speak after the tone.",
    "Your account balance is low, please add funds to avoid interruption.",
    "This call may be recorded for quality and training purposes.",
]

_NUMBERS = {"0": "zero", "1": "one", "2": "two", "3": "three", "4": "four", "5": "five", "6": "six",
            "7": "seven", "8": "eight", "9": "nine", "10": "ten", "dr": "doctor", "ok": "okay"}


def normalize(text: str) -> list[str]:
    """Lower-case words without punctuation; small numbers and a few abbreviations spelled out."""
    words = re.findall(r"[a-z0-9']+", text.lower().replace("-", " "))
    return [_NUMBERS.get(w, w) for w in words]


def edit_distance(ref: list[str], hyp: list[str]) -> int:
    """Levenshtein distance over words (one row of the DP table at a time)."""
    prev = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        cur = [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h))
        prev = cur
    return prev[-1]


def wer(refs: list[str], hyps: list[str]) -> float:
    """Corpus WER: total word edits / total reference words."""
    edits = sum(edit_distance(normalize(r), normalize(h)) for r, h in zip(refs, hyps))
    return edits / max(1, sum(len(normalize(r)) for r in refs))


def phone_line(pcm: bytes) -> bytes:
    """What survives a G.711 mu-law call leg."""
    from services.common import audio

    return audio.ulaw_decode(audio.ulaw_encode(pcm))


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--phrases", type=int, default=len(PHRASES))
    ap.add_argument("--voice", default="en-US-Neural2-D")
    args = ap.parse_args(argv)

    from services.common import audio
    from services.lib.voices.catalog import get_voice
    from services.transcription.engine import WhisperTranscriber
    from services.tts.engines import PiperEngine

    phrases = PHRASES[:args.phrases]
    tts, voice = PiperEngine(), get_voice(args.voice)
    clips = [phone_line(tts.synthesize(p, voice)) for p in phrases]
    stt = WhisperTranscriber()
    t0 = time.perf_counter()
    stt.transcribe(clips[0])  # load + warm up; not timed below
    load_s = time.perf_counter() - t0

    hyps, rtfs = [], []
    for clip in clips:
        secs = audio.duration_ms(clip) / 1000
        t = time.perf_counter()
        hyps.append(stt.transcribe(clip).text)
        rtfs.append((time.perf_counter() - t) / secs)

    pause = audio.silence(600)
    call = pause.join(clips)
    call_s = audio.duration_ms(call) / 1000
    t = time.perf_counter()
    call_text = stt.transcribe(call).text
    call_rtf = (time.perf_counter() - t) / call_s
    t = time.perf_counter()
    base_text = _greedy(stt, call)
    base_rtf = (time.perf_counter() - t) / call_s

    rtf = statistics.median(rtfs)
    score = wer(phrases, hyps)
    call_wer = wer([" ".join(phrases)], [call_text])
    print(f"stt: faster-whisper ({stt._model_path or 'bundled tiny'}), {len(clips)} phrases, "
          f"{call_s:.1f} s of mu-law audio, model load+warm-up {load_s:.2f} s; "
          f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    for p, h in zip(phrases, hyps):
        e = edit_distance(normalize(p), normalize(h))
        if e:
            print(f"  {e} edit(s): {p!r} -> {h.strip()!r}")
    ok = lambda v, lim: "OK" if v <= lim else "MISSED"  # noqa: E731
    print(f"  post-call RTF ({call_s:.0f} s call)   {call_rtf:.3f}   target <= 0.15  {ok(call_rtf, 0.15)}")
    print(f"  baseline RTF (greedy, no VAD) {base_rtf:.3f}   ours = {call_rtf / base_rtf:.2f}x baseline"
          f"   (baseline WER {wer([' '.join(phrases)], [base_text]):.1%})")
    print(f"  per-phrase RTF (median/worst) {rtf:.3f} / {max(rtfs):.3f}   (short clips pay the 30 s window)")
    print(f"  WER per phrase                {score:.1%}   target <= 15%  {ok(score, 0.15)}")
    print(f"  WER post-call                 {call_wer:.1%}")
    return {"rtf": call_rtf, "baseline_rtf": base_rtf, "phrase_rtf": rtf, "wer": score, "call_wer": call_wer}


def _greedy(stt, pcm8k: bytes) -> str:
    """The model's floor: one greedy pass, no VAD, no timestamps."""
    from services.common import audio
    from services.transcription.engine import _WHISPER_RATE

    samples = audio.resample_array(audio.pcm_to_array(pcm8k), audio.SAMPLE_RATE, _WHISPER_RATE)
    segs, _ = stt._load().transcribe(samples, language="en", beam_size=1, vad_filter=False,
                                     condition_on_previous_text=False, without_timestamps=True)
    return " ".join(s.text for s in segs)


if __name__ == "__main__":
    main()
