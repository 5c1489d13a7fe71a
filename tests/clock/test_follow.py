"""Following a MIDI clock master: the tick filter on synthetic tick times, and the whole follower
(performer, virtual dispatcher) in virtual time against a master task that sends ticks."""

from __future__ import annotations

import logging
import random
from functools import partial

import pytest
import trio

from livekomp.clock.clock import MasterClock
from livekomp.clock.follow import FollowConfig, MidiClockFollower, TickFilter
from livekomp.composer import ComposerService
from livekomp.dispatch.dispatcher import VirtualDispatcher
from livekomp.dispatch.tracked import TrackedOutput
from livekomp.mood import MoodState
from livekomp.music import messages
from livekomp.music.rules import RuleComposer
from livekomp.outputs.midi import MemoryOutput
from livekomp.performer import Performer, PerformerConfig

JACK_PERIOD_S = 128 / 48_000  # the transport jitter of the live tests: one JACK period


def tick_times(bpm: float, count: int, start_s: float, rng: random.Random, jitter_s: float):
    period_s = 60.0 / bpm / 24
    ideal = [start_s + i * period_s for i in range(count)]
    return ideal, [t + rng.uniform(-jitter_s / 2, jitter_s / 2) for t in ideal]


@pytest.mark.parametrize("bpm", [60.0, 90.0, 120.0, 140.0, 174.0])
def test_tempo_settles_within_a_bar_despite_jitter(bpm: float) -> None:
    tick_filter = TickFilter()
    _, times = tick_times(bpm, 96, 10.0, random.Random(int(bpm)), JACK_PERIOD_S)
    fits = [tick_filter.add(t) for t in times]
    assert fits[-1].count == 95
    assert fits[-1].bpm == pytest.approx(bpm, abs=0.1)
    assert tick_filter.late == tick_filter.dropped == tick_filter.jumps == 0


def test_a_single_late_tick_is_counted_but_moves_nothing() -> None:
    tick_filter = TickFilter()
    ideal, _ = tick_times(120.0, 120, 0.0, random.Random(0), 0.0)
    period_s = ideal[1] - ideal[0]
    times = list(ideal)
    times[60] += 0.4 * period_s
    fits = [tick_filter.add(t) for t in times]
    assert [f.count for f in fits] == list(range(120))
    assert not fits[60].on_line
    assert fits[-1].bpm == pytest.approx(120.0, abs=1e-6)
    assert fits[-1].time_s == pytest.approx(ideal[-1], abs=1e-9)
    assert (tick_filter.late, tick_filter.dropped, tick_filter.jumps) == (1, 0, 0)


def test_a_dropped_tick_is_counted_as_missing() -> None:
    tick_filter = TickFilter()
    _, times = tick_times(140.0, 120, 0.0, random.Random(1), JACK_PERIOD_S)
    del times[50]
    fits = [tick_filter.add(t) for t in times]
    assert fits[-1].count == 119  # the missing tick still took its place in the count
    assert fits[-1].bpm == pytest.approx(140.0, abs=0.1)
    assert (tick_filter.dropped, tick_filter.jumps) == (1, 0)


@pytest.mark.parametrize("lateness", [0.32, 0.45, 0.6])
def test_a_dropped_tick_then_a_late_one_is_one_drop_not_a_tempo_change(lateness: float) -> None:
    """The tick after a drop comes a little late (over the tolerance, under a tick): the ticks
    after it back on the line at the drop's offset say one tick went missing. Before, three
    suspects in a row were read as a tempo change and the drop was lost from the count (found
    by replaying the live test's master send logs with stalls: tools in the issue's note)."""
    tick_filter = TickFilter()
    ideal, _ = tick_times(140.0, 120, 0.0, random.Random(0), 0.0)
    period_s = ideal[1] - ideal[0]
    times = list(ideal)
    times[61] += lateness * period_s
    del times[59]
    fits = [tick_filter.add(t) for t in times]
    assert [f.count for f in fits if f.on_line] == [i for i in range(120) if i not in (59, 60, 61)]
    assert (tick_filter.late, tick_filter.dropped, tick_filter.jumps) == (1, 1, 0)
    assert fits[-1].time_s == pytest.approx(ideal[-1], abs=1e-9)


