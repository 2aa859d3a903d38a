"""Whole calls on the real stack through the SIP carrier: orchestrator, gateway, TTS and
projector as processes; SIPp as the far end (the interop scenarios); the account's trunk
row in Postgres pointing at it."""

from __future__ import annotations

import pytest

from services.lib import trunks
from tests.e2e.conftest import CORE, SPEECH, sip_voice_stack
from tests.interop.sip.conftest import (SCENARIOS, rtp_listener, sipp, write_dtmf_pcap,  # noqa: F401 (fixtures)
                                        write_pcmu_pcap)

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
async def voice(request, stack, tmp_path_factory):
    async for vs in sip_voice_stack(request, stack, tmp_path_factory, CORE + [SPEECH]):
        yield vs


async def trunk_to(voice, uas, **kw) -> None:
    await trunks.set_trunk(voice.db, voice.account, host="127.0.0.1", port=uas.port, password=kw.pop("password", None),
                           **kw)


async def test_answered_call_plays_the_tts_prompt_over_rtp(voice, kprod, sipp, rtp_listener):
    uas = sipp("uas_answer.xml", sets={"rtp_port": str(rtp_listener.port)})
    await trunk_to(voice, uas)
    cid = await voice.place(kprod, carrier="sip", tts={"text": "Hello from Canary, over a real SIP trunk."})
    end = await voice.wait(cid, "terminal", timeout=60)
    assert end.type == "call.completed", voice.types(cid)
    seq = [t for t in voice.types(cid) if t in ("call.ringing", "call.answered", "play.requested", "prompt.finished",
                                                  "hangup.requested", "call.completed")]
    assert seq == ["call.ringing", "call.answered", "play.requested", "prompt.finished", "hangup.requested",
                   "call.completed"]
    assert (await voice.wait(cid, "prompt.finished")).data["interrupted"] is False
    assert uas.wait() == 0, uas.errors()  # SIPp saw the whole dialog, our BYE included
    audio = [r.pkt for r in rtp_listener.packets if r.pkt.payload_type == 0]
    assert len(audio) >= 50  # at least a second of PCMU, 20 ms a packet
    assert all(len(p.payload) == 160 for p in audio) and len({p.ssrc for p in audio}) == 1
    assert any(b != 0xFF for p in audio for b in p.payload)  # not just PCMU silence: the prompt


async def test_busy(voice, kprod, sipp):
    uas = sipp("uas_busy.xml")
    await trunk_to(voice, uas)
    cid = await voice.place(kprod, carrier="sip")
    end = await voice.wait(cid, "terminal", timeout=30)
    assert end.type == "call.busy" and end.data["sip_code"] == 486, end
    assert uas.wait() == 0, uas.errors()


def _late_digits_scenario(tmp_path, pcap: str, *, inband: bool = False):
    """uas_dtmf, replaying `pcap` 5 s after the ACK: once our prompt has played and the
    gather is open (digits between the prompt and the gather would be type-ahead). With
    `inband` its SDP answer offers no telephone-event, so digits can only be tones."""
    xml = (SCENARIOS / "uas_dtmf.xml").read_text().replace("dtmf.pcap", pcap)
    if inband:
        xml = xml.replace("RTP/AVP 0 101", "RTP/AVP 0").replace("      a=rtpmap:101 telephone-event/8000\n", "")
        xml = xml.replace("      a=fmtp:101 0-15\n", "")
        assert "101" not in xml.split("<![CDATA[")[2].split("]]>")[0]
    scenario = tmp_path / f"uas_{pcap}.xml"
    scenario.write_text(xml.replace("  <nop>", '  <pause milliseconds="5000"/>\n  <nop>', 1))
    return str(scenario)


# The docs' example: "Please enter your 4-digit PIN followed by the pound key". The pound key
# pressed right after the fourth digit ends the gather and is reported (the contract's
# webhook payload: "digits": "1234", "finished_on_key": "#"), over both DTMF methods.
async def test_rfc4733_digits_then_pound_complete_the_docs_gather(voice, kprod, sipp, tmp_path):
    write_dtmf_pcap(tmp_path / "dtmf.pcap", "1234#")
    uas = sipp(_late_digits_scenario(tmp_path, "dtmf.pcap"))
    await trunk_to(voice, uas)
    cid = await voice.place(kprod, carrier="sip", tts={"text": "Enter your PIN."},
                            gather={"type": "dtmf", "num_digits": 4, "finish_on_key": "#", "timeout": 15})
    g = await voice.wait(cid, "gather.completed", timeout=60)
    assert (g.data["digits"], g.data["finished_on_key"]) == ("1234", "#"), voice.events[cid]
    assert (await voice.wait(cid, "terminal")).type == "call.completed"
    digits = [e.data for e in voice.events[cid] if e.type == "dtmf.received"]
    assert [d["digit"] for d in digits] == list("1234#") and all(d["method"] == "rfc4733" for d in digits)
    assert uas.wait() == 0, uas.errors()


