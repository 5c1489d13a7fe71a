"""What the dispatcher sends to: the sink protocol, and `TrackedOutput`, which remembers every
sounding note so that a panic, a stop or a crash can always release them.

The outputs (`livekomp.outputs`) implement sinks; the dispatcher knows them only by this
protocol.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from typing import Protocol

from livekomp.music.messages import (
    CC_ALL_NOTES_OFF,
    CC_ALL_SOUND_OFF,
    CONTROL_CHANGE,
    control_change,
    is_note_off,
    is_note_on,
    note_off,
)

log = logging.getLogger(__name__)


class MidiSink(Protocol):
    """Anything that takes MIDI messages: a port, a file recorder, a fake."""

    def send(self, data: bytes, beat: float) -> None:
        """Send `data` now; `beat` is the beat it belongs to (for recorders)."""
        ...

    def close(self) -> None: ...


def call_all(calls: Iterable[Callable[[], None]]) -> None:
    first: Exception | None = None
    for call in calls:
        try:
            call()
        except Exception as err:
            if first is None:
                first = err
            else:
                log.error("another MIDI sink failed too: %r", err)
    if first is not None:
        raise first


class FanOut:
    """Sends every message to several sinks (the live port and the `.mid` recorder).

    One failing sink does not starve the others: all are tried, then the first error is raised.
    """

    def __init__(self, sinks: Iterable[MidiSink]) -> None:
        self.sinks = tuple(sinks)

    def send(self, data: bytes, beat: float) -> None:
        call_all([lambda s=s: s.send(data, beat) for s in self.sinks])

    def close(self) -> None:
        call_all([s.close for s in self.sinks])


class TrackedOutput:
    """Wraps a sink and remembers every sounding note, so that all of them can be released.

    Notes are counted per (channel, pitch). A note-on for a pitch already sounding first sends a
    note-off (never a stuck double); the earlier note's own note-off is then absorbed, so it does
    not cut the re-struck note short. A note-off for a note that is not sounding is dropped (its
    note-on was cancelled). Thread-safe: the dispatcher thread sends while a panic may come from
    another thread; the lock is re-entrant so a signal handler on a sending thread cannot deadlock.
    """

    def __init__(self, sink: MidiSink) -> None:
        self.sink = sink
        self._lock = threading.RLock()
        self._note_counts: dict[tuple[int, int], int] = {}
        self._channels: set[int] = set()

    @property
    def sounding(self) -> frozenset[tuple[int, int]]:
        """(channel, pitch) of every note sounding now."""
        with self._lock:
            return frozenset(self._note_counts)

    @property
    def channels_used(self) -> frozenset[int]:
        with self._lock:
            return frozenset(self._channels)

    def send(self, data: bytes, beat: float) -> None:
        with self._lock:
            status = data[0]
            if status < 0xF0:
                self._channels.add(status & 0x0F)
            if is_note_on(data):
                key = (status & 0x0F, data[1])
                held = self._note_counts.get(key, 0)
                # Counted before sending: if the send fails, a release still covers the note.
                self._note_counts[key] = held + 1
                if held:
                    self.sink.send(note_off(*key), beat)
                self.sink.send(data, beat)
            elif is_note_off(data):
                key = (status & 0x0F, data[1])
                held = self._note_counts.get(key, 0)
                if held > 1:
                    self._note_counts[key] = held - 1
                elif held == 1:
                    self.sink.send(data, beat)
                    del self._note_counts[key]
            else:
                self.sink.send(data, beat)
                if status & 0xF0 == CONTROL_CHANGE and data[1] in (
                    CC_ALL_NOTES_OFF,
                    CC_ALL_SOUND_OFF,
                ):
                    channel = status & 0x0F
                    for key in [k for k in self._note_counts if k[0] == channel]:
                        del self._note_counts[key]

    def release_all(self, beat: float) -> None:
        """Note-off for every sounding note, then All Notes Off (CC 123) on every channel used.

        Every message is attempted even if some fail; the first failure is raised afterwards.
        """
        with self._lock:
            sounding = sorted(self._note_counts)
            self._note_counts.clear()
            calls = [lambda k=k: self.sink.send(note_off(*k), beat) for k in sounding]
            calls += [
                lambda c=c: self.sink.send(control_change(c, CC_ALL_NOTES_OFF, 0), beat)
                for c in sorted(self._channels)
            ]
            call_all(calls)

    def close(self) -> None:
        self.sink.close()