def test_the_last_tick_before_a_stop_counts_once_however_late() -> None:
    """A stop can come right after a late tick, before the next tick tells late from dropped:
    the master's position is then every tick heard, counted once."""
    tick_filter = TickFilter()
    ideal, _ = tick_times(120.0, 97, 0.0, random.Random(0), 0.0)
    period_s = ideal[1] - ideal[0]
    times = list(ideal)
    times[-1] += 0.65 * period_s  # on the line a tick further on, if it were a drop
    for t in times:
        tick_filter.add(t)
    assert tick_filter.count == 97  # provisional: maybe one went missing
    assert tick_filter.heard_count == 96


def test_a_tick_nearly_a_period_late_then_a_burst_drops_nothing() -> None:
    """A tick held up by most of a period sits where a drop's successor would, and the burst
    after a stall ends on the line: the burst's ticks, late by more than a tick, are no evidence
    of a drop, so every tick counts once."""
    tick_filter = TickFilter()
    ideal, _ = tick_times(140.0, 144, 0.0, random.Random(0), 0.0)
    period_s = ideal[1] - ideal[0]
    times = list(ideal)
    times[72] += 0.87 * period_s
    for i in range(73, 80):
        times[i] = ideal[79] + (i - 73) * 20e-6  # held, then delivered in one callback
    fits = [tick_filter.add(t) for t in times]
    assert all(f.count == i for i, f in enumerate(fits) if f.on_line)
    assert tick_filter.dropped == 0
    assert fits[-1].count == 143


@pytest.mark.parametrize("stalled_ticks", [1, 2, 3, 5])
@pytest.mark.parametrize("bpm", [90.0, 140.0])
def test_a_burst_after_a_stall_keeps_the_count_and_moves_nothing(
    bpm: float, stalled_ticks: int
) -> None:
    """The transport (or the machine) stalls for a few ticks, then delivers them all at once, as
    a JACK cycle held up under disk load does: they are late ticks, not dropped ones and not a
    tempo change; the count stays right and the line does not move."""
    tick_filter = TickFilter()
    ideal, times = tick_times(bpm, 144, 0.0, random.Random(7), JACK_PERIOD_S)
    period_s = ideal[1] - ideal[0]
    release_s = ideal[72 + stalled_ticks] + 0.5 * period_s
    for i in range(72, 72 + stalled_ticks + 1):
        times[i] = release_s + (i - 72) * 20e-6  # one after another in one callback
    fits = [tick_filter.add(t) for t in times]
    held = range(72, 72 + stalled_ticks + 1)
    assert all(not fits[i].on_line for i in held)
    assert all(f.count == i for i, f in enumerate(fits) if i not in held)
    assert (tick_filter.dropped, tick_filter.jumps) == (0, 0)
    assert tick_filter.late == stalled_ticks + 1
    assert fits[-1].bpm == pytest.approx(bpm, abs=0.1)
    assert fits[-1].time_s == pytest.approx(ideal[-1], abs=0.5e-3)


@pytest.mark.xfail(
    strict=True,
    reason="known bug: two ticks held up by a period look like a drop, and the count runs a "
    "tick ahead until they catch up (seen once in 20 live runs under load: notes 17.4 ms early)",
)
@pytest.mark.parametrize("held_ticks", [2, 6, 23])
def test_ticks_held_up_by_a_period_for_a_while_are_late_not_dropped(held_ticks: int) -> None:
    """A run of ticks each a period late looks like a dropped tick until they catch up: the
    count never moves the clock a tick early meanwhile, and nothing is dropped in the end."""
    tick_filter = TickFilter()
    ideal, times = tick_times(140.0, 144, 0.0, random.Random(7), JACK_PERIOD_S)
    period_s = ideal[1] - ideal[0]
    for i in range(72, 72 + held_ticks):
        times[i] = ideal[i] + period_s
    fits = [tick_filter.add(t) for t in sorted(times)]
    assert all(f.count == i for i, f in enumerate(fits) if f.on_line)
    assert (tick_filter.late, tick_filter.dropped, tick_filter.jumps) == (held_ticks, 0, 0)
    assert fits[-1].count == 143


