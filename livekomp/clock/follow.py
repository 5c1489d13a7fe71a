"""Following an external MIDI clock (Ableton Live, a drum machine): ticks in, a tempo map out.

Two layers. `TickFilter` turns tick arrival times into a tick count and a straight line
t = origin + period · count, fitted by least squares over the last bar of ticks, so the tempo it
reports settles within a bar and the jitter of the transport (a JACK period, a USB frame)
averages out. It tells a late tick, a dropped tick and a tempo change apart:

- while a line is new (fewer than `acquire_ticks` on it) every tick counts once and is fitted;
- then a tick further than `tolerance_ticks` from where the line expects it is a *suspect*:
  not fitted, and its count is provisional (a single late tick changes nothing);
- a tick back on the line with every suspect before it counted once means they were late: one
  late tick, or a burst of them (the transport or the machine stalled, then delivered the held
  ticks together). Ticks are matched to the line in order, so a tick held up by a whole period
  is never taken for a dropped one;
- a dropped tick is believed only when two ticks, whole periods apart, sit on the line one (or
  more) ticks further on, and the suspects between them fill the counts between, each late by
  less than a tick (a burst after a stall is no evidence: its first tick may be a late one);
- `jump_after` suspects in a row that came a period apart from each other (not bunched, as a
  burst is) mean the master changed tempo: the line is fitted afresh from that run, each of its
  ticks counted once (and a drop inferred just before is taken back: it was the change's first
  tick, late).

`MidiClockFollower` adds the transport (Start, Stop, Continue, Song Position Pointer) and drives a
`MasterClock`: at every fitted tick it re-anchors the clock's tempo map at that tick's beat, so
everything downstream (performer, sender process) keeps working in beats and simply lands on the
master's grid. Beat 0 is the master's song start, so bar lines are the master's bar lines. When
the ticks stop, the map runs on by itself for `timeout_beats`; then the follower says so once in
the log and stops the transport (which releases every note) until the master starts again.
"""

from __future__ import annotations

import itertools
import logging
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial

import rtmidi
import trio

from livekomp.clock.clock import MAX_BPM, MIN_BPM, MasterClock
from livekomp.midiports import (
    CLIENT_NAME,
    StampedInput,
    close_input,
    keep_input_open,
    open_input,
    serve_stamped_input,
)
from livekomp.music import messages

log = logging.getLogger("livekomp.clock")

TICKS_PER_BEAT = messages.CLOCK_TICKS_PER_BEAT
SONG_POSITION = 0xF2
TICKS_PER_SPP_UNIT = 6  # a Song Position Pointer counts MIDI beats: sixteenth notes
# A re-anchored map that moves the next beat by less than this is not published.
REANCHOR_S = 20e-6
# A tempo change this soon after an inferred dropped tick takes the drop back.
RECOUNT_TICKS = 6
# A gap this long means the clock was gone (not a dropped tick): the fit starts afresh.
RESET_GAP_S = 1.0
# Suspects whose smallest gap is under this share of their mean gap came in a burst.
BURST_GAP_RATIO = 0.4


@dataclass(frozen=True, slots=True)
class FollowConfig:
    """How the follower listens. Defaults suit a 4/4 master between 20 and 400 BPM."""

    window_ticks: int = 96  # fit over this many ticks (a bar of 4/4)
    tolerance_ticks: float = 0.3  # a tick further from the line than this is a suspect
    jump_after: int = 3  # this many suspects in a row: the master changed tempo
    acquire_ticks: int = 12  # a new line takes this many ticks as they come, each counted once
    timeout_beats: float = 4.0  # keep time this long without ticks, then stop and wait

    def __post_init__(self) -> None:
        if self.window_ticks < 3:
            raise ValueError(f"window_ticks must be >= 3, got {self.window_ticks}")
        if not 0.05 <= self.tolerance_ticks <= 0.45:
            raise ValueError(f"tolerance_ticks must be 0.05..0.45, got {self.tolerance_ticks}")
        if self.jump_after < 2:
            raise ValueError(f"jump_after must be >= 2, got {self.jump_after}")
        if not self.jump_after <= self.acquire_ticks <= self.window_ticks:
            raise ValueError(
                f"acquire_ticks must be in [jump_after, window_ticks], got {self.acquire_ticks}"
            )
        if not 0 < self.timeout_beats <= 64:
            raise ValueError(f"timeout_beats must be in (0, 64], got {self.timeout_beats}")


