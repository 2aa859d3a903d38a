"""A call's recording spooled to disk while the call runs, then put into the media store.

A carrier session hands every 20 ms frame of both directions to a recorder (``write``,
on the event loop, never blocking). :class:`SpoolRecorder` keeps at most about one
second of audio per channel in memory: each full chunk goes to a single writer thread
(shared by every call of the process) that appends it to a WAV file in the media store's
spool area. At the end :meth:`SpoolRecorder.finish` writes the last chunk, patches the
two WAV headers and returns the files, which :func:`services.common.media_store.put_file`
moves into the store without reading them into memory. A 1-hour recorded call costs the
gateway a few kB of buffers instead of ~115 MB of frames.

What waits for the writer is bounded (``max_backlog_s`` of audio): a disk that cannot
keep up ends the recording with :class:`RecordingSpoolError` instead of growing the
gateway's memory; the gateway then reports ``recording.failed``.

:class:`MemoryRecorder` is the carriers' default when no recorder is given (tests,
tools and benchmarks that want the bytes back from ``stop_recording``).
"""

from __future__ import annotations

import asyncio
import os
import struct
import tempfile
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Protocol

SAMPLE_RATE = 8000
SAMPLE_WIDTH = 2
BYTES_PER_S = SAMPLE_RATE * SAMPLE_WIDTH  # one mono channel of 8 kHz s16le
WAV_HEADER_BYTES = 44

_writer: ThreadPoolExecutor | None = None


def writer() -> ThreadPoolExecutor:
    """The process's recording writer: one thread, so no codec job in the media pool can hold
    a recording's writes back, and a call's chunks are written in order."""
    global _writer
    if _writer is None:
        _writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rec-spool")
    return _writer


def wav_header(data_bytes: int, rate: int = SAMPLE_RATE, channels: int = 1) -> bytes:
    """The 44-byte PCM WAV header of ``data_bytes`` of s16le audio (what :mod:`wave` writes)."""
    block = channels * SAMPLE_WIDTH
    return (b"RIFF" + struct.pack("<I", 36 + data_bytes) + b"WAVE"
            + b"fmt " + struct.pack("<IHHIIHH", 16, 1, channels, rate, rate * block, block, 8 * SAMPLE_WIDTH)
            + b"data" + struct.pack("<I", data_bytes))


class FrameRecorder(Protocol):
    """What a carrier session hands its recording to: both directions, frame by frame, aligned."""

    def write(self, callee: bytes, ours: bytes) -> None:
        """Called on the event loop for each tick (``callee`` and ``ours`` of equal length)."""


class MemoryRecorder:
    """Frames kept in RAM; ``audio()`` joins them (the carriers' default, for tests and tools)."""

    def __init__(self) -> None:
        self.callee: list[bytes] = []
        self.ours: list[bytes] = []

    def write(self, callee: bytes, ours: bytes) -> None:
        self.callee.append(callee)
        self.ours.append(ours)

    def audio(self) -> tuple[bytes, bytes]:
        return b"".join(self.callee), b"".join(self.ours)