def test_a_tick_one_period_late_is_late_not_dropped() -> None:
    """A tick held up by exactly a period lands where a dropped tick's successor would: only
    the next tick (right after it, not a period later) tells, and it says late."""
    tick_filter = TickFilter()
    ideal, _ = tick_times(120.0, 120, 0.0, random.Random(0), 0.0)
    period_s = ideal[1] - ideal[0]
    times = list(ideal)
    times[60] += period_s - 1e-4
    fits = [tick_filter.add(t) for t in times]
    assert [f.count for f in fits if f.on_line] == [i for i in range(120) if i != 60]
    assert fits[-1].count == 119
    assert (tick_filter.late, tick_filter.dropped, tick_filter.jumps) == (1, 0, 0)
    assert fits[-1].time_s == pytest.approx(ideal[-1], abs=1e-9)


@pytest.mark.parametrize(
    ("before", "after"),
    [(90.0, 140.0), (140.0, 90.0), (140.0, 100.0), (140.0, 70.0), (120.0, 126.0)],
)
def test_a_tempo_jump_is_followed_within_a_bar(before: float, after: float) -> None:
    rng = random.Random(2)
    tick_filter = TickFilter()
    _, first = tick_times(before, 96, 0.0, rng, JACK_PERIOD_S)
    start_s = first[-1] + 60.0 / after / 24
    _, second = tick_times(after, 96, start_s, rng, JACK_PERIOD_S)
    fits = [tick_filter.add(t) for t in first + second]
    # A suspect's count is provisional (it might follow a dropped tick); the ticks that move
    # the clock are counted right, each once.
    assert all(f.count == i for i, f in enumerate(fits) if f.on_line)
    assert fits[-1].count == 191
    assert tick_filter.jumps == 1
    assert fits[-1].bpm == pytest.approx(after, abs=0.1)