@dataclass(frozen=True, slots=True)
class TickFit:
    """The filter's view after a tick: that tick's count, and where the fitted line puts it."""

    count: int  # ticks since the filter (re)started, dropped ones included
    time_s: float  # the fitted time of tick `count` (the arrival time, jitter removed)
    seconds_per_tick: float
    fitted: bool  # False: too few ticks for a line yet (time_s is the arrival time)
    on_line: bool = True  # False: this tick is a suspect (late, after a gap, a tempo change)

    @property
    def bpm(self) -> float:
        return 60.0 / (self.seconds_per_tick * TICKS_PER_BEAT)


class TickFilter:
    """Tick times in, tick counts and a least-squares tempo line out (see the module doc)."""

    def __init__(self, config: FollowConfig = FollowConfig()) -> None:
        self.config = config
        self.reset()

    def reset(self) -> None:
        self.count = -1  # the count of the last tick
        self._window: deque[tuple[int, float]] = deque()  # (count, time) of fitted ticks
        self._suspects: list[tuple[int, float]] = []
        self._line: tuple[float, float] | None = None  # (origin_s, seconds_per_tick)
        self._last_s: float | None = None
        self._recent_drop: tuple[int, int] | None = None  # (ticks, count) of the last drop
        self.late = 0  # ticks off the line, not fitted
        self.dropped = 0  # ticks inferred missing
        self.jumps = 0  # tempo changes detected

    @property
    def settled(self) -> bool:
        """A beat of ticks on the current line: the tempo is worth reporting."""
        return len(self._window) >= TICKS_PER_BEAT

    @property
    def heard_count(self) -> int:
        """The count of the last tick if every suspect since the line was a late tick, counted
        once: where the master is when it stops before the suspects are told apart (`count`
        may have a provisional drop in it)."""
        if self._suspects and self._window:
            return self._window[-1][0] + len(self._suspects)
        return self.count

    @property
    def seconds_per_tick(self) -> float | None:
        return None if self._line is None else self._line[1]

    def add(self, t_s: float) -> TickFit:
        """Take one tick's arrival time (seconds, increasing); return the fit after it."""
        if self._last_s is not None and t_s - self._last_s > RESET_GAP_S:
            self.reset()
        self._last_s = t_s
        line = self._line
        if line is None or len(self._window) < self.config.acquire_ticks:
            # A line from a few ticks is too rough to judge ticks by (a JACK period of jitter
            # is 15 % of a tick at 140 BPM): take them as they come until it is steadier.
            self._commit(self.count + 1, t_s)
            return self._fit_at(self.count, t_s)
        origin_s, period_s = line
        position = (t_s - origin_s) / period_s
        tolerance = self.config.tolerance_ticks
        # Every tick since the last one on the line, this one included, counted once: the ticks
        # off the line before it were late (one, or a burst after a stall), now it is back.
        sequential = self._window[-1][0] + len(self._suspects) + 1
        if abs(position - sequential) <= tolerance:
            self._confirm_late()
            self._commit(sequential, t_s)
            return self._fit_at(self.count, t_s)
        # Else maybe a dropped tick: on the line one or more ticks further on. That is believed
        # only once an earlier suspect was on the line too, at a count that leaves room for
        # every suspect since (they were late): a late tick looks like a drop until the ticks
        # after it come on time.
        count = sequential + max(round(position) - sequential, 0)
        on_drop_line = count > sequential and abs(position - count) <= tolerance
        if on_drop_line and (first := self._first_on_line_before(count, t_s)) is not None:
            late_before = self._suspects[:first]
            first_count, first_s = self._suspects[first]
            late_after = self._suspects[first + 1 :]
            self._suspects = late_before
            self._confirm_dropped(first_count)
            self._commit(first_count, first_s)
            self.late += len(late_after)
            self._commit(count, t_s)
            return self._fit_at(self.count, t_s)
        self.count = count
        self._suspects.append((count, t_s))
        if len(self._suspects) < self.config.jump_after or not self._evenly_spaced():
            # A burst (ticks held up, then delivered together) is no tempo: wait for the line.
            return replace(self._fit_at(count, t_s), on_line=False)
        self._restart_from_suspects()
        return self._fit_at(self.count, t_s)

    def _first_on_line_before(self, count: int, t_s: float) -> int | None:
        """The index of the latest suspect that confirms a drop before it, given a tick on the
        line at `count`: it sat on the line too, the time between them is whole periods, and every
        suspect after it fills a count between the two in order, late by less than a tick (a
        burst after a stall, late by more, is no evidence: the first of it may be a late tick
        that only looks like a drop)."""
        assert self._line is not None
        origin_s, period_s = self._line
        tolerance = self.config.tolerance_ticks
        for index in range(len(self._suspects) - 1, -1, -1):
            first_count, first_s = self._suspects[index]
            between = self._suspects[index + 1 :]
            if count - first_count - 1 != len(between):
                continue
            if abs((first_s - origin_s) / period_s - first_count) > tolerance:
                continue
            if abs((t_s - first_s) / period_s - (count - first_count)) > tolerance:
                continue
            slots = range(first_count + 1, count)
            lateness = [
                (s - origin_s) / period_s - slot
                for slot, (_, s) in zip(slots, between, strict=True)
            ]
            if all(-tolerance <= late < 1.0 - tolerance for late in lateness):
                return index
        return None

    def _commit(self, count: int, t_s: float) -> None:
        """A tick on the line: counted, fitted, the window kept to its length."""
        self.count = count
        self._window.append((count, t_s))
        while self._window[-1][0] - self._window[0][0] >= self.config.window_ticks:
            self._window.popleft()
        self._refit()

    def _confirm_late(self) -> None:
        """The suspects were late ticks, each counted once."""
        self.late += len(self._suspects)
        self._suspects.clear()

    def _confirm_dropped(self, first_on_line: int) -> None:
        """Ticks went missing before `first_on_line`; the suspects before it were late."""
        missing = first_on_line - self._window[-1][0] - 1 - len(self._suspects)
        self.dropped += missing
        self._recent_drop = (missing, first_on_line)
        self._confirm_late()

    def _evenly_spaced(self) -> bool:
        """Whether the last `jump_after` suspects came about a period apart, as a new tempo's
        ticks do, rather than bunched (the transport or the machine stalled, then a burst)."""
        times = [t for _, t in self._suspects[-self.config.jump_after :]]
        gaps = [b - a for a, b in itertools.pairwise(times)]
        # Gaps shorter than a tick at the fastest tempo are a burst however even they are.
        shortest_s = 60.0 / (MAX_BPM * TICKS_PER_BEAT)
        return min(gaps) >= BURST_GAP_RATIO * max(sum(gaps) / len(gaps), shortest_s)

    def _restart_from_suspects(self) -> None:
        """A run of ticks off the line: the tempo changed. Count each once, fit them alone."""
        self.jumps += 1
        base = self._window[-1][0] if self._window else self.count - len(self._suspects)
        if self._recent_drop is not None and base - self._recent_drop[1] < RECOUNT_TICKS:
            # A "dropped" tick just before a tempo change was the change's first tick (a late
            # one, on a busy machine): take the inferred drop back.
            missing = self._recent_drop[0]
            base -= missing
            self.dropped -= missing
        self._recent_drop = None
        times = [t for _, t in self._suspects]
        self._suspects.clear()
        self._window = deque((base + 1 + i, t) for i, t in enumerate(times))
        self.count = base + len(times)
        self._refit()

    def _refit(self) -> None:
        n = len(self._window)
        if n < 2:
            self._line = None
            return
        counts = [c for c, _ in self._window]
        times = [t for _, t in self._window]
        mean_c = sum(counts) / n
        mean_t = sum(times) / n
        sxx = sum((c - mean_c) ** 2 for c in counts)
        sxy = sum((c - mean_c) * (t - mean_t) for c, t in zip(counts, times, strict=True))
        period_s = sxy / sxx
        if period_s <= 0:
            self._line = None
            return
        self._line = (mean_t - period_s * mean_c, period_s)

    def _fit_at(self, count: int, t_s: float) -> TickFit:
        if self._line is None:
            return TickFit(count, t_s, math.nan, fitted=False)
        origin_s, period_s = self._line
        return TickFit(count, origin_s + period_s * count, period_s, fitted=True)


