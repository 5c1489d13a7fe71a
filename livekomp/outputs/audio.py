"""Live speech out: a sounddevice stream that starts each line at its time on the clock.

The stream runs all the time; its callback mixes the lines due in each buffer, placing a line's
first sample where the clock time of its bar line falls. When a buffer will be heard comes from
PortAudio's own stream time (on JACK, the cycle's frame time), mapped to the clock's time base by
an offset measured outside the callback — not from reading the clock inside it, which would
move a line by however late the callback happens to run. A line handed over late starts at once
and is counted. Closing the stream — on every way out of the server — silences whatever is still
playing.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import numpy as np
import trio

from livekomp.speech import Speech

log = logging.getLogger("livekomp.audio")


class AudioError(OSError):
    """An audio output that cannot be opened; the message names the device and the flag."""


@dataclass(slots=True)
class _Clip:
    samples: np.ndarray
    at_s: float
    position: int = -1  # next sample to play; -1 until the line has started
    started_s: float | None = None  # when its first sample was heard (clock time base)


@dataclass(slots=True)
class AudioStats:
    lines: int = 0
    late: int = 0
    start_error_s: list[float] = field(default_factory=list)  # heard minus asked, per line


def _import_sounddevice():
    try:
        import sounddevice
    except (ImportError, OSError) as exc:
        raise AudioError(
            f"no audio output: {exc} (install libportaudio2 and the sounddevice package)"
        ) from None
    return sounddevice


class AudioOut:
    """A sounddevice output stream playing lines at times on `now_s`'s time base."""

    def __init__(
        self,
        device: str | None = None,
        *,
        level_db: float = 0.0,
        channels: int = 2,
        now_s: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.device = device
        self.gain = 10 ** (level_db / 20)
        self.channels = channels
        self.now_s = now_s
        self.sample_rate = 0
        self.stats = AudioStats()
        self.name = ""
        self._clips: list[_Clip] = []
        self._lock = threading.Lock()
        self._stream = None
        self._offset_s = 0.0  # clock time minus PortAudio stream time

    def open(self) -> None:
        """Open and start the stream (blocking). Raises `AudioError`."""
        sd = _import_sounddevice()
        try:
            info = sd.query_devices(self.device, kind="output")
            self.sample_rate = int(info["default_samplerate"])
            self.name = str(info["name"])
            channels = min(self.channels, int(info["max_output_channels"]))
            stream = sd.OutputStream(
                device=self.device,
                samplerate=self.sample_rate,
                channels=channels,
                dtype="float32",
                callback=self._callback,
                latency="low",
            )
            stream.start()
        except (sd.PortAudioError, ValueError) as exc:
            where = "the default output" if self.device is None else repr(self.device)
            raise AudioError(f"cannot open audio output {where} (--audio-out): {exc}") from None
        self._stream = stream
        self._measure_offset()

    def _measure_offset(self) -> None:
        """Clock time minus stream time, from the tightest of a few paired readings."""
        stream = self._stream
        if stream is None:
            return
        best = None
        for _ in range(5):
            before = self.now_s()
            stream_s = stream.time
            after = self.now_s()
            if best is None or after - before < best[0]:
                best = (after - before, (before + after) / 2 - stream_s)
        self._offset_s = best[1]

    def play_at(self, speech: Speech, at_s: float) -> None:
        """Play `speech` from clock time `at_s` (thread-safe)."""
        if speech.sample_rate != self.sample_rate:
            raise ValueError(f"speech at {speech.sample_rate} Hz, output at {self.sample_rate} Hz")
        self._measure_offset()  # the two clocks may drift apart over a long evening
        with self._lock:
            self._clips.append(_Clip(speech.samples * self.gain, at_s))

    def silence(self) -> None:
        """Stop every line now."""
        with self._lock:
            self._clips.clear()

    def close(self) -> None:
        self.silence()
        stream, self._stream = self._stream, None
        if stream is not None:
            stream.stop()
            stream.close()

    def _callback(self, outdata: np.ndarray, frames: int, time_info, status) -> None:
        outdata.fill(0.0)
        # When the first frame of this buffer will be heard, on the clock's time base.
        first_s = time_info.outputBufferDacTime + self._offset_s
        with self._lock:
            if not self._clips:
                return
            kept = []
            for clip in self._clips:
                if clip.position < 0:
                    offset = math.floor((clip.at_s - first_s) * self.sample_rate + 0.5)
                    if offset >= frames:
                        kept.append(clip)
                        continue
                    if offset < 0:
                        self.stats.late += 1
                        offset = 0
                    clip.position = 0
                    clip.started_s = first_s + offset / self.sample_rate
                    self.stats.lines += 1
                    self.stats.start_error_s.append(clip.started_s - clip.at_s)
                else:
                    offset = 0
                chunk = clip.samples[clip.position : clip.position + frames - offset]
                outdata[offset : offset + len(chunk)] += chunk[:, None]
                clip.position += len(chunk)
                if clip.position < len(clip.samples):
                    kept.append(clip)
            self._clips = kept

    def summary(self) -> dict[str, object]:
        errors = sorted(abs(e) for e in self.stats.start_error_s)
        return {
            "device": self.name,
            "lines": self.stats.lines,
            "late": self.stats.late,
            "max_start_error_ms": round(errors[-1] * 1e3, 3) if errors else None,
        }


@asynccontextmanager
async def open_audio_out(
    device: str | None, *, level_db: float = 0.0, now_s: Callable[[], float] = time.perf_counter
) -> AsyncIterator[AudioOut]:
    """An `AudioOut`, open for the block and closed (silenced) on every way out."""
    out = AudioOut(device, level_db=level_db, now_s=now_s)
    await trio.to_thread.run_sync(out.open)
    try:
        yield out
    finally:
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(out.close)