def busy_transport(bpm_a: float, bpm_b: float, seed: int, ticks_each: int = 120) -> list[float]:
    """Ticks as a busy machine hears them: ±0.5 ms master jitter, delivered at the next JACK
    period, and one tick in twenty delayed by up to 8 ms more (a late MIDI callback)."""
    rng = random.Random(seed)
    t_s, heard = 10.0, []
    for bpm in (bpm_a, bpm_b):
        for _ in range(ticks_each):
            t_s += 60.0 / bpm / 24
            jittered_s = t_s + rng.uniform(-0.0005, 0.0005)
            delivered_s = (jittered_s // JACK_PERIOD_S + 1) * JACK_PERIOD_S
            if rng.random() < 0.05:
                delivered_s += rng.uniform(0.0, 0.008)
            heard.append(delivered_s)
    return sorted(heard)


@pytest.mark.parametrize(
    ("before", "after"), [(140.0, 90.0), (140.0, 100.0), (90.0, 140.0), (120.0, 126.0)]
)
def test_tempo_jumps_on_a_busy_machine_keep_the_count(before: float, after: float) -> None:
    """Late ticks right at a tempo change must not be taken for dropped ones: every tick the
    clock is moved by is counted right (seeded, so the same cases every run)."""
    for seed in range(25):
        tick_filter = TickFilter()
        fits = [tick_filter.add(t) for t in busy_transport(before, after, seed)]
        wrong = [i for i, fit in enumerate(fits) if fit.on_line and fit.count != i]
        assert not wrong, (seed, wrong[:3])
        assert fits[-1].bpm == pytest.approx(after, abs=0.5)


def test_a_long_silence_starts_the_count_afresh() -> None:
    tick_filter = TickFilter()
    _, first = tick_times(120.0, 48, 0.0, random.Random(3), 0.0)
    _, second = tick_times(100.0, 48, first[-1] + 5.0, random.Random(3), 0.0)
    fits = [tick_filter.add(t) for t in first + second]
    assert fits[-1].count == 47
    assert fits[-1].bpm == pytest.approx(100.0, abs=1e-6)


# -- the follower in virtual time --------------------------------------------------------------


class Rig:
    """A follower driving clock, performer and virtual dispatcher, as the live server wires it."""

    def __init__(self, timeout_beats: float = 4.0) -> None:
        self.clock = MasterClock(120.0, now_s=trio.current_time)
        self.port = MemoryOutput(now_s=trio.current_time)
        self.dispatcher = VirtualDispatcher(self.clock, TrackedOutput(self.port))
        self.performer = Performer(
            self.clock,
            self.dispatcher,
            ComposerService(RuleComposer(seed=4)),
            MoodState(slew_s=0.0),
            PerformerConfig(beats_per_bar=4, lookahead_beats=1.0, clock_out=False, follow=True),
        )
        self.follower = MidiClockFollower(
            self.clock,
            config=FollowConfig(timeout_beats=timeout_beats),
            on_start=self.performer.start,
            on_stop=self.performer.stop,
        )
        self.master_ticks: list[tuple[float, float]] = []  # (time, master beat) of each tick
        self.rng = random.Random(5)
        self._position_ticks = 0
        self._running = False
        self._next_tick_s: float | None = None

    def send(self, data: bytes) -> None:
        if data[0] == messages.CLOCK_START:
            self._running, self._position_ticks = True, 0
        elif data[0] == messages.CLOCK_CONTINUE:
            self._running = True
        elif data[0] == messages.CLOCK_STOP:
            self._running = False
        elif data[0] == 0xF2:
            self._position_ticks = (data[1] | data[2] << 7) * 6
        self.follower.handle(data, trio.current_time())

    async def ticks(
        self, bpm: float, count: int, *, jitter_s: float = 0.0, drop: int | None = None
    ) -> None:
        """`count` ticks at `bpm` from one period from now; tick `drop` is not sent."""
        period_s = 60.0 / bpm / 24
        # The grid runs on from the last tick (a tempo change moves the next tick, not the past).
        if self._next_tick_s is None or self._next_tick_s < trio.current_time() - 1.0:
            self._next_tick_s = trio.current_time()
        start_s = self._next_tick_s + period_s
        for i in range(count):
            ideal_s = start_s + i * period_s
            await trio.sleep_until(ideal_s + self.rng.uniform(-jitter_s / 2, jitter_s / 2))
            if self._running:
                self.master_ticks.append((ideal_s, self._position_ticks / 24))
                self._position_ticks += 1
            if i != drop:
                self.follower.handle(b"\xf8", trio.current_time())
        self._next_tick_s = start_s + (count - 1) * period_s
        await trio.sleep_until(self._next_tick_s + period_s / 2)

    def note_ons(self) -> list[tuple[float, bytes]]:
        return [(m.time_s, m.data) for m in self.port.sent if messages.is_note_on(m.data)]

    def master_time_of(self, beat: float) -> float:
        """When the master played `beat` (interpolated between its ideal tick times)."""
        for (t0, b0), (t1, b1) in zip(self.master_ticks, self.master_ticks[1:], strict=False):
            if b0 <= beat <= b1 and b1 - b0 < 0.05:
                return t0 + (beat - b0) / (b1 - b0) * (t1 - t0)
        raise AssertionError(f"the master never played beat {beat}")

    def master_beat_at(self, t_s: float) -> float:
        for (t0, b0), (t1, b1) in zip(self.master_ticks, self.master_ticks[1:], strict=False):
            if t0 <= t_s <= t1 and b1 - b0 < 0.05:
                return b0 + (t_s - t0) / (t1 - t0) * (b1 - b0)
        raise AssertionError(f"the master was not playing at {t_s}")


def hanging(sent) -> set[tuple[int, int]]:
    sounding: set[tuple[int, int]] = set()
    for message in sent:
        data = message.data
        if messages.is_note_on(data):
            sounding.add((data[0] & 15, data[1]))
        elif messages.is_note_off(data):
            sounding.discard((data[0] & 15, data[1]))
        elif data[0] & 0xF0 == 0xB0 and data[1] == messages.CC_ALL_NOTES_OFF:
            sounding = {n for n in sounding if n[0] != data[0] & 15}
    return sounding


async def run_rig(rig: Rig, script) -> None:
    async with trio.open_nursery() as nursery:
        await nursery.start(rig.dispatcher.serve)
        await nursery.start(rig.follower.serve_watchdog)
        await nursery.start(partial(rig.performer.serve, autostart=False))
        await script()
        nursery.cancel_scope.cancel()


async def test_notes_land_on_the_masters_grid_through_tempo_jumps_and_drops(autojump_clock):
    rig = Rig()

    async def script() -> None:
        await rig.ticks(90.0, 48, jitter_s=JACK_PERIOD_S)  # stopped: tempo only
        rig.send(b"\xfa")
        await rig.ticks(90.0, 24 * 12, jitter_s=JACK_PERIOD_S, drop=24 * 5 + 7)
        await rig.ticks(140.0, 24 * 16, jitter_s=JACK_PERIOD_S)
        rig.send(b"\xfc")
        await trio.sleep(0.5)

    await run_rig(rig, script)
    assert rig.follower.filter.dropped == 1 and rig.follower.filter.jumps == 1
    assert rig.follower.song_position_beats == pytest.approx(28.0)  # 12 + 16 beats, drop included
    notes = rig.note_ons()
    assert notes
    # The take starts on a bar line of the master's: beat 4 (beat 0 cannot be composed in time).
    assert rig.master_beat_at(notes[0][0]) == pytest.approx(4.0, abs=1e-3)
    jump_beat = 12.0
    errors_ms = []
    for t_s, _ in notes:
        beat = round(rig.master_beat_at(t_s) * 4) / 4  # the composer's grid: sixteenths
        if jump_beat <= beat < jump_beat + 1:
            continue  # nobody can know of a tempo jump before its first ticks
        errors_ms.append((t_s - rig.master_time_of(beat)) * 1e3)
    errors_ms.sort()
    assert len(errors_ms) > 50
    # Half a JACK period of jitter on every tick; the line through them is much closer.
    assert max(abs(e) for e in errors_ms) < 1.0
    assert not hanging(rig.port.sent)  # Stop released everything


async def test_song_position_and_continue_resume_on_the_bar_grid(autojump_clock):
    rig = Rig()

    async def script() -> None:
        rig.send(b"\xfa")
        await rig.ticks(120.0, 24 * 10)
        rig.send(b"\xfc")
        await rig.ticks(120.0, 24 * 2)  # stopped: nothing plays
        rig.send(bytes((0xF2, 26, 0)))  # sixteenth 26 = beat 6.5
        rig.send(b"\xfb")
        await rig.ticks(120.0, 24 * 8)
        rig.send(b"\xfc")
        await trio.sleep(0.5)

    await run_rig(rig, script)
    notes = rig.note_ons()
    stopped_from = rig.master_ticks[24 * 10 - 1][0]
    resumed_at = rig.master_ticks[24 * 10][0]
    assert rig.master_ticks[24 * 10][1] == 6.5
    assert not [t for t, _ in notes if stopped_from < t < resumed_at]
    second_take = [t for t, _ in notes if t >= resumed_at]
    # Resumed at 6.5: the next bar line a lookahead (and a margin) away is beat 8.
    assert rig.master_beat_at(second_take[0]) == pytest.approx(8.0, abs=1e-3)
    assert not hanging(rig.port.sent)


async def test_a_lost_clock_keeps_time_then_releases_and_waits(autojump_clock, caplog):
    rig = Rig(timeout_beats=2.0)
    caplog.set_level(logging.INFO, logger="livekomp.clock")

    async def script() -> None:
        rig.send(b"\xfa")
        await rig.ticks(120.0, 24 * 12)
        await trio.sleep(5.0)  # the cable is pulled: no Stop, no ticks
        rig.send(b"\xfa")
        await rig.ticks(120.0, 24 * 12)
        rig.send(b"\xfc")
        await trio.sleep(0.5)

    await run_rig(rig, script)
    last_tick_s = rig.master_ticks[24 * 12 - 1][0]
    notes = [t for t, _ in rig.note_ons()]
    during_silence = [t for t in notes if last_tick_s < t < last_tick_s + 5.0]
    # Time went on for two beats (1 s at 120 BPM), on the old grid; then nothing.
    assert during_silence and max(during_silence) <= last_tick_s + 1.0 + 1e-6
    assert any(t > last_tick_s + 0.5 for t in during_silence)
    lost_lines = [r for r in caplog.records if "MIDI clock lost" in r.getMessage()]
    assert len(lost_lines) == 1
    released_at = next(
        m.time_s
        for m in rig.port.sent
        if m.time_s > last_tick_s and m.data[0] & 0xF0 == 0xB0 and m.data[1] == 123
    )
    assert released_at == pytest.approx(last_tick_s + 1.0 + 1 / 48, abs=0.05)
    assert any(t > last_tick_s + 5.0 for t in notes)  # the music came back with the clock
    assert not hanging(rig.port.sent)


async def test_odd_messages_are_counted_not_fatal(autojump_clock):
    rig = Rig()
    for junk in (b"", b"\xf2\x80\x00", b"\xf2\x01", b"\x90\x40\x40", b"\xfe"):
        rig.follower.handle(junk, 0.0)
    assert rig.follower.ignored == 5
    assert not rig.follower.running
