"""The performer: works ahead of the music, turning composed bars into scheduled MIDI.

For each bar it wakes `lookahead_beats` before the bar line, reads the mood at that moment (so
content changes land on the next bar line), asks the composer service for the bar, and hands the
bar's MIDI clock ticks to the dispatcher. The notes go out a beat at a time, `release_lead_beats`
before each beat, with their velocities scaled by how the mood's dynamics moved since the bar was
composed — so a fader's expressive change is heard on the next beat, its content change on the
next bar. The active style adapter is content too: a switch is heard from the next bar planned.
It also owns the transport (start, stop, panic); `livekomp.router` tells it when.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

import trio

from livekomp.clock.clock import MasterClock
from livekomp.composer import ComposerService
from livekomp.mood import Mood, MoodState
from livekomp.music import messages
from livekomp.music.messages import ScheduledMessage
from livekomp.music.phrase import (
    BASE_STYLE,
    PART_CHANNELS,
    BarRequest,
    ComposedBar,
)

log = logging.getLogger("livekomp.performer")

# MIDI Start goes a quarter tick before the first clock tick, so a follower counts that tick as
# beat 0 (the MIDI spec: the first clock after Start is the first beat).
START_LEAD_BEATS = 0.25 / messages.CLOCK_TICKS_PER_BEAT
END_MARGIN_BEATS = 1.0 / messages.CLOCK_TICKS_PER_BEAT
# Following a master, a take starts no sooner than a lookahead and this much from now.
FOLLOW_MARGIN_BEATS = 0.25


class Dispatch(Protocol):
    """What the performer needs of a dispatcher (live thread or virtual-time task)."""

    def submit(self, scheduled: Iterable[ScheduledMessage]) -> None: ...
    def panic(self, *, keep_clock: bool = False) -> None: ...


@dataclass(frozen=True, slots=True)
class PerformerConfig:
    beats_per_bar: int = 4
    tonic: int = 0
    lookahead_beats: float = 1.0
    clock_out: bool = True  # send MIDI clock (0xF8, Start, Stop) with the notes
    preroll_s: float = 0.25  # time from "start" to beat 0 beyond the lookahead
    release_lead_beats: float = 0.125  # how long before its beat a note goes to the dispatcher
    # The clock follows an external master (MIDI clock, Link): a take starts on the master's
    # next bar line that can still be composed in time, and the performer never moves the clock.
    follow: bool = False

    def __post_init__(self) -> None:
        if not 1 <= self.beats_per_bar <= 16:
            raise ValueError(f"beats_per_bar must be 1..16, got {self.beats_per_bar}")
        if not 0 < self.lookahead_beats <= self.beats_per_bar:
            raise ValueError(
                f"lookahead_beats must be in (0, beats_per_bar], got {self.lookahead_beats}"
            )
        if not 0 < self.release_lead_beats <= self.lookahead_beats:
            raise ValueError(
                f"release_lead_beats must be in (0, lookahead_beats], got {self.release_lead_beats}"
            )


# How much louder one unit of each dynamic dimension plays, in octaves of velocity (a factor of 2
# per unit): intensity is the performer's volume fader, arousal colours it.
EXPRESSION_GAIN_OCTAVES = {"intensity": 1.0, "arousal": 0.35}


def expression_ratio(planned: Mood, now: Mood) -> float:
    """The velocity factor for notes composed in mood `planned` and played in mood `now`."""
    octaves = sum(
        weight * (getattr(now, name) - getattr(planned, name))
        for name, weight in EXPRESSION_GAIN_OCTAVES.items()
    )
    return 2.0**octaves


def scale_velocity(data: bytes, ratio: float) -> bytes:
    """A note-on with its velocity scaled by `ratio` (kept in 1..127); other messages as given."""
    if ratio == 1.0 or not messages.is_note_on(data):
        return data
    velocity = min(127, max(1, round(data[2] * ratio)))
    return bytes((data[0], data[1], velocity))


@dataclass(frozen=True, slots=True)
class BeatRelease:
    """The notes that start within one beat, waiting to be handed to the dispatcher."""

    beat: float
    notes: tuple[ScheduledMessage, ...]  # note-ons and their note-offs
    mood: Mood  # the mood the bar was composed in


def render_notes_by_beat(bar: ComposedBar, start_beat: float) -> list[list[ScheduledMessage]]:
    """The bar's note-ons with their note-offs, grouped by the beat each note starts in."""
    beats: list[list[ScheduledMessage]] = [[] for _ in range(bar.beats_per_bar)]
    for part, notes in bar.parts.items():
        channel = PART_CHANNELS[part]
        for note in notes:
            on_beat = start_beat + note.start_beats
            off_beat = on_beat + note.duration_beats
            group = beats[min(int(note.start_beats), bar.beats_per_bar - 1)]
            group.append(
                ScheduledMessage.at(on_beat, messages.note_on(channel, note.pitch, note.velocity))
            )
            group.append(ScheduledMessage.at(off_beat, messages.note_off(channel, note.pitch)))
    for group in beats:
        group.sort()
    return beats