async def test_inband_tones_then_pound_complete_the_docs_gather(voice, kprod, sipp, tmp_path):
    from services.common import audio
    from services.telephony.sip.dtmf import tone

    # 100 ms tones, 100 ms apart: a fast but ordinary caller.
    pcm = audio.silence(200) + b"".join(tone(d, 100) + audio.silence(100) for d in "1234#") + audio.silence(500)
    write_pcmu_pcap(tmp_path / "tones.pcap", pcm)
    uas = sipp(_late_digits_scenario(tmp_path, "tones.pcap", inband=True))
    await trunk_to(voice, uas)
    cid = await voice.place(kprod, carrier="sip", tts={"text": "Enter your PIN."},
                            gather={"type": "dtmf", "num_digits": 4, "finish_on_key": "#", "timeout": 15})
    g = await voice.wait(cid, "gather.completed", timeout=60)
    assert (g.data["digits"], g.data["finished_on_key"]) == ("1234", "#"), voice.events[cid]
    digits = [e.data for e in voice.events[cid] if e.type == "dtmf.received"]
    assert [d["digit"] for d in digits] == list("1234#") and all(d["method"] == "inband" for d in digits)
    assert (await voice.wait(cid, "terminal")).type == "call.completed"
    assert uas.wait() == 0, uas.errors()


async def test_digest_challenge_answered_with_trunk_credentials(voice, kprod, sipp):
    uas = sipp("uas_auth.xml")  # 401, then checks alice / s3cret on the retried INVITE (else 403)
    await trunk_to(voice, uas, username="alice", password="s3cret")
    cid = await voice.place(kprod, carrier="sip")
    end = await voice.wait(cid, "terminal", timeout=60)
    assert end.type == "call.completed", [(e.type, e.data) for e in voice.events[cid]]
    assert "call.answered" in voice.types(cid)
    assert uas.wait() == 0, uas.errors()
    logs = "".join(p.read_text(errors="replace") for p in voice.logdir.glob("*.log"))
    assert "s3cret" not in logs  # the trunk password is never logged


async def test_no_trunk_fails_the_call(voice, kprod):
    await trunks.delete_trunk(voice.db, voice.account)
    cid = await voice.place(kprod, carrier="sip")
    end = await voice.wait(cid, "terminal", timeout=30)
    assert end.type == "call.failed" and end.data["reason"] == "no SIP trunk configured for this account"


async def test_caller_id_refused_by_trunk_rules_fails_the_call(voice, kprod):
    await trunks.set_trunk(voice.db, voice.account, host="127.0.0.1", port=9, allowed_from_prefixes=["+44"])
    cid = await voice.place(kprod, carrier="sip")
    end = await voice.wait(cid, "terminal", timeout=30)
    assert end.type == "call.failed" and "is not allowed" in end.data["reason"], end
    assert "call.ringing" not in voice.types(cid)


def write_speech_pcap(path, text: str, *, lead_ms: int = 500, tail_ms: int = 1500) -> None:
    """A libpcap file of PCMU RTP saying `text` (Piper, here in the test), between
    stretches of silence, for SIPp's play_pcap_audio."""
    from services.common import audio
    from services.tts.render import Renderer

    r = Renderer()
    pcm, _, _ = audio.read_wav(r.store.get(r.render_sync({"text": text, "voice": "en-US-Neural2-D"}).audio_ref))
    write_pcmu_pcap(path, audio.silence(lead_ms) + pcm + audio.silence(tail_ms))


