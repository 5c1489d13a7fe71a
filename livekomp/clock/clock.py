"""Time in beats, converted to seconds in exactly one place: the tempo map.

A `TempoMap` is an immutable list of segments, each a tempo that holds from a beat onwards.
The `MasterClock` owns the current map and replaces it atomically when the tempo changes, so the
dispatcher thread can read it without a lock. The clock never re-reads the wall clock to advance
itself: a beat's time is computed from ideal segment arithmetic, so it never drifts.
"""

from __future__ import annotations

import bisect
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import trio

MIN_BPM = 20.0
MAX_BPM = 400.0


def check_bpm(bpm: float) -> float:
    if not (math.isfinite(bpm) and MIN_BPM <= bpm <= MAX_BPM):
        raise ValueError(f"tempo must be {MIN_BPM:g}..{MAX_BPM:g} BPM, got {bpm}")
    return float(bpm)


@dataclass(frozen=True, slots=True)
class TempoSegment:
    start_beat: float
    start_s: float
    bpm: float

    @property
    def seconds_per_beat(self) -> float:
        return 60.0 / self.bpm


@dataclass(frozen=True, slots=True)
class TempoMap:
    """Piecewise-constant tempo: beat ↔ seconds on the clock's own time base."""

    segments: tuple[TempoSegment, ...]

    @classmethod
    def constant(cls, bpm: float, origin_s: float = 0.0) -> TempoMap:
        return cls((TempoSegment(0.0, origin_s, check_bpm(bpm)),))

    def _segment_for_beat(self, beat: float) -> TempoSegment:
        starts = [s.start_beat for s in self.segments]
        return self.segments[max(0, bisect.bisect_right(starts, beat) - 1)]

    def _segment_for_time(self, t_s: float) -> TempoSegment:
        starts = [s.start_s for s in self.segments]
        return self.segments[max(0, bisect.bisect_right(starts, t_s) - 1)]

    def time_at(self, beat: float) -> float:
        seg = self._segment_for_beat(beat)
        return seg.start_s + (beat - seg.start_beat) * seg.seconds_per_beat

    def beat_at(self, t_s: float) -> float:
        seg = self._segment_for_time(t_s)
        return seg.start_beat + (t_s - seg.start_s) / seg.seconds_per_beat

    def bpm_at(self, beat: float) -> float:
        return self._segment_for_beat(beat).bpm

    def with_tempo(self, bpm: float, from_beat: float) -> TempoMap:
        """A new map whose tempo is `bpm` from `from_beat` on; later segments are dropped."""
        bpm = check_bpm(bpm)
        kept = tuple(s for s in self.segments if s.start_beat < from_beat)
        if not kept:
            return TempoMap((TempoSegment(from_beat, self.time_at(from_beat), bpm),))
        if kept[-1].bpm == bpm:
            return TempoMap(kept)
        return TempoMap((*kept, TempoSegment(from_beat, self.time_at(from_beat), bpm)))


class MasterClock:
    """The internal master: a tempo map anchored at a start time on a given time base.

    `now_s` is the time base: `time.perf_counter` live (the dispatcher thread reads the same),
    `trio.current_time` in rehearsal so virtual time drives everything. Tempo changes take effect
    on the next whole beat. Listeners (the dispatcher) are told when the map changes so they can
    re-plan their sleep. `start`, `stop` and `set_tempo` are called from the trio thread.
    """

    def __init__(self, bpm: float, *, now_s: Callable[[], float] = time.perf_counter) -> None:
        self.now_s = now_s
        self._bpm = check_bpm(bpm)
        self._map: TempoMap | None = None
        self._listeners: list[Callable[[], None]] = []
        self._lock = threading.Lock()
        self._changed = trio.Event()

    @property
    def running(self) -> bool:
        return self._map is not None

    @property
    def tempo_map(self) -> TempoMap:
        tempo_map = self._map
        if tempo_map is None:
            raise RuntimeError("the clock is not running")
        return tempo_map

    @property
    def bpm(self) -> float:
        """The tempo now (or the tempo the clock will start at)."""
        if self._map is None:
            return self._bpm
        return self._map.bpm_at(self.current_beat())

    def add_listener(self, callback: Callable[[], None]) -> None:
        self._listeners.append(callback)

    def _publish(self, tempo_map: TempoMap | None) -> None:
        self._map = tempo_map  # one attribute store: readers see the old map or the new one
        changed, self._changed = self._changed, trio.Event()
        changed.set()
        for callback in self._listeners:
            callback()

    def start(self, at_s: float | None = None, *, beat: float = 0.0) -> None:
        """`beat` falls at `at_s` (default: now), at the tempo in force (a restart keeps it)."""
        with self._lock:
            bpm = self._bpm if self._map is None else self._map.bpm_at(self.current_beat())
            origin = self.now_s() if at_s is None else at_s
            self._publish(TempoMap((TempoSegment(beat, origin, bpm),)))

    def stop(self) -> None:
        with self._lock:
            if self._map is not None:
                self._bpm = self._map.bpm_at(self.current_beat())
            self._publish(None)

    def set_tempo(self, bpm: float, from_beat: float | None = None) -> float:
        """Change tempo from `from_beat` (default: the next whole beat); returns that beat.

        A `from_beat` already past is moved to the next whole beat: the past cannot be re-timed.
        When the clock is stopped the tempo applies from the next start (returns 0.0).
        """
        bpm = check_bpm(bpm)
        with self._lock:
            if self._map is None:
                self._bpm = bpm
                return 0.0
            next_beat = float(math.floor(self.current_beat()) + 1)
            if from_beat is None or from_beat < self.current_beat():
                from_beat = next_beat
            self._publish(self._map.with_tempo(bpm, from_beat))
            return from_beat

    def lock(self, beat: float, at_s: float, bpm: float, *, min_shift_s: float = 0.0) -> bool:
        """Follow an external master: `beat` falls at `at_s`, at `bpm` from there on.

        Replaces the whole map (the clock starts if it was stopped). A follower calls this at
        every tick it hears, so the map always extends the master's latest beat; what was
        already sent is not re-timed, and the next message goes out on the master's grid. A new
        map that moves the next beat by no more than `min_shift_s` is not published (listeners
        and sleepers are not woken for nothing). Returns whether it was published.
        """
        bpm = check_bpm(bpm)
        new = TempoMap((TempoSegment(beat, at_s, bpm),))
        with self._lock:
            old = self._map
            if old is not None and min_shift_s > 0:
                shift_s = abs(new.time_at(beat + 1.0) - old.time_at(beat + 1.0))
                if shift_s <= min_shift_s:
                    return False
            self._bpm = bpm
            self._publish(new)
            return True

    def current_beat(self) -> float:
        return self.tempo_map.beat_at(self.now_s())

    def time_at(self, beat: float) -> float:
        return self.tempo_map.time_at(beat)

    async def sleep_until_beat(self, beat: float) -> None:
        """Sleep in trio until `beat`; a tempo change meanwhile re-plans the wake-up.

        While the clock is stopped this waits for it to start (and then for the beat).
        """
        while True:
            tempo_map = self._map
            if tempo_map is None:
                await self._changed.wait()
                continue
            delay = tempo_map.time_at(beat) - self.now_s()
            if delay <= 0:
                return
            changed = self._changed
            with trio.move_on_after(delay):
                await changed.wait()
