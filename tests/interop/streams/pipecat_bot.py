"""A voice bot written against pipecat's Twilio support, as pipecat's Twilio examples build it:
a FastAPI WebSocket endpoint, `parse_telephony_websocket` for the stream and call ids,
`TwilioFrameSerializer` over `FastAPIWebsocketTransport`, and a pipeline of processors.

pipecat has no local STT/TTS services, so the three processors in the middle are tiny
custom ones over the project's own engines (examples/voice_brain.py): `Ears` endpoints the
caller's audio and transcribes an utterance with faster-whisper, `Brain` picks the answer,
`Mouth` renders it with Piper; then the bot ends its task, which closes the WebSocket.
"""

from __future__ import annotations

import asyncio

from fastapi import FastAPI, WebSocket
from pipecat.frames.frames import (EndTaskFrame, Frame, InputAudioRawFrame, TextFrame, TranscriptionFrame,
                                   TTSAudioRawFrame)
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.runner import PipelineRunner
from pipecat.pipeline.task import PipelineParams, PipelineTask
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.runner.utils import parse_telephony_websocket
from pipecat.serializers.twilio import TwilioFrameSerializer
from pipecat.transports.websocket.fastapi import FastAPIWebsocketParams, FastAPIWebsocketTransport

from examples import voice_brain as brain

RATE = 8000


class Ears(FrameProcessor):
    """Caller audio -> one TranscriptionFrame per utterance."""

    def __init__(self, heard: list[str]):
        super().__init__()
        self.ep, self.buf, self.heard = brain.utterances(), b"", heard

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if not isinstance(frame, InputAudioRawFrame):
            await self.push_frame(frame, direction)
            return
        self.buf += frame.audio  # pipecat's chunks need not be 20 ms: re-frame for the endpointer
        while len(self.buf) >= 320:
            chunk, self.buf = self.buf[:320], self.buf[320:]
            if self.ep.feed(chunk) == "ended":
                text = await asyncio.to_thread(brain.transcribe, self.ep.audio())
                self.heard.append(text)
                self.ep = brain.utterances()
                await self.push_frame(TranscriptionFrame(text=text, user_id="caller", timestamp=""))


class Brain(FrameProcessor):
    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, TranscriptionFrame):
            await self.push_frame(TextFrame(brain.answer(frame.text)))
        else:
            await self.push_frame(frame, direction)


class Mouth(FrameProcessor):
    """TextFrame -> Piper audio; after the answer, the bot is done: end the task (in order,
    so the transport sends the audio first)."""

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, TextFrame) and not isinstance(frame, TranscriptionFrame):
            pcm = await asyncio.to_thread(brain.speak, frame.text)
            for i in range(0, len(pcm), 3200):  # 200 ms chunks, as a streaming TTS service would
                await self.push_frame(TTSAudioRawFrame(audio=pcm[i:i + 3200], sample_rate=RATE, num_channels=1))
            await self.push_frame(EndTaskFrame(), FrameDirection.UPSTREAM)
        else:
            await self.push_frame(frame, direction)


def make_app(seen: dict) -> FastAPI:
    """`seen` gets what the bot learnt: transport type, call data, what it heard."""
    app = FastAPI()

    @app.websocket("/media")
    async def media(websocket: WebSocket) -> None:
        await websocket.accept()
        transport_type, call_data = await parse_telephony_websocket(websocket)
        seen.update(transport_type=transport_type, call_data=dict(call_data), heard=[])
        serializer = TwilioFrameSerializer(
            stream_sid=call_data["stream_id"], call_sid=call_data["call_id"],
            params=TwilioFrameSerializer.InputParams(auto_hang_up=False))  # hang-up via Twilio's REST API: no
        transport = FastAPIWebsocketTransport(websocket=websocket, params=FastAPIWebsocketParams(
            audio_in_enabled=True, audio_out_enabled=True, add_wav_header=False, serializer=serializer))
        pipeline = Pipeline([transport.input(), Ears(seen["heard"]), Brain(), Mouth(), transport.output()])
        # The task/runner API of pipecat's Twilio examples (1.14 calls it deprecated in favour of
        # workers; the example's way is the one Twilio bots out there use).
        task = PipelineTask(pipeline, params=PipelineParams(audio_in_sample_rate=RATE, audio_out_sample_rate=RATE))
        await PipelineRunner(handle_sigint=False).run(task)
        seen["done"] = True

    return app