TransportCallback = Callable[[], None]


class MidiClockFollower:
    """Drives a `MasterClock` from MIDI clock messages; starts and stops the transport.

    `handle(message, t_s)` takes one message and the time it arrived (on the clock's time base,
    stamped as early as possible: in the MIDI callback). `on_start` is called once the clock is
    anchored after Start or Continue (the performer then starts at the next bar line it can
    reach in time), `on_stop` on Stop and when the clock is lost. Everything runs on the trio
    thread; `serve_watchdog` notices silence.
    """

    def __init__(
        self,
        clock: MasterClock,
        *,
        config: FollowConfig = FollowConfig(),
        on_start: TransportCallback | None = None,
        on_stop: TransportCallback | None = None,
        trace: list[tuple[float, int, int, bool]] | None = None,
    ) -> None:
        self.clock = clock
        self.config = config
        # (arrival time, status byte, tick count after it, running after it) of every message,
        # when a list is given (`serve --clock-trace`): how livekomp heard the master.
        self.trace = trace
        self.filter = TickFilter(config)
        self.on_start = on_start
        self.on_stop = on_stop
        self.running = False  # the master's transport
        self.song_position_beats = 0.0  # where Continue resumes (Stop and SPP set it)
        self.last_tick_s: float | None = None
        self.lost = False
        self.ignored = 0  # messages that are not clock messages, or out of range
        self._start_count: int | None = None  # the filter count of the beat-0 tick of this run
        self._start_pending = False  # Start/Continue seen, waiting for the first tick
        self._start_beat = 0.0  # the beat of that first tick
        self._reported_bpm: float | None = None
        self._changed = trio.Event()

    @property
    def bpm(self) -> float | None:
        period = self.filter.seconds_per_tick
        return None if period is None else 60.0 / (period * TICKS_PER_BEAT)

    def handle(self, message: bytes, t_s: float) -> None:
        """One MIDI message received at `t_s`. Never raises for odd input: counts it."""
        if not message:
            self.ignored += 1
            return
        status = message[0]
        if status == messages.CLOCK_TICK:
            self._tick(t_s)
        elif status == messages.CLOCK_START:
            self._begin(0.0, "Start")
        elif status == messages.CLOCK_CONTINUE:
            self._begin(self.song_position_beats, "Continue")
        elif status == messages.CLOCK_STOP:
            self._stop("Stop")
        elif status == SONG_POSITION and len(message) == 3 and max(message[1:]) < 0x80:
            units = message[1] | (message[2] << 7)
            self.song_position_beats = units * TICKS_PER_SPP_UNIT / TICKS_PER_BEAT
            log.info("MIDI clock: song position %g beats", self.song_position_beats)
        else:
            self.ignored += 1
        if self.trace is not None:
            self.trace.append((t_s, status, self.filter.count, self.running))

    def summary(self) -> dict[str, object]:
        """What the follower made of the master's clock, for the run summary."""
        return {
            "ticks_late": self.filter.late,
            "ticks_missing": self.filter.dropped,
            "tempo_changes": self.filter.jumps,
            "ignored": self.ignored,
            "lost": self.lost,
        }

    def _begin(self, beat: float, what: str) -> None:
        if self.running:
            self._stop(what)  # Start while running restarts from the top
        self._start_pending = True
        self._start_beat = beat
        self.lost = False
        log.info("MIDI clock: %s from beat %g", what, beat)

    def _stop(self, why: str) -> None:
        if self.running:
            self.song_position_beats = self._current_master_beat()
            self.running = False
            log.info("MIDI clock: %s at beat %.2f", why, self.song_position_beats)
            if self.on_stop is not None:
                self.on_stop()
        self._start_pending = False

    def _current_master_beat(self) -> float:
        """Where the master's song position is: the beat after the last tick counted."""
        if self._start_count is None:
            return self._start_beat
        ticks = self.filter.heard_count - self._start_count + 1
        return self._start_beat + ticks / TICKS_PER_BEAT

    def _tick(self, t_s: float) -> None:
        self.last_tick_s = t_s
        changed, self._changed = self._changed, trio.Event()
        changed.set()
        seen = (self.filter.dropped, self.filter.jumps)
        fit = self.filter.add(t_s)
        if (self.filter.dropped, self.filter.jumps) != seen and self.running:
            log.info(
                "MIDI clock: %s at beat %.2f (%d ticks missing, %d tempo changes so far)",
                "tempo change" if self.filter.jumps != seen[1] else "ticks missing",
                self._current_master_beat(),
                self.filter.dropped,
                self.filter.jumps,
            )
        if self._start_pending:
            self._start_pending = False
            self._start_count = fit.count
            self.running = True
            self._anchor(fit)
            if self.on_start is not None:
                self.on_start()
            return
        if self.running and fit.on_line:
            # A suspect tick moves nothing: the map runs on until the line is known again.
            self._anchor(fit)

    def _anchor(self, fit: TickFit) -> None:
        """Re-anchor the clock: the tick `fit.count` is at its fitted time, at the fitted tempo."""
        assert self._start_count is not None
        beat = self._start_beat + (fit.count - self._start_count) / TICKS_PER_BEAT
        bpm = fit.bpm if fit.fitted else (self.bpm or self.clock.bpm)
        if not MIN_BPM <= bpm <= MAX_BPM:
            self.ignored += 1
            return
        # Between fitted ticks the line barely moves: a shift under REANCHOR_S is not worth
        # waking the sender and every sleeper for.
        self.clock.lock(beat, fit.time_s, bpm, min_shift_s=REANCHOR_S)
        moved = self._reported_bpm is None or abs(bpm - self._reported_bpm) >= 1.0
        if fit.fitted and moved and self.filter.settled:
            log.info("MIDI clock: following %.1f BPM", bpm)
            self._reported_bpm = bpm

    async def serve_watchdog(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """While the master runs, notice when its ticks stop: keep time `timeout_beats` (the
        tempo map runs on by itself), then log once, stop the transport and wait."""
        task_status.started()
        while True:
            if not self.running or self.last_tick_s is None:
                await self._changed.wait()
                continue
            seconds_per_beat = 60.0 / self.clock.bpm
            deadline_s = self.last_tick_s + self.config.timeout_beats * seconds_per_beat
            # The clock's time base may not be trio's (perf_counter live): wait the difference.
            with trio.move_on_after(max(0.0, deadline_s - self.clock.now_s())):
                await self._changed.wait()
                continue
            if self.running and self.clock.now_s() >= deadline_s:
                self.lost = True
                log.warning(
                    "MIDI clock lost: no tick for %g beats; all notes released, "
                    "waiting for Start or Continue",
                    self.config.timeout_beats,
                )
                self._stop("clock lost")


# -- the MIDI input ------------------------------------------------------------------------------

CLOCK_PORT_NAME = "clock in"
# Nothing is left out by rtmidi: a message it filters takes its delta time with it (see
# StampedInput). Active sensing is dropped here; anything else unusable the follower counts.
CLOCK_IGNORE = {"sysex": False, "timing": False, "active_sense": False}
ACTIVE_SENSING = 0xFE
# rtmidi's own queue, between polls: a whole bar of ticks and more.
QUEUE_SIZE = 4096


def _open_clock_input(port_name: str | None, api: int) -> tuple[rtmidi.MidiIn, str]:
    return open_input(
        port_name,
        api,
        CLOCK_PORT_NAME,
        client_name=f"{CLIENT_NAME}-clock",
        ignore=CLOCK_IGNORE,
        queue_size=QUEUE_SIZE,
    )


async def serve_midi_clock_in(
    port_name: str | None,
    follower: MidiClockFollower,
    *,
    api: int,
    now_s: Callable[[], float] = time.perf_counter,
    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Feed the follower from a MIDI input until cancelled; `started` with the port's name.

    Each message is stamped with the time it arrived, on `now_s`'s time base, from rtmidi's own
    delta times (`StampedInput`): neither the GIL nor the poll delays what the filter sees.
    `port_name` None opens a virtual input "clock in".
    """
    midi_in, opened = await trio.to_thread.run_sync(_open_clock_input, port_name, api)
    reader = StampedInput(midi_in, now_s)

    def deliver(message: bytes, t_s: float) -> None:
        if message[:1] != bytes((ACTIVE_SENSING,)):  # keeps a link alive; says nothing
            follower.handle(message, t_s)

    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(serve_stamped_input, reader, deliver)
            if port_name is not None:  # the master's port may be unplugged and come back
                nursery.start_soon(
                    partial(
                        keep_input_open,
                        midi_in,
                        opened,
                        CLOCK_PORT_NAME,
                        ignore=CLOCK_IGNORE,
                        on_reopen=reader.restart,
                        what="MIDI clock input",
                    )
                )
            task_status.started(opened)
            await follower.serve_watchdog()
    finally:
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(close_input, midi_in)