def render_clock_ticks(start_beat: float, beats: int) -> list[ScheduledMessage]:
    tick = bytes((messages.CLOCK_TICK,))
    per_beat = messages.CLOCK_TICKS_PER_BEAT
    return [ScheduledMessage.at(start_beat + i / per_beat, tick) for i in range(beats * per_beat)]


BarListener = Callable[[ComposedBar, Mood, str], None]  # the bar, its mood, its style


class Performer:
    def __init__(
        self,
        clock: MasterClock,
        dispatcher: Dispatch,
        composer: ComposerService,
        mood: MoodState,
        config: PerformerConfig,
        *,
        on_bar: BarListener | None = None,
        duck: Callable[[float], float] | None = None,
        style: str = BASE_STYLE,
    ) -> None:
        self.clock = clock
        self.dispatcher = dispatcher
        self.composer = composer
        self.mood = mood
        self.config = config
        self.on_bar = on_bar
        self.duck = duck  # beat → velocity factor while a line is spoken (the voice's ducking)
        self.style = style  # the style the next bar planned is composed in
        self.bars_played = 0  # bars planned in the current (or last) take
        self.bars_total = 0  # bars planned in every take together
        self._origin_beat = 0.0  # the beat of bar 0 of the current take
        self._planned_until = 0.0
        self._play_scope: trio.CancelScope | None = None
        self._start_requested = trio.Event()

    @property
    def origin_beat(self) -> float:
        """The beat of bar 0 of the current (or last) take."""
        return self._origin_beat

    @property
    def playing(self) -> bool:
        return self._play_scope is not None and not self._play_scope.cancel_called

    @property
    def next_bar(self) -> int:
        """The index of the next bar to be planned (0 while stopped: a take starts at bar 0)."""
        return self.bars_played if self.playing else 0

    def start(self) -> None:
        """Start from bar 0 (from the trio thread). Ignored while already playing; a start
        right after a stop (before the performer has wound down) is kept for afterwards."""
        if not self.playing:
            self._start_requested.set()

    def stop(self) -> None:
        """Stop the transport: release every note and send MIDI Stop. The clock restarts from
        beat 0 at the next start."""
        if self._play_scope is not None:
            self._play_scope.cancel()

    def panic(self) -> None:
        """Release every sounding note and drop the notes already scheduled; the clock and the
        transport go on, and the music comes back at the next bar the performer plans."""
        self.dispatcher.panic(keep_clock=True)
        log.info("panic: all notes released")

    async def serve(
        self,
        *,
        autostart: bool = True,
        max_bars: int | None = None,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Play whenever started; with `max_bars`, return after that many bars have sounded.

        With `autostart`, reports started once the clock runs (beat 0 is a lookahead and a
        preroll away), so services that wait on beats can start right after.
        """
        if autostart:
            self._start_requested.set()
        else:
            task_status.started()
        while True:
            await self._start_requested.wait()
            self._start_requested = trio.Event()
            if self.config.follow and not self.clock.running:
                log.info("start: waiting for the master's clock")
                continue
            self._start_clock()
            if autostart:
                task_status.started()
                autostart = False
            if await self._play(max_bars):
                return

    def _start_clock(self) -> None:
        """Start a take: bar 0 of it falls a lookahead and a preroll from now.

        Beats run on across takes (a restart begins a bar after the last take ended), so a
        recording of the whole evening keeps its takes in order instead of on top of each other.
        """
        config = self.config
        if config.follow:
            # The master's beat 0 is a bar line: start on the first bar line far enough ahead
            # to be composed in time.
            earliest = self.clock.current_beat() + config.lookahead_beats + FOLLOW_MARGIN_BEATS
            bars = math.ceil(earliest / config.beats_per_bar - 1e-9)
            self._origin_beat = float(bars * config.beats_per_bar)
            log.info("following: bar 0 of this take is the master's beat %g", self._origin_beat)
            return
        if self.clock.running:
            bars_done = math.ceil(self._planned_until / config.beats_per_bar - 1e-9)
            self._origin_beat = float((bars_done + 1) * config.beats_per_bar)
        seconds_per_beat = 60.0 / self.clock.bpm
        lead_s = config.lookahead_beats * seconds_per_beat + config.preroll_s
        self.clock.start(self.clock.now_s() + lead_s, beat=self._origin_beat)
        if config.clock_out:
            start_beat = self._origin_beat - START_LEAD_BEATS
            self.dispatcher.submit(
                [ScheduledMessage.at(start_beat, bytes((messages.CLOCK_START,)))]
            )

    async def _play(self, max_bars: int | None) -> bool:
        """Plan bars and release their beats until `max_bars` (True: the set is over) or until
        stopped (False).

        Two streams in time order: bar plans, each `lookahead_beats` before its bar line, and
        beat releases, each `release_lead_beats` before its beat. At equal times the plan goes
        first, since it may be the one that queues the release.
        """
        config = self.config
        self._planned_until = self._origin_beat
        self.bars_played = 0
        releases: deque[BeatRelease] = deque()
        finished = False
        with trio.CancelScope() as scope:
            self._play_scope = scope
            try:
                bar = 0
                while True:
                    more_bars = max_bars is None or bar < max_bars
                    plan_beat = self._bar_beat(bar) - config.lookahead_beats
                    if releases and (
                        not more_bars or releases[0].beat - config.release_lead_beats < plan_beat
                    ):
                        release = releases.popleft()
                        await self.clock.sleep_until_beat(release.beat - config.release_lead_beats)
                        self._release(release)
                    elif more_bars:
                        await self.clock.sleep_until_beat(plan_beat)
                        releases.extend(await self._plan_bar(bar))
                        bar += 1
                    else:
                        break
                # A tick past the end, so the last note-offs have gone out as scheduled.
                await self.clock.sleep_until_beat(self._planned_until + END_MARGIN_BEATS)
                finished = True
            finally:
                self._play_scope = None
                self._end_of_play()
        return finished

    def _bar_beat(self, index: int) -> float:
        return self._origin_beat + index * self.config.beats_per_bar

    async def _plan_bar(self, index: int) -> list[BeatRelease]:
        """Compose bar `index` in the mood of now; queue its clock ticks; return its beats."""
        config = self.config
        start_beat = self._bar_beat(index)
        mood = self.mood.at(self.clock.now_s())
        request = BarRequest(
            index=index,
            beats_per_bar=config.beats_per_bar,
            tonic=config.tonic,
            valence=mood.valence,
            arousal=mood.arousal,
            density=mood.density,
            intensity=mood.intensity,
            style=self.style,
        )
        bar = await self.composer.compose(request)
        if config.clock_out:
            self.dispatcher.submit(render_clock_ticks(start_beat, config.beats_per_bar))
        self._planned_until = start_beat + config.beats_per_bar
        self.bars_played = index + 1
        self.bars_total += 1
        if self.on_bar is not None:
            self.on_bar(bar, mood, request.style)
        return [
            BeatRelease(start_beat + i, tuple(notes), mood)
            for i, notes in enumerate(render_notes_by_beat(bar, start_beat))
            if notes
        ]

    def _release(self, release: BeatRelease) -> None:
        """Hand one beat's notes to the dispatcher, their dynamics following the mood of now."""
        ratio = expression_ratio(release.mood, self.mood.at(self.clock.now_s()))
        if self.duck is not None:
            ratio *= self.duck(release.beat)
        self.dispatcher.submit(
            ScheduledMessage(m.beat, m.order, scale_velocity(m.data, ratio)) for m in release.notes
        )

    def _end_of_play(self) -> None:
        """Runs on every way out of playing (finished, stopped, cancelled, crashed)."""
        now = self.clock.current_beat()
        self.dispatcher.panic()  # drops everything pending, releases every sounding note
        if self.config.clock_out:
            self.dispatcher.submit([ScheduledMessage.at(now, bytes((messages.CLOCK_STOP,)))])
