"""`livekomp serve --clock midi` following a JACK MIDI clock master, heard by jack_midi_dump.

The master (a JACK client here, as Ableton Live would be) and livekomp both feed one
jack_midi_dump, so the master's ticks and livekomp's notes are stamped by the same JACK frame
counter. Tolerances are generous: JACK (`-p 128`) quantizes each message to a period (2.67 ms),
and this machine is shared. Real time is involved, so the checks are of behaviour only.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import re
import signal
import statistics
import time

import pytest

from tests.live.test_serve_jack import hanging_notes
from tools.beat_grid import FRAME_RATE, note_positions
from tools.peers import ClockMaster, connect, master_beats, ticks_by_the_masters_log

pytestmark = [pytest.mark.jack, pytest.mark.liblo]

PERIOD_FRAMES = 128  # jackd -p 128
SLIP_WINDOW = 6  # ticks either side of a candidate slip
SLIP_MARGIN_TICKS = 2  # a slip takes a JACK cycle or two: notes this near one are not measured


@pytest.fixture
def clock_master(jack_server):
    masters: list[ClockMaster] = []

    def start(jitter_s: float = 0.0) -> ClockMaster:
        # Named for this process: JACK renames a client whose name is taken (a master left over
        # from a killed run), and the test would then talk to the wrong one.
        master = ClockMaster(f"lkmaster{os.getpid()}_{len(masters)}", jitter_s=jitter_s, seed=6)
        masters.append(master)
        return master

    yield start
    for master in masters:
        master.close()


def clock_slips(stretch_ticks: list[tuple[int, float]]) -> list[int]:
    """Where JACK's frame clock lost time against the master's steady ticks: the indices at
    which the ticks after sit a period and a half or more (4 ms) off the line of the ticks
    before.

    JACK's dummy driver, stalled under load, does not count the frames it overslept (on a sound
    card that would be an xrun), so a master and a follower that both keep wall-clock time jump
    together in frames. A grid line fitted across such a jump would charge the jump to the
    follower; one fitted on each side of it does not. Found from the master's ticks alone, so
    a note that moves against the ticks is still measured."""
    if len(stretch_ticks) < 2 * SLIP_WINDOW:
        return []
    f0, b0 = stretch_ticks[0]
    f1, b1 = stretch_ticks[-1]
    frames_per_beat = (f1 - f0) / (b1 - b0)
    residuals = [f - f0 - (b - b0) * frames_per_beat for f, b in stretch_ticks]

    def split(lo: int, hi: int) -> list[int]:
        best, best_step = None, 0.0
        for i in range(lo + SLIP_WINDOW, hi - SLIP_WINDOW + 1):
            step = statistics.median(residuals[i : i + SLIP_WINDOW]) - statistics.median(
                residuals[i - SLIP_WINDOW : i]
            )
            if abs(step) > abs(best_step):
                best, best_step = i, step
        if best is None or abs(best_step) < 1.5 * PERIOD_FRAMES:
            return []
        # Windows that straddle the slip by a tick can score the same: the slip is where the
        # ticks start to sit nearer the line after than the line before.
        before = statistics.median(residuals[best - SLIP_WINDOW : best])
        after = statistics.median(residuals[best : best + SLIP_WINDOW])
        while best < hi - 1 and abs(residuals[best] - before) < abs(residuals[best] - after):
            best += 1
        while best > lo + 1 and abs(residuals[best - 1] - after) < abs(
            residuals[best - 1] - before
        ):
            best -= 1
        return [*split(lo, best), best, *split(best, hi)]

    return split(0, len(stretch_ticks))


def grid_errors_ms(notes, ticks, stretches, skip=(), slipped=None):
    """Each note against the master's grid: where the line through the master's ticks within a
    beat either side puts the note's sixteenth. A stretch (first frame, last frame, first beat,
    last beat) is one tempo of one take; a line never crosses a tempo change, nor a slip of
    JACK's frame clock (`clock_slips`). The master's jitter and JACK's period average out of
    the line, so what is left is livekomp's.

    A slip is not instant: measured against the master's own send times, the frames lost arrive
    over a cycle or two, and a note in that stretch sits between the two lines. Notes within
    `SLIP_MARGIN_TICKS` of a slip are left out (`slipped`, if given, counts them)."""
    segments = []  # the ticks of one stretch between slips, the stretch, and its ends at slips
    for stretch in stretches:
        inside = [
            (f, b)
            for f, b in ticks
            if stretch[0] <= f <= stretch[1] and stretch[2] <= b <= stretch[3]
        ]
        slips = clock_slips(inside)
        cuts = [0, *slips, len(inside)]
        for lo, hi in itertools.pairwise(cuts):
            segments.append((inside[lo:hi], stretch, lo in slips, hi in slips))
    errors = []
    for frame, beat in notes:
        nominal = round(beat * 4) / 4
        if any(lo <= nominal < hi for lo, hi in skip):
            continue
        found = next(
            (
                (seg, after_slip, before_slip)
                for seg, s, after_slip, before_slip in segments
                if seg[0][0] <= frame <= seg[-1][0] and s[2] <= nominal <= s[3]
            ),
            None,
        )
        if found is None:
            continue
        segment, after_slip, before_slip = found
        if len(segment) > 1:
            tick_frames = (segment[-1][0] - segment[0][0]) / ((segment[-1][1] - segment[0][1]) * 24)
            margin = SLIP_MARGIN_TICKS * tick_frames
            if (after_slip and frame < segment[0][0] + margin) or (
                before_slip and frame > segment[-1][0] - margin
            ):
                if slipped is not None:
                    slipped.append(beat)
                continue
        near = [(b, f) for f, b in segment if abs(b - nominal) <= 1.0]
        if len(near) < 12:
            continue
        mean_b = sum(b for b, _ in near) / len(near)
        mean_f = sum(f for _, f in near) / len(near)
        slope = sum((b - mean_b) * (f - mean_f) for b, f in near) / sum(
            (b - mean_b) ** 2 for b, _ in near
        )
        grid_frame = mean_f + slope * (nominal - mean_b)
        errors.append((frame - grid_frame) / FRAME_RATE * 1e3)
    return errors


def keep_evidence(path, events, own_events, master) -> None:
    """What the run heard and what the master sent, beside livekomp's log in the test's tmp
    folder, so a failure under load can be replayed through the measures after the fact."""
    path.write_text(
        json.dumps(
            {
                "events": [(frame, list(data)) for frame, data in events],
                "own_events": [(frame, list(data)) for frame, data in own_events],
                "sent": [(t_s, list(data)) for t_s, data in master.sent],
            }
        )
    )


def test_a_slip_of_the_frame_clock_is_found_and_jitter_is_not():
    rng = random.Random(3)
    period = 857.14  # frames a tick at 140 BPM
    ticks = [
        (round(i * period + rng.uniform(-48, 48)) // 128 * 128 - (437 if i >= 40 else 0), i / 24)
        for i in range(96)
    ]
    assert clock_slips(ticks) == [40]
    steady = [(f + (437 if i >= 40 else 0), b) for i, (f, b) in enumerate(ticks)]
    assert clock_slips(steady) == []


def test_notes_in_a_slip_are_not_measured_and_the_rest_are():
    period = 1333.33  # frames a tick at 90 BPM
    slip = 437  # frames JACK lost at tick 42, half of them a tick later (as measured)
    ticks = [
        (round(i * period) - (slip // 2 if i == 42 else slip if i > 42 else 0), i / 24)
        for i in range(120)
    ]
    stretches = [(0, ticks[-1][0], 0.0, 5.0)]
    # A note on every sixteenth, one period (128 frames) after its tick, as JACK delivers it.
    notes = [(f + 128, b) for i, (f, b) in enumerate(ticks) if i % 6 == 0]
    slipped: list[float] = []
    errors = grid_errors_ms(notes, ticks, stretches, slipped=slipped)
    assert len(errors) == len(notes) - 1  # the note in the slip (beat 1.75) is left out
    assert set(slipped) <= {1.75}
    # On time: each one JACK period late, within what the half-slipped tick does to a line.
    assert all(abs(e - 128 / FRAME_RATE * 1e3) < 0.5 for e in errors), errors
    # A note 10 ms late is still seen, next to the slip or anywhere else.
    for late_beat in (2.0, 4.0):
        late = [(f + 480 if b == late_beat else f, b) for f, b in notes]
        assert max(grid_errors_ms(late, ticks, stretches)) == pytest.approx(12.67, abs=0.05)


def test_ticks_are_numbered_by_what_the_master_sent():
    period_s = 60 / 140 / 24
    sent = [(0.0, b"\xfa")] + [(0.01 + i * period_s, b"\xf8") for i in range(96)]
    sent.append((0.01 + 96 * period_s, b"\xfc"))

    def heard(late: dict[int, float], lost: set[int]) -> list[tuple[int, bytes]]:
        return [
            (round((t + late.get(i - 1, 0.0) * period_s) * 48_000) // 128 * 128, data)
            for i, (t, data) in enumerate(sent)
            if i - 1 not in lost
        ]

    truth = [i / 24 for i in range(96)]
    # A tick held up by 0.75 of a period: its gap looks like a lost tick's; it was not lost.
    held = heard({40: 0.75}, set())
    assert [b for _, b in ticks_by_the_masters_log(held, sent)] == truth
    assert [b for _, b in master_beats(held, infer_lost=True)] != truth  # what the gaps said
    # The first tick after the start lost on the way: no gap shows it.
    first_lost = heard({}, {0})
    assert [b for _, b in ticks_by_the_masters_log(first_lost, sent)] == truth[1:]
    assert [b for _, b in master_beats(first_lost, infer_lost=True)] == truth[:-1]
    # A tick heard that was never sent (once in 40 runs under load) is left out, not counted.
    doubled = heard({}, set())
    doubled.insert(42, (doubled[41][0] + 128, b"\xf8"))
    assert [b for _, b in ticks_by_the_masters_log(doubled, sent)] == truth


def test_follows_a_jack_clock_master_through_tempo_changes_stop_and_song_position(
    serve_factory, midi_dump, clock_master, tmp_path
):
    master = clock_master(jitter_s=0.001)
    dump = midi_dump()
    own = midi_dump("lkown")  # livekomp's output alone
    serve = serve_factory(
        "--clock", "midi", "--midi-clock-in", master.port, "--bpm", "120",
        "--clock-trace", str(tmp_path / "clock-trace.json"),
    )  # fmt: skip
    connect(serve.port_label(), dump.port)
    connect(serve.port_label(), own.port)
    connect(master.port, dump.port)
    serve.wait_ready()
    dropped = 48 + 24 * 5 + 7  # one tick in the sixth beat after Start never goes out
    master.play(
        [
            ("ticks", 90, 48),  # stopped: livekomp learns the tempo, nothing plays
            ("start",),
            ("ticks", 90, 24 * 12),
            ("ticks", 140, 24 * 12),
            ("stop",),
            ("ticks", 140, 24 * 2),  # stopped again: silence
            ("spp", 40),  # sixteenth 40: beat 10
            ("continue",),
            ("ticks", 140, 24 * 10),
            ("stop",),
        ],
        drop=frozenset({dropped}),
    )
    master.wait()
    time.sleep(0.5)
    assert serve.stop(signal.SIGTERM) == 0
    time.sleep(0.3)
    log = serve.log()
    events = dump.events()
    keep_evidence(tmp_path / "follow-evidence.json", events, own.events(), master)
    # A follower never sends clock, Start or Continue: it would echo the master back to it.
    assert not [data for _, data in own.events() if data[0] in (0xF8, 0xFA, 0xFB)]

    # Tempo: what livekomp reported settles on each of the master's tempi.
    reported = [float(m) for m in re.findall(r"following ([\d.]+) BPM", log)]
    near_90 = [bpm for bpm in reported if abs(bpm - 90) < 10]
    near_140 = [bpm for bpm in reported if abs(bpm - 140) < 10]
    assert near_90 and near_90[-1] == pytest.approx(90, abs=0.5)
    assert near_140 and near_140[-1] == pytest.approx(140, abs=0.5)
    # Transport and the count: 24 beats after Start (the dropped tick counted), then 10 more.
    assert "MIDI clock: Stop at beat 24.00" in log
    assert "MIDI clock: Continue from beat 10" in log
    assert "MIDI clock: Stop at beat 20.00" in log
    # --clock-trace: what livekomp heard, in order, with the count it gave each tick.
    trace = json.loads((tmp_path / "clock-trace.json").read_text())
    transport = [status for _, status, _, _ in trace["messages"] if status != 0xF8]
    assert transport == [0xFA, 0xFC, 0xF2, 0xFB, 0xFC]
    counts = [count for _, status, count, _ in trace["messages"] if status == 0xF8]
    steps = [b - a for a, b in itertools.pairwise(counts)]
    assert len(counts) > 800 and steps.count(1) >= 0.95 * len(steps)

    # The master's beats, numbered by its own log of what it sent: jack_midi_dump misses JACK
    # cycles under load, and with them ticks, and counting from its gaps took a tick held up by
    # most of a period for a lost one (or missed a lost first tick), shifting every beat after.
    ticks = ticks_by_the_masters_log(events, master.sent, dropped=frozenset({dropped}))
    notes = note_positions(events, ticks)
    assert len(notes) > 60
    # Bar grid: each take starts on one of the master's bar lines: 4 after Start (beat 0 cannot
    # be composed in time), 12 after Continue from beat 10.
    # The dump can lose the Continue and the Stop too (a lost cycle): then the takes are told
    # apart by the master's beats, which run back from 24 to 10 at the Continue.
    take_two = next(f for (_, b0), (f, b1) in itertools.pairwise(ticks) if b1 < b0)
    continue_frame = next((f for f, data in events if data[0] == 0xFB), take_two - 1)
    first_take = [beat for frame, beat in notes if frame < continue_frame]
    second_take = [beat for frame, beat in notes if frame > continue_frame]
    assert min(first_take) == pytest.approx(4.0, abs=0.02)
    assert min(second_take) == pytest.approx(12.0, abs=0.02)
    # Phase: on the master's grid, the first beat after the tempo jump aside (a tempo change
    # cannot be known before its ticks come). JACK puts a note at the start of the period after
    # it was sent (2.67 ms at -p 128): that much lateness is the transport's.
    end = events[-1][0]
    stretches = [
        (0, continue_frame, 0.0, 12.0),  # 90 BPM
        (0, continue_frame, 12.0, 24.0),  # 140 BPM
        (continue_frame, end, 10.0, 20.0),  # Continue, 140 BPM
    ]
    slipped: list[float] = []
    errors = grid_errors_ms(notes, ticks, stretches, skip=[(12.0, 13.0)], slipped=slipped)
    assert len(errors) > 50
    assert len(slipped) <= 12, slipped  # a few slips a run under load, a chord or two each
    errors.sort()
    assert abs(errors[len(errors) // 2]) < 3.0
    assert max(abs(e) for e in errors) < 5.0, (errors[:3], errors[-3:], "slipped:", slipped)

    # Nothing sounds while the master is stopped, and nothing is left hanging.
    last_of_take_one = max(f for f, _ in ticks if f < continue_frame)
    stop_frame = next((f for f, data in events if data[0] == 0xFC), last_of_take_one + 1)
    assert not [
        f for f, d in events if stop_frame + 480 < f < continue_frame and d[0] & 0xF0 == 0x90
    ]
    assert not hanging_notes([e for e in events if e[0] <= continue_frame])
    assert not hanging_notes(events)
    assert "Traceback" not in log


def test_a_lost_master_clock_keeps_time_releases_and_waits(serve_factory, midi_dump, clock_master):
    master = clock_master()
    dump = midi_dump()
    serve = serve_factory(
        "--clock", "midi", "--midi-clock-in", master.port, "--clock-timeout-beats", "2"
    )
    connect(serve.port_label(), dump.port)
    connect(master.port, dump.port)
    serve.wait_ready()
    master.play([("start",), ("ticks", 120, 24 * 10)])  # then silence: no Stop
    master.wait()
    serve.wait_for("MIDI clock lost", timeout_s=10)
    time.sleep(1.0)
    silent_from = len(dump.events())
    time.sleep(1.0)
    assert len(dump.events()) == silent_from  # waiting: nothing plays
    master.play([("start",), ("ticks", 120, 24 * 8), ("stop",)])
    master.wait()
    time.sleep(0.3)
    assert serve.stop() == 0
    time.sleep(0.3)
    events = dump.events()
    log = serve.log()
    assert log.count("MIDI clock lost") == 1
    last_tick = max(f for f, d in events[:silent_from] if d[0] == 0xF8)
    notes_after = [f for f, d in events[:silent_from] if f > last_tick and d[0] & 0xF0 == 0x90]
    # Time went on for up to two beats (1 s) after the last tick, then everything was released.
    assert notes_after and max(notes_after) <= last_tick + 1.1 * FRAME_RATE
    assert not hanging_notes(events[:silent_from])
    assert any(d[0] & 0xF0 == 0x90 for _, d in events[silent_from:])  # back with the clock
    assert not hanging_notes(events)


def test_a_clock_source_unplugged_and_back_is_reopened(serve_factory, jack_server):
    name = f"lkhotclock{os.getpid()}"
    master = ClockMaster(name)
    serve = serve_factory("--clock", "midi", "--midi-clock-in", master.port)
    try:
        serve.wait_ready()
        master.play([("start",), ("ticks", 120, 24 * 4), ("stop",)])
        master.wait()
        serve.wait_for("MIDI clock: Stop at beat 4.00")
    finally:
        master.close()  # unplugged
    serve.wait_for(f"MIDI clock input {name}:clock is gone", timeout_s=10)
    master = ClockMaster(name)  # plugged in again
    try:
        serve.wait_for(f"MIDI clock input {name}:clock is back: reopened", timeout_s=10)
        master.play([("start",), ("ticks", 120, 24 * 6), ("stop",)])
        master.wait()
        serve.wait_for("MIDI clock: Stop at beat 6.00")
    finally:
        master.close()
    assert serve.stop() == 0
    assert "Traceback" not in serve.log()
