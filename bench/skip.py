"""What a consumer pays for the records of the event log it does not take.

Most consumers of voice.call.events take a few of its types (the TTS worker: tts.requested;
the webhooks service: status and gather events) and used to decode every record to find
out. Records now carry their type in a header (services/common/kafka.py type_headers), and
Source.item skips on it undecoded. Measured: Source.item over a realistic mix of a call's
events for a consumer taking one type, with the header (now) against without it (the old
path, the baseline), same run. Target: >= 3x faster per record.

Run: ``python bench/skip.py``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from events import encode, new_envelope  # noqa: E402
from services.common.consumer import Source  # noqa: E402
from services.common.kafka import type_headers  # noqa: E402

MIX = [("call.queued", {"to": "+15551234567", "from": "+15559876543", "direction": "outbound",
                        "tts": {"text": "Hello! This is a call from Canary. Press 1 to confirm."}}),
       ("tts.requested", {"text": "Hello! This is a call from Canary.", "voice": "en-US-Neural2-F"}),
       ("dial.requested", {"to": "+15551234567", "from": "+15559876543", "timeout": 30}),
       ("call.ringing", {"early_media": False}), ("call.answered", {"answered_by": None}),
       ("tts.rendered", {"audio_ref": "sha256:" + "a" * 64 + ".wav", "duration_ms": 2400}),
       ("play.requested", {"audio_ref": "sha256:" + "a" * 64 + ".wav", "barge_in": True}),
       ("prompt.finished", {"interrupted": False}), ("hangup.requested", {"reason": "script"}),
       ("call.completed", {"reason": "hung up by caller", "hangup_by": "caller", "duration": 4})]


def records(with_header: bool, n: int) -> list:
    out = []
    for i in range(n):
        t, d = MIX[i % len(MIX)]
        env = new_envelope(t, f"call_{i // len(MIX)}", "acct_1", d)
        out.append(SimpleNamespace(topic="voice.call.events", partition=0, offset=i, value=encode(env),
                                   headers=type_headers(env) if with_header else [], timestamp=0))
    return out


def per_record_us(src: Source, recs: list, rounds: int = 5) -> float:
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        for r in recs:
            src.item(r)
        best = min(best, (time.perf_counter() - t0) / len(recs) * 1e6)
    return best


def main() -> int:
    src = Source("voice.call.events", types=frozenset({"tts.requested"}))
    n = 20_000
    old = per_record_us(src, records(False, n))
    new = per_record_us(src, records(True, n))
    ratio = old / new
    skipped = lambda recs: [r for r in recs if r.offset % len(MIX) != 1]  # noqa: E731 (not tts.requested)
    old_skip = per_record_us(src, skipped(records(False, n)))
    new_skip = per_record_us(src, skipped(records(True, n)))
    print(f"Source.item, a consumer taking 1 of {len(MIX)} types of a call's events:")
    print(f"  all records:     without header {old:.2f} us (baseline), with {new:.2f} us: {ratio:.1f}x faster")
    print(f"  skipped records: without header {old_skip:.2f} us (baseline), with {new_skip:.2f} us: "
          f"{old_skip / new_skip:.1f}x faster (target >= 3x)")
    ratio = old_skip / new_skip
    if ratio < 3:
        print(f"BEHIND: {ratio:.1f}x < 3x")
        return 1
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception as exc:  # a bench reports, it never crashes
        print(f"bench failed to run: {type(exc).__name__}: {exc}")
        sys.exit(2)