class PausableRecorder:
    """A recorder that can be paused: while paused it hands on silence of the same length, so
    the file keeps the call's timeline, and it notes each paused span (ms from the start).

    Everything else (``finish``, ``discard``, ``closed`` ...) is the wrapped recorder's."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.written_bytes = 0  # per channel, paused or not
        self._paused_at: int | None = None
        self._spans: list[tuple[int, int]] = []

    @property
    def offset_ms(self) -> int:
        return int((self.written_bytes // SAMPLE_WIDTH) * 1000 // SAMPLE_RATE)

    @property
    def paused(self) -> bool:
        return self._paused_at is not None

    def pause(self) -> int:
        if self._paused_at is None:
            self._paused_at = self.offset_ms
        return self._paused_at

    def resume(self) -> int:
        if self._paused_at is not None:
            self._spans.append((self._paused_at, self.offset_ms))
            self._paused_at = None
        return self.offset_ms

    def paused_spans(self) -> list[dict[str, int]]:
        """Every paused span, one still open ending where the recording is now."""
        spans = [*self._spans, *([(self._paused_at, self.offset_ms)] if self._paused_at is not None else [])]
        return [{"start_ms": a, "end_ms": b} for a, b in spans]

    def write(self, callee: bytes, ours: bytes) -> None:
        self.written_bytes += len(callee)
        if self._paused_at is not None:
            callee, ours = bytes(len(callee)), bytes(len(ours))
        self.inner.write(callee, ours)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class RecordingSpoolError(RuntimeError):
    """The recording could not be spooled (the disk failed or fell too far behind)."""


@dataclass(frozen=True, slots=True)
class SpooledAudio:
    """One finished mono WAV file in the spool area."""

    path: Path
    data_bytes: int

    @property
    def duration_ms(self) -> int:
        return int((self.data_bytes // SAMPLE_WIDTH) * 1000 // SAMPLE_RATE)


class SpoolRecorder:
    """Both directions of a call, spooled to two mono WAV files in ``directory``."""

    def __init__(self, directory: str | os.PathLike[str], *, chunk_s: float = 1.0,
                 max_backlog_s: float = 60.0, name: str = "rec") -> None:
        self.directory = Path(directory)
        self.name = "".join(c for c in name if c.isalnum() or c in "-_")[:64] or "rec"
        self.chunk_bytes = max(SAMPLE_WIDTH, int(chunk_s * BYTES_PER_S) // SAMPLE_WIDTH * SAMPLE_WIDTH)
        self.max_backlog_bytes = max(self.chunk_bytes, int(max_backlog_s * BYTES_PER_S))
        self._callee = bytearray()
        self._ours = bytearray()
        self._queue: deque[tuple[bytes, bytes]] = deque()
        self.backlog_bytes = 0  # per channel: handed to the writer, not yet on disk
        self.data_bytes = 0  # per channel: accepted so far
        self._writing: asyncio.Future | None = None
        self._files: tuple[BinaryIO, BinaryIO] | None = None
        self._paths: tuple[Path, Path] | None = None
        self.error: BaseException | None = None
        self._closed = False

    @property
    def closed(self) -> bool:
        """Finished or discarded: it takes no more audio."""
        return self._closed

    # --- on the event loop ------------------------------------------------------------

    def write(self, callee: bytes, ours: bytes) -> None:
        if self._closed or self.error is not None:
            return
        if len(ours) != len(callee):  # keep the tracks aligned whatever a caller hands us
            ours = (ours + bytes(len(callee)))[:len(callee)]
        self._callee += callee
        self._ours += ours
        self.data_bytes += len(callee)
        if len(self._callee) >= self.chunk_bytes:
            self._enqueue()

    def _enqueue(self) -> None:
        if not self._callee:
            return
        n = len(self._callee)
        if self.backlog_bytes + n > self.max_backlog_bytes:
            self._fail(RecordingSpoolError(f"recording writer fell behind by more than "
                                           f"{self.max_backlog_bytes // BYTES_PER_S} s of audio"))
            return
        self._queue.append((bytes(self._callee), bytes(self._ours)))
        self.backlog_bytes += n
        self._callee = bytearray()
        self._ours = bytearray()
        self._kick()

    def _fail(self, exc: BaseException) -> None:
        if self.error is None:
            self.error = exc
        self._queue.clear()
        self._callee = bytearray()
        self._ours = bytearray()

    def _kick(self) -> None:
        if self._writing is not None or not self._queue or self.error is not None:
            return
        chunks = list(self._queue)
        self._queue.clear()
        self._writing = asyncio.get_running_loop().run_in_executor(writer(), self._append, chunks)
        self._writing.add_done_callback(lambda fut, n=sum(len(c) for c, _ in chunks): self._written(fut, n))

    def _written(self, fut: asyncio.Future, n: int) -> None:
        self._writing = None
        self.backlog_bytes -= n
        if fut.cancelled():
            self._fail(RecordingSpoolError("recording write cancelled"))
        elif (exc := fut.exception()) is not None:
            self._fail(RecordingSpoolError(f"recording write failed: {type(exc).__name__}: {exc}"))
        else:
            self._kick()

    async def drained(self) -> None:
        """Wait until every chunk handed to the writer is on disk."""
        while self._writing is not None or (self._queue and self.error is None):
            fut = self._writing
            if fut is None:
                self._kick()
                continue
            await asyncio.wait([fut])
            await asyncio.sleep(0)  # the done callback runs first and may start the next write

    async def finish(self) -> tuple[SpooledAudio, SpooledAudio]:
        """Write what is left, patch the WAV headers; (callee, ours). Raises
        :class:`RecordingSpoolError` (and removes the files) if the recording was lost."""
        self._closed = True
        self._enqueue()
        await self.drained()
        loop = asyncio.get_running_loop()
        if self.error is not None:
            await loop.run_in_executor(writer(), self._discard)
            raise self.error
        try:
            paths = await loop.run_in_executor(writer(), self._close)
        except Exception as exc:
            await loop.run_in_executor(writer(), self._discard)
            raise RecordingSpoolError(f"recording not finalised: {type(exc).__name__}: {exc}") from exc
        return SpooledAudio(paths[0], self.data_bytes), SpooledAudio(paths[1], self.data_bytes)

    async def discard(self) -> None:
        """Drop the recording (the call went away without finishing it)."""
        if self._closed:
            return
        self._closed = True
        self._fail(RecordingSpoolError("recording discarded"))
        await self.drained()
        await asyncio.get_running_loop().run_in_executor(writer(), self._discard)

    # --- in the writer thread ------------------------------------------------------------

    def _open(self) -> tuple[BinaryIO, BinaryIO]:
        if self._files is None:
            self.directory.mkdir(parents=True, exist_ok=True)
            files, paths = [], []
            try:
                for leg in ("callee", "ours"):
                    fd, p = tempfile.mkstemp(dir=self.directory, prefix=f".{self.name}-{leg}-", suffix=".wav")
                    paths.append(Path(p))
                    f = os.fdopen(fd, "wb")
                    files.append(f)
                    f.write(wav_header(0))  # patched in _close
            except BaseException:
                for f in files:
                    f.close()
                for p in paths:
                    p.unlink(missing_ok=True)
                raise
            self._files = (files[0], files[1])
            self._paths = (paths[0], paths[1])
        return self._files

    def _append(self, chunks: list[tuple[bytes, bytes]]) -> None:
        callee, ours = self._open()
        for a, b in chunks:
            callee.write(a)
            ours.write(b)

    def _close(self) -> tuple[Path, Path]:
        files = self._open()  # an empty recording is a valid, empty WAV
        header = wav_header(self.data_bytes)
        for f in files:
            f.flush()
            f.seek(0)
            f.write(header)
            f.flush()
            os.fsync(f.fileno())
            f.close()
        assert self._paths is not None
        return self._paths

    def _discard(self) -> None:
        if self._files is not None:
            for f in self._files:
                f.close()
        for p in self._paths or ():
            p.unlink(missing_ok=True)
        self._files = None
        self._paths = None
