"""A dial step's two calls on one gateway: ringback while the second rings, then each hears the
other, frame for frame, on real sandbox sessions and their shared frame clock."""

from __future__ import annotations

import asyncio

import numpy as np

from events import new_envelope
from services.telephony.bridge import RINGBACK_OFF_MS, RINGBACK_ON_MS, Relay, ringback, ringback_cycle
from services.telephony.carrier import FRAME_BYTES, DialRequest
from services.telephony.gateway import LiveCall
from services.telephony.sandbox import CalleeScript, FrameClock, SandboxSession
from tests.unit.telephony.test_gateway_speech import FakeGateway

SPEED = 4.0


def noise(seconds: float, seed: int) -> bytes:
    """Speech-like audio no two frames of which are alike (so each frame can be found again)."""
    rng = np.random.default_rng(seed)
    return (rng.normal(0, 4000, int(8000 * seconds)).clip(-32000, 32000)).astype("<i2").tobytes()


def test_ringback_is_two_seconds_of_tone_then_four_of_silence():
    cycle = ringback_cycle()
    assert len(cycle) == (RINGBACK_ON_MS + RINGBACK_OFF_MS) // 20 and all(len(f) == FRAME_BYTES for f in cycle)
    level = [np.abs(np.frombuffer(f, "<i2")).mean() for f in cycle]
    on = RINGBACK_ON_MS // 20
    assert min(level[:on]) > 1000 and max(level[on:]) == 0
    feed = ringback()
    assert [feed() for _ in range(len(cycle) + 1)] == cycle + cycle[:1]  # it loops


def test_a_relay_is_bounded_and_drops_the_oldest():
    r = Relay(max_frames=3)
    for i in range(5):
        r.push(bytes([i]))
    assert [r.pull() for _ in range(4)] == [b"\x02", b"\x03", b"\x04", None] and r.relayed == 3


def test_a_standing_backlog_is_shed_in_pauses_never_in_speech():
    quiet, loud = bytes(320), (b"\x00\x20" * 160)  # silence; a frame at 8192
    r = Relay(target=3)
    for f in [quiet] * 6 + [loud] * 5 + [quiet] * 4:
        r.push(f)
    first = r.pull()  # 15 waiting: the 6 quiet ones at the head go (down to the speech), then speech
    assert first == loud and r.shed == 6
    out = [first] + [r.pull() for _ in range(4)]
    assert out == [loud] * 5  # every speech frame kept, in order
    assert r.pull() == quiet and r.shed == 7  # 4 quiet left: shed to 3, one sent
    assert len(r.frames) == 2


async def answered_parent(clock, gw, said: bytes):
    """The first party's call, answered, with `said` queued as what it says."""
    pdial = new_envelope("dial.requested", "call_p", "acct_1", {"to": "+15551234567", "from": "+15559876543"})
    session = SandboxSession(DialRequest("call_p", "+15551234567", "+15559876543", 30.0),
                             CalleeScript(ring=0.1), SPEED, None, clock)
    parent = LiveCall(gw, pdial, session)
    while not parent.answered:
        await asyncio.sleep(0.01)
    session._callee_audio.extend([said[i:i + FRAME_BYTES] for i in range(0, len(said), FRAME_BYTES)])
    return parent, session


def second_party(clock, gw, script: CalleeScript, line: bytes):
    """The dial step's second call (not yet rung), whose callee says `line`."""
    async def speak(req, text, voice):
        return line

    cdial = new_envelope("dial.requested", "call_c", "acct_1", {
        "to": "+15557770020", "from": "+15559876543", "direction": "outbound-dial", "parent_call_id": "call_p"})
    session = SandboxSession(DialRequest("call_c", "+15557770020", "+15559876543", 30.0), script, SPEED, speak, clock)
    return LiveCall(gw, cdial, session), session



def test_the_parent_hears_ringback_then_the_second_party_and_it_hears_the_parent():
    line, said = noise(3.0, 1), noise(6.0, 2)

    async def scenario():
        clock, gw = FrameClock(SPEED), FakeGateway()
        parent, parent_session = await answered_parent(clock, gw, said)  # the first party talks
        parent_session.start_recording()
        child, child_session = second_party(clock, gw, CalleeScript(ring=1.0, after=0.2, say="hi", hangup_after=4.0),
                                            line)
        parent.ring_leg(child)
        child_session.start_recording()
        while not child.ended:
            await asyncio.sleep(0.02)
        assert parent.leg is None and parent.peer is None and not parent.ended  # the parent goes on
        await asyncio.sleep(0.2)
        _, to_parent = parent_session.stop_recording()
        _, to_child = child_session.stop_recording()
        parent.close()
        child.close()
        return to_parent, to_child

    to_parent, to_child = asyncio.run(scenario())
    frames = [to_parent[i:i + FRAME_BYTES] for i in range(0, len(to_parent), FRAME_BYTES)]
    # Ringback first (the 440 + 480 Hz tone), while the second call rang...
    assert frames[0] == ringback_cycle()[0]
    # ... then every frame the second party said, in order, none lost.
    sent = [line[i:i + FRAME_BYTES] for i in range(0, len(line), FRAME_BYTES)]
    at = frames.index(sent[0])
    assert frames[at:at + len(sent)] == sent
    # And the second party heard the first one, a contiguous run of what it said.
    heard = [to_child[i:i + FRAME_BYTES] for i in range(0, len(to_child), FRAME_BYTES)]
    spoken = [said[i:i + FRAME_BYTES] for i in range(0, len(said), FRAME_BYTES)]
    relayed = [f for f in heard if f in spoken]
    assert len(relayed) > 100
    first = spoken.index(relayed[0])
    assert relayed == spoken[first:first + len(relayed)]


def test_hold_plays_music_to_the_held_call_and_pauses_the_bridge_both_ways():
    from services.telephony.bridge import hold_music_cycle

    line, said = noise(8.0, 3), noise(8.0, 4)

    async def scenario():
        clock, gw = FrameClock(SPEED), FakeGateway()
        parent, parent_session = await answered_parent(clock, gw, said)
        child, child_session = second_party(clock, gw, CalleeScript(ring=0.2, after=0.1, say="hi", hangup_after=7.0),
                                            line)
        parent.ring_leg(child)
        while not child.answered:
            await asyncio.sleep(0.01)
        await asyncio.sleep(1.0 / SPEED)  # a second of conversation
        parent_session.start_recording()
        child_session.start_recording()
        assert parent.hold(True) is True  # a connected second party: the bridge is paused
        await asyncio.sleep(2.0 / SPEED)
        _, parent_on_hold = parent_session.stop_recording()
        _, child_waiting = child_session.stop_recording()
        parent_session.start_recording()
        assert parent.hold(False) is True
        await asyncio.sleep(1.0 / SPEED)
        _, parent_after = parent_session.stop_recording()
        parent.close()
        child.close()
        return parent_on_hold, child_waiting, parent_after

    on_hold, waiting, after = asyncio.run(scenario())
    music = set(hold_music_cycle())
    frames = lambda pcm: [pcm[i:i + FRAME_BYTES] for i in range(0, len(pcm), FRAME_BYTES)]  # noqa: E731
    sent = set(frames(line))
    held = frames(on_hold)
    assert sum(f in music for f in held) >= len(held) - 2  # the held call hears music (a frame at each edge)
    assert not any(f in sent for f in held)  # ... and none of the second party
    spoken = set(frames(said))
    assert not any(f in spoken for f in frames(waiting))  # the second party hears nothing of the held call
    assert sum(f in sent for f in frames(after)) >= len(frames(after)) - 5  # back to the second party
