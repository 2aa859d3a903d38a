"""Call options that are flows in disguise: the flow a PlaceCall's `dial` option runs.

`dial` on POST /v1/voice/calls is click-to-call: call the first party, say or play the call's
greeting once they answer (tts / audio_url, if given), then connect them to `dial.to`, exactly
as a flow's dial step does (its own call, ringback meanwhile, the outcome on the timeline).
One step kind carries it out, so the option and the step cannot drift apart.
"""

from __future__ import annotations

from typing import Any, Mapping

DIAL_STEP = "dial"
GREETING_STEP = "greeting"


def dial_step(options: Mapping[str, Any]) -> dict[str, Any]:
    """The flow step a `dial` option stands for (options as the PlaceCall gives them)."""
    step: dict[str, Any] = {"kind": "dial", "to": options["to"]}
    for key in ("caller_id", "timeout", "record"):
        if options.get(key) is not None:
            step[key] = options[key]
    return step


def dial_flow(req: Mapping[str, Any]) -> dict[str, Any]:
    """The flow of a PlaceCall with `dial`: the greeting (tts or audio_url) if any, then the dial
    step; when the second party's call ends, whatever its outcome, the call hangs up."""
    steps: dict[str, Any] = {DIAL_STEP: dial_step(req["dial"])}
    start = DIAL_STEP
    if tts := req.get("tts"):
        steps[GREETING_STEP] = {"kind": "say", "text": tts["text"], "next": DIAL_STEP}
        if tts.get("voice"):
            steps[GREETING_STEP]["voice"] = tts["voice"]
        start = GREETING_STEP
    elif req.get("audio_url"):
        steps[GREETING_STEP] = {"kind": "play", "url": req["audio_url"], "next": DIAL_STEP}
        start = GREETING_STEP
    return {"name": "dial option", "start": start, "steps": steps}