async def test_speech_gather_over_sip(voice, kprod, sipp, tmp_path):
    """The callee speaks over RTP; the gateway streams the gather's audio, the transcription
    service recognises it, and the gather completes with the matched hint."""
    write_speech_pcap(tmp_path / "speech.pcap", "I would like to talk to support.")
    # Speak once our prompt has played and the gather is open: speech before it is not
    # collected (digits are, as type-ahead). 10 s after the ACK is far longer than the short
    # prompt and two Kafka hops take on a loaded machine; the 30 s first-input timeout is
    # far past when the words start.
    scenario = tmp_path / "uas_speech.xml"
    xml = (SCENARIOS / "uas_dtmf.xml").read_text().replace("dtmf.pcap", "speech.pcap")
    scenario.write_text(xml.replace("  <nop>", '  <pause milliseconds="10000"/>\n  <nop>', 1))
    uas = sipp(str(scenario))
    await trunk_to(voice, uas)
    cid = await voice.place(kprod, carrier="sip", tts={"text": "Which department?"},
                            gather={"type": "speech", "timeout": 30, "hints": ["sales", "support", "billing"]})
    g = await voice.wait(cid, "gather.completed", timeout=60)
    speech = g.data["speech"]
    assert speech["matched_hint"] == "support", speech
    assert "support" in speech["text"].lower() and 0 < speech["confidence"] <= 1
    heard = next(e for e in voice.events[cid] if e.type == "speech.recognized")
    assert heard.data["gather_id"] == g.causation_id
    assert (await voice.wait(cid, "terminal")).type == "call.completed"
    assert uas.wait() == 0, uas.errors()


async def test_a_trunk_over_tcp_carries_the_whole_call(voice, kprod, sipp, rtp_listener):
    """The account's trunk says tcp: the stored transport reaches the carrier, SIPp (over one
    TCP connection) sees the whole dialog, the prompt arrives over RTP."""
    uas = sipp("uas_answer.xml", transport="tcp", sets={"rtp_port": str(rtp_listener.port)})
    await trunk_to(voice, uas, transport="tcp")
    cid = await voice.place(kprod, carrier="sip", tts={"text": "Hello over TCP."})
    end = await voice.wait(cid, "terminal", timeout=60)
    assert end.type == "call.completed", voice.types(cid)
    assert uas.wait() == 0, uas.errors()
    assert len([r for r in rtp_listener.packets if r.pkt.payload_type == 0]) >= 25


async def test_a_dial_step_bridges_two_sip_legs(voice, kprod, sipp, rtp_listener, tmp_path):
    """Both legs through the trunk to one SIPp (two calls): the second party (+15550177) plays
    a 1 kHz tone and hangs up; the tone must come out of the first party's leg (its own SSRC),
    relayed through the gateway, and the flow go on after the second party left."""
    import numpy as np

    from services.common import audio

    tone = (np.sin(2 * np.pi * 1000 * np.arange(8000 * 2) / 8000) * 12000).astype("<i2").tobytes()
    write_pcmu_pcap(tmp_path / "tone.pcap", tone)
    scenario = tmp_path / "uas_dial_legs.xml"
    scenario.write_text((SCENARIOS / "uas_dial_legs.xml").read_text())
    uas = sipp(str(scenario), sets={"rtp_port": str(rtp_listener.port)}, extra=["-m", "2"])
    await trunk_to(voice, uas)
    flow = {"start": "hello", "steps": {
        "hello": {"kind": "say", "text": "Connecting you.", "next": "agent"},
        "agent": {"kind": "dial", "to": "+15550177", "timeout": 20, "next": "after"},
        "after": {"kind": "say", "text": "Goodbye."}}}
    parent = await voice.place(kprod, carrier="sip", tts=None, flow=flow)
    ended = await voice.wait(parent, "dial.ended", timeout=60)
    assert ended.data["outcome"] == "completed", voice.types(parent)
    child = ended.data["child_call_id"]
    assert (await voice.wait(parent, "terminal", timeout=60)).type == "call.completed"
    assert next(e for e in voice.events[child] if e.type == "call.completed").data["hangup_by"] == "callee"
    assert uas.wait(30) == 0, uas.errors()

    by_ssrc: dict[int, list] = {}
    for r in rtp_listener.packets:
        if r.pkt.payload_type == 0:
            by_ssrc.setdefault(r.pkt.ssrc, []).append(r)
    first_leg = min(by_ssrc, key=lambda s: by_ssrc[s][0].at)  # the parent answered first

    def tone_share(payload: bytes) -> float:
        x = np.frombuffer(audio.ulaw_decode(payload), "<i2").astype(float)
        spec = np.abs(np.fft.rfft(x)) ** 2
        return spec[19:22].sum() / max(spec.sum(), 1.0)  # 1 kHz is bin 20 of a 160-sample frame

    toned = [r for r in by_ssrc[first_leg] if tone_share(r.pkt.payload) > 0.8]
    assert len(toned) >= 50, len(toned)  # >= 1 s of the second party's 2 s tone, on the first leg
