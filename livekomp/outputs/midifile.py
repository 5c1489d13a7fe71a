"""A `.mid` recorder: keeps what was sent, stamped with its beat, and writes a type-1 file.

Track 0 is the conductor (name, time signature, tempo map); then one named track per part,
chosen by channel. Realtime messages (clock, start, stop) are not part of a Standard MIDI File
and are left out. Writing is deterministic: the same messages give the same bytes, and atomic:
the file appears whole or not at all.
"""

from __future__ import annotations

import io
import threading
from dataclasses import dataclass
from pathlib import Path

import mido

from livekomp.clock.clock import MasterClock, TempoMap
from livekomp.files import write_atomically
from livekomp.music.messages import send_order
from livekomp.music.phrase import PART_CHANNELS, Part

TICKS_PER_BEAT = 480

# General MIDI programs that make a rehearsal file sound right in any GM player (0-based).
PART_PROGRAMS: dict[Part, int] = {
    Part.MELODY: 4,  # Electric Piano 1
    Part.CHORDS: 89,  # Pad 2 (warm)
    Part.BASS: 33,  # Electric Bass (finger)
}


def _microseconds_per_beat(bpm: float) -> int:
    return round(60_000_000 / bpm)


TEMPO_RESOLUTION_BPM = 0.02


class MidiFileRecorder:
    """A MIDI sink that writes `path` when closed. Thread-safe: the dispatcher thread sends."""

    def __init__(
        self,
        path: str | Path,
        *,
        title: str = "livekomp",
        beats_per_bar: int = 4,
        bpm: float = 120.0,
    ) -> None:
        self.path = Path(path)
        self.title = title
        self.beats_per_bar = beats_per_bar
        self._tempi: dict[int, float] = {0: bpm}
        self._events: list[tuple[int, int, int, bytes]] = []
        self._lock = threading.Lock()
        self._closed = False

    def set_tempo(self, beat: float, bpm: float) -> None:
        """Record a tempo change; a later change at the same tick replaces an earlier one.

        A change smaller than `TEMPO_RESOLUTION_BPM` from the tempo in force is not recorded: a
        clock that follows a master re-estimates the tempo at every tick, and the file needs a
        tempo event for a change, not for every hair of jitter.
        """
        with self._lock:
            tick = max(0, round(beat * TICKS_PER_BEAT))
            for later in [t for t in self._tempi if t > tick]:
                del self._tempi[later]  # a new tempo map replaces everything after it
            in_force = self._tempi[max(t for t in self._tempi if t <= tick)]
            if tick not in self._tempi and abs(bpm - in_force) < TEMPO_RESOLUTION_BPM:
                return
            self._tempi[tick] = bpm

    def set_tempo_map(self, tempo_map: TempoMap) -> None:
        """Record a whole tempo map (it replaces what was recorded from its first segment on)."""
        for segment in tempo_map.segments:
            self.set_tempo(segment.start_beat, segment.bpm)

    def follow_tempo(self, clock: MasterClock) -> None:
        """Record every tempo map `clock` publishes from now on."""

        def record() -> None:
            if clock.running:
                self.set_tempo_map(clock.tempo_map)

        clock.add_listener(record)

    def send(self, data: bytes, beat: float) -> None:
        if not data or data[0] >= 0xF0:
            return
        with self._lock:
            tick = max(0, round(beat * TICKS_PER_BEAT))
            self._events.append((tick, int(send_order(data)), len(self._events), bytes(data)))

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            midi = self._build()
        data = io.BytesIO()
        midi.save(file=data)
        write_atomically(self.path, data.getvalue())

    def _build(self) -> mido.MidiFile:
        midi = mido.MidiFile(type=1, ticks_per_beat=TICKS_PER_BEAT)
        conductor: list[tuple[int, mido.MetaMessage]] = [
            (0, mido.MetaMessage("track_name", name=self.title)),
            (0, mido.MetaMessage("time_signature", numerator=self.beats_per_bar, denominator=4)),
        ]
        conductor += [
            (tick, mido.MetaMessage("set_tempo", tempo=_microseconds_per_beat(bpm)))
            for tick, bpm in sorted(self._tempi.items())
        ]
        midi.tracks.append(_track(conductor))

        by_channel: dict[int, list[tuple[int, int, int, bytes]]] = {}
        for event in sorted(self._events):
            by_channel.setdefault(event[3][0] & 0x0F, []).append(event)
        names = {channel: part for part, channel in PART_CHANNELS.items()}
        for channel in sorted(set(names) | set(by_channel)):
            part = names.get(channel)
            name = part.value if part else f"channel {channel + 1}"
            timed: list[tuple[int, mido.Message | mido.MetaMessage]] = [
                (0, mido.MetaMessage("track_name", name=name))
            ]
            if part in PART_PROGRAMS:
                timed.append(
                    (
                        0,
                        mido.Message(
                            "program_change", channel=channel, program=PART_PROGRAMS[part]
                        ),
                    )
                )
            timed += [
                (tick, mido.Message.from_bytes(data))
                for tick, _, _, data in by_channel.get(channel, [])
            ]
            midi.tracks.append(_track(timed))
        return midi


def _track(timed: list[tuple[int, mido.Message | mido.MetaMessage]]) -> mido.MidiTrack:
    track = mido.MidiTrack()
    now = 0
    for tick, message in timed:
        track.append(message.copy(time=tick - now))
        now = tick
    track.append(mido.MetaMessage("end_of_track", time=0))
    return track


@dataclass(frozen=True, slots=True)
class RecordSpec:
    """A `.mid` file the sender process records everything it sends into: a
    `livekomp.dispatch.wire.RecorderOpener`, opened in the child.

    It is written when the child ends, whichever way: close, a stop signal, or the parent's death.
    """

    path: str | Path
    title: str = "livekomp"
    beats_per_bar: int = 4
    bpm: float = 120.0

    def open(self) -> MidiFileRecorder:
        return MidiFileRecorder(
            self.path, title=self.title, beats_per_bar=self.beats_per_bar, bpm=self.bpm
        )
